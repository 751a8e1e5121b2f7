//! Deleting a pod for a NoExecute taint, as the taint-eviction and device-taint-eviction
//! controllers both do (upstream's `addConditionAndDeletePod`): the `DisruptionTarget`
//! condition first (unless already there), then the delete; and their shared
//! `*_pod_deletions_total` / `*_pod_deletion_duration_seconds` metrics.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::Api;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use serde_json::json;

use api_helpers::errors;
use component_base::metrics::Metrics;

/// The deletions counter and the activation-to-deletion latency of one eviction controller.
#[derive(Clone)]
pub struct EvictionMetrics {
    /// `<prefix>_pod_deletions_total`.
    pub deletions: Counter,
    /// `<prefix>_pod_deletion_duration_seconds` (upstream's buckets, 5 ms to 4 min).
    pub latency: Histogram,
}

impl EvictionMetrics {
    /// Registers `<prefix>_pod_deletions` and `<prefix>_pod_deletion_duration_seconds` with
    /// upstream's help texts `deletions_help` and `latency_help`.
    pub fn register(registry: &Metrics, prefix: &str, help: (&str, &str)) -> Self {
        let m = EvictionMetrics {
            deletions: Counter::default(),
            latency: Histogram::new([
                0.005, 0.025, 0.1, 0.5, 1.0, 2.5, 10.0, 30.0, 60.0, 120.0, 180.0, 240.0,
            ]),
        };
        registry.register(
            &format!("{prefix}_pod_deletions"),
            help.0,
            m.deletions.clone(),
        );
        registry.register(
            &format!("{prefix}_pod_deletion_duration_seconds"),
            help.1,
            m.latency.clone(),
        );
        m
    }
}

/// Why a pod is evicted: the `DisruptionTarget` condition's reason and message.
pub struct Disruption<'a> {
    /// e.g. `DeletionByTaintManager`.
    pub reason: &'a str,
    /// e.g. `Taint manager: deleting due to NoExecute taint`.
    pub message: &'a str,
}

/// Marks `pod` as a disruption target (unless it already carries this reason) and deletes
/// it, only if it still has `uid` when one is given. `Ok(true)` when this call deleted it;
/// a pod already gone, or replaced under the same name, is `Ok(false)`.
pub async fn mark_and_delete(
    api: &Api<Pod>,
    pod: &Pod,
    why: &Disruption<'_>,
    uid: Option<String>,
) -> Result<bool, kube::Error> {
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    if !has_disruption_target(pod, why.reason) {
        let condition = json!({"status": {"conditions": [{"type": "DisruptionTarget",
            "status": "True", "reason": why.reason, "message": why.message,
            "lastTransitionTime": jiff::Timestamp::now().to_string()}]}});
        errors::ignore_not_found(
            api.patch_status(name, &PatchParams::default(), &Patch::Strategic(&condition))
                .await,
        )?;
    }
    let params = DeleteParams {
        preconditions: uid.map(|uid| Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(name, &params).await {
        Ok(_) => Ok(true),
        Err(e) if errors::is_not_found(&e) || errors::is_conflict(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Whether `pod` already has a true `DisruptionTarget` condition with `reason`.
pub fn has_disruption_target(pod: &Pod, reason: &str) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| {
            c.iter().any(|c| {
                c.type_ == "DisruptionTarget"
                    && c.status == "True"
                    && c.reason.as_deref() == Some(reason)
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disruption_target_is_recognised_by_reason() {
        let pod: Pod = serde_json::from_value(json!({"status": {"conditions": [
            {"type": "DisruptionTarget", "status": "True", "reason": "DeletionByTaintManager"}]}}))
        .unwrap();
        assert!(has_disruption_target(&pod, "DeletionByTaintManager"));
        assert!(!has_disruption_target(&pod, "DeletionByDeviceTaintManager"));
        assert!(!has_disruption_target(
            &Pod::default(),
            "DeletionByTaintManager"
        ));
    }
}
