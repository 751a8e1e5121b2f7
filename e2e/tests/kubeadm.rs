//! Issue 15's "Done means", the way kind does it, without docker: `hack/kubeadm-up.sh --nodes
//! 2` runs upstream's `kubeadm init` with ferrokube's kubelet as the only kubelet, the
//! control plane comes up as kubeadm's static pods run by that kubelet (upstream's
//! kube-apiserver, ferrokube's kube-controller-manager and kube-scheduler), every phase after
//! preflight succeeds; `kubeadm join` adds a second node whose kubelet gets its client
//! certificate through the TLS bootstrap (a bootstrap-token CSR that our controller manager
//! approves and signs); kube-proxy runs as kubeadm's DaemonSet (the ferrokube image under
//! kubeadm's ConfigMap); both nodes turn Ready and a Deployment runs on both.
//! `hack/kubeadm-down.sh` leaves nothing behind.
//!
//! Needs root, containerd and the assets kubeadm, kube-apiserver, kubectl and etcd (found as
//! envtest finds kube-apiserver); skips loudly otherwise.

use e2e::assets::AssetSearch;
use e2e::binaries::ferrokube_binary;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const STATE: &str = "/tmp/ferrokube-kubeadm";
const CONTROL_PLANE: &str = "fkadm-control-plane";
const WORKER: &str = "fkadm-worker";

/// The cluster kubeadm-up made; dropping it runs kubeadm-down.
struct KubeadmCluster {
    root: PathBuf,
    kubectl: PathBuf,
}

impl KubeadmCluster {
    fn kubectl(&self, args: &[&str]) -> Output {
        Command::new(&self.kubectl)
            .arg(format!("--kubeconfig={STATE}/admin.kubeconfig"))
            .args(args)
            .output()
            .expect("run kubectl")
    }

    fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until `check` gives a value, up to `timeout`.
    fn wait<T>(&self, what: &str, timeout: Duration, check: impl Fn() -> Option<T>) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = check() {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?}: {what}"
            );
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    fn down(&self) -> Output {
        Command::new(self.root.join("hack/kubeadm-down.sh"))
            .output()
            .expect("run hack/kubeadm-down.sh")
    }
}

impl Drop for KubeadmCluster {
    fn drop(&mut self) {
        let _ = self.down();
    }
}

