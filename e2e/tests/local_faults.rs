//! Faults of the control plane on the local cluster, as an operator meets them (issue 16's
//! fault matrix; one cluster for every scenario, run in sequence, each printing its own
//! `RECOVERY <fault>: <seconds> s` line):
//!
//! - apiserver-kill, scheduler-kill: `kill -9` of the kube-apiserver and of the
//!   kube-scheduler. local-up supervises what it starts (hack/lib/supervise.sh), so both come
//!   back by themselves; the node stays Ready and a Deployment created after each fault runs.
//! - watch-expiry: in the middle of a scale-up, etcd is compacted at its current revision and
//!   the API server's connections to etcd are reset (the API server held still meanwhile), so
//!   its watch caches relist and every watch of every component ends and resumes from a
//!   revision that is gone: 410 Gone. Every
//!   component (controller manager, scheduler, kubelet, kube-proxy, DNS) must log the expiry
//!   and relist at once; the scale-up completes with exactly its replicas.
//! - leader-failover: with a standby kube-controller-manager and kube-scheduler running
//!   (same flags, `--leader-elect=true`), the leaders' machine dies in the middle of a
//!   rollout (their supervisors and they get SIGKILL). The standbys take both Leases within
//!   one lease duration (15 s) of the last renewal plus a retry period, and the rollout
//!   completes with never more pods than replicas + maxSurge.
//!
//! Needs root, containerd and the control-plane assets; skips loudly otherwise.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use e2e::local_cluster::{sleep_deployment, LocalCluster, PodState, UpError};
use e2e::ManagedProcess;

fn kill_9(pid: i32) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap_or_else(|e| panic!("kill -9 {pid}: {e}"));
}

/// Creates Deployment `name` (2 replicas) and returns how long until both pods run.
fn deployment_runs(cluster: &LocalCluster, name: &str) -> Duration {
    let start = Instant::now();
    cluster.kubectl_ok(&[
        "create",
        "deployment",
        name,
        "--image=busybox:1.35",
        "--replicas=2",
        "--",
        "sleep",
        "3600",
    ]);
    cluster.eventually(
        &format!("2 Running pods of {name}"),
        Duration::from_secs(120),
        || (cluster.running(name).len() == 2).then_some(()),
        String::new,
    );
    start.elapsed()
}

#[test]
fn a_local_cluster_survives_kill_9_of_its_apiserver_and_scheduler() {
    let mut cluster = match LocalCluster::up(Duration::from_secs(90)) {
        Ok(c) => c,
        Err(UpError::Skip(why)) => e2e::skip_test!("{why}"),
        Err(UpError::Failed(why)) => panic!("{why}"),
    };
    cluster.wait_node_ready("the node to be Ready", Duration::from_secs(60));
    deployment_runs(&cluster, "before");

    // kill -9 kube-apiserver: its supervisor starts it again.
    let apiserver = cluster
        .component_pid("kube-apiserver")
        .expect("kube-apiserver runs");
    kill_9(apiserver);
    let killed = Instant::now();
    cluster.eventually(
        "kube-apiserver ready again",
        Duration::from_secs(90),
        || {
            let out = cluster.kubectl(&["get", "--raw", "/readyz"]);
            (String::from_utf8_lossy(&out.stdout) == "ok").then_some(())
        },
        String::new,
    );
    let apiserver_back = killed.elapsed();
    let restarted = cluster
        .component_pid("kube-apiserver")
        .expect("kube-apiserver runs again");
    assert_ne!(restarted, apiserver, "a new kube-apiserver process");
    let after_apiserver = deployment_runs(&cluster, "after-apiserver");
    cluster.wait_node_ready(
        "the node Ready after the API server's return",
        Duration::from_secs(60),
    );

    // kill -9 kube-scheduler: back, and holding its Lease again, by itself.
    let scheduler = cluster
        .component_pid("kube-scheduler")
        .expect("kube-scheduler runs");
    kill_9(scheduler);
    let killed = Instant::now();
    let after_scheduler = deployment_runs(&cluster, "after-scheduler");
    let scheduler_back = killed.elapsed();
    assert_ne!(
        cluster.component_pid("kube-scheduler"),
        Some(scheduler),
        "a new kube-scheduler process"
    );
    println!(
        "RECOVERY apiserver-kill: {:.1} s (kill -9 to /readyz; a Deployment created then \
         Running {:.1} s later)",
        apiserver_back.as_secs_f64(),
        after_apiserver.as_secs_f64()
    );
    println!(
        "RECOVERY scheduler-kill: {:.1} s (kill -9 to a Deployment created then Running, the \
         dead leader's Lease waited out; {:.1} s from its creation)",
        scheduler_back.as_secs_f64(),
        after_scheduler.as_secs_f64()
    );
    // The scheduler's successor waits out the dead one's 15 s Lease, as upstream's would.
    assert!(
        after_apiserver < Duration::from_secs(30),
        "{after_apiserver:?}"
    );
    assert!(
        scheduler_back < Duration::from_secs(45),
        "{scheduler_back:?}"
    );
    assert_eq!(
        cluster.running("before").len(),
        2,
        "nothing lost, nothing doubled"
    );

    watch_expiry(&cluster);
    let standbys = leader_failover(&cluster);

    let nodes = cluster.node_names();
    let recorded = cluster.down();
    drop(standbys);
    let left = cluster.leftovers(&recorded, &nodes);
    assert!(left.is_empty(), "left behind: {left:#?}");
}

