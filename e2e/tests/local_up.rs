//! The operator's path, end to end: `hack/local-up.sh` brings up the upstream apiserver with
//! every ferrokube component on this machine as its node, then what the issues' "Done means"
//! ask of it is checked with kubectl as a user would: a Deployment's pods run, a ClusterIP
//! answers from the host, a kubelet restart changes no container, `kubectl rollout restart`
//! rolls out. `hack/local-down.sh` stops it all, whatever the outcome.
//!
//! Needs root, containerd and the control-plane assets; skips loudly otherwise. The cluster
//! is an [`e2e::local_cluster::LocalCluster`]: it waits for any other local cluster on this
//! machine to finish, and skips when one keeps running.

use std::collections::BTreeSet;
use std::time::Duration;

use e2e::local_cluster::{http_get, LocalCluster, UpError};

#[test]
fn local_up_runs_a_deployment_behind_a_service() {
    let cluster = match LocalCluster::up(Duration::from_secs(90)) {
        Ok(c) => c,
        Err(UpError::Skip(why)) => e2e::skip_test!("{why}"),
        Err(UpError::Failed(why)) => panic!("{why}"),
    };
    let no_context = String::new;
    cluster.wait_node_ready("the node to be Ready", Duration::from_secs(60));

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
        || (cluster.running("web").len() == 3).then_some(()),
        no_context,
    );
    let pod = &cluster.running("web")[0];
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
    let cluster_ip = cluster.expose_httpd(2);
    // busybox httpd serves the pod's /etc: /hostname names the backend that answered.
    let backends = cluster.running("httpd");
    let mut answered = BTreeSet::new();
    cluster.eventually(
        &format!("both httpd backends {backends:?} to answer http://{cluster_ip}/hostname (so far {answered:?})"),
        Duration::from_secs(180),
        || {
            if let Some(name) = http_get(&cluster_ip, 80, "/hostname") {
                answered.insert(name);
            }
            (answered.len() == 2).then_some(())
        },
        no_context,
    );
    let answered_names: Vec<String> = answered.into_iter().collect();
    let mut expected = cluster.running("httpd");
    expected.sort();
    assert_eq!(
        answered_names, expected,
        "the Service answered from pods that are not its backends"
    );

    // A DaemonSet covers the node: its pod is placed by our scheduler, run by our kubelet.
    cluster.create_agent_daemonset();
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
        no_context,
    );
    assert_eq!(cluster.running("agent").len(), 1, "one agent pod Running");

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
    cluster.eventually(
        "pod logger to succeed",
        Duration::from_secs(120),
        || {
            let phase =
                cluster.kubectl(&["get", "pod", "logger", "-o", "jsonpath={.status.phase}"]);
            (String::from_utf8_lossy(&phase.stdout) == "Succeeded").then_some(())
        },
        no_context,
    );
    let logs = cluster.kubectl_ok(&["logs", "logger"]);
    assert_eq!(logs.trim(), "line-one\nline-two", "kubectl logs logger");
    let tail = cluster.kubectl_ok(&["logs", "logger", "--tail=1"]);
    assert_eq!(tail.trim(), "line-two", "kubectl logs --tail=1 logger");

    // Issue 6's: a kubelet restart changes no container.
    let before = cluster.containers("web");
    assert_eq!(before.len(), 3, "{before:?}");
    cluster.restart_kubelet();
    std::thread::sleep(Duration::from_secs(15));
    cluster.wait_node_ready(
        "the node Ready after the kubelet restart",
        Duration::from_secs(60),
    );
    let after = cluster.containers("web");
    assert_eq!(before, after, "the kubelet restart changed containers");

    // Issue 4's: `kubectl rollout restart` replaces every pod and the rollout completes.
    cluster.kubectl_ok(&["rollout", "restart", "deployment/web"]);
    cluster.kubectl_ok(&["rollout", "status", "deployment/web", "--timeout=180s"]);
    cluster.eventually(
        "3 new Running pods",
        Duration::from_secs(120),
        || {
            let now = cluster.running("web");
            (now.len() == 3 && now.iter().all(|p| !before.contains_key(p))).then_some(())
        },
        no_context,
    );
}
