//! A whole local cluster as `hack/local-up.sh` brings it up (upstream apiserver + etcd, every
//! ferrokube component, one or more nodes each in its own network namespace), for tests that
//! need real pods on real nodes. Removed with `hack/local-down.sh` when dropped.
//!
//! Only one such cluster can run on a machine: the control plane uses fixed ports (scheduler
//! 10259, controller-manager 10257), and the node network has fixed names and addresses (the
//! bridge [`BRIDGE`] at [`HOST_IP`], the nodes' namespaces). [`LocalCluster::up`] therefore
//! takes an exclusive lock ([`LOCK_PATH`]) and waits, for a bounded time, until no other
//! local-up is running (the fixed ports are free and no `hack/local-up.sh` process exists),
//! then starts on free API and etcd ports of its own (local-up removes a crashed run's
//! leftover network first).

use std::collections::{BTreeMap, BTreeSet};
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
/// The ports local-up always uses on the host (its control-plane components; each node's
/// kubelet and kube-proxy listen in the node's own namespace).
pub const FIXED_PORTS: [u16; 2] = [10259, 10257];
/// The host bridge the nodes join (hack/lib/local.sh's `BRIDGE`).
pub const BRIDGE: &str = "ferrokube0";
/// The host's address on the node network, where the apiserver listens (local.sh's
/// `HOST_IP`).
pub const HOST_IP: &str = "10.200.0.1";
/// The node components local-up runs in each node's namespace, as named in its pids file
/// (`<node>/<component>`) and logs (`logs/<node>/<component>.log`).
pub const NODE_COMPONENTS: [&str; 3] = ["containerd", "kubelet", "kube-proxy"];
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
    etcd_port: u16,
    /// What /run/netns held before local-up ran (pods' namespaces are pinned there).
    netns_before: BTreeSet<String>,
    /// Whether [`LocalCluster::down`] already ran.
    down: bool,
    temp: tempfile::TempDir,
    _lock: File,
}

impl LocalCluster {
    /// [`LocalCluster::up_with_nodes`] with one node.
    pub fn up(wait: Duration) -> Result<LocalCluster, UpError> {
        Self::up_with_nodes(1, wait)
    }

