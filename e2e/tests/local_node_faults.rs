//! Issue 16's fault matrix, the node faults, on a two-node local cluster (one start-up for
//! three scenarios, run in sequence, each with its own assertions and its own
//! `RECOVERY <fault>: <seconds> s` line):
//!
//! - containerd-restart: a node's containerd is restarted (SIGTERM, its supervisor starts it
//!   again, as systemd's `Restart=always`; the pods' shims keep running). The kubelet
//!   reconnects; no pod is restarted (restartCount and container ids unchanged, exactly one
//!   running container per pod in containerd), every pod stays Running and Ready the whole
//!   time, and a pod created at the restart runs.
//! - kubelet-restart: the kubelet is killed (-9; its supervisor starts it again) in the middle
//!   of a Deployment rollout. The rollout completes; never more pods than replicas + maxSurge;
//!   the pods that ran before the crash keep their containers (adopted, not recreated), and
//!   each pod has exactly one running container.
//! - network-cut: a node's link to the bridge is cut for 60 s (`hack/local-node.sh
//!   disconnect`: it reaches neither the apiserver nor the other node) and restored. The node
//!   goes Unknown with the `node.kubernetes.io/unreachable` NoExecute taint after the
//!   controller manager's 50 s grace period and its pods are marked not Ready, as upstream's
//!   node lifecycle controller does; none is evicted inside its 300 s toleration or
//!   duplicated elsewhere. After the cut: Ready again, taint gone, the same containers Ready
//!   again, and a new pod on that node runs.
//!
//! Node loss and return (NotReady, taint, eviction, rescheduling) is local_multinode's.
//! Needs root, containerd and the control-plane assets; skips loudly otherwise.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use e2e::local_cluster::{sleep_deployment, LocalCluster, PodState, UpError};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// How long the network cut lasts (the issue's figure).
const CUT: Duration = Duration::from_secs(60);

/// A Deployment `name` of `replicas` sleeping busybox pods pinned to `node`; `spec` is added
/// to its spec (a strategy, minReadySeconds).
fn deployment(name: &str, node: &str, replicas: u32, spec: &str) -> String {
    let pin = format!("      nodeSelector: {{kubernetes.io/hostname: {node}}}");
    sleep_deployment(name, replicas, spec, &pin)
}

/// A bare pod `name` pinned to `node` (through the scheduler, by node selector).
fn pod(name: &str, node: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: {name}, labels: {{app: {name}}}}}
spec:
  terminationGracePeriodSeconds: 1
  nodeSelector: {{kubernetes.io/hostname: {node}}}
  containers:
  - {{name: c, image: "busybox:1.35", command: [sleep, "3600"]}}
"#
    )
}

/// Waits for `n` serving pods of `app` and returns them by name.
fn serving(cluster: &LocalCluster, app: &str, n: usize) -> BTreeMap<String, PodState> {
    cluster
        .wait_serving(app, n, Duration::from_secs(120))
        .into_iter()
        .map(|p| (p.name.clone(), p))
        .collect()
}

/// Asserts each of `pods` has exactly its reported container running in containerd.
fn one_container_each(cluster: &LocalCluster, pods: &BTreeMap<String, PodState>) {
    for p in pods.values() {
        let running = cluster.running_containers(&p.node, &p.uid);
        assert_eq!(
            running,
            BTreeSet::from([p.container().to_string()]),
            "{}: the running containers in {}'s containerd are not exactly its status's",
            p.name,
            p.node
        );
    }
}

/// Asserts the pods of `after` are those of `before` with the same containers, never
/// restarted.
fn same_containers(
    what: &str,
    before: &BTreeMap<String, PodState>,
    after: &BTreeMap<String, PodState>,
) {
    let names = |m: &BTreeMap<String, PodState>| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(after), names(before), "{what}: the same pods");
    for (name, b) in before {
        let a = &after[name];
        assert_eq!(
            (&a.container_id, &a.restarts),
            (&b.container_id, &b.restarts),
            "{what}: {name}'s container was replaced or restarted"
        );
    }
}

fn delete(cluster: &LocalCluster, what: &[&str]) {
    let mut args = vec!["delete"];
    args.extend_from_slice(what);
    args.extend_from_slice(&["--grace-period=1", "--wait=true", "--timeout=60s"]);
    cluster.kubectl_ok(&args);
}

#[test]
fn a_two_node_local_cluster_rides_out_node_faults() {
    let mut cluster = match LocalCluster::up_with_nodes(2, Duration::from_secs(90)) {
        Ok(c) => c,
        Err(UpError::Skip(why)) => e2e::skip_test!("{why}"),
        Err(UpError::Failed(why)) => panic!("{why}"),
    };
    let nodes = cluster.node_names();
    containerd_restart(&cluster, &nodes[0]);
    kubelet_restart_mid_rollout(&cluster, &nodes[0]);
    network_cut(&cluster, &nodes[1]);

    let recorded = cluster.down();
    let left = cluster.leftovers(&recorded, &nodes);
    assert!(left.is_empty(), "left behind: {left:#?}");
}

