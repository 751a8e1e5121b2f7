//! The kubelet binary as a process for the e2e tests: a KubeletConfiguration written from
//! defaults plus the test's fields, the node's kubeconfig, the usual flags (runtime
//! endpoint, root dir, node name/IP, cgroup root, free ports), the CNI environment (opted
//! in to ferrokube's bridge conflist unless the test says otherwise), and
//! waiting, restarting, stopping and cleaning up (cgroups, bridge) in one place.

use e2e::process::ManagedProcess;
use e2e::TestCluster;
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use kubelet::testing::TestContainerd;
use serde_json::{json, Value};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The cgroup v1 controllers the kubelet creates its hierarchy under.
const CONTROLLERS: [&str; 8] = [
    "cpu", "cpuacct", "cpuset", "memory", "pids", "blkio", "devices", "freezer",
];

/// Polls `f` every 250 ms until it returns `Some`, failing the test after `timeout`.
pub async fn wait<T, F: Fn() -> Fut, Fut: Future<Output = Option<T>>>(
    what: &str,
    timeout: Duration,
    f: F,
) -> T {
    wait_every(what, timeout, Duration::from_millis(250), f).await
}

/// [`wait`] polling every `interval`.
pub async fn wait_every<T, F: Fn() -> Fut, Fut: Future<Output = Option<T>>>(
    what: &str,
    timeout: Duration,
    interval: Duration,
    f: F,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(interval).await;
    }
}

/// Merges `patch` into `base` (objects key by key, recursively); a `null` removes the key.
fn merge(base: &mut Value, patch: Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    b.remove(&k);
                } else {
                    merge(b.entry(k).or_insert(Value::Null), v);
                }
            }
        }
        (b, p) => *b = p,
    }
}

/// How to start a [`KubeletProcess`].
pub struct KubeletBuilder<'a> {
    cluster: &'a TestCluster,
    containerd: &'a TestContainerd,
    node_name: String,
    cgroup_root: String,
    bridge: Option<String>,
    port: u16,
    node_ip: String,
    config: Value,
    flags: Vec<String>,
    kubeconfig: Option<PathBuf>,
    healthz_port: u16,
    bootstrap_kubeconfig: Option<PathBuf>,
}

impl<'a> KubeletBuilder<'a> {
    /// Client TLS bootstrap: `--bootstrap-kubeconfig=<path>` and a `--kubeconfig` that does
    /// not exist yet (`<dir>/kubelet.conf`, which the kubelet writes).
    pub fn bootstrap_kubeconfig(mut self, path: impl Into<PathBuf>) -> Self {
        self.bootstrap_kubeconfig = Some(path.into());
        self
    }

    /// Overrides or adds KubeletConfiguration fields (merged; `null` removes a default).
    pub fn config(mut self, patch: Value) -> Self {
        merge(&mut self.config, patch);
        self
    }

    /// Adds a command-line flag (e.g. `--pod-cidr=10.88.1.0/24`, `--v=2`).
    pub fn flag(mut self, flag: impl Into<String>) -> Self {
        self.flags.push(flag.into());
        self
    }

    /// The Linux bridge the CNI config names (default `fk<tag><id>`).
    pub fn bridge(mut self, name: impl Into<String>) -> Self {
        self.bridge = Some(name.into());
        self
    }

    /// No `FERROKUBE_CNI_BRIDGE`: the kubelet writes no CNI config, as upstream's.
    pub fn without_cni_bridge(mut self) -> Self {
        self.bridge = None;
        self
    }

    /// `--kubeconfig` (default: a node identity's kubeconfig for the test cluster).
    pub fn kubeconfig(mut self, path: impl Into<PathBuf>) -> Self {
        self.kubeconfig = Some(path.into());
        self
    }

    /// `--node-ip` (default `127.0.0.1`).
    pub fn node_ip(mut self, ip: impl ToString) -> Self {
        self.node_ip = ip.to_string();
        self
    }

    /// The kubelet API as on a real node: anonymous requests off, x509 client certificates
    /// of the cluster's CA and bearer tokens authenticated, Webhook authorization.
    pub fn webhook_auth(self) -> Self {
        let ca = self.cluster.pki().ca_cert();
        self.config(json!({
            "authentication": {
                "anonymous": {"enabled": false},
                "webhook": {"enabled": true},
                "x509": {"clientCAFile": ca},
            },
            "authorization": {"mode": "Webhook"},
        }))
    }