    /// Checks this machine can run local-up, waits up to `wait` for any other local cluster
    /// to finish, then runs `hack/local-up.sh --nodes <nodes>` (prebuilt binaries, own state
    /// directory and API/etcd ports), which returns once the nodes are Ready.
    pub fn up_with_nodes(nodes: u32, wait: Duration) -> Result<LocalCluster, UpError> {
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
        let port = || free_port().map_err(|e| UpError::Failed(format!("{e:#}")));
        let (api_port, etcd, peer) = (port()?, port()?, port()?);
        let cluster = LocalCluster {
            dir: temp.path().join("local"),
            bin_dir,
            kubectl,
            api_port,
            etcd_port: etcd,
            netns_before: pinned_netns(),
            down: false,
            temp,
            _lock: lock,
        };
        // local-up's start-up has races of its own (containerd's socket exists before it
        // serves; `ip addr | grep -q` under pipefail): a failed start is retried once, loudly.
        // It stops what the failed attempt started before starting again.
        for attempt in 1..=2 {
            let up = cluster
                .script("local-up.sh")
                // The binaries found here, one by one (they may sit in different places,
                // e.g. etcd from apt on PATH beside an envtest directory).
                .env("TEST_ASSET_KUBE_APISERVER", &assets.kube_apiserver)
                .env("TEST_ASSET_ETCD", &assets.etcd)
                .env("TEST_ASSET_KUBECTL", &cluster.kubectl)
                .env("FERROKUBE_API_PORT", api_port.to_string())
                .env("FERROKUBE_ETCD_PORT", etcd.to_string())
                .env("FERROKUBE_ETCD_PEER_PORT", peer.to_string())
                .env("FERROKUBE_NODES", nodes.to_string())
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

    /// The apiserver's port on [`HOST_IP`].
    pub fn api_port(&self) -> u16 {
        self.api_port
    }

    /// etcd's client port on 127.0.0.1 (plain HTTP; its gRPC gateway answers `/v3/…`).
    pub fn etcd_port(&self) -> u16 {
        self.etcd_port
    }

    /// The address the apiserver listens on and advertises: the host's on the node
    /// network, which nodes and hostNetwork pods reach.
    pub fn api_host(&self) -> &'static str {
        HOST_IP
    }

    /// The cluster-admin kubeconfig.
    pub fn admin_kubeconfig(&self) -> PathBuf {
        self.dir.join("admin.kubeconfig")
    }

    /// The first node's containerd socket.
    pub fn containerd_socket(&self) -> PathBuf {
        self.containerd_socket_of(&self.node_name())
    }

    /// `node`'s containerd socket.
    pub fn containerd_socket_of(&self, node: &str) -> PathBuf {
        self.dir
            .join("nodes")
            .join(node)
            .join("containerd")
            .join("containerd.sock")
    }

    /// The nodes local-up made, in creation order (`<cluster>-worker`, `-worker2`, …).
    pub fn node_names(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("node-names"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Runs `hack/local-node.sh` with `args` (e.g. `["stop", node, "kubelet"]`), failing
    /// the test with its output when it fails.
    pub fn local_node(&self, args: &[&str]) -> String {
        let out = self
            .script("local-node.sh")
            .args(args)
            .output()
            .expect("run hack/local-node.sh");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "hack/local-node.sh {args:?} failed:\n{text}"
        );
        text
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
    /// (e.g. `kube-scheduler`, or `<node>/kube-proxy`), to let something else take its place.
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

    /// The pid of the component the supervisor recorded as `name` runs (its child: the
    /// component itself, `nsenter` having exec'd it for a node's), if it runs.
    pub fn component_pid(&self, name: &str) -> Option<i32> {
        let supervisor = self.pid_of(name);
        let children =
            std::fs::read_to_string(format!("/proc/{supervisor}/task/{supervisor}/children"))
                .ok()?;
        // The supervisor's children: the component, and `sleep` between restarts.
        children
            .split_whitespace()
            .filter_map(|c| c.parse::<i32>().ok())
            .find(|c| {
                std::fs::read_link(format!("/proc/{c}/exe"))
                    .is_ok_and(|exe| !exe.to_string_lossy().contains("sleep"))
            })
    }

    /// The command line (program and arguments) of process `pid`.
    pub fn cmdline(pid: i32) -> Vec<String> {
        std::fs::read(format!("/proc/{pid}/cmdline"))
            .unwrap_or_default()
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect()
    }

    /// `ctr` against `node`'s containerd, in the CRI plugin's namespace; its stdout.
    pub fn ctr(&self, node: &str, args: &[&str]) -> String {
        let out = Command::new("ctr")
            .arg("--address")
            .arg(self.containerd_socket_of(node))
            .args(["--namespace", "k8s.io"])
            .args(args)
            .output()
            .expect("run ctr");
        assert!(
            out.status.success(),
            "ctr {args:?} on {node}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The ids of the containers whose task runs in `node`'s containerd for the pod with
    /// `uid` (the CRI plugin's `io.kubernetes.pod.uid` label; its sandbox excluded).
    pub fn running_containers(&self, node: &str, uid: &str) -> BTreeSet<String> {
        let filter = format!(
            r#"labels."io.kubernetes.pod.uid"=={uid},labels."io.cri-containerd.kind"==container"#
        );
        let ids: BTreeSet<String> = self
            .ctr(node, &["containers", "list", "--quiet", &filter])
            .lines()
            .map(str::to_string)
            .collect();
        self.ctr(node, &["tasks", "list"])
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() >= 3 && f[2] == "RUNNING" && ids.contains(f[0])).then(|| f[0].to_string())
            })
            .collect()
    }

    /// The pods labelled `app=<app>` in the default namespace, as [`PodState`]s.
    pub fn pods(&self, app: &str) -> Vec<PodState> {
        self.app_pods(
            app,
            r#"{.metadata.name} {.metadata.uid} {.spec.nodeName} {.status.phase} {.status.conditions[?(@.type=="Ready")].status} {.status.containerStatuses[0].containerID} {.status.containerStatuses[0].restartCount} {.metadata.labels.pod-template-hash} {.metadata.deletionTimestamp}"#,
        )
        .lines()
        .filter_map(PodState::parse)
        .collect()
    }

    /// Waits up to `timeout` for exactly `n` pods labelled `app=<app>`, all Running, Ready
    /// and not being deleted; returns them.
    pub fn wait_serving(&self, app: &str, n: usize, timeout: Duration) -> Vec<PodState> {
        self.eventually(
            &format!("{n} Running and Ready pods of {app}"),
            timeout,
            || {
                let pods = self.pods(app);
                (pods.len() == n && pods.iter().all(PodState::serving)).then_some(pods)
            },
            || format!("{:#?}", self.pods(app)),
        )
    }

    /// Restarts the first node's kubelet (`hack/local-node.sh restart <node> kubelet`: SIGTERM,
    /// wait for it to exit, start it with the same flags, wait for the node to be Ready).
    pub fn restart_kubelet(&self) {
        self.local_node(&["restart", &self.node_name(), "kubelet"]);
    }

    /// The first node's name.
    pub fn node_name(&self) -> String {
        self.node_names()
            .into_iter()
            .next()
            .expect("local-up recorded no node")
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

    /// Writes `manifest` (YAML) to `<name>.yaml` in the scratch directory and applies it.
    pub fn apply(&self, name: &str, manifest: &str) {
        let path = self.scratch().join(format!("{name}.yaml"));
        std::fs::write(&path, manifest).expect("write manifest");
        self.kubectl_ok(&["apply", "-f", path.to_str().expect("utf-8 path")]);
    }

    /// Creates DaemonSet `agent` (busybox sleeping, label `app=agent`): one pod per node.
    pub fn create_agent_daemonset(&self) {
        self.apply(
            "agent",
            r#"apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - {name: agent, image: "busybox:1.35", command: [sleep, "3600"]}
"#,
        );
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
        let mut names = vec![
            "kube-controller-manager".to_string(),
            "kube-scheduler".to_string(),
        ];
        for node in self.node_names() {
            names.extend(NODE_COMPONENTS[1..].iter().map(|c| format!("{node}/{c}")));
        }
        for name in names {
            let path = self.dir.join("logs").join(format!("{name}.log"));
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| format!("(cannot read {}: {e})", path.display()));
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(15)..].join("\n");
            out.push_str(&format!("--- {name} log tail ---\n{tail}\n"));
        }
        out
    }

    /// Removes the cluster (once; dropping it does the same): the workloads first, through
    /// the kubelets (local-down ends what containerd's shims still run, but the containers'
    /// processes would be killed rather than stopped), then `hack/local-down.sh`.
    /// Returns what the pids file recorded, for [`LocalCluster::leftovers`].
    pub fn down(&mut self) -> Vec<(String, i32, PathBuf)> {
        if self.down {
            return Vec::new();
        }
        self.down = true;
        let recorded = self.recorded_processes();
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
        recorded
    }

    /// `(name, pid, binary)` of every process the pids file records.
    pub fn recorded_processes(&self) -> Vec<(String, i32, PathBuf)> {
        std::fs::read_to_string(self.dir.join("pids"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                Some((f.next()?.into(), f.next()?.parse().ok()?, f.next()?.into()))
            })
            .collect()
    }

    /// What of the cluster is still on this machine after [`LocalCluster::down`]: `recorded`
    /// processes still running their binary, containerd shims of its nodes, the nodes'
    /// namespaces, pods' namespaces pinned since it started, the bridge and its veths, the
    /// host's nftables table, routes through the node network, mounts under its directory,
    /// the nodes' cgroups, and state other than the logs. Empty when nothing is left.
    pub fn leftovers(&self, recorded: &[(String, i32, PathBuf)], nodes: &[String]) -> Vec<String> {
        let mut left = Vec::new();
        for (name, pid, binary) in recorded {
            let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
            let exe = exe.map(|e| {
                e.to_string_lossy()
                    .trim_end_matches(" (deleted)")
                    .to_string()
            });
            if exe.as_deref() == Some(&binary.to_string_lossy()) {
                left.push(format!("process {name} (pid {pid}) still runs"));
            }
        }
        let nodes_dir = self.dir.join("nodes");
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.starts_with("/usr/bin/containerd-shim")
                && cmdline.contains(&*nodes_dir.to_string_lossy())
            {
                left.push(format!("containerd shim {cmdline}"));
            }
        }
        for node in nodes {
            if Path::new("/run/netns").join(node).exists() {
                left.push(format!("network namespace {node}"));
            }
            for root in cgroup_dirs(&format!("ferrokube-local/{node}")) {
                left.push(format!("cgroup {}", root.display()));
            }
        }
        for ns in pinned_netns().difference(&self.netns_before) {
            left.push(format!("pinned network namespace /run/netns/{ns}"));
        }
        let links = std::fs::read_dir("/sys/class/net")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned());
        for link in links.filter(|l| l == BRIDGE || l.starts_with("fkveth")) {
            left.push(format!("link {link}"));
        }
        let tables = Command::new("nft").args(["list", "tables"]).output();
        if let Ok(out) = tables {
            let text = String::from_utf8_lossy(&out.stdout);
            if text.lines().any(|l| l.trim() == "table ip ferrokube-local") {
                left.push("host nftables table ip ferrokube-local".into());
            }
        }
        if let Ok(out) = Command::new("ip").args(["-4", "route", "show"]).output() {
            for route in String::from_utf8_lossy(&out.stdout).lines() {
                if route.contains(BRIDGE) || route.contains("via 10.200.0.") {
                    left.push(format!("route {route}"));
                }
            }
        }
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
        let prefix = format!("{}/", self.dir.display());
        for m in mounts.lines().filter_map(|l| l.split_whitespace().nth(1)) {
            if m.starts_with(&prefix) {
                left.push(format!("mount {m}"));
            }
        }
        for entry in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name != "logs" && name != ".ferrokube-local" {
                left.push(format!("state {}", entry.path().display()));
            }
        }
        left
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
        self.down();
    }
}

