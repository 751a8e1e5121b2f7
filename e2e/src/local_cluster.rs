//! A whole local cluster as `hack/local-up.sh` brings it up (upstream apiserver + etcd, every
//! ferrokube component, this machine as the node), for tests that need real pods on a real
//! node. Stopped with `hack/local-down.sh` when dropped.
//!
//! Only one such cluster can run on a machine: the node-level parts use fixed ports (kubelet
//! 10250/10248, kube-proxy 10256/10249, scheduler 10259, controller-manager 10257), the node
//! address on `lo` and kube-proxy's nftables table. [`LocalCluster::up`] therefore takes an
//! exclusive lock ([`LOCK_PATH`]) and waits, for a bounded time, until no other local-up is
//! running (the fixed ports are free and no `hack/local-up.sh` process exists), then starts
//! on free API and etcd ports of its own.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::assets::find_control_plane;
use crate::binaries::{ferrokube_binary, workspace_root};
use crate::ports::free_port;

/// The lock every [`LocalCluster`] holds while its cluster runs.
pub const LOCK_PATH: &str = "/tmp/ferrokube-local-up.lock";
/// The ports local-up always uses (its node and control-plane components).
pub const FIXED_PORTS: [u16; 6] = [10259, 10257, 10248, 10250, 10249, 10256];
/// The ferrokube binaries local-up starts.
pub const BINARIES: [&str; 5] = [
    "kube-scheduler",
    "kube-controller-manager",
    "kubelet",
    "kube-proxy",
    "ferrokube-load-image",
];

/// Why a local cluster could not be had.
#[derive(Debug)]
pub enum UpError {
    /// This machine cannot run one (not root, no containerd, no control-plane assets), or
    /// another one kept running past the wait: the test should skip, saying this.
    Skip(String),
    /// local-up ran and failed: the test should fail with this.
    Failed(String),
}

/// A cluster started by `hack/local-up.sh`; `hack/local-down.sh` runs on drop.
pub struct LocalCluster {
    dir: PathBuf,
    bin_dir: PathBuf,
    kubectl: PathBuf,
    api_port: u16,
    temp: tempfile::TempDir,
    _lock: File,
}

