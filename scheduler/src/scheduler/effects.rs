//! What the scheduler writes to the API besides bindings: events, the PodScheduled
//! condition, nominatedNodeName, and preemption victims' deletion.

use std::collections::HashMap;
use std::sync::Arc;

use component_base::events::{EventRecorder, EventSpec, EventType};
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use tokio::sync::mpsc;

use crate::snapshot::PodInfo;

/// Upstream's condition reason for pods no node fits.
pub const REASON_UNSCHEDULABLE: &str = "Unschedulable";
/// Upstream's condition reason for internal errors.
pub const REASON_SCHEDULER_ERROR: &str = "SchedulerError";

/// One thing to write.
#[derive(Debug)]
pub enum Effect {
    /// Record an event through the profile's recorder.
    Event {
        /// schedulerName of the profile.
        profile: String,
        /// The event.
        spec: Box<EventSpec>,
    },
    /// Patch PodScheduled=False (and nominatedNodeName) on the pod's status.
    Unschedulable {
        /// The pod.
        pod: Arc<PodInfo>,
        /// Unschedulable or SchedulerError.
        reason: &'static str,
        /// The FailedScheduling message.
        message: String,
        /// New nominatedNodeName (Some("") clears it).
        nominated: Option<String>,
    },
    /// Delete a preemption victim.
    Evict {
        /// The victim.
        victim: Arc<PodInfo>,
        /// The preemptor.
        preemptor: Arc<PodInfo>,
        /// The node.
        node: String,
        /// schedulerName of the preemptor's profile.
        profile: String,
    },
}

/// A reference to a pod, for events.
pub fn pod_ref(p: &PodInfo) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: Some(p.name.clone()),
        namespace: Some(p.namespace.clone()),
        uid: p.pod.metadata.uid.clone(),
        resource_version: p.pod.metadata.resource_version.clone(),
        ..Default::default()
    }
}

/// The Scheduled event of upstream.
pub fn scheduled_event(p: &PodInfo, node: &str) -> EventSpec {
    EventSpec {
        regarding: pod_ref(p),
        related: None,
        type_: EventType::Normal,
        reason: "Scheduled".into(),
        action: "Binding".into(),
        note: format!("Successfully assigned {} to {node}", p.key()),
    }
}

/// The FailedScheduling event of upstream.
pub fn failed_event(p: &PodInfo, message: &str) -> EventSpec {
    EventSpec {
        regarding: pod_ref(p),
        related: None,
        type_: EventType::Warning,
        reason: "FailedScheduling".into(),
        action: "Scheduling".into(),
        note: message.to_string(),
    }
}

/// Whether the pod already carries this PodScheduled=False condition (upstream skips the
/// status update then).
pub fn condition_unchanged(
    pod: &Pod,
    reason: &str,
    message: &str,
    nominated: &Option<String>,
) -> bool {
    let status = pod.status.as_ref();
    let same_cond = status
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.type_ == "PodScheduled"
                    && c.status == "False"
                    && c.reason.as_deref() == Some(reason)
                    && c.message.as_deref() == Some(message)
            })
        });
    let current = status
        .and_then(|s| s.nominated_node_name.clone())
        .unwrap_or_default();
    same_cond && nominated.as_ref().is_none_or(|n| *n == current)
}

/// Event and status writes allowed in flight at once.
pub const MAX_WRITES_IN_FLIGHT: usize = 32;

/// Starts the writer task; returns the channel to send effects to. Events are dropped
/// (with a log) when the channel is full, as upstream's broadcaster drops under load.
pub fn start(
    client: kube::Client,
    recorders: HashMap<String, EventRecorder>,
) -> mpsc::Sender<Effect> {
    let (tx, mut rx) = mpsc::channel::<Effect>(4096);
    // Bounded concurrency keeps HTTP/1.1 connections few and reused.
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_WRITES_IN_FLIGHT));
    tokio::spawn(async move {
        while let Some(e) = rx.recv().await {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            let client = client.clone();
            let recorder = match &e {
                Effect::Event { profile, .. } | Effect::Evict { profile, .. } => {
                    recorders.get(profile).cloned()
                }
                Effect::Unschedulable { .. } => None,
            };
            tokio::spawn(async move {
                apply(client, recorder, e).await;
                drop(permit);
            });
        }
    });
    tx
}