fn containerd_restart(cluster: &LocalCluster, node: &str) {
    cluster.apply("steady", &deployment("steady", node, 3, ""));
    let before = serving(cluster, "steady", 3);
    one_container_each(cluster, &before);

    let name = format!("{node}/containerd");
    let old = cluster.component_pid(&name).expect("containerd runs");
    let restarted = Instant::now();
    kill(Pid::from_raw(old), Signal::SIGTERM).expect("SIGTERM containerd");
    cluster.apply("after-containerd", &pod("after-containerd", node));
    // Until the new pod runs, every sample of the old ones must show them Running and Ready.
    let mut wrong = Vec::new();
    cluster.eventually(
        "a pod created at containerd's restart to run",
        Duration::from_secs(90),
        || {
            wrong.extend(cluster.pods("steady").into_iter().filter(|p| !p.serving()));
            cluster
                .pods("after-containerd")
                .first()
                .is_some_and(PodState::serving)
                .then_some(())
        },
        || format!("{:#?}", cluster.pods("after-containerd")),
    );
    let recovery = restarted.elapsed();
    let new = cluster.component_pid(&name);
    assert!(
        new.is_some_and(|p| p != old),
        "containerd was restarted: {old} then {new:?}"
    );
    println!(
        "RECOVERY containerd-restart: {:.1} s (SIGTERM of {node}'s containerd to a pod \
         created then Running)",
        recovery.as_secs_f64()
    );
    assert!(
        wrong.is_empty(),
        "pods not Running and Ready across containerd's restart: {wrong:#?}"
    );
    let after = serving(cluster, "steady", 3);
    same_containers("containerd-restart", &before, &after);
    one_container_each(cluster, &after);
    assert!(cluster.node_ready(node), "{node} Ready");
    assert!(
        recovery < Duration::from_secs(30),
        "containerd-restart recovery {recovery:?}"
    );
    delete(cluster, &["deployment/steady", "pod/after-containerd"]);
}

fn kubelet_restart_mid_rollout(cluster: &LocalCluster, node: &str) {
    // One pod at a time (maxSurge 1, maxUnavailable 0), each held 2 s (minReadySeconds), so
    // the restart lands in the middle of the rollout.
    let strategy = "  minReadySeconds: 2\n  strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 1, maxUnavailable: 0}}";
    cluster.apply("rollout", &deployment("rollout", node, 4, strategy));
    serving(cluster, "rollout", 4);
    cluster.kubectl_ok(&["set", "env", "deployment/rollout", "GENERATION=2"]);
    let new_hash = || {
        cluster.kubectl_ok(&[
            "get",
            "replicasets",
            "-l",
            "app=rollout",
            "--sort-by=.metadata.creationTimestamp",
            "-o",
            "jsonpath={.items[-1:].metadata.labels.pod-template-hash}",
        ])
    };
    let mut most = 0;
    cluster.eventually(
        "the first pod of the rollout's new ReplicaSet to serve",
        Duration::from_secs(60),
        || {
            let pods = cluster.pods("rollout");
            most = most.max(pods.iter().filter(|p| !p.deleting).count());
            let hash = new_hash();
            pods.iter()
                .any(|p| p.template_hash == hash && p.serving())
                .then_some(())
        },
        || format!("{:#?}", cluster.pods("rollout")),
    );
    // Everything running now must keep its container through the crash.
    let before: BTreeMap<String, PodState> = cluster
        .pods("rollout")
        .into_iter()
        .filter(|p| p.serving())
        .map(|p| (p.name.clone(), p))
        .collect();

    let name = format!("{node}/kubelet");
    let old = cluster.component_pid(&name).expect("kubelet runs");
    let crashed = Instant::now();
    kill(Pid::from_raw(old), Signal::SIGKILL).expect("kill -9 kubelet");
    let mut first_new = None;
    let done = cluster.eventually(
        "the rollout to complete after the kubelet's crash",
        Duration::from_secs(120),
        || {
            let pods = cluster.pods("rollout");
            most = most.max(pods.iter().filter(|p| !p.deleting).count());
            if first_new.is_none()
                && pods
                    .iter()
                    .any(|p| p.serving() && !before.contains_key(&p.name))
            {
                first_new = Some(crashed.elapsed());
            }
            let status = cluster.kubectl_ok(&[
                "get",
                "deployment",
                "rollout",
                "-o",
                "jsonpath={.status.updatedReplicas} {.status.readyReplicas} {.status.availableReplicas} {.status.replicas}",
            ]);
            let hash = new_hash();
            (status == "4 4 4 4"
                && pods.len() == 4
                && pods.iter().all(|p| p.serving() && p.template_hash == hash))
            .then_some(pods)
        },
        || format!("{:#?}", cluster.pods("rollout")),
    );
    let complete = crashed.elapsed();
    let new = cluster.component_pid(&name);
    assert!(
        new.is_some_and(|p| p != old),
        "the kubelet was restarted: {old} then {new:?}"
    );
    let first_new = first_new.unwrap_or(complete);
    println!(
        "RECOVERY kubelet-restart: {:.1} s (kill -9 of {node}'s kubelet mid-rollout to the \
         next new pod Ready; rollout complete {:.1} s after the kill)",
        first_new.as_secs_f64(),
        complete.as_secs_f64()
    );
    assert!(
        most <= 5,
        "at most replicas + maxSurge pods at once, saw {most}"
    );
    let done: BTreeMap<String, PodState> = done.into_iter().map(|p| (p.name.clone(), p)).collect();
    one_container_each(cluster, &done);
    let kept: BTreeMap<String, PodState> = done
        .iter()
        .filter(|(n, _)| before.contains_key(*n))
        .map(|(n, p)| (n.clone(), p.clone()))
        .collect();
    let adopted: BTreeMap<String, PodState> = before
        .into_iter()
        .filter(|(n, _)| kept.contains_key(n))
        .collect();
    assert!(
        !kept.is_empty(),
        "a pod of the new ReplicaSet ran before the crash"
    );
    same_containers("kubelet-restart", &adopted, &kept);
    assert!(
        first_new < Duration::from_secs(30),
        "kubelet-restart recovery {first_new:?}"
    );
    delete(cluster, &["deployment/rollout"]);
}