impl LocalCluster {
    /// Checks this machine can run local-up, waits up to `wait` for any other local cluster
    /// to finish, then runs `hack/local-up.sh` (prebuilt binaries, own state directory and
    /// API/etcd ports) and waits for the node to be Ready.
    pub fn up(wait: Duration) -> Result<LocalCluster, UpError> {
        if !nix::unistd::Uid::effective().is_root() {
            return Err(UpError::Skip(
                "local-up needs root (node address, containerd, nftables)".into(),
            ));
        }
        let assets = find_control_plane()
            .map_err(|missing| UpError::Skip(crate::cluster::skip_reason(&missing)))?;
        let kubectl = assets
            .kubectl
            .clone()
            .ok_or_else(|| UpError::Skip("no kubectl (set KUBEBUILDER_ASSETS)".into()))?;
        if Command::new("containerd")
            .arg("--version")
            .output()
            .is_err()
        {
            return Err(UpError::Skip(
                "no containerd on PATH (run hack/install-deps.sh)".into(),
            ));
        }
        let mut bin_dir = None;
        for b in BINARIES {
            let path = ferrokube_binary(b).map_err(|e| UpError::Failed(format!("{e:#}")))?;
            bin_dir = path.parent().map(Path::to_path_buf);
        }
        let bin_dir = bin_dir.expect("at least one binary");

        let lock = File::create(LOCK_PATH)
            .map_err(|e| UpError::Failed(format!("cannot open {LOCK_PATH}: {e}")))?;
        let deadline = Instant::now() + wait;
        loop {
            match lock.try_lock() {
                Ok(()) => break,
                Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_secs(1))
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(UpError::Skip(format!(
                        "another test held {LOCK_PATH} (a local cluster) for more than {wait:?}"
                    )))
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(UpError::Failed(format!("cannot lock {LOCK_PATH}: {e}")))
                }
            }
        }
        while let Some(busy) = other_local_up() {
            if Instant::now() >= deadline {
                return Err(UpError::Skip(format!(
                    "{busy}: another local cluster is running (waited {wait:?})"
                )));
            }
            std::thread::sleep(Duration::from_secs(1));
        }

        let temp = tempfile::tempdir().map_err(|e| UpError::Failed(e.to_string()))?;
        let api_port = free_port().map_err(|e| UpError::Failed(format!("{e:#}")))?;
        let cluster = LocalCluster {
            dir: temp.path().join("local"),
            bin_dir,
            kubectl,
            api_port,
            temp,
            _lock: lock,
        };
        let assets_dir = assets
            .kube_apiserver
            .parent()
            .expect("assets dir")
            .to_path_buf();
        let (etcd, peer) = (
            free_port().map_err(|e| UpError::Failed(format!("{e:#}")))?,
            free_port().map_err(|e| UpError::Failed(format!("{e:#}")))?,
        );
        // local-up's start-up has races of its own (containerd's socket exists before it
        // serves; `ip addr | grep -q` under pipefail): a failed start is retried once, loudly.
        // It stops what the failed attempt started before starting again.
        for attempt in 1..=2 {
            let up = cluster
                .script("local-up.sh")
                .env("KUBEBUILDER_ASSETS", &assets_dir)
                .env("FERROKUBE_API_PORT", api_port.to_string())
                .env("FERROKUBE_ETCD_PORT", etcd.to_string())
                .env("FERROKUBE_ETCD_PEER_PORT", peer.to_string())
                .output()
                .map_err(|e| UpError::Failed(format!("cannot run local-up: {e}")))?;
            if up.status.success() {
                break;
            }
            let failure = format!(
                "local-up failed (attempt {attempt}):\n{}{}\n{}",
                String::from_utf8_lossy(&up.stdout),
                String::from_utf8_lossy(&up.stderr),
                cluster.log_tails()
            );
            if attempt == 2 {
                return Err(UpError::Failed(failure));
            }
            eprintln!("{failure}\nlocal-up: retrying once");
        }
        Ok(cluster)
    }

    /// The state directory (PKI, kubeconfigs, logs, containerd).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A scratch directory that lives as long as the cluster.
    pub fn scratch(&self) -> &Path {
        self.temp.path()
    }

    /// Where the ferrokube binaries the cluster runs are.
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// The apiserver's port on 127.0.0.1.
    pub fn api_port(&self) -> u16 {
        self.api_port
    }

    /// The cluster-admin kubeconfig.
    pub fn admin_kubeconfig(&self) -> PathBuf {
        self.dir.join("admin.kubeconfig")
    }

    /// The node's containerd socket.
    pub fn containerd_socket(&self) -> PathBuf {
        self.dir.join("containerd").join("containerd.sock")
    }

    /// A `hack/` script with this cluster's environment.
    pub fn script(&self, name: &str) -> Command {
        let mut cmd = Command::new("bash");
        cmd.arg(workspace_root().join("hack").join(name))
            .env("FERROKUBE_LOCAL_DIR", &self.dir)
            .env("FERROKUBE_BIN_DIR", &self.bin_dir)
            .env("FERROKUBE_SKIP_BUILD", "1");
        cmd
    }

    /// Stops (SIGTERM, then waits up to 30 s) the process local-up started as `name`
    /// (e.g. `kube-proxy`), to let something else take its place on the node.
    pub fn stop_component(&self, name: &str) {
        let pid = self.pid_of(name);
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap_or_else(|e| panic!("SIGTERM {name} (pid {pid}): {e}"));
        let deadline = Instant::now() + Duration::from_secs(30);
        while Path::new(&format!("/proc/{pid}")).exists()
            && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| s.contains(") Z "))
        {
            assert!(
                Instant::now() < deadline,
                "{name} (pid {pid}) still runs 30 s after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The pid of the process local-up (or [`LocalCluster::restart_kubelet`]) last recorded
    /// as `name` in the pids file (`name pid binary` lines).
    pub fn pid_of(&self, name: &str) -> i32 {
        let pids = std::fs::read_to_string(self.dir.join("pids")).expect("pids file");
        pids.lines()
            .rev()
            .find_map(|l| {
                let mut f = l.split_whitespace();
                (f.next()? == name).then(|| f.next()?.parse().ok())?
            })
            .unwrap_or_else(|| panic!("{name} not in the pids file"))
    }

    /// Stops the kubelet (SIGTERM, waiting for it to exit) and starts it again with the same
    /// command line and environment, recording the new pid so local-down stops it.
    pub fn restart_kubelet(&self) {
        let pid = self.pid_of("kubelet");
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("kubelet cmdline");
        let environ = std::fs::read(format!("/proc/{pid}/environ")).expect("kubelet environ");
        let args: Vec<String> = nul_split(&cmdline);
        let env: Vec<(String, String)> = nul_split(&environ)
            .into_iter()
            .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.into(), v.into())))
            .collect();
        self.stop_component("kubelet");
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.join("logs/kubelet.log"))
            .expect("kubelet log");
        let child = Command::new(&args[0])
            .args(&args[1..])
            .env_clear()
            .envs(env)
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("restart kubelet");
        let exe = std::fs::read_link(format!("/proc/{}/exe", child.id())).expect("exe");
        let mut pids = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.join("pids"))
            .expect("pids file");
        writeln!(pids, "kubelet {} {}", child.id(), exe.display()).expect("record pid");
        // Not waited for: local-down stops it; the handle is dropped without killing it.
        std::mem::forget(child);
    }

    /// The node's name (the cluster has one node: this machine).
    pub fn node_name(&self) -> String {
        self.kubectl_ok(&["get", "nodes", "-o", "jsonpath={.items[0].metadata.name}"])
    }

    /// Whether `node`'s Ready condition is True.
    pub fn node_ready(&self, node: &str) -> bool {
        let out = self.kubectl(&[
            "get",
            "node",
            node,
            "-o",
            r#"jsonpath={.status.conditions[?(@.type=="Ready")].status}"#,
        ]);
        String::from_utf8_lossy(&out.stdout) == "True"
    }

    /// Waits up to `timeout` for the node to be Ready (failing with `what` and the logs);
    /// returns its name.
    pub fn wait_node_ready(&self, what: &str, timeout: Duration) -> String {
        let node = self.node_name();
        self.eventually(
            what,
            timeout,
            || self.node_ready(&node).then_some(()),
            String::new,
        );
        node
    }

    /// `pod name -> (containerID, restartCount)` of the pods labelled `app=<app>` in the
    /// default namespace.
    pub fn containers(&self, app: &str) -> BTreeMap<String, (String, String)> {
        self.app_pods(
            app,
            "{.metadata.name} {.status.containerStatuses[0].containerID} {.status.containerStatuses[0].restartCount}",
        )
        .lines()
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                Some((f.next()?.into(), (f.next()?.into(), f.next()?.into())))
            })
            .collect()
    }

    /// Names of the Running pods labelled `app=<app>` in the default namespace (not being
    /// deleted).
    pub fn running(&self, app: &str) -> Vec<String> {
        self.app_pods(
            app,
            "{.metadata.name} {.status.phase} {.metadata.deletionTimestamp}",
        )
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 2 && f[1] == "Running").then(|| f[0].to_string())
        })
        .collect()
    }

    /// One line per pod labelled `app=<app>` in the default namespace: `fields`, a
    /// jsonpath template over the pod.
    fn app_pods(&self, app: &str, fields: &str) -> String {
        self.kubectl_ok(&[
            "get",
            "pods",
            "-l",
            &format!("app={app}"),
            "-o",
            &format!(r#"jsonpath={{range .items[*]}}{fields}{{"\n"}}{{end}}"#),
        ])
    }

    /// Creates Deployment `httpd` (`replicas` busybox httpd pods serving their `/etc` on
    /// 8080, so `/hostname` names the backend that answered) behind a ClusterIP Service
    /// `httpd` on port 80, in the default namespace; returns the Service's ClusterIP.
    pub fn expose_httpd(&self, replicas: u32) -> String {
        self.kubectl_ok(&[
            "create",
            "deployment",
            "httpd",
            "--image=busybox:1.35",
            &format!("--replicas={replicas}"),
            "--port=8080",
            "--",
            "httpd",
            "-f",
            "-p",
            "8080",
            "-h",
            "/etc",
        ]);
        self.kubectl_ok(&[
            "expose",
            "deployment",
            "httpd",
            "--port=80",
            "--target-port=8080",
        ]);
        self.kubectl_ok(&[
            "get",
            "service",
            "httpd",
            "-o",
            "jsonpath={.spec.clusterIP}",
        ])
    }

    /// Runs kubectl as cluster-admin.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        Command::new(&self.kubectl)
            .arg(format!(
                "--kubeconfig={}",
                self.admin_kubeconfig().display()
            ))
            .args(args)
            .output()
            .expect("run kubectl")
    }

    /// kubectl's stdout, failing the test with its stderr and the log tails when it fails.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log_tails()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The last lines of every component's log, for failure messages.
    pub fn log_tails(&self) -> String {
        let mut out = String::new();
        for name in [
            "kubelet",
            "kube-controller-manager",
            "kube-scheduler",
            "kube-proxy",
        ] {
            let path = self.dir.join("logs").join(format!("{name}.log"));
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| format!("(cannot read {}: {e})", path.display()));
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(15)..].join("\n");
            out.push_str(&format!("--- {name} log tail ---\n{tail}\n"));
        }
        out
    }

    /// Polls `check` every 500 ms until it returns `Some`, failing with `context()` and the
    /// logs after `timeout`.
    pub fn eventually<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut() -> Option<T>,
        context: impl Fn() -> String,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = check() {
                return v;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {what}\n{}\n{}",
                    context(),
                    self.log_tails()
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        // local-down stops containerd and its shims, but processes in running containers
        // would outlive them: the workloads go first, through the kubelet.
        let out = self.kubectl(&[
            "delete",
            "daemonsets,deployments,replicasets,jobs,pods",
            "--all",
            "--all-namespaces",
            "--grace-period=1",
            "--wait=true",
            "--timeout=60s",
        ]);
        if !out.status.success() {
            eprintln!(
                "deleting the local cluster's workloads failed (their containers may outlive it): {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        match self.script("local-down.sh").output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!(
                "local-down failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => eprintln!("cannot run local-down: {e}"),
        }
    }
}

/// What shows another local cluster running: a fixed port in use, or a `hack/local-up.sh`
/// process (still starting, before it binds anything).
fn other_local_up() -> Option<String> {
    if let Some(port) = FIXED_PORTS
        .into_iter()
        .find(|p| crate::ports::is_listening(*p))
    {
        return Some(format!("127.0.0.1:{port} is in use"));
    }
    let procs = std::fs::read_dir("/proc").ok()?;
    for entry in procs.flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let running_up = cmdline
            .split(|b| *b == 0)
            .any(|arg| arg.ends_with(b"hack/local-up.sh"));
        if running_up {
            return Some(format!(
                "hack/local-up.sh runs as pid {}",
                entry.file_name().to_string_lossy()
            ));
        }
    }
    None
}

fn nul_split(bytes: &[u8]) -> Vec<String> {
    bytes
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

/// One HTTP/1.0 GET of `path`; the body (trimmed) when the server answered 200.
pub fn http_get(ip: &str, port: u16, path: &str) -> Option<String> {
    let addr = format!("{ip}:{port}").parse().ok()?;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
        .ok()?;
    let mut response = String::new();
    s.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    (head.split_whitespace().nth(1)? == "200").then(|| body.trim().to_string())
}