async fn apply(client: kube::Client, recorder: Option<EventRecorder>, e: Effect) {
    match e {
        Effect::Event { spec, .. } => {
            if let Some(r) = recorder {
                r.record(*spec).await;
            }
        }
        Effect::Unschedulable {
            pod,
            reason,
            message,
            nominated,
        } => {
            if condition_unchanged(&pod.pod, reason, &message, &nominated) {
                return;
            }
            let api: Api<Pod> = Api::namespaced(client, &pod.namespace);
            let mut status = serde_json::json!({"conditions": [{
                "type": "PodScheduled", "status": "False", "reason": reason, "message": message,
                "lastTransitionTime": k8s_openapi::jiff::Timestamp::now().to_string(),
            }]});
            if let Some(n) = nominated {
                status["nominatedNodeName"] = if n.is_empty() {
                    serde_json::Value::Null
                } else {
                    n.into()
                };
            }
            let patch = serde_json::json!({"status": status});
            if let Err(err) = api
                .patch_status(
                    &pod.name,
                    &PatchParams::default(),
                    &Patch::Strategic(&patch),
                )
                .await
            {
                tracing::warn!(pod = %pod.key(), error = %err, "Error updating pod status");
            }
        }
        Effect::Evict {
            victim,
            preemptor,
            node,
            ..
        } => {
            let api: Api<Pod> = Api::namespaced(client, &victim.namespace);
            let cond = serde_json::json!({"status": {"conditions": [{
                "type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler",
                "message": format!("{}: preempting to accommodate a higher priority pod", preemptor.pod.spec.as_ref().and_then(|s| s.scheduler_name.clone()).unwrap_or_else(|| "default-scheduler".into())),
                "lastTransitionTime": k8s_openapi::jiff::Timestamp::now().to_string(),
            }]}});
            let _ = api
                .patch_status(
                    &victim.name,
                    &PatchParams::default(),
                    &Patch::Strategic(&cond),
                )
                .await;
            match api.delete(&victim.name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(e) if api_helpers::errors::is_not_found(&e) => {}
                Err(err) => {
                    tracing::warn!(victim = %victim.key(), error = %err, "Error deleting preemption victim")
                }
            }
            if let Some(r) = recorder {
                let mut spec = EventSpec {
                    regarding: pod_ref(&victim),
                    related: Some(pod_ref(&preemptor)),
                    type_: EventType::Normal,
                    reason: "Preempted".into(),
                    action: "Preempting".into(),
                    note: format!(
                        "Preempted by pod {} on node {node}",
                        preemptor.pod.metadata.uid.clone().unwrap_or_default()
                    ),
                };
                spec.related = Some(pod_ref(&preemptor));
                r.record(spec).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testutil::pod;
    use serde_json::json;

    #[test]
    fn event_texts_match_upstream() {
        let p = pod("web", json!({}));
        let e = scheduled_event(&p, "n1");
        assert_eq!(
            (e.reason.as_str(), e.action.as_str()),
            ("Scheduled", "Binding")
        );
        assert_eq!(e.note, "Successfully assigned default/web to n1");
        let f = failed_event(&p, "0/1 nodes are available: 1 Insufficient cpu.");
        assert_eq!(
            (f.reason.as_str(), f.action.as_str(), f.type_),
            ("FailedScheduling", "Scheduling", EventType::Warning)
        );
    }

    #[test]
    fn unchanged_condition_is_not_rewritten() {
        let p: Pod = serde_json::from_value(json!({"status": {"conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "m"}]}})).unwrap();
        assert!(condition_unchanged(&p, "Unschedulable", "m", &None));
        assert!(!condition_unchanged(&p, "Unschedulable", "other", &None));
        assert!(!condition_unchanged(
            &p,
            "Unschedulable",
            "m",
            &Some("n1".into())
        ));
    }
}
