//! The operator's path, end to end: `hack/local-up.sh` brings up the upstream apiserver with
//! every ferrokube component on this machine as its node, then what the issues' "Done means"
//! ask of it is checked with kubectl as a user would: a Deployment's pods run, a ClusterIP
//! answers from the host, a kubelet restart changes no container, `kubectl rollout restart`
//! rolls out. `hack/local-down.sh` stops it all, whatever the outcome.
//!
//! Needs root, containerd and the control-plane assets; skips loudly otherwise. Uses the
//! fixed ports local-up uses (6443, 10248, 10250, 10256, ...): skips when one is taken.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The ports local-up refuses to start without.
const FIXED_PORTS: [u16; 9] = [6443, 2379, 2380, 10259, 10257, 10248, 10250, 10249, 10256];
/// The ferrokube binaries local-up starts.
const BINARIES: [&str; 5] = [
    "kube-scheduler",
    "kube-controller-manager",
    "kubelet",
    "kube-proxy",
    "ferrokube-load-image",
];

/// A local cluster started by `hack/local-up.sh`, stopped with `hack/local-down.sh` on drop.
struct LocalCluster {
    dir: PathBuf,
    bin_dir: PathBuf,
    kubectl: PathBuf,
    _temp: tempfile::TempDir,
}

impl LocalCluster {
    fn script(&self, name: &str) -> Command {
        let mut cmd = Command::new("bash");
        cmd.arg(e2e::binaries::workspace_root().join("hack").join(name))
            .env("FERROKUBE_LOCAL_DIR", &self.dir)
            .env("FERROKUBE_BIN_DIR", &self.bin_dir)
            .env("FERROKUBE_SKIP_BUILD", "1");
        cmd
    }

    fn kubectl(&self, args: &[&str]) -> Output {
        Command::new(&self.kubectl)
            .arg(format!(
                "--kubeconfig={}",
                self.dir.join("admin.kubeconfig").display()
            ))
            .args(args)
            .output()
            .expect("run kubectl")
    }

    /// kubectl's stdout, failing the test with its stderr when it fails.
    fn kubectl_ok(&self, args: &[&str]) -> String {
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
    fn log_tails(&self) -> String {
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

    /// Polls `check` every 500 ms until it returns `Some`, failing with the logs after
    /// `timeout`.
    fn eventually<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut() -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = check() {
                return v;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {what}\n{}",
                    self.log_tails()
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// `name pid binary` of a process local-up started.
    fn pid_of(&self, name: &str) -> u32 {
        let pids = std::fs::read_to_string(self.dir.join("pids")).expect("pids file");
        pids.lines()
            .rev()
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                (f.next()? == name).then(|| f.next()?.parse().ok())?
            })
            .next()
            .unwrap_or_else(|| panic!("{name} not in the pids file"))
    }

    /// Stops the kubelet (SIGTERM) and starts it again with the same command line and
    /// environment, recording the new pid so local-down stops it.
    fn restart_kubelet(&self) {
        let pid = self.pid_of("kubelet");
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("kubelet cmdline");
        let environ = std::fs::read(format!("/proc/{pid}/environ")).expect("kubelet environ");
        let args: Vec<String> = nul_split(&cmdline);
        let env: Vec<(String, String)> = nul_split(&environ)
            .into_iter()
            .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.into(), v.into())))
            .collect();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .expect("SIGTERM kubelet");
        self.eventually("the kubelet to exit", Duration::from_secs(30), || {
            (!Path::new(&format!("/proc/{pid}")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|s| s.contains(") Z ")))
            .then_some(())
        });
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
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
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

fn nul_split(bytes: &[u8]) -> Vec<String> {
    bytes
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

fn port_taken(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)).is_ok()
}

/// One HTTP/1.0 GET of `path`; the body when the server answered 200.
fn http_get(ip: &str, port: u16, path: &str) -> Option<String> {
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

/// `pod name -> (containerID, restartCount)` of the pods labelled `app=<app>`.
fn containers(cluster: &LocalCluster, app: &str) -> BTreeMap<String, (String, String)> {
    let out = cluster.kubectl_ok(&[
        "get",
        "pods",
        "-l",
        &format!("app={app}"),
        "-o",
        r#"jsonpath={range .items[*]}{.metadata.name} {.status.containerStatuses[0].containerID} {.status.containerStatuses[0].restartCount}{"\n"}{end}"#,
    ]);
    out.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((f.next()?.into(), (f.next()?.into(), f.next()?.into())))
        })
        .collect()
}

