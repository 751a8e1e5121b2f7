//! One worker per pod: mounts volumes, resolves the environment, syncs the pod through the
//! runtime, keeps one probe worker per container and probe, writes its status when it
//! changed (probe results wake it), and on deletion stops it gracefully, cleans it up and
//! removes it from the API.

use super::inputs::env_sources;
use super::Shared;
use crate::events::{reason, EventType, Recorder};
use crate::pod::deadline;
use crate::pod::status::{overridden, pod_status, status_changed, StatusInputs};
use crate::prober::PodProbes;
use crate::runtime::{observe, PodInputs, SyncResult};
use k8s_openapi::api::core::v1::{Pod, PodStatus};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};

/// How often a pod is synced without any event (upstream's resync is 1m; events from the
/// runtime relist wake workers sooner).
const RESYNC: Duration = Duration::from_secs(10);

/// Runs the worker until the pod is gone from the API and the node.
pub async fn run(
    shared: Arc<Shared>,
    uid: String,
    mut rx: watch::Receiver<Option<Pod>>,
    mut evict: watch::Receiver<Option<i64>>,
    wake: Arc<Notify>,
) {
    let start_time = Timestamp::now();
    let first_seen = std::time::Instant::now();
    let mut last_phase: Option<String> = None;
    let mut last_written: Option<PodStatus> = None;
    // The pod's resourceVersion as held when its status was last written.
    let mut written_at: Option<String> = None;
    let mut deadline_reported = false;
    let node_name = rx
        .borrow()
        .as_ref()
        .and_then(|p| p.spec.as_ref())
        .and_then(|s| s.node_name.clone())
        .unwrap_or_default();
    let recorder = Recorder::new(shared.client.clone(), &node_name);
    let mut probes = PodProbes::new(shared.runtime.cri.clone(), recorder.clone(), wake.clone());
    loop {
        let current = rx.borrow_and_update().clone();
        let Some(pod) = current else {
            // Gone from the API (force-deleted): stop and clean up without a grace period.
            probes.stop_all();
            cleanup(&shared, &uid, None).await;
            return;
        };
        let eviction = *evict.borrow_and_update();
        if let Some(grace) = eviction {
            probes.stop_all();
            evict_pod(&shared, &pod, grace, &recorder).await;
            cleanup(&shared, &uid, None).await;
            return;
        }
        let deleting = pod.metadata.deletion_timestamp.is_some();
        // Past activeDeadlineSeconds the pod is stopped (and left Failed) as if terminating.
        let deadline_exceeded =
            deadline::past_active_deadline(&pod, Some(start_time), Timestamp::now());
        let terminating = deleting || deadline_exceeded;
        let (result, mount_error) = sync_once(&shared, &pod, terminating, &probes, &recorder).await;
        if let Some(e) = &mount_error {
            recorder.pod_event(&pod, None, EventType::Warning, reason::FAILED_MOUNT, e);
        }
        let requeue = result.requeue_after;
        let pod_ip = pod_ip(&pod, &result, &shared.host_ips);
        probes.sync(&pod, &result.observed, &pod_ip, terminating);
        let inputs = StatusInputs {
            waiting: result.waiting.clone(),
            host_ips: shared.host_ips.clone(),
            start_time: Some(start_time),
            runtime_name: shared.runtime_name.clone(),
            mount_error: mount_error.clone(),
            probes: probes.health(),
            deadline_exceeded,
            pod_is_terminal: deleting && stopped(&result),
        };
        let status = pod_status(&pod, &result.observed, &inputs, Timestamp::now());
        let phase = status.phase.clone().unwrap_or_default();
        if status.reason.as_deref() == Some(deadline::REASON) && !deadline_reported {
            deadline_reported = true;
            recorder.pod_event(
                &pod,
                None,
                EventType::Normal,
                deadline::REASON,
                deadline::MESSAGE,
            );
        }
        let terminal = matches!(phase.as_str(), "Succeeded" | "Failed");
        if !terminal && crate::metrics::records_pod_start(last_phase.as_deref(), &phase) {
            crate::metrics::observe_pod_start(first_seen.elapsed().as_secs_f64());
        }
        last_phase = Some(phase);
        let previous = last_written
            .clone()
            .or(pod.status.clone())
            .unwrap_or_default();
        // The API's copy is compared only once it is newer than the one held at the last
        // write, so a watch that has not yet brought that write back causes no second one.
        let api_newer = written_at.as_deref() != pod.metadata.resource_version.as_deref();
        let overridden_by_others =
            api_newer && pod.status.as_ref().is_some_and(|s| overridden(s, &status));
        if overridden_by_others || status_changed(&previous, &status) {
            match write_status(&shared, &pod, &status).await {
                Ok(true) => {
                    last_written = Some(status);
                    written_at = pod.metadata.resource_version.clone();
                }
                Ok(false) => {} // a static pod without a current mirror: try again next sync
                Err(e) => {
                    tracing::warn!(pod = ?pod.metadata.name, error = %e, "Failed to update pod status")
                }
            }
        }
        if deleting && stopped(&result) {
            cleanup(&shared, &uid, Some(&result)).await;
            delete_from_api(&shared.client, &pod).await;
            return;
        }
        let wait = if mount_error.is_some() {
            Duration::from_secs(2)
        } else {
            let deadline = deadline::time_left(&pod, Some(start_time), Timestamp::now())
                .filter(|left| !left.is_zero())
                .unwrap_or(RESYNC);
            requeue.unwrap_or(RESYNC).min(RESYNC).min(deadline)
        };
        tokio::select! {
            changed = rx.changed() => if changed.is_err() { return },
            changed = evict.changed() => if changed.is_err() { return },
            _ = wake.notified() => {},
            _ = tokio::time::sleep(wait) => {},
        }
    }
}

