//! Reading the runtime's state back into [`ObservedPod`]s, keyed by pod UID from the
//! labels the kubelet wrote. This is all the kubelet knows after a restart.

use crate::cri::labels::{self, PodRef};
use crate::cri::CriService;
use crate::pod::observed::{ContainerState, ObservedContainer, ObservedPod, ObservedSandbox};
use crate::runtime::termination_message::{termination_message, HostFiles, MessageSource};
use anyhow::Result;
use k8s_cri::v1 as cri;
use std::collections::HashMap;

fn state(s: i32) -> ContainerState {
    match cri::ContainerState::try_from(s) {
        Ok(cri::ContainerState::ContainerCreated) => ContainerState::Created,
        Ok(cri::ContainerState::ContainerRunning) => ContainerState::Running,
        Ok(cri::ContainerState::ContainerExited) => ContainerState::Exited,
        _ => ContainerState::Unknown,
    }
}

/// Converts one CRI container status into the observed form; an exited container's message
/// is read through `source` (see [`termination_message`]).
pub fn observed_container(
    sandbox_id: &str,
    s: &cri::ContainerStatus,
    source: &impl MessageSource,
) -> ObservedContainer {
    ObservedContainer {
        id: s.id.clone(),
        sandbox_id: sandbox_id.to_string(),
        name: s
            .labels
            .get(labels::CONTAINER_NAME)
            .cloned()
            .or_else(|| s.metadata.as_ref().map(|m| m.name.clone()))
            .unwrap_or_default(),
        restart_count: labels::restart_count(&s.annotations),
        hash: s
            .annotations
            .get(labels::CONTAINER_HASH)
            .cloned()
            .unwrap_or_default(),
        state: state(s.state),
        exit_code: s.exit_code,
        reason: s.reason.clone(),
        message: termination_message(s, source),
        created_at: s.created_at,
        started_at: s.started_at,
        finished_at: s.finished_at,
        image: s
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .unwrap_or_default(),
        image_ref: s.image_ref.clone(),
    }
}

/// One sandbox with its IPs (asked only of ready sandboxes).
async fn observe_sandbox(cri: &dyn CriService, sb: cri::PodSandbox) -> ObservedSandbox {
    let ready = sb.state == cri::PodSandboxState::SandboxReady as i32;
    let mut ips = Vec::new();
    if ready {
        let request = cri::PodSandboxStatusRequest {
            pod_sandbox_id: sb.id.clone(),
            verbose: false,
        };
        let network = cri
            .pod_sandbox_status(request)
            .await
            .ok()
            .and_then(|r| r.status)
            .and_then(|s| s.network);
        if let Some(n) = network {
            ips = std::iter::once(n.ip)
                .chain(n.additional_ips.into_iter().map(|i| i.ip))
                .filter(|ip| !ip.is_empty())
                .collect();
        }
    }
    ObservedSandbox {
        id: sb.id,
        attempt: sb.metadata.map(|m| m.attempt).unwrap_or(0),
        ready,
        created_at: sb.created_at,
        ips,
    }
}

/// Everything the runtime holds for kubelet-managed pods, by pod UID.
pub async fn observe_all(cri: &dyn CriService) -> Result<HashMap<String, (PodRef, ObservedPod)>> {
    let sandboxes = cri
        .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
        .await?
        .items;
    let containers = cri
        .list_containers(cri::ListContainersRequest { filter: None })
        .await?
        .containers;
    let mut pods: HashMap<String, (PodRef, ObservedPod)> = HashMap::new();
    for sb in sandboxes {
        let Some(r) = PodRef::from_labels(&sb.labels) else {
            continue;
        };
        let observed = observe_sandbox(cri, sb).await;
        let entry = pods
            .entry(r.uid.clone())
            .or_insert_with(|| (r, ObservedPod::default()));
        entry.1.sandboxes.push(observed);
    }
    for c in containers {
        let Some(r) = PodRef::from_labels(&c.labels) else {
            continue;
        };
        let status = cri.container_status_of(&c.id).await.ok().flatten();
        let Some(status) = status else { continue };
        let entry = pods
            .entry(r.uid.clone())
            .or_insert_with(|| (r, ObservedPod::default()));
        entry
            .1
            .containers
            .push(observed_container(&c.pod_sandbox_id, &status, &HostFiles));
    }
    for (_, observed) in pods.values_mut() {
        observed
            .sandboxes
            .sort_by_key(|s| std::cmp::Reverse((s.ready, s.attempt, s.created_at)));
    }
    Ok(pods)
}

/// What the runtime holds for one pod.
pub async fn observe_pod(cri: &dyn CriService, uid: &str) -> Result<ObservedPod> {
    // Filtering by label keeps this to one pod's objects.
    let selector = HashMap::from([(labels::POD_UID.to_string(), uid.to_string())]);
    let sandboxes = cri
        .list_pod_sandbox(cri::ListPodSandboxRequest {
            filter: Some(cri::PodSandboxFilter {
                label_selector: selector.clone(),
                ..Default::default()
            }),
        })
        .await?
        .items;
    let containers = cri
        .list_containers(cri::ListContainersRequest {
            filter: Some(cri::ContainerFilter {
                label_selector: selector,
                ..Default::default()
            }),
        })
        .await?
        .containers;
    let mut observed = ObservedPod::default();
    for sb in sandboxes {
        observed.sandboxes.push(observe_sandbox(cri, sb).await);
    }
    for c in containers {
        if let Some(status) = cri.container_status_of(&c.id).await.ok().flatten() {
            observed
                .containers
                .push(observed_container(&c.pod_sandbox_id, &status, &HostFiles));
        }
    }
    observed
        .sandboxes
        .sort_by_key(|s| std::cmp::Reverse((s.ready, s.attempt, s.created_at)));
    Ok(observed)
}
