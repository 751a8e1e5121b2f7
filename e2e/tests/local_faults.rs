//! Faults on the local cluster, as an operator meets them: `kill -9` of the kube-apiserver and
//! of the kube-scheduler. local-up supervises what it starts (hack/lib/supervise.sh), so both
//! come back by themselves; the node stays Ready and the cluster keeps working — a Deployment
//! created after each fault runs. The recovery times are printed.
//!
//! Needs root, containerd and the control-plane assets; skips loudly otherwise.

use std::process::Command;
use std::time::{Duration, Instant};

use e2e::local_cluster::{LocalCluster, UpError};

/// The component the supervisor recorded as `name` runs as its child.
fn child_of(cluster: &LocalCluster, name: &str) -> Option<i32> {
    let supervisor = cluster.pid_of(name);
    let out = Command::new("pgrep")
        .args(["-P", &supervisor.to_string()])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

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
    let apiserver = child_of(&cluster, "kube-apiserver").expect("kube-apiserver runs");
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
    let restarted = child_of(&cluster, "kube-apiserver").expect("kube-apiserver runs again");
    assert_ne!(restarted, apiserver, "a new kube-apiserver process");
    let after_apiserver = deployment_runs(&cluster, "after-apiserver");
    cluster.wait_node_ready(
        "the node Ready after the API server's return",
        Duration::from_secs(60),
    );

    // kill -9 kube-scheduler: back, and holding its Lease again, by itself.
    let scheduler = child_of(&cluster, "kube-scheduler").expect("kube-scheduler runs");
    kill_9(scheduler);
    let killed = Instant::now();
    let after_scheduler = deployment_runs(&cluster, "after-scheduler");
    let scheduler_back = killed.elapsed();
    assert_ne!(
        child_of(&cluster, "kube-scheduler"),
        Some(scheduler),
        "a new kube-scheduler process"
    );
    println!(
        "kill -9 kube-apiserver: /readyz again after {apiserver_back:.1?}, a new Deployment's \
         pods Running {after_apiserver:.1?} after it was created; kill -9 kube-scheduler: a \
         new Deployment Running {scheduler_back:.1?} after the kill ({after_scheduler:.1?})"
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

    let nodes = cluster.node_names();
    let recorded = cluster.down();
    let left = cluster.leftovers(&recorded, &nodes);
    assert!(left.is_empty(), "left behind: {left:#?}");
}