/// Whether nothing of the pod runs any more: no container, no ready sandbox.
fn stopped(result: &SyncResult) -> bool {
    !result.observed.any_running() && result.observed.sandboxes.iter().all(|s| !s.ready)
}

/// The IP probes and hooks address: the node's for hostNetwork pods, else the sandbox's.
fn pod_ip(pod: &Pod, result: &SyncResult, host_ips: &[String]) -> String {
    let host_network = pod
        .spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false);
    let sandbox_ip = result
        .observed
        .sandbox()
        .filter(|s| s.ready)
        .and_then(|s| s.ips.first());
    match (host_network, sandbox_ip) {
        (false, Some(ip)) => ip.clone(),
        _ => host_ips.first().cloned().unwrap_or_default(),
    }
}

/// Prepares inputs and syncs once; a volume that cannot be mounted holds the pod back.
async fn sync_once(
    shared: &Shared,
    pod: &Pod,
    terminating: bool,
    probes: &PodProbes,
    recorder: &Recorder,
) -> (SyncResult, Option<String>) {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let mut inputs = PodInputs {
        recorder: recorder.clone(),
        host_ips: shared.host_ips.clone(),
        ..Default::default()
    };
    if !terminating {
        inputs.unhealthy = probes.kills(pod);
    }
    if !terminating {
        let pod_dir = shared.runtime.pod_dir(&uid);
        match crate::volumes::setup(pod, &pod_dir, shared.volumes.as_ref(), &shared.allocatable)
            .await
        {
            Ok(v) => inputs.volumes = v,
            Err(e) => {
                tracing::warn!(pod = ?pod.metadata.name, error = %e, "Unable to mount volumes");
                let observed = observe::observe_pod(shared.runtime.cri.as_ref(), &uid)
                    .await
                    .unwrap_or_default();
                return (
                    SyncResult {
                        observed,
                        ..Default::default()
                    },
                    Some(e.to_string()),
                );
            }
        }
        inputs.env = env_sources(&shared.client, pod, &shared.host_ips, shared.allocatable).await;
        inputs.runtime_handler = crate::runtime::runtime_class::handler(&shared.client, pod).await;
    }
    match shared.runtime.sync_pod(pod, terminating, &inputs).await {
        Ok(r) => (r, None),
        Err(e) => {
            tracing::warn!(pod = ?pod.metadata.name, error = %format!("{e:#}"), "Error syncing pod, skipping");
            let observed = observe::observe_pod(shared.runtime.cri.as_ref(), &uid)
                .await
                .unwrap_or_default();
            (
                SyncResult {
                    observed,
                    requeue_after: Some(Duration::from_secs(2)),
                    ..Default::default()
                },
                None,
            )
        }
    }
}

/// Patches `status` onto the pod, or onto a static pod's current mirror pod (as upstream's
/// status manager); `false` when a static pod has no current mirror yet.
async fn write_status(shared: &Shared, pod: &Pod, status: &PodStatus) -> kube::Result<bool> {
    let Some(uid) = shared.mirrors.status_uid(pod) else {
        return Ok(false);
    };
    let api: Api<Pod> = Api::namespaced(
        shared.client.clone(),
        pod.metadata.namespace.as_deref().unwrap_or_default(),
    );
    let patch = serde_json::json!({
        "metadata": {"uid": uid},
        "status": status,
    });
    // A strategic merge, as upstream's status manager: conditions merge by type, so one
    // another component added since our copy of the pod is not dropped.
    api.patch_status(
        pod.metadata.name.as_deref().unwrap_or_default(),
        &PatchParams::default(),
        &Patch::Strategic(&patch),
    )
    .await?;
    Ok(true)
}

