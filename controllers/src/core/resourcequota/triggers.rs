//! Which watch events make the controller recompute a quota (upstream's quota event
//! handlers), as pure functions.
//!
//! The apiserver's quota admission charges `status.used` itself on every admitted create.
//! Recomputing on those status-only updates would race the controller's own caches: a sync
//! that sees the charged quota but not yet the pod that was charged writes the lower usage
//! back, and the next create is admitted over quota. So, as upstream, a quota is synced when
//! it is first seen, when its `spec.hard` changes, or when its status lacks something the
//! spec asks for; everything else is the periodic resync's and replenishment's job.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, ResourceQuota, Service};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// The last value seen per object (namespace, name), so that a handler can act on
/// transitions only (client-go hands update handlers the old object; kube-runtime doesn't).
#[derive(Debug)]
pub struct LastSeen<V> {
    seen: Mutex<HashMap<(String, String), V>>,
}

impl<V> Default for LastSeen<V> {
    fn default() -> Self {
        Self {
            seen: Mutex::new(HashMap::new()),
        }
    }
}

impl<V: PartialEq + Clone> LastSeen<V> {
    /// Records `value` for `key`, returning what was recorded before.
    pub fn record(&self, key: (String, String), value: V) -> Option<V> {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, value)
    }

    /// Forgets `key` (the object was deleted).
    pub fn forget(&self, key: &(String, String)) {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }

    /// Records `value` and says whether it differs from an earlier sighting (a first
    /// sighting is no transition).
    pub fn changed(&self, key: (String, String), value: V) -> bool {
        self.record(key, value.clone())
            .is_some_and(|previous| previous != value)
    }
}

/// `spec.hard` of a quota (empty when unset).
pub fn spec_hard(quota: &ResourceQuota) -> BTreeMap<String, Quantity> {
    quota
        .spec
        .as_ref()
        .and_then(|s| s.hard.clone())
        .unwrap_or_default()
}

/// Whether a watched quota needs a sync, given the `spec.hard` seen last time (`None`
/// when this is the first sight of it).
pub fn quota_needs_sync(
    previous_hard: Option<&BTreeMap<String, Quantity>>,
    quota: &ResourceQuota,
) -> bool {
    let hard = spec_hard(quota);
    if previous_hard != Some(&hard) {
        return true;
    }
    let status = quota.status.as_ref();
    let status_hard = status.and_then(|s| s.hard.clone()).unwrap_or_default();
    if status_hard != hard {
        return true;
    }
    let used = status.and_then(|s| s.used.as_ref());
    hard.keys()
        .any(|k| !used.is_some_and(|u| u.contains_key(k)))
}

/// How a Service is charged: NodePort and LoadBalancer Services also count towards
/// `services.nodeports` / `services.loadbalancers`.
pub fn service_charge_class(svc: &Service) -> &'static str {
    match svc.spec.as_ref().and_then(|s| s.type_.as_deref()) {
        Some("NodePort") => "NodePort",
        Some("LoadBalancer") => "LoadBalancer",
        _ => "",
    }
}

/// What of a pod the quota charges: whether it is terminating (scopes) and whether it
/// is charged at all (upstream's `QuotaV1Pod`: not finished). A change of either releases
/// or moves usage.
pub fn pod_charge(pod: &Pod) -> (bool, bool) {
    let terminating = pod.metadata.deletion_timestamp.is_some()
        || pod
            .spec
            .as_ref()
            .and_then(|s| s.active_deadline_seconds)
            .is_some();
    let finished = matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    );
    (
        terminating,
        !finished && pod.metadata.deletion_timestamp.is_none(),
    )
}

/// What of a claim the quota charges: its storage class and requested storage.
pub fn claim_charge(pvc: &PersistentVolumeClaim) -> (Option<String>, Option<String>) {
    let spec = pvc.spec.as_ref();
    (
        spec.and_then(|s| s.storage_class_name.clone()),
        spec.and_then(|s| s.resources.as_ref())
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("storage"))
            .map(|q| q.0.clone()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn quota(v: serde_json::Value) -> ResourceQuota {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn first_sight_and_spec_changes_sync() {
        let q = quota(
            json!({"metadata": {"name": "q"}, "spec": {"hard": {"pods": "2"}},
            "status": {"hard": {"pods": "2"}, "used": {"pods": "1"}}}),
        );
        assert!(quota_needs_sync(None, &q));
        let old = BTreeMap::from([("pods".to_string(), Quantity("3".into()))]);
        assert!(quota_needs_sync(Some(&old), &q));
    }

    #[test]
    fn admission_charges_alone_do_not_sync() {
        // The apiserver bumped used.pods; spec and status.hard are unchanged.
        let q = quota(
            json!({"metadata": {"name": "q"}, "spec": {"hard": {"pods": "2"}},
            "status": {"hard": {"pods": "2"}, "used": {"pods": "2"}}}),
        );
        assert!(!quota_needs_sync(Some(&spec_hard(&q)), &q));
    }

    #[test]
    fn incomplete_status_syncs() {
        let no_status = quota(json!({"metadata": {"name": "q"}, "spec": {"hard": {"pods": "2"}}}));
        assert!(quota_needs_sync(Some(&spec_hard(&no_status)), &no_status));
        let missing_used = quota(json!({"metadata": {"name": "q"},
            "spec": {"hard": {"pods": "2", "services": "1"}},
            "status": {"hard": {"pods": "2", "services": "1"}, "used": {"pods": "0"}}}));
        assert!(quota_needs_sync(
            Some(&spec_hard(&missing_used)),
            &missing_used
        ));
    }

    #[test]
    fn transitions_only() {
        let seen = LastSeen::default();
        let key = ("ns".to_string(), "p".to_string());
        assert!(!seen.changed(key.clone(), (false, true)), "first sight");
        assert!(!seen.changed(key.clone(), (false, true)), "same");
        assert!(seen.changed(key.clone(), (false, false)), "finished");
        seen.forget(&key);
        assert!(!seen.changed(key, (false, false)), "forgotten");
    }

    #[test]
    fn pod_charge_follows_phase_and_deletion() {
        let pod = |v: serde_json::Value| -> Pod { serde_json::from_value(v).unwrap() };
        let running = pod(json!({"metadata": {"name": "p"}, "status": {"phase": "Running"}}));
        assert_eq!(pod_charge(&running), (false, true));
        let done = pod(json!({"metadata": {"name": "p"}, "status": {"phase": "Failed"}}));
        assert_eq!(pod_charge(&done), (false, false));
        let deleting = pod(json!({"metadata": {"name": "p",
            "deletionTimestamp": "2026-01-01T00:00:00Z"}}));
        assert_eq!(pod_charge(&deleting), (true, false));
    }

    #[test]
    fn service_types_charged_apart() {
        let svc = |t: &str| -> Service {
            serde_json::from_value(json!({"metadata": {"name": "s"}, "spec": {"type": t}})).unwrap()
        };
        assert_eq!(service_charge_class(&svc("ClusterIP")), "");
        assert_eq!(service_charge_class(&svc("NodePort")), "NodePort");
        assert_eq!(service_charge_class(&svc("LoadBalancer")), "LoadBalancer");
    }
}
