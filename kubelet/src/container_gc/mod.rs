//! Dead container garbage collection, as upstream's container GC: every minute the
//! kubelet removes the dead containers and sandboxes its policy no longer keeps (see
//! [`policy`]); under disk pressure the eviction manager also asks it to remove the dead
//! containers of pods that are finished for good (upstream's DeleteAllUnusedContainers).
//! Pods deleted from the API are removed whole by the pod manager; their log directories
//! go with the next collection ([`logs`]).

pub mod logs;
pub mod policy;

use crate::cri::CriService;
use crate::pod::observed::ObservedPod;
use anyhow::Result;
use k8s_cri::v1 as cri;
use policy::{Plan, PodState};
use std::collections::HashMap;
use std::time::Duration;

/// Upstream's `ContainerGCPeriod`.
pub const PERIOD: Duration = Duration::from_secs(60);

/// Event reason of a failed collection, as upstream's.
pub const CONTAINER_GC_FAILED: &str = "ContainerGCFailed";

/// Runs the decision over the runtime's current state and removes what it names;
/// `state` tells what the kubelet knows of each pod UID. Returns what was removed.
pub async fn collect(
    cri: &dyn CriService,
    state: &(dyn Fn(&str) -> PodState + Sync),
) -> Result<Plan> {
    let all = crate::runtime::observe::observe_all(cri).await?;
    let pods: HashMap<String, ObservedPod> =
        all.into_iter().map(|(uid, (_, o))| (uid, o)).collect();
    let plan = policy::plan(&pods, state);
    let mut done = Plan::default();
    let mut errors = Vec::new();
    for id in &plan.containers {
        match cri
            .remove_container(cri::RemoveContainerRequest {
                container_id: id.clone(),
            })
            .await
        {
            Ok(_) => done.containers.push(id.clone()),
            Err(e) => errors.push(format!("failed to remove container {id}: {}", e.message())),
        }
    }
    for id in &plan.sandboxes {
        match cri
            .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: id.clone(),
            })
            .await
        {
            Ok(_) => done.sandboxes.push(id.clone()),
            Err(e) => errors.push(format!("failed to remove sandbox {id}: {}", e.message())),
        }
    }
    if !errors.is_empty() {
        anyhow::bail!("{}", errors.join("; "));
    }
    if !done.containers.is_empty() || !done.sandboxes.is_empty() {
        tracing::info!(containers = ?done.containers, sandboxes = ?done.sandboxes, "Removed dead containers");
    }
    Ok(done)
}

/// What the kubelet's pod list says of `uid`: `all_unused` (disk pressure) makes evicted
/// pods removable.
pub fn pod_state(shared: &crate::manager::Shared, uid: &str, all_unused: bool) -> PodState {
    let pods = shared.pods.lock().expect("pods lock");
    match pods.get(uid) {
        None => PodState::Unknown,
        Some(p) if all_unused && crate::eviction::is_evicted(p) => PodState::Removable,
        Some(_) => PodState::Active,
    }
}

/// Collects every [`PERIOD`] until `stop`; failures are `ContainerGCFailed` warnings.
pub async fn run(
    shared: std::sync::Arc<crate::manager::Shared>,
    recorder: crate::events::Recorder,
    node_name: String,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut tick = tokio::time::interval(PERIOD);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let state = |uid: &str| pod_state(&shared, uid, false);
        if let Err(e) = collect(shared.runtime.cri.as_ref(), &state).await {
            let msg = format!("{e:#}");
            tracing::warn!(error = %msg, "Container garbage collection failed");
            recorder.node_event(
                &node_name,
                crate::events::EventType::Warning,
                CONTAINER_GC_FAILED,
                &msg,
            );
        }
        collect_logs(&shared).await;
    }
}

/// Removes the log directories of pods that are gone ([`logs`]).
async fn collect_logs(shared: &crate::manager::Shared) {
    let Ok(all) = crate::runtime::observe::observe_all(shared.runtime.cri.as_ref()).await else {
        return;
    };
    let in_runtime: std::collections::HashSet<String> = all.into_keys().collect();
    let state = |uid: &str| pod_state(shared, uid, false);
    match logs::collect(&shared.runtime.ctx.pod_logs_dir, &state, &in_runtime) {
        Ok(removed) if !removed.is_empty() => {
            tracing::info!(dirs = ?removed, "Removed log directories of removed pods")
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "Failed to remove pod log directories"),
    }
}