/// Stops an evicted pod within `grace` seconds (preStop hooks and Killing events as for
/// any kill); the pod manager then leaves it Failed/Evicted.
async fn evict_pod(shared: &Shared, pod: &Pod, grace: i64, recorder: &Recorder) {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let observed = observe::observe_pod(shared.runtime.cri.as_ref(), &uid)
        .await
        .unwrap_or_default();
    let inputs = PodInputs {
        recorder: recorder.clone(),
        host_ips: shared.host_ips.clone(),
        ..Default::default()
    };
    tracing::info!(pod = ?pod.metadata.name, grace_period = grace, "Killing evicted pod");
    if let Err(e) = shared
        .runtime
        .kill_pod_with(pod, &observed, grace, &inputs)
        .await
    {
        tracing::warn!(pod = ?pod.metadata.name, error = %format!("{e:#}"), "Failed to stop evicted pod");
    }
}

/// Stops whatever still runs and removes the pod's runtime objects, cgroup and directory.
async fn cleanup(shared: &Shared, uid: &str, last: Option<&SyncResult>) {
    let observed = match last {
        Some(r) => r.observed.clone(),
        None => observe::observe_pod(shared.runtime.cri.as_ref(), uid)
            .await
            .unwrap_or_default(),
    };
    let pod_ref = shared.pod_ref_of(uid);
    let placeholder = Pod::default();
    if let Err(e) = shared.runtime.kill_pod(&placeholder, &observed, 0).await {
        tracing::warn!(uid, error = %e, "Failed to stop pod");
    }
    let observed = observe::observe_pod(shared.runtime.cri.as_ref(), uid)
        .await
        .unwrap_or(observed);
    if let Err(e) = shared.runtime.remove_pod(&pod_ref, &observed).await {
        tracing::warn!(uid, error = %format!("{e:#}"), "Failed to remove pod");
    }
}

/// Finishes a graceful deletion, as upstream's status manager does once the pod stopped.
async fn delete_from_api(client: &kube::Client, pod: &Pod) {
    let api: Api<Pod> = Api::namespaced(
        client.clone(),
        pod.metadata.namespace.as_deref().unwrap_or_default(),
    );
    let dp = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: pod.metadata.uid.clone(),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api
        .delete(pod.metadata.name.as_deref().unwrap_or_default(), &dp)
        .await
    {
        Ok(_) => {
            tracing::info!(pod = ?pod.metadata.name, "Pod deleted from the API after stopping")
        }
        Err(e) if api_helpers::errors::is_not_found(&e) || api_helpers::errors::is_conflict(&e) => {
        }
        Err(e) => tracing::warn!(pod = ?pod.metadata.name, error = %e, "Failed to delete pod"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::observed::{ObservedPod, ObservedSandbox};
    use k8s_openapi::api::core::v1::PodSpec;

    fn result(ready: bool, ips: &[&str]) -> SyncResult {
        SyncResult {
            observed: ObservedPod {
                sandboxes: vec![ObservedSandbox {
                    id: "sb".into(),
                    attempt: 0,
                    ready,
                    created_at: 1,
                    ips: ips.iter().map(|s| s.to_string()).collect(),
                }],
                containers: vec![],
            },
            ..Default::default()
        }
    }

    #[test]
    fn probes_aim_at_the_sandbox_ip_or_the_nodes() {
        let host = vec!["192.168.0.2".to_string()];
        let pod = Pod::default();
        assert_eq!(
            pod_ip(&pod, &result(true, &["10.0.0.7"]), &host),
            "10.0.0.7"
        );
        // A sandbox that is not ready has no address to probe yet.
        assert_eq!(
            pod_ip(&pod, &result(false, &["10.0.0.7"]), &host),
            "192.168.0.2"
        );
        let host_network = Pod {
            spec: Some(PodSpec {
                host_network: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            pod_ip(&host_network, &result(true, &["10.0.0.7"]), &host),
            "192.168.0.2"
        );
    }

    #[test]
    fn a_pod_is_stopped_once_no_sandbox_is_ready_and_nothing_runs() {
        assert!(!stopped(&result(true, &[])));
        assert!(stopped(&result(false, &[])));
        assert!(stopped(&SyncResult::default()));
    }
}