fn log(name: &str) -> String {
    std::fs::read_to_string(Path::new(STATE).join("logs").join(name)).unwrap_or_default()
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[test]
fn kubeadm_init_and_join_run_on_ferrokube_nodes() {
    if !nix::unistd::Uid::effective().is_root() {
        e2e::skip_test!("kubeadm-up needs root (namespaces, containerd, nftables)");
    }
    let search = AssetSearch::from_env();
    let missing: Vec<&str> = ["kubeadm", "kube-apiserver", "kubectl", "etcd"]
        .into_iter()
        .filter(|b| search.find(b).is_none())
        .collect();
    if !missing.is_empty() {
        e2e::skip_test!("no {} (searched {})", missing.join(", "), search.describe());
    }
    if Command::new("containerd")
        .arg("--version")
        .output()
        .is_err()
    {
        e2e::skip_test!("no containerd on PATH (run hack/install-deps.sh)");
    }
    let bin_dir = ferrokube_binary("kubelet")
        .expect("the ferrokube binaries")
        .parent()
        .unwrap()
        .to_path_buf();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    let cluster = KubeadmCluster {
        root: root.clone(),
        kubectl: search.find("kubectl").unwrap(),
    };
    let up = Command::new(root.join("hack/kubeadm-up.sh"))
        .args(["--nodes", "2"])
        .env("FERROKUBE_SKIP_BUILD", "1")
        .env("FERROKUBE_BIN_DIR", &bin_dir)
        .output()
        .expect("run hack/kubeadm-up.sh");
    let kubelet_logs = || {
        [CONTROL_PLANE, WORKER]
            .map(|n| format!("{n}:\n{}", tail(&log(&format!("{n}/kubelet.log")), 15)))
            .join("\n")
    };
    assert!(
        up.status.success(),
        "kubeadm-up failed:\n{}\n{}\n{}",
        String::from_utf8_lossy(&up.stdout),
        String::from_utf8_lossy(&up.stderr),
        kubelet_logs()
    );

    // kubeadm init's own output: every phase after preflight succeeded.
    let init = log("kubeadm-init.log");
    for step in [
        "[certs] Generating \"ca\" certificate and key",
        "[kubeconfig] Writing \"kubelet.conf\" kubeconfig file",
        "[control-plane] Creating static Pod manifest for \"kube-apiserver\"",
        "[kubelet-start] Writing kubelet configuration to file \"/var/lib/kubelet/config.yaml\"",
        "[kubelet-check] The kubelet is healthy",
        "[control-plane-check] kube-apiserver is healthy",
        "[control-plane-check] kube-controller-manager is healthy",
        "[control-plane-check] kube-scheduler is healthy",
        "[upload-config] Storing the configuration used in ConfigMap \"kubeadm-config\"",
        "[mark-control-plane] Marking the node fkadm-control-plane as control-plane",
        "[bootstrap-token] Creating the \"cluster-info\" ConfigMap",
        "[addons] Applied essential addon: kube-proxy",
        "Your Kubernetes control-plane has initialized successfully!",
    ] {
        assert!(
            init.contains(step),
            "kubeadm init did not print {step:?}:\n{init}"
        );
    }
    let join = log(&format!("kubeadm-join-{WORKER}.log"));
    for step in [
        "[kubelet-start] Waiting for the kubelet to perform the TLS Bootstrap",
        "This node has joined the cluster",
    ] {
        assert!(
            join.contains(step),
            "kubeadm join did not print {step:?}:\n{join}"
        );
    }

    // Both nodes Ready, registered by our kubelet.
    for node in [CONTROL_PLANE, WORKER] {
        let ready = cluster.kubectl_ok(&[
            "get",
            "node",
            node,
            "-o",
            r#"jsonpath={.status.conditions[?(@.type=="Ready")].status} {.status.nodeInfo.kubeletVersion}"#,
        ]);
        assert!(
            ready.starts_with("True ") && ready.contains("ferrokube"),
            "{node}: {ready}"
        );
    }

    // The control plane: kubeadm's static pods, run by our kubelet, with their mirror pods.
    for component in [
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
    ] {
        let pod = format!("{component}-{CONTROL_PLANE}");
        let seen = cluster.wait(&format!("{pod} Running"), Duration::from_secs(60), || {
            let out = cluster.kubectl(&[
                "-n",
                "kube-system",
                "get",
                "pod",
                &pod,
                "-o",
                r#"jsonpath={.status.phase} {.metadata.annotations.kubernetes\.io/config\.mirror} {.spec.priorityClassName}"#,
            ]);
            let s = String::from_utf8_lossy(&out.stdout).into_owned();
            s.starts_with("Running ").then_some(s)
        });
        assert!(seen.ends_with(" system-node-critical"), "{pod}: {seen}");
    }

    // The worker's client certificate came through the CSR flow, approved and issued.
    let csrs = cluster.kubectl_ok(&[
        "get",
        "csr",
        "-o",
        r#"jsonpath={range .items[*]}{.spec.signerName} {.spec.username} {.status.conditions[0].type} {.status.certificate}{"\n"}{end}"#,
    ]);
    assert!(
        csrs.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() == 4
                && f[0] == "kubernetes.io/kube-apiserver-client-kubelet"
                && f[1] == "system:bootstrap:abcdef"
                && f[2] == "Approved"
                && !f[3].is_empty()
        }),
        "no approved, issued bootstrap CSR:\n{csrs}"
    );

    // kube-proxy: kubeadm's DaemonSet, the ferrokube image, on both nodes.
    cluster.wait(
        "kube-proxy ready on both nodes",
        Duration::from_secs(120),
        || {
            let out = cluster.kubectl_ok(&[
                "-n",
                "kube-system",
                "get",
                "ds",
                "kube-proxy",
                "-o",
                "jsonpath={.status.numberReady}",
            ]);
            (out == "2").then_some(())
        },
    );

    // A Deployment runs on both nodes.
    let manifest = serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "spread", "namespace": "default"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "spread"}},
            "template": {
                "metadata": {"labels": {"app": "spread"}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "tolerations": [{"key": "node-role.kubernetes.io/control-plane",
                                     "operator": "Exists", "effect": "NoSchedule"}],
                    "topologySpreadConstraints": [{"maxSkew": 1,
                        "topologyKey": "kubernetes.io/hostname",
                        "whenUnsatisfiable": "DoNotSchedule",
                        "labelSelector": {"matchLabels": {"app": "spread"}}}],
                    "containers": [{"name": "app", "image": "docker.io/library/busybox:1.35",
                                    "command": ["sleep", "3600"]}]
                }
            }
        }
    });
    let file = Path::new(STATE).join("spread.json");
    std::fs::write(&file, manifest.to_string()).unwrap();
    cluster.kubectl_ok(&["apply", "-f", file.to_str().unwrap()]);
    let nodes = cluster.wait("both replicas Running", Duration::from_secs(120), || {
        let out = cluster.kubectl_ok(&[
            "get",
            "pods",
            "-l",
            "app=spread",
            "-o",
            r#"jsonpath={range .items[*]}{.status.phase} {.spec.nodeName}{"\n"}{end}"#,
        ]);
        let mut running: Vec<String> = out
            .lines()
            .filter_map(|l| l.strip_prefix("Running ").map(str::to_string))
            .collect();
        running.sort();
        (running.len() == 2).then_some(running)
    });
    assert_eq!(nodes, [CONTROL_PLANE, WORKER], "one replica on each node");

    // Nothing is left once the cluster is removed.
    let down = cluster.down();
    assert!(
        down.status.success(),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    let netns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let netns = String::from_utf8_lossy(&netns.stdout);
    assert!(!netns.contains("fkadm-"), "node namespaces left: {netns}");
    assert!(!Path::new("/sys/class/net/fkadm0").exists(), "bridge left");
    for d in ["/etc/kubernetes/manifests", "/var/lib/kubelet/config.yaml"] {
        assert!(
            !Path::new(d).exists(),
            "{d} on the host: the nodes' files leaked"
        );
    }
}
