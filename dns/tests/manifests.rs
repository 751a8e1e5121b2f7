//! Component test: the deployment manifests. `hack/lib/dns.sh` and the Helm chart (with
//! `dns.enabled=true`) render kubeadm's CoreDNS objects, and the container command they
//! render is accepted by ferrokube-dns's own flag parser.

use clap::Parser;
use std::process::Command;

fn docs(yaml: &str) -> Vec<serde_yaml::Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|d| <serde_yaml::Value as serde::Deserialize>::deserialize(d).unwrap())
        .filter(|v: &serde_yaml::Value| !v.is_null())
        .collect()
}

fn find<'a>(docs: &'a [serde_yaml::Value], kind: &str) -> &'a serde_yaml::Value {
    docs.iter()
        .find(|d| d["kind"].as_str() == Some(kind))
        .unwrap_or_else(|| panic!("no {kind}"))
}

fn command_is_accepted(deployment: &serde_yaml::Value) -> Vec<String> {
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let mut argv: Vec<String> = container["command"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    assert_eq!(argv[0], "ferrokube-dns");
    // The pod's /etc/resolv.conf is not this machine's concern.
    argv.push("--resolv-conf=".into());
    let options = dns::config::Options::try_parse_from(&argv).expect("rendered flags parse");
    dns::config::validate(options).expect("rendered flags validate");
    argv
}

fn workspace() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn dns_sh_renders_kubeadms_coredns_objects() {
    let out = Command::new("bash")
        .arg("-c")
        .arg("source hack/lib/dns.sh && dns::manifest ferrokube:9.9.9 10.96.0.10 cluster.local 2")
        .current_dir(workspace())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let docs = docs(&String::from_utf8(out.stdout).unwrap());
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment",
            "Service"
        ]
    );
    let svc = find(&docs, "Service");
    assert_eq!(svc["metadata"]["name"], "kube-dns");
    assert_eq!(svc["metadata"]["namespace"], "kube-system");
    assert_eq!(svc["spec"]["clusterIP"], "10.96.0.10");
    assert_eq!(svc["metadata"]["labels"]["kubernetes.io/name"], "CoreDNS");
    assert_eq!(
        svc["metadata"]["labels"]["kubernetes.io/cluster-service"],
        "true"
    );
    let ports: Vec<(String, i64, String)> = svc["spec"]["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().into(),
                p["port"].as_i64().unwrap(),
                p["protocol"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        ports,
        [
            ("dns".into(), 53, "UDP".into()),
            ("dns-tcp".into(), 53, "TCP".into()),
            ("metrics".into(), 9153, "TCP".into())
        ]
    );
    let deploy = find(&docs, "Deployment");
    let pod = &deploy["spec"]["template"]["spec"];
    assert_eq!(deploy["spec"]["replicas"], 2);
    assert_eq!(pod["priorityClassName"], "system-cluster-critical");
    assert_eq!(pod["serviceAccountName"], "coredns");
    assert_eq!(
        deploy["spec"]["template"]["metadata"]["labels"]["k8s-app"],
        "kube-dns"
    );
    let c = &pod["containers"][0];
    assert_eq!(c["image"], "ferrokube:9.9.9");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/ready");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/health");
    let rules = &find(&docs, "ClusterRole")["rules"];
    assert_eq!(rules[1]["resources"][0], "endpointslices");
    command_is_accepted(deploy);
}

#[test]
fn chart_renders_dns_when_enabled() {
    if Command::new("helm").arg("version").output().is_err() {
        e2e::skip::record_skip(
            "manifests::chart_renders_dns_when_enabled",
            "helm not installed (hack/install-deps.sh installs it)",
        );
        return;
    }
    let chart = workspace().join("charts/ferrokube");
    let lint = Command::new("helm")
        .args(["lint", "--set", "dns.enabled=true"])
        .arg(&chart)
        .output()
        .unwrap();
    assert!(
        lint.status.success(),
        "{}",
        String::from_utf8_lossy(&lint.stdout)
    );
    let render = |extra: &[&str]| {
        let out = Command::new("helm")
            .args(["template", "r", "-n", "kube-system"])
            .arg(&chart)
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        docs(&String::from_utf8(out.stdout).unwrap())
    };
    let off = render(&[]);
    assert!(
        !off.iter()
            .any(|d| d["metadata"]["name"] == "r-ferrokube-dns"),
        "dns is off by default"
    );
    let on = render(&[
        "--set",
        "dns.enabled=true",
        "--set",
        "dns.service.clusterIP=10.96.0.53",
        "--set",
        "dns.clusterDomains={cluster.local,example.internal}",
    ]);
    let dns: Vec<&serde_yaml::Value> = on
        .iter()
        .filter(|d| d["metadata"]["name"] == "r-ferrokube-dns")
        .collect();
    let mut kinds: Vec<&str> = dns.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment",
            "Service",
            "ServiceAccount"
        ]
    );
    let svc = dns.iter().find(|d| d["kind"] == "Service").unwrap();
    assert_eq!(svc["spec"]["clusterIP"], "10.96.0.53");
    let deploy = dns.iter().find(|d| d["kind"] == "Deployment").unwrap();
    let argv = command_is_accepted(deploy);
    assert!(argv.contains(&"--cluster-domain=cluster.local,example.internal".to_string()));
    assert!(argv.contains(&"--dns-service=kube-system/r-ferrokube-dns".to_string()));
}