/// Names of the Running pods labelled `app=<app>` (not being deleted).
fn running(cluster: &LocalCluster, app: &str) -> Vec<String> {
    let out = cluster.kubectl_ok(&[
        "get",
        "pods",
        "-l",
        &format!("app={app}"),
        "-o",
        r#"jsonpath={range .items[*]}{.metadata.name} {.status.phase} {.metadata.deletionTimestamp}{"\n"}{end}"#,
    ]);
    out.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 2 && f[1] == "Running").then(|| f[0].to_string())
        })
        .collect()
}

#[test]
fn local_up_runs_a_deployment_behind_a_service() {
    if !nix::unistd::Uid::effective().is_root() {
        e2e::skip_test!("local-up needs root (node address, containerd, nftables)");
    }
    let assets = match e2e::assets::find_control_plane() {
        Ok(a) => a,
        Err(missing) => e2e::skip_test!("{}", e2e::cluster::skip_reason(&missing)),
    };
    let Some(kubectl) = assets.kubectl.clone() else {
        e2e::skip_test!("no kubectl (set KUBEBUILDER_ASSETS)");
    };
    if Command::new("containerd")
        .arg("--version")
        .output()
        .is_err()
    {
        e2e::skip_test!("no containerd on PATH (run hack/install-deps.sh)");
    }
    if let Some(port) = FIXED_PORTS.into_iter().find(|p| port_taken(*p)) {
        e2e::skip_test!("127.0.0.1:{port} is in use (is a local cluster running?)");
    }
    let bin_dir = e2e::binaries::ferrokube_binary(BINARIES[0])
        .map(|p| p.parent().expect("bin dir").to_path_buf())
        .expect("ferrokube binaries");
    for b in BINARIES {
        e2e::binaries::ferrokube_binary(b).expect("ferrokube binary");
    }

    let temp = tempfile::tempdir().expect("temp dir");
    let cluster = LocalCluster {
        dir: temp.path().join("local"),
        bin_dir,
        kubectl,
        _temp: temp,
    };
    let assets_dir = assets
        .kube_apiserver
        .parent()
        .expect("assets dir")
        .to_path_buf();
    let up = cluster
        .script("local-up.sh")
        .env("KUBEBUILDER_ASSETS", assets_dir)
        .output()
        .expect("run local-up");
    assert!(
        up.status.success(),
        "local-up failed:\n{}{}\n{}",
        String::from_utf8_lossy(&up.stdout),
        String::from_utf8_lossy(&up.stderr),
        cluster.log_tails()
    );
    let node = cluster.kubectl_ok(&["get", "nodes", "-o", "jsonpath={.items[0].metadata.name}"]);
    cluster.eventually("the node to be Ready", Duration::from_secs(60), || {
        let out = cluster.kubectl(&[
            "get",
            "node",
            &node,
            "-o",
            r#"jsonpath={.status.conditions[?(@.type=="Ready")].status}"#,
        ]);
        (String::from_utf8_lossy(&out.stdout) == "True").then_some(())
    });

    // The Done means of issues 4 and 6: three pods of a Deployment Running on our node.
    cluster.kubectl_ok(&[
        "create",
        "deployment",
        "web",
        "--image=busybox:1.35",
        "--replicas=3",
        "--",
        "sleep",
        "3600",
    ]);
    cluster.eventually(
        "3 Running pods of deployment web",
        Duration::from_secs(180),
        || (running(&cluster, "web").len() == 3).then_some(()),
    );
    let pod = &running(&cluster, "web")[0];
    let conditions = cluster.kubectl_ok(&[
        "get",
        "pod",
        pod,
        "-o",
        r#"jsonpath={range .status.conditions[*]}{.type}={.status} {end}"#,
    ]);
    for want in [
        "PodReadyToStartContainers=True",
        "Initialized=True",
        "ContainersReady=True",
        "Ready=True",
        "PodScheduled=True",
    ] {
        assert!(
            conditions.contains(want),
            "{pod}: {want} not in {conditions}"
        );
    }
    let ips = cluster.kubectl_ok(&[
        "get",
        "pod",
        pod,
        "-o",
        "jsonpath={.status.podIP} {.status.hostIP} {.status.qosClass}",
    ]);
    assert_eq!(
        ips.split_whitespace().count(),
        3,
        "{pod}: podIP hostIP qosClass: {ips:?}"
    );

    // Issue 7's: a ClusterIP Service in front of a Deployment answers from the host.
    cluster.kubectl_ok(&[
        "create",
        "deployment",
        "httpd",
        "--image=busybox:1.35",
        "--replicas=2",
        "--port=8080",
        "--",
        "httpd",
        "-f",
        "-p",
        "8080",
        "-h",
        "/etc",
    ]);
    cluster.kubectl_ok(&[
        "expose",
        "deployment",
        "httpd",
        "--port=80",
        "--target-port=8080",
    ]);
    let cluster_ip = cluster.kubectl_ok(&[
        "get",
        "service",
        "httpd",
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]);
    // busybox httpd serves the pod's /etc: /hostname names the backend that answered.
    let backends = running(&cluster, "httpd");
    let mut answered = std::collections::BTreeSet::new();
    cluster.eventually(
        &format!("both httpd backends {backends:?} to answer http://{cluster_ip}/hostname (so far {answered:?})"),
        Duration::from_secs(180),
        || {
            if let Some(name) = http_get(&cluster_ip, 80, "/hostname") {
                answered.insert(name);
            }
            (answered.len() == 2).then_some(())
        },
    );
    let answered_names: Vec<String> = answered.into_iter().collect();
    let mut expected = running(&cluster, "httpd");
    expected.sort();
    assert_eq!(
        answered_names, expected,
        "the Service answered from pods that are not its backends"
    );

    // A DaemonSet covers the node: its pod is placed by our scheduler, run by our kubelet.
    let manifest = cluster._temp.path().join("daemonset.yaml");
    std::fs::write(
        &manifest,
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
    )
    .expect("write daemonset manifest");
    cluster.kubectl_ok(&["apply", "-f", manifest.to_str().expect("utf-8 path")]);
    cluster.eventually(
        "DaemonSet agent ready on the node",
        Duration::from_secs(120),
        || {
            let out = cluster.kubectl(&[
                "get",
                "daemonset",
                "agent",
                "-o",
                "jsonpath={.status.desiredNumberScheduled} {.status.numberReady} {.status.updatedNumberScheduled}",
            ]);
            (String::from_utf8_lossy(&out.stdout) == "1 1 1").then_some(())
        },
    );
    assert_eq!(running(&cluster, "agent").len(), 1, "one agent pod Running");

    // The kubelet's API through the apiserver: kubectl exec and kubectl logs.
    let out = cluster.kubectl_ok(&["exec", pod, "--", "sh", "-c", "echo exec-$((6*7))"]);
    assert_eq!(out.trim(), "exec-42", "kubectl exec {pod}");
    cluster.kubectl_ok(&[
        "run",
        "logger",
        "--image=busybox:1.35",
        "--restart=Never",
        "--",
        "sh",
        "-c",
        "echo line-one; echo line-two",
    ]);
    cluster.eventually("pod logger to succeed", Duration::from_secs(120), || {
        let phase = cluster.kubectl(&["get", "pod", "logger", "-o", "jsonpath={.status.phase}"]);
        (String::from_utf8_lossy(&phase.stdout) == "Succeeded").then_some(())
    });
    let logs = cluster.kubectl_ok(&["logs", "logger"]);
    assert_eq!(logs.trim(), "line-one\nline-two", "kubectl logs logger");
    let tail = cluster.kubectl_ok(&["logs", "logger", "--tail=1"]);
    assert_eq!(tail.trim(), "line-two", "kubectl logs --tail=1 logger");

    // Issue 6's: a kubelet restart changes no container.
    let before = containers(&cluster, "web");
    assert_eq!(before.len(), 3, "{before:?}");
    cluster.restart_kubelet();
    std::thread::sleep(Duration::from_secs(15));
    cluster.eventually(
        "the node Ready after the kubelet restart",
        Duration::from_secs(60),
        || {
            let out = cluster.kubectl(&[
                "get",
                "node",
                &node,
                "-o",
                r#"jsonpath={.status.conditions[?(@.type=="Ready")].status}"#,
            ]);
            (String::from_utf8_lossy(&out.stdout) == "True").then_some(())
        },
    );
    let after = containers(&cluster, "web");
    assert_eq!(before, after, "the kubelet restart changed containers");

    // Issue 4's: `kubectl rollout restart` replaces every pod and the rollout completes.
    cluster.kubectl_ok(&["rollout", "restart", "deployment/web"]);
    cluster.kubectl_ok(&["rollout", "status", "deployment/web", "--timeout=180s"]);
    cluster.eventually("3 new Running pods", Duration::from_secs(120), || {
        let now = running(&cluster, "web");
        (now.len() == 3 && now.iter().all(|p| !before.contains_key(p))).then_some(())
    });
}
