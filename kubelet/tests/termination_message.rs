//! Component test against a real containerd: a container's termination message comes from
//! the file at `terminationMessagePath` — writable by a non-root user — and, with
//! `FallbackToLogsOnError`, from the tail of the log of a failed container whose file is
//! empty.

mod common;

use common::{pod, Rig};
use kubelet::pod::observed::{ContainerState, ObservedPod};
use kubelet::runtime::{PodInputs, PodRuntime};
use std::time::{Duration, Instant};

async fn wait_exited(rt: &PodRuntime, p: &k8s_openapi::api::core::v1::Pod) -> ObservedPod {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = rt
            .sync_pod(p, false, &PodInputs::default())
            .await
            .expect("sync");
        let names = ["file", "fallback", "success"];
        if names.iter().all(|n| {
            r.observed
                .latest(n, None)
                .is_some_and(|c| c.state == ContainerState::Exited)
        }) {
            return r.observed;
        }
        assert!(Instant::now() < deadline, "containers did not exit: {r:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test]
async fn termination_messages_come_from_the_file_or_the_log() {
    let Some(rig) = Rig::start("termination_messages_come_from_the_file_or_the_log").await else {
        return;
    };
    let rt = &rig.runtime;
    let p = pod(serde_json::json!({
        "metadata": {"name": "term", "namespace": "default", "uid": "uid-termination-msg"},
        "spec": {
            "hostNetwork": true,
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {"name": "file", "image": "busybox:1.35",
                 "command": ["sh", "-c", "echo -n DONE > /dev/termination-custom; exit 3"],
                 "terminationMessagePath": "/dev/termination-custom",
                 "securityContext": {"runAsUser": 1000}},
                {"name": "fallback", "image": "busybox:1.35",
                 "command": ["sh", "-c", "echo first; echo last words; exit 1"],
                 "terminationMessagePolicy": "FallbackToLogsOnError"},
                {"name": "success", "image": "busybox:1.35",
                 "command": ["sh", "-c", "echo not a message"],
                 "terminationMessagePolicy": "FallbackToLogsOnError"}
            ]
        }
    }));
    let observed = wait_exited(rt, &p).await;
    let c = |n: &str| observed.latest(n, None).unwrap().clone();
    let file = c("file");
    assert_eq!(
        (file.exit_code, file.message.as_str()),
        (3, "DONE"),
        "a non-root container writes its message file"
    );
    let fallback = c("fallback");
    assert_eq!(
        (fallback.exit_code, fallback.message.as_str()),
        (1, "first\nlast words\n")
    );
    let success = c("success");
    assert_eq!((success.exit_code, success.message.as_str()), (0, ""));
    rt.remove_pod(&kubelet::runtime::config::pod_ref(&p), &observed)
        .await
        .unwrap();
}