    /// Writes the config and starts the kubelet.
    pub fn start(self) -> KubeletProcess<'a> {
        let dir = self.containerd.dir().join("kubelet");
        std::fs::create_dir_all(&dir).unwrap();
        let config_path = dir.join("config.yaml");
        std::fs::write(&config_path, serde_yaml::to_string(&self.config).unwrap()).unwrap();
        let kubeconfig = match (&self.kubeconfig, &self.bootstrap_kubeconfig) {
            (Some(k), _) => k.clone(),
            (None, Some(_)) => dir.join("kubelet.conf"),
            (None, None) => self
                .cluster
                .kubeconfig_for(&e2e::Identity::Node(self.node_name.clone()))
                .unwrap(),
        };
        let mut args = vec![format!(
            "FERROKUBE_CNI_CONF_DIR={}",
            self.containerd.cni_conf_dir().display()
        )];
        args.extend(
            self.bridge
                .iter()
                .map(|b| format!("FERROKUBE_CNI_BRIDGE={b}")),
        );
        args.extend([
            e2e::binaries::ferrokube_binary("kubelet")
                .unwrap()
                .display()
                .to_string(),
            format!("--config={}", config_path.display()),
            format!("--kubeconfig={}", kubeconfig.display()),
            format!(
                "--container-runtime-endpoint={}",
                self.containerd.endpoint()
            ),
            format!("--root-dir={}", dir.join("root").display()),
            format!("--hostname-override={}", self.node_name),
            format!("--node-ip={}", self.node_ip),
            format!("--cgroup-root={}", self.cgroup_root),
            format!("--healthz-port={}", self.healthz_port),
            format!("--port={}", self.port),
        ]);
        if let Some(b) = &self.bootstrap_kubeconfig {
            args.push(format!("--bootstrap-kubeconfig={}", b.display()));
        }
        args.extend(self.flags);
        let mut kubelet = KubeletProcess {
            cluster: self.cluster,
            node_name: self.node_name,
            cgroup_root: self.cgroup_root,
            bridge: self.bridge,
            port: self.port,
            healthz_port: self.healthz_port,
            dir,
            config_path,
            kubeconfig,
            args,
            process: None,
        };
        kubelet.spawn();
        kubelet
    }
}

/// A running kubelet binary owned by a test. Dropping it kills the process and removes
/// its cgroups and bridge.
pub struct KubeletProcess<'a> {
    cluster: &'a TestCluster,
    /// The Node's name (`--hostname-override`).
    pub node_name: String,
    /// `--cgroup-root`.
    pub cgroup_root: String,
    /// The CNI bridge's name (`None`: not opted in to ferrokube's conflist).
    pub bridge: Option<String>,
    /// The kubelet API port (`--port`).
    pub port: u16,
    /// The plain-HTTP `/healthz` port (`--healthz-port`).
    pub healthz_port: u16,
    /// The kubelet's directory (config, root dir, pod logs).
    pub dir: PathBuf,
    /// The KubeletConfiguration file.
    pub config_path: PathBuf,
    /// The node's kubeconfig.
    pub kubeconfig: PathBuf,
    args: Vec<String>,
    process: Option<ManagedProcess>,
}

