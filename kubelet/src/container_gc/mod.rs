//! Dead container garbage collection, as upstream's container GC: every minute the
//! kubelet removes the dead containers and sandboxes its policy no longer keeps (see
//! [`policy`]); under disk pressure the eviction manager also asks it to remove the dead
//! containers of pods that are finished for good (upstream's DeleteAllUnusedContainers).
//! Pods deleted from the API are removed whole by the pod manager; their log directories
//! go with the next collection ([`logs`]).

pub mod logs;
pub mod policy;

use crate::cri::{CriHandle, CriService};
use crate::pod::observed::ObservedPod;
use anyhow::Result;
use futures::future::BoxFuture;
use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::Pod;
use policy::{Plan, PodState};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
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

/// Looks a pod up by UID among the pods the kubelet runs.
pub type PodLookupFunc = Arc<dyn Fn(&str) -> Option<Pod> + Send + Sync>;

/// What the kubelet's pod list says of a pod (`None`: not in it); `all_unused` (disk
/// pressure) makes evicted pods removable.
pub fn pod_state(pod: Option<&Pod>, all_unused: bool) -> PodState {
    match pod {
        None => PodState::Unknown,
        Some(p) if all_unused && crate::eviction::is_evicted(p) => PodState::Removable,
        Some(_) => PodState::Active,
    }
}

/// The container garbage collector of one kubelet: the runtime, where pod logs go, and
/// what the kubelet knows of each pod.
pub struct ContainerGc {
    cri: CriHandle,
    pod_logs_dir: PathBuf,
    pod_of: PodLookupFunc,
}

impl ContainerGc {
    /// A collector over `cri`, removing log directories under `pod_logs_dir`, asking
    /// `pod_of` whether a pod is still the kubelet's.
    pub fn new(cri: CriHandle, pod_logs_dir: PathBuf, pod_of: PodLookupFunc) -> Self {
        ContainerGc {
            cri,
            pod_logs_dir,
            pod_of,
        }
    }

    fn state(&self, uid: &str, all_unused: bool) -> PodState {
        pod_state((self.pod_of)(uid).as_ref(), all_unused)
    }

    /// Collects every [`PERIOD`] until `stop`; failures are `ContainerGCFailed` warnings.
    pub async fn run(
        self: Arc<Self>,
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
            let state = |uid: &str| self.state(uid, false);
            if let Err(e) = collect(self.cri.as_ref(), &state).await {
                let msg = format!("{e:#}");
                tracing::warn!(error = %msg, "Container garbage collection failed");
                recorder.node_event(
                    &node_name,
                    crate::events::EventType::Warning,
                    CONTAINER_GC_FAILED,
                    &msg,
                );
            }
            self.collect_logs().await;
        }
    }

    /// Removes the log directories of pods that are gone ([`logs`]).
    async fn collect_logs(&self) {
        let Ok(all) = crate::runtime::observe::observe_all(self.cri.as_ref()).await else {
            return;
        };
        let in_runtime: std::collections::HashSet<String> = all.into_keys().collect();
        let state = |uid: &str| self.state(uid, false);
        match logs::collect(&self.pod_logs_dir, &state, &in_runtime) {
            Ok(removed) if !removed.is_empty() => {
                tracing::info!(dirs = ?removed, "Removed log directories of removed pods")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "Failed to remove pod log directories"),
        }
    }
}

impl crate::eviction::types::ContainerGc for ContainerGc {
    fn delete_all_unused_containers(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let state = |uid: &str| self.state(uid, true);
            collect(self.cri.as_ref(), &state).await.map(|_| ())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cri::fake::FakeCri;
    use crate::eviction::types::ContainerGc as _;
    use crate::runtime::observe;
    use k8s_openapi::api::core::v1::PodStatus;
    use std::collections::HashMap as Map;

    fn evicted() -> Pod {
        Pod {
            status: Some(PodStatus {
                phase: Some("Failed".into()),
                reason: Some("Evicted".into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn pod_state_from_the_kubelets_pods() {
        assert_eq!(pod_state(None, true), PodState::Unknown);
        assert_eq!(pod_state(Some(&Pod::default()), true), PodState::Active);
        assert_eq!(pod_state(Some(&evicted()), false), PodState::Active);
        assert_eq!(pod_state(Some(&evicted()), true), PodState::Removable);
    }

    /// A sandbox with one exited container for pod `uid`, in the fake.
    async fn dead_pod(fake: &FakeCri, uid: &str) -> String {
        let labels: Map<String, String> = crate::cri::labels::PodRef {
            namespace: "default".into(),
            name: uid.into(),
            uid: uid.into(),
        }
        .labels();
        let sandbox = fake
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(cri::PodSandboxConfig {
                    labels: labels.clone(),
                    ..Default::default()
                }),
                runtime_handler: String::new(),
            })
            .await
            .unwrap()
            .pod_sandbox_id;
        let mut labels = labels;
        labels.insert(crate::cri::labels::CONTAINER_NAME.into(), "app".into());
        let id = fake
            .create_container(cri::CreateContainerRequest {
                pod_sandbox_id: sandbox,
                config: Some(cri::ContainerConfig {
                    labels,
                    ..Default::default()
                }),
                sandbox_config: None,
            })
            .await
            .unwrap()
            .container_id;
        fake.exit(&id, 1);
        id
    }

    #[tokio::test]
    async fn under_pressure_the_dead_containers_of_evicted_pods_go() {
        let fake = Arc::new(FakeCri::default());
        let gone = dead_pod(&fake, "evicted").await;
        let kept = dead_pod(&fake, "active").await;
        let unknown = dead_pod(&fake, "unknown").await;
        let pods: Map<String, Pod> = Map::from([
            ("evicted".to_string(), evicted()),
            ("active".to_string(), Pod::default()),
        ]);
        let pod_of: PodLookupFunc = Arc::new(move |uid| pods.get(uid).cloned());
        let gc = ContainerGc::new(fake.clone(), PathBuf::from("/nonexistent"), pod_of);
        gc.delete_all_unused_containers().await.unwrap();
        assert_eq!(fake.calls_of("RemoveContainer"), [gone]);
        let all = observe::observe_all(fake.as_ref()).await.unwrap();
        assert!(all["active"].1.containers.iter().any(|c| c.id == kept));
        assert!(all["unknown"].1.containers.iter().any(|c| c.id == unknown));
        assert!(all["evicted"].1.containers.is_empty());
    }
}
