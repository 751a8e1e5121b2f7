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

use std::fs::File;
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
        let pids = std::fs::read_to_string(self.dir.join("pids")).expect("pids file");
        let pid: i32 = pids
            .lines()
            .rev()
            .find_map(|l| {
                let mut f = l.split_whitespace();
                (f.next()? == name).then(|| f.next()?.parse().ok())?
            })
            .unwrap_or_else(|| panic!("{name} not in the pids file"));
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