impl<'a> KubeletProcess<'a> {
    /// A kubelet for node `<tag>-node-<id>` with cgroup root `/ferrokube-<tag>-<id>`, CNI
    /// bridge `fk<tag><id>`, pod logs under its directory, swap allowed and — as kind
    /// configures its nodes — the disk eviction thresholds off (`0%`), so a nearly full
    /// disk on the test machine puts no node under DiskPressure; `<id>` is the test
    /// process's. A test about disk eviction sets its own.
    pub fn builder(
        cluster: &'a TestCluster,
        containerd: &'a TestContainerd,
        tag: &str,
    ) -> KubeletBuilder<'a> {
        let id = std::process::id() % 10000;
        let dir = containerd.dir().join("kubelet");
        KubeletBuilder {
            cluster,
            containerd,
            node_name: format!("{tag}-node-{id}"),
            cgroup_root: format!("/ferrokube-{tag}-{id}"),
            bridge: Some(format!("fk{tag}{id}")),
            port: e2e::ports::free_port().unwrap(),
            node_ip: "127.0.0.1".into(),
            config: json!({
                "apiVersion": "kubelet.config.k8s.io/v1beta1",
                "kind": "KubeletConfiguration",
                "podLogsDir": dir.join("logs"),
                "failSwapOn": false,
                "evictionHard": {
                    "nodefs.available": "0%",
                    "nodefs.inodesFree": "0%",
                    "imagefs.available": "0%",
                },
            }),
            flags: Vec::new(),
            kubeconfig: None,
            healthz_port: e2e::ports::free_port().unwrap(),
            bootstrap_kubeconfig: None,
        }
    }

    /// Starts the kubelet process (again, after [`KubeletProcess::terminate`] or
    /// [`KubeletProcess::kill`]) with the same config, flags and ports.
    pub fn spawn(&mut self) {
        let p = self
            .cluster
            .spawn("kubelet", Path::new("/usr/bin/env"), &self.args)
            .unwrap();
        self.process = Some(p);
    }

    /// The process's log file.
    pub fn log_path(&self) -> &Path {
        self.process.as_ref().expect("kubelet started").log_path()
    }

    /// The process's whole log so far.
    pub fn log(&self) -> String {
        self.process.as_ref().map(|p| p.log()).unwrap_or_default()
    }

    /// The last `lines` lines of the process's log.
    pub fn log_tail(&self, lines: usize) -> String {
        self.process
            .as_ref()
            .map(|p| p.log_tail(lines))
            .unwrap_or_default()
    }

    /// Waits for `f` like [`wait`], failing at once with the log tail if the kubelet exits.
    pub async fn wait<T, F: Fn() -> Fut, Fut: Future<Output = Option<T>>>(
        &mut self,
        what: &str,
        timeout: Duration,
        f: F,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = f().await {
                return v;
            }
            if let Some(status) = self.process.as_mut().and_then(|p| p.try_exit_status()) {
                panic!(
                    "kubelet exited ({status}) while waiting for {what}; log {}:\n{}",
                    self.log_path().display(),
                    self.log_tail(30)
                );
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Waits until the Node is registered with condition Ready=True, and returns it.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Node {
        let nodes: Api<Node> = Api::all(self.cluster.client());
        let name = self.node_name.clone();
        self.wait("node Ready", timeout, || async {
            let n = nodes.get_opt(&name).await.ok().flatten()?;
            let ready = n
                .status
                .as_ref()?
                .conditions
                .as_ref()?
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            ready.then_some(n)
        })
        .await
    }

    /// Whether the kubelet process is still running.
    pub fn is_running(&mut self) -> bool {
        self.process.as_mut().is_some_and(|p| p.is_running())
    }

    /// SIGTERM, then SIGKILL after `grace`.
    pub fn terminate(&mut self, grace: Duration) {
        if let Some(p) = self.process.as_mut() {
            p.terminate(grace).unwrap();
        }
    }

    /// SIGKILL: a kubelet that dies without cleaning up.
    pub fn kill(&mut self) {
        if let Some(p) = self.process.as_mut() {
            p.kill().unwrap();
        }
    }

    /// Terminates and starts the same kubelet again (same config, flags and ports).
    pub fn restart(&mut self) {
        self.terminate(Duration::from_secs(5));
        self.spawn();
    }

    /// Terminates the kubelet (5 s grace) and removes its bridge and cgroups.
    pub fn stop(mut self) {
        self.terminate(Duration::from_secs(5));
        // Drop cleans up.
    }

    fn clean_up(&self) {
        if let Some(bridge) = &self.bridge {
            let _ = std::process::Command::new("ip")
                .args(["link", "del", bridge])
                .stderr(std::process::Stdio::null())
                .status();
        }
        for ctl in CONTROLLERS {
            for cg in ["kubepods/burstable", "kubepods/besteffort", "kubepods", ""] {
                let _ =
                    std::fs::remove_dir(format!("/sys/fs/cgroup/{ctl}{}/{cg}", self.cgroup_root));
            }
        }
    }
}

impl Drop for KubeletProcess<'_> {
    fn drop(&mut self) {
        if let Some(mut p) = self.process.take() {
            let _ = p.kill();
        }
        self.clean_up();
    }
}
