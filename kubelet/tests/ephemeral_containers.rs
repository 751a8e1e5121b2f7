//! e2e: ephemeral containers (`kubectl debug`), as upstream's conformance specs use them.
//! One added through the `ephemeralcontainers` subresource to a running pod starts in its
//! sandbox — with stdin and a TTY, sharing the process namespace of its target container —
//! reports its own status, answers `kubectl exec -c` and `kubectl logs -c`; a second one
//! added later starts too, and neither is restarted when it exits.

#[macro_use]
mod common;

use common::process::{wait, KubeletProcess};
use common::{create_pod, default_pods, delete_pod_and_wait_gone, wait_pod_phase};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use kube::api::{Api, Patch, PatchParams};
use std::time::Duration;

async fn ephemeral_status(pods: &Api<Pod>, name: &str) -> Option<ContainerStatus> {
    let pod = pods.get("debug-me").await.ok()?;
    pod.status?
        .ephemeral_container_statuses?
        .into_iter()
        .find(|s| s.name == name)
}

async fn add_ephemeral(pods: &Api<Pod>, container: serde_json::Value) {
    let mut pod = pods.get_ephemeral_containers("debug-me").await.unwrap();
    let spec = pod.spec.as_mut().unwrap();
    spec.ephemeral_containers
        .get_or_insert_with(Vec::new)
        .push(serde_json::from_value(container).unwrap());
    let patch = serde_json::json!({"spec": {"ephemeralContainers": spec.ephemeral_containers}});
    pods.patch_ephemeral_containers(
        "debug-me",
        &PatchParams::default(),
        &Patch::Strategic(patch),
    )
    .await
    .expect("add an ephemeral container");
}

#[tokio::test]
async fn ephemeral_containers_start_once_and_answer_exec_and_logs() {
    let (cluster, containerd) = cluster_and_containerd_or_skip!();
    let kubelet = KubeletProcess::builder(&cluster, &containerd, "eph")
        .webhook_auth()
        .start();
    let client = cluster.client();
    let pods = default_pods(&client).await;
    create_pod(
        &pods,
        serde_json::json!({
            "metadata": {"name": "debug-me"},
            "spec": {
                "nodeName": kubelet.node_name, "hostNetwork": true,
                "automountServiceAccountToken": false, "terminationGracePeriodSeconds": 1,
                "containers": [{"name": "app", "image": "busybox:1.35",
                    "command": ["/bin/sleep"], "args": ["10000"]}]
            }
        }),
    )
    .await;
    wait_pod_phase(&pods, "debug-me", "Running", Duration::from_secs(60)).await;

    add_ephemeral(
        &pods,
        serde_json::json!({"name": "debugger", "image": "busybox:1.35",
            "command": ["/bin/sh", "-c", "while true; do echo polo; sleep 1; done"],
            "stdin": true, "tty": true, "targetContainerName": "app"}),
    )
    .await;
    let status = wait("debugger running", Duration::from_secs(60), || async {
        ephemeral_status(&pods, "debugger")
            .await
            .filter(|s| s.state.as_ref().is_some_and(|st| st.running.is_some()))
    })
    .await;
    assert!(!status.ready, "ephemeral containers are never ready");
    assert!(status.container_id.is_some());

    let exec = |args: &[&str]| {
        let out = cluster.kubectl(args).unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(
        exec(&[
            "exec",
            "debug-me",
            "-c",
            "debugger",
            "--",
            "/bin/echo",
            "marco"
        ]),
        "marco\n"
    );
    // It sees the target's processes: PID 1 of its namespace is the target's sleep.
    let init = exec(&[
        "exec",
        "debug-me",
        "-c",
        "debugger",
        "--",
        "cat",
        "/proc/1/cmdline",
    ]);
    assert!(init.starts_with("/bin/sleep"), "{init:?}");
    let logs = wait("polo in the logs", Duration::from_secs(20), || async {
        let out = cluster
            .kubectl(&["logs", "debug-me", "-c", "debugger"])
            .ok()?;
        let s = String::from_utf8_lossy(&out.stdout).into_owned();
        s.contains("polo").then_some(s)
    })
    .await;
    assert!(logs.contains("polo"), "{logs}");

    // A second one, which exits at once, runs once and is not restarted.
    add_ephemeral(
        &pods,
        serde_json::json!({"name": "debugger2", "image": "busybox:1.35",
            "command": ["sh", "-c", "echo once; exit 2"]}),
    )
    .await;
    let done = wait("debugger2 exited", Duration::from_secs(60), || async {
        let s = ephemeral_status(&pods, "debugger2").await?;
        s.state?.terminated
    })
    .await;
    assert_eq!(done.exit_code, 2);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = ephemeral_status(&pods, "debugger2").await.unwrap();
    assert_eq!(after.restart_count, 0);
    assert_eq!(
        after
            .state
            .and_then(|s| s.terminated)
            .map(|t| t.container_id),
        Some(done.container_id),
        "the same run, not a new one"
    );
    let pod = pods.get("debug-me").await.unwrap();
    let pod_status = pod.status.unwrap();
    let app = &pod_status.container_statuses.unwrap()[0];
    assert_eq!(app.restart_count, 0, "the app container was left alone");
    assert_eq!(pod_status.phase.as_deref(), Some("Running"));

    delete_pod_and_wait_gone(&pods, "debug-me", Duration::from_secs(30)).await;
    kubelet.stop();
}