/// POSTs `body` to etcd's gRPC gateway at `path`; the JSON answer.
fn etcd(cluster: &LocalCluster, path: &str, body: &str) -> serde_json::Value {
    let out = Command::new("curl")
        .args(["-sf", "--max-time", "10", "-X", "POST", "-d", body])
        .arg(format!("http://127.0.0.1:{}{path}", cluster.etcd_port()))
        .output()
        .expect("run curl");
    assert!(out.status.success(), "etcd {path} {body}: {out:?}");
    serde_json::from_slice(&out.stdout).expect("etcd answers JSON")
}

/// Expires every watch of every client at once: with the API server stopped (SIGSTOP, so
/// nothing writes), two writes of a key no API server watches and a compaction at the
/// revision they reach put every watch cache's last revision below the compacted one; the API
/// server's connections to etcd are reset and it continues (SIGCONT). Its watch caches resume
/// their etcd watches from compacted revisions, relist and end every client's watch, which
/// resumes from a resourceVersion the new caches no longer hold: 410 Gone. Returns the
/// compacted revision.
fn expire_every_watch(cluster: &LocalCluster) -> String {
    let apiserver = nix::unistd::Pid::from_raw(
        cluster
            .component_pid("kube-apiserver")
            .expect("kube-apiserver runs"),
    );
    nix::sys::signal::kill(apiserver, nix::sys::signal::Signal::SIGSTOP).expect("SIGSTOP");
    let compacted = std::panic::catch_unwind(|| {
        // base64 of "ferrokube-e2e/compact" and "x".
        let put = r#"{"key": "ZmVycm9rdWJlLWUyZS9jb21wYWN0", "value": "eA=="}"#;
        etcd(cluster, "/v3/kv/put", put);
        let answer = etcd(cluster, "/v3/kv/put", put);
        let revision = answer["header"]["revision"]
            .as_str()
            .expect("a revision")
            .to_string();
        etcd(
            cluster,
            "/v3/kv/compaction",
            &format!(r#"{{"revision": "{revision}", "physical": true}}"#),
        );
        let port = format!(":{}", cluster.etcd_port());
        let out = Command::new("ss")
            .args(["-K", "dst", "127.0.0.1", "dport", "=", &port])
            .output()
            .expect("run ss");
        assert!(out.status.success(), "ss -K: {out:?}");
        revision
    });
    nix::sys::signal::kill(apiserver, nix::sys::signal::Signal::SIGCONT).expect("SIGCONT");
    compacted.unwrap_or_else(|e| std::panic::resume_unwind(e))
}

/// What a component logs when a watch ends with 410 Gone and it relists at once
/// (component_base::watch_backoff).
const EXPIRED: &str = "Watch expired (410 Gone); relisting at once";

fn watch_expiry(cluster: &LocalCluster) {
    cluster.apply("busy", &sleep_deployment("busy", 1, "", ""));
    cluster.wait_serving("busy", 1, Duration::from_secs(60));
    let node = cluster.node_name();
    let logs: Vec<(String, std::path::PathBuf)> = [
        "kube-controller-manager".to_string(),
        "kube-scheduler".to_string(),
        format!("{node}/kubelet"),
        format!("{node}/kube-proxy"),
    ]
    .into_iter()
    .map(|name| {
        let path = cluster.dir().join("logs").join(format!("{name}.log"));
        (name, path)
    })
    .collect();
    let offsets: Vec<u64> = logs
        .iter()
        .map(|(_, p)| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .collect();
    let dns_since = utc_now();

    cluster.kubectl_ok(&["scale", "deployment/busy", "--replicas=8"]);
    let fault = Instant::now();
    let revision = expire_every_watch(cluster);
    let pods = cluster.wait_serving("busy", 8, Duration::from_secs(120));
    let recovery = fault.elapsed();

    // Every component saw its watches expire and relisted.
    let mut silent = Vec::new();
    for ((name, path), offset) in logs.iter().zip(&offsets) {
        let text = std::fs::read(path).unwrap_or_default();
        let after =
            String::from_utf8_lossy(&text[(*offset as usize).min(text.len())..]).into_owned();
        if !after.contains(EXPIRED) {
            silent.push(name.clone());
        }
    }
    let dns = cluster.kubectl_ok(&[
        "logs",
        "-n",
        "kube-system",
        "-l",
        "k8s-app=kube-dns",
        "--prefix",
        &format!("--since-time={dns_since}"),
    ]);
    let dns_pods = cluster.kubectl_ok(&[
        "get",
        "pods",
        "-n",
        "kube-system",
        "-l",
        "k8s-app=kube-dns",
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ]);
    for pod in dns_pods.split_whitespace() {
        if !dns
            .lines()
            .any(|l| l.contains(&format!("pod/{pod}/")) && l.contains(EXPIRED))
        {
            silent.push(format!("kube-system/{pod} (DNS)"));
        }
    }
    println!(
        "RECOVERY watch-expiry: {:.1} s (etcd compacted at revision {revision} and its \
         connections reset mid scale-up 1 -> 8, to 8 pods Running)",
        recovery.as_secs_f64()
    );
    assert!(
        silent.is_empty(),
        "these logged no expired watch (410) after the compaction: {silent:?}\n{}",
        cluster.log_tails()
    );
    let names: std::collections::BTreeSet<&str> = pods.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names.len(), 8, "8 distinct pods: {pods:#?}");
    for p in &pods {
        assert_eq!(
            cluster.running_containers(&p.node, &p.uid),
            [p.container().to_string()].into(),
            "{}: exactly its container runs",
            p.name
        );
    }
    assert!(
        recovery < Duration::from_secs(60),
        "watch-expiry recovery {recovery:?}"
    );
    cluster.kubectl_ok(&[
        "delete",
        "deployment/busy",
        "--grace-period=1",
        "--wait=true",
        "--timeout=60s",
    ]);
}

/// Now in RFC 3339 (UTC), as `kubectl logs --since-time` reads it.
fn utc_now() -> String {
    let out = Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .expect("run date");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The holder of Lease kube-system/`name`.
fn holder(cluster: &LocalCluster, name: &str) -> String {
    cluster
        .kubectl(&[
            "get",
            "lease",
            "-n",
            "kube-system",
            name,
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ])
        .stdout
        .iter()
        .map(|b| *b as char)
        .collect()
}

const LEADERS: [&str; 2] = ["kube-controller-manager", "kube-scheduler"];

/// Starts a standby of `name` with the running leader's command line, on a port of its own.
fn standby(cluster: &LocalCluster, name: &str) -> ManagedProcess {
    let leader = cluster.component_pid(name).expect("the leader runs");
    let mut args = LocalCluster::cmdline(leader);
    let program = args.remove(0);
    let port = e2e::ports::free_port().expect("a free port");
    for a in &mut args {
        if a.starts_with("--secure-port=") {
            *a = format!("--secure-port={port}");
        }
    }
    assert!(
        args.iter().any(|a| a == "--leader-elect=true"),
        "local-up runs {name} with leader election: {args:?}"
    );
    ManagedProcess::spawn(
        &format!("{name}-standby"),
        Path::new(&program),
        &args,
        &cluster.scratch().join(format!("{name}-standby.log")),
    )
    .expect("start the standby")
}

fn leader_failover(cluster: &LocalCluster) -> Vec<ManagedProcess> {
    let leaders: BTreeMap<&str, String> =
        LEADERS.iter().map(|n| (*n, holder(cluster, n))).collect();
    let mut standbys: Vec<ManagedProcess> = LEADERS.iter().map(|n| standby(cluster, n)).collect();
    // The standbys start, find the Leases held and wait.
    std::thread::sleep(Duration::from_secs(3));
    for (s, name) in standbys.iter_mut().zip(LEADERS) {
        assert!(s.is_running(), "{name} standby runs:\n{}", s.log_tail(20));
        assert_eq!(
            holder(cluster, name),
            leaders[name],
            "the leader keeps {name}'s Lease"
        );
    }

    let strategy =
        "  minReadySeconds: 2\n  strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 1, maxUnavailable: 0}}";
    cluster.apply("roll", &sleep_deployment("roll", 4, strategy, ""));
    cluster.wait_serving("roll", 4, Duration::from_secs(90));
    cluster.kubectl_ok(&["set", "env", "deployment/roll", "GENERATION=2"]);
    let mut most = 0;
    cluster.eventually(
        "the rollout to be under way (a pod of its new ReplicaSet)",
        Duration::from_secs(60),
        || {
            let pods = cluster.pods("roll");
            most = most.max(pods.iter().filter(|p| !p.deleting).count());
            (pods
                .iter()
                .map(|p| &p.template_hash)
                .collect::<std::collections::BTreeSet<_>>()
                .len()
                > 1)
            .then_some(())
        },
        || format!("{:#?}", cluster.pods("roll")),
    );

    // The leaders' machine dies: each supervisor leads its process group (setsid).
    for name in LEADERS {
        let group = cluster.pid_of(name);
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(-group),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap_or_else(|e| panic!("kill -9 {name}'s group: {e}"));
    }
    let killed = Instant::now();
    let taken: std::cell::RefCell<BTreeMap<&str, Duration>> = Default::default();
    let done = cluster.eventually(
        "both Leases taken over and the rollout complete",
        Duration::from_secs(120),
        || {
            for name in LEADERS {
                if !taken.borrow().contains_key(name) {
                    let h = holder(cluster, name);
                    if !h.is_empty() && h != leaders[name] {
                        taken.borrow_mut().insert(name, killed.elapsed());
                    }
                }
            }
            let pods = cluster.pods("roll");
            most = most.max(pods.iter().filter(|p| !p.deleting).count());
            let status = cluster.kubectl_ok(&[
                "get",
                "deployment",
                "roll",
                "-o",
                "jsonpath={.status.updatedReplicas} {.status.readyReplicas} {.status.availableReplicas} {.status.replicas}",
            ]);
            (taken.borrow().len() == 2 && status == "4 4 4 4" && pods.len() == 4 && pods.iter().all(PodState::serving))
                .then_some(pods)
        },
        || format!("Leases taken: {:?}\n{:#?}", taken.borrow(), cluster.pods("roll")),
    );
    let complete = killed.elapsed();
    let taken = taken.into_inner();
    let takeover = taken.values().max().copied().unwrap_or(complete);
    println!(
        "RECOVERY leader-failover: {:.1} s (kill -9 of both leaders mid-rollout to both Leases \
         held by the standbys: controller manager {:.1} s, scheduler {:.1} s; rollout \
         complete {:.1} s after the kill)",
        takeover.as_secs_f64(),
        taken["kube-controller-manager"].as_secs_f64(),
        taken["kube-scheduler"].as_secs_f64(),
        complete.as_secs_f64()
    );
    for (s, name) in standbys.iter_mut().zip(LEADERS) {
        let log = s.log();
        let h = holder(cluster, name);
        assert!(
            log.contains("Successfully acquired lease") && log.contains(&h),
            "{name}'s standby holds the Lease ({h}):\n{}",
            s.log_tail(20)
        );
    }
    assert!(
        most <= 5,
        "at most replicas + maxSurge pods at once, saw {most}"
    );
    let hashes: std::collections::BTreeSet<&String> =
        done.iter().map(|p| &p.template_hash).collect();
    assert_eq!(
        hashes.len(),
        1,
        "every pod of the new ReplicaSet: {done:#?}"
    );
    // One lease duration (15 s) after the last renewal (at most a retry period, 2 s, before
    // the kill), plus the standby's retry period and its jitter.
    assert!(
        takeover <= Duration::from_secs(20),
        "leader-failover took {takeover:?}"
    );
    standbys
}
