//! Shared by the `workload_*` e2e tests (included with `#[path]`): the controller manager as
//! a process, and a fake kubelet that reports pods Running/Ready through the status
//! subresource, as a real kubelet would.
#![allow(dead_code)]

use std::time::Duration;

use e2e::components::{controller_manager_args, KUBE_CONTROLLER_MANAGER};
use e2e::{ManagedProcess, TestCluster};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use tokio_util::sync::CancellationToken;

/// Starts the controller manager with `controllers` (plus the serviceaccount controller,
/// without which pods are refused).
pub fn start_kcm(cluster: &TestCluster, controllers: &str) -> ManagedProcess {
    let port = e2e::ports::free_port().expect("free port");
    let mut args = controller_manager_args(cluster, port, false).expect("kcm args");
    args.push(format!("--controllers=serviceaccount,{controllers}"));
    args.push("--v=2".into());
    args.push("--use-service-account-credentials=true".into());
    cluster
        .spawn_component(KUBE_CONTROLLER_MANAGER, &args)
        .expect("start kube-controller-manager")
}

/// Polls `check` every 200ms for up to `timeout`, failing with the manager's log tail.
pub async fn eventually<T, F, Fut>(
    what: &str,
    timeout: Duration,
    kcm: &mut ManagedProcess,
    check: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    match e2e::wait::until_running(what, timeout, Duration::from_millis(200), &mut [kcm], check)
        .await
    {
        Ok(v) => v,
        Err(e) => panic!("{e:#}"),
    }
}

/// What the fake kubelet does with a new pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Running and Ready.
    Ready,
    /// Running and Ready, then Succeeded.
    Succeed,
    /// Failed with exit code 1.
    Fail,
}

/// Pretends to be the kubelet of every node in `namespace` until `stop`: each pod without a
/// phase gets `decide(pod)` written to its status.
pub fn fake_kubelet(
    client: kube::Client,
    namespace: &str,
    stop: CancellationToken,
    decide: impl Fn(&Pod) -> Option<Outcome> + Send + 'static,
) {
    let api: Api<Pod> = Api::namespaced(client, namespace);
    tokio::spawn(async move {
        while !stop.is_cancelled() {
            if let Ok(list) = api.list(&ListParams::default()).await {
                for p in list.items {
                    let phase = p.status.as_ref().and_then(|s| s.phase.clone());
                    if p.metadata.deletion_timestamp.is_some()
                        || matches!(phase.as_deref(), Some("Running" | "Succeeded" | "Failed"))
                    {
                        continue;
                    }
                    let Some(outcome) = decide(&p) else { continue };
                    let _ = api
                        .patch_status(
                            &p.name_any(),
                            &PatchParams::default(),
                            &Patch::Merge(status_for(outcome)),
                        )
                        .await;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
}

/// The pod status a kubelet reports for `outcome`.
pub fn status_for(outcome: Outcome) -> serde_json::Value {
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let cond =
        |t: &str, s: &str| serde_json::json!({"type": t, "status": s, "lastTransitionTime": now});
    match outcome {
        Outcome::Ready => serde_json::json!({"status": {"phase": "Running", "startTime": now,
            "conditions": [cond("Ready", "True"), cond("ContainersReady", "True")]}}),
        Outcome::Succeed => serde_json::json!({"status": {"phase": "Succeeded", "startTime": now,
            "conditions": [cond("Ready", "False")],
            "containerStatuses": [{"name": "c", "image": "busybox", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": now, "finishedAt": now}}}]}}),
        Outcome::Fail => serde_json::json!({"status": {"phase": "Failed", "startTime": now,
            "conditions": [cond("Ready", "False")],
            "containerStatuses": [{"name": "c", "image": "busybox", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 1, "reason": "Error", "startedAt": now, "finishedAt": now}}}]}}),
    }
}

/// Runs kubectl, failing the test on a non-zero exit.
pub fn kubectl(cluster: &TestCluster, args: &[&str]) -> String {
    let out = cluster.kubectl(args).expect("kubectl");
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