/// A Deployment `name` of `replicas` busybox pods that sleep (label `app=<name>`, 1 s grace
/// period); `spec` is added to the Deployment's spec and `pod` to its pods' spec, as YAML
/// lines indented for their place (e.g. a strategy; a nodeSelector).
pub fn sleep_deployment(name: &str, replicas: u32, spec: &str, pod: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
{spec}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      terminationGracePeriodSeconds: 1
{pod}
      containers:
      - {{name: c, image: "busybox:1.35", command: [sleep, "3600"]}}
"#
    )
}

/// A pod as [`LocalCluster::pods`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodState {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.uid`.
    pub uid: String,
    /// `spec.nodeName` (`-` before it is bound).
    pub node: String,
    /// `status.phase` (`-` before the kubelet reports).
    pub phase: String,
    /// The Ready condition's status (`-` when absent).
    pub ready: String,
    /// The first container's id, `containerd://<id>` (`-` before it runs).
    pub container_id: String,
    /// The first container's restartCount (`-` before it runs).
    pub restarts: String,
    /// The `pod-template-hash` label (`-` when absent): its ReplicaSet.
    pub template_hash: String,
    /// Whether it is being deleted.
    pub deleting: bool,
}

impl PodState {
    /// Parses one line of [`LocalCluster::pods`]' template: kubectl prints an absent field
    /// as nothing between its two spaces, so splitting on single spaces keeps positions.
    fn parse(line: &str) -> Option<PodState> {
        let f: Vec<&str> = line.split(' ').collect();
        let get = |i: usize| {
            f.get(i)
                .filter(|v| !v.is_empty())
                .map_or("-".to_string(), |v| v.to_string())
        };
        (get(0) != "-").then(|| PodState {
            name: get(0),
            uid: get(1),
            node: get(2),
            phase: get(3),
            ready: get(4),
            container_id: get(5),
            restarts: get(6),
            template_hash: get(7),
            deleting: get(8) != "-",
        })
    }

    /// Running, Ready and not being deleted.
    pub fn serving(&self) -> bool {
        self.phase == "Running" && self.ready == "True" && !self.deleting
    }

    /// The container id without its `containerd://` scheme.
    pub fn container(&self) -> &str {
        self.container_id
            .rsplit_once("://")
            .map_or(self.container_id.as_str(), |(_, id)| id)
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

/// The names in /run/netns (where `ip netns` and containerd pin network namespaces).
fn pinned_netns() -> BTreeSet<String> {
    std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// The directories of cgroup `path` that exist, in every hierarchy under /sys/fs/cgroup.
fn cgroup_dirs(path: &str) -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join(path))
        .collect();
    dirs.push(root.join(path));
    dirs.into_iter().filter(|d| d.is_dir()).collect()
}