/// `node`'s Ready condition status and its taints (`key:effect` each).
fn node_state(cluster: &LocalCluster, node: &str) -> (String, BTreeSet<String>) {
    let out = cluster.kubectl_ok(&[
        "get",
        "node",
        node,
        "-o",
        r#"jsonpath={.status.conditions[?(@.type=="Ready")].status}{"\n"}{range .spec.taints[*]}{.key}:{.effect}{"\n"}{end}"#,
    ]);
    let mut lines = out.lines();
    let ready = lines.next().unwrap_or_default().to_string();
    (ready, lines.map(str::to_string).collect())
}

const UNREACHABLE: &str = "node.kubernetes.io/unreachable:NoExecute";

fn network_cut(cluster: &LocalCluster, node: &str) {
    cluster.apply("cut", &deployment("cut", node, 2, ""));
    let before = serving(cluster, "cut", 2);

    cluster.local_node(&["disconnect", node]);
    let cut = Instant::now();
    let unknown = cluster.eventually(
        &format!("{node} Unknown with the unreachable NoExecute taint"),
        CUT,
        || {
            let (ready, taints) = node_state(cluster, node);
            (ready == "Unknown" && taints.contains(UNREACHABLE)).then(|| cut.elapsed())
        },
        || format!("{:?}", node_state(cluster, node)),
    );
    // As upstream's node lifecycle controller: the pods of a node that stopped reporting
    // are marked not Ready (the Service stops sending them traffic), not deleted.
    cluster.eventually(
        &format!("the pods on {node} marked not Ready"),
        Duration::from_secs(20),
        || {
            cluster
                .pods("cut")
                .iter()
                .all(|p| p.ready == "False" && !p.deleting)
                .then_some(())
        },
        || format!("{:#?}", cluster.pods("cut")),
    );
    std::thread::sleep(CUT.saturating_sub(cut.elapsed()));
    let pods = cluster.pods("cut");
    assert_eq!(
        pods.len(),
        2,
        "nothing evicted or added during the cut: {pods:#?}"
    );

    cluster.local_node(&["connect", node]);
    let back = Instant::now();
    cluster.apply("after-cut", &pod("after-cut", node));
    let after = cluster.eventually(
        &format!("{node} Ready and untainted, its pods Ready again"),
        Duration::from_secs(120),
        || {
            let (ready, taints) = node_state(cluster, node);
            let pods = cluster.pods("cut");
            (ready == "True"
                && !taints.iter().any(|t| t.starts_with("node.kubernetes.io/"))
                && pods.len() == 2
                && pods.iter().all(PodState::serving))
            .then(|| pods.into_iter().map(|p| (p.name.clone(), p)).collect())
        },
        || {
            format!(
                "{:?}\n{:#?}",
                node_state(cluster, node),
                cluster.pods("cut")
            )
        },
    );
    let recovery = back.elapsed();
    cluster.eventually(
        &format!("a pod created on {node} after the cut to run"),
        Duration::from_secs(120),
        || {
            cluster
                .pods("after-cut")
                .first()
                .is_some_and(PodState::serving)
                .then_some(())
        },
        || format!("{:#?}", cluster.pods("after-cut")),
    );
    let new_pod = back.elapsed();
    println!(
        "RECOVERY network-cut: {:.1} s (link restored after {:.0} s to {node} Ready, untainted \
         and its pods Ready; Unknown and tainted {:.1} s into the cut; a pod created at the \
         restore Running after {:.1} s)",
        recovery.as_secs_f64(),
        CUT.as_secs_f64(),
        unknown.as_secs_f64(),
        new_pod.as_secs_f64()
    );
    same_containers("network-cut", &before, &after);
    one_container_each(cluster, &after);
    assert!(
        recovery < Duration::from_secs(30),
        "network-cut recovery {recovery:?}"
    );
    delete(cluster, &["deployment/cut", "pod/after-cut"]);
}
