//! Pod admission under node pressure, as upstream's eviction manager admits pods: with no
//! pressure everything is admitted; critical pods (static, mirror, or priority at least
//! system-critical) always are; under memory pressure alone only BestEffort pods that do
//! not tolerate the memory-pressure taint are refused; any other pressure refuses every
//! pod, with reason `Evicted` and `The node had condition: [DiskPressure]. `.
//!
//! As upstream's `HandlePodAdditions`, admission runs once, when a pod is first added to
//! this kubelet; a refused pod is never started and is left `Failed` with the reason and
//! `Pod was rejected: <message>` (upstream's `rejectPod`).

use crate::pod::qos::{qos_class, QosClass};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::collections::BTreeSet;

/// Upstream's `SystemCriticalPriority`.
pub const SYSTEM_CRITICAL_PRIORITY: i32 = 2_000_000_000;
/// The rejection reason.
pub const REASON: &str = "Evicted";

/// A refusal: the pod's status reason and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// `Evicted`.
    pub reason: &'static str,
    /// `The node had condition: [DiskPressure]. `.
    pub message: String,
}

/// Whether the pod is critical (never refused nor evicted for pressure).
pub fn is_critical(pod: &Pod) -> bool {
    crate::static_pods::source::is_static(pod)
        || crate::static_pods::source::is_mirror(pod)
        || pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0) >= SYSTEM_CRITICAL_PRIORITY
}

fn tolerates_memory_pressure(pod: &Pod) -> bool {
    let key = "node.kubernetes.io/memory-pressure";
    pod.spec
        .as_ref()
        .and_then(|s| s.tolerations.as_ref())
        .is_some_and(|ts| {
            ts.iter().any(|t| {
                let effect_ok = t
                    .effect
                    .as_deref()
                    .is_none_or(|e| e.is_empty() || e == "NoSchedule");
                let key_ok = match t.key.as_deref() {
                    None | Some("") => t.operator.as_deref() == Some("Exists"),
                    Some(k) => k == key,
                };
                // A key with Equal and a value never matches the valueless taint.
                let value_ok = t.operator.as_deref() == Some("Exists")
                    || t.value.as_deref().is_none_or(str::is_empty);
                effect_ok && key_ok && value_ok
            })
        })
}

/// The prefix of a refused pod's status message, as upstream's `rejectPod`.
pub const REJECTED_PREFIX: &str = "Pod was rejected: ";

/// Whether the pod needs no admission: already past it (`Running`: admitted by an earlier
/// run of this kubelet) or terminal (upstream never admits terminal pods).
fn admitted_before(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Running" | "Succeeded" | "Failed")
    )
}

/// Whether a pod seen from the watch goes through admission: not `known` (running a
/// worker, or refused once) and not admitted before.
pub fn needs_admission(pod: &Pod, known: bool) -> bool {
    !(known || admitted_before(pod))
}

/// The admission decision for a pod seen from the watch: `known` pods (already running a
/// worker, or refused once) are never checked again; a new pod is checked against the
/// node's pressure `conditions` with [`admit`].
pub fn admit_new(pod: &Pod, known: bool, conditions: &BTreeSet<String>) -> Result<(), Rejection> {
    if !needs_admission(pod, known) {
        return Ok(());
    }
    admit(pod, conditions)
}

/// The status patch of a refused pod, as upstream's `rejectPod`: phase `Failed`, the
/// reason, `Pod was rejected: <message>`, its QoS class, and a start time (the status
/// manager's default).
pub fn rejected_status(pod: &Pod, r: &Rejection, now: Time) -> serde_json::Value {
    let start = pod
        .status
        .as_ref()
        .and_then(|s| s.start_time.clone())
        .unwrap_or(now);
    serde_json::json!({
        "metadata": {"uid": pod.metadata.uid},
        "status": {
            "phase": "Failed",
            "reason": r.reason,
            "message": format!("{REJECTED_PREFIX}{}", r.message),
            "qosClass": qos_class(pod).as_str(),
            "startTime": start,
        }
    })
}

/// Decides whether `pod` may start under `conditions` (the node's pressure conditions).
pub fn admit(pod: &Pod, conditions: &BTreeSet<String>) -> Result<(), Rejection> {
    if conditions.is_empty() || is_critical(pod) {
        return Ok(());
    }
    let only_memory = conditions.len() == 1 && conditions.contains("MemoryPressure");
    if only_memory && (qos_class(pod) != QosClass::BestEffort || tolerates_memory_pressure(pod)) {
        return Ok(());
    }
    let list: Vec<&str> = conditions.iter().map(String::as_str).collect();
    Err(Rejection {
        reason: REASON,
        message: format!("The node had condition: [{}]. ", list.join(" ")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn pressure_refuses_as_upstream() {
        let best_effort = pod(serde_json::json!({"spec": {"containers": [{"name": "c"}]}}));
        let burstable = pod(serde_json::json!({"spec": {"containers": [{"name": "c",
            "resources": {"requests": {"memory": "10Mi"}}}]}}));
        let tolerant = pod(serde_json::json!({"spec": {"containers": [{"name": "c"}],
            "tolerations": [{"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"}]}}));
        let critical = pod(
            serde_json::json!({"spec": {"priority": 2_000_001_000, "containers": [{"name": "c"}]}}),
        );
        let set = |c: &[&str]| c.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();

        assert!(admit(&best_effort, &set(&[])).is_ok());
        let memory = set(&["MemoryPressure"]);
        assert!(admit(&burstable, &memory).is_ok());
        assert!(admit(&tolerant, &memory).is_ok());
        let r = admit(&best_effort, &memory).unwrap_err();
        assert_eq!(r.message, "The node had condition: [MemoryPressure]. ");
        let disk = set(&["DiskPressure"]);
        let r = admit(&burstable, &disk).unwrap_err();
        assert_eq!(
            (r.reason, r.message.as_str()),
            ("Evicted", "The node had condition: [DiskPressure]. ")
        );
        assert!(admit(&tolerant, &disk).is_err());
        assert!(admit(&critical, &set(&["DiskPressure", "MemoryPressure"])).is_ok());
    }

    #[test]
    fn only_new_pods_are_admitted_and_refusals_are_failed() {
        let disk: BTreeSet<String> = ["DiskPressure".to_string()].into();
        let new = pod(serde_json::json!({"metadata": {"name": "p", "uid": "u"},
            "spec": {"containers": [{"name": "c"}]}, "status": {"phase": "Pending"}}));
        let r = admit_new(&new, false, &disk).unwrap_err();
        assert_eq!(r.message, "The node had condition: [DiskPressure]. ");
        // Known to the kubelet (a worker, or refused once): never re-checked.
        assert!(admit_new(&new, true, &disk).is_ok());
        // Running from an earlier kubelet run, or terminal: not admitted again.
        let running = pod(serde_json::json!({"spec": {"containers": [{"name": "c"}]},
            "status": {"phase": "Running"}}));
        assert!(admit_new(&running, false, &disk).is_ok());
        // Static and critical pods always start.
        let static_pod = pod(serde_json::json!({"metadata": {"name": "s",
            "annotations": {"kubernetes.io/config.source": "file"}},
            "spec": {"containers": [{"name": "c"}]}}));
        assert!(crate::static_pods::source::is_static(&static_pod));
        assert!(admit_new(&static_pod, false, &disk).is_ok());
        let critical = pod(
            serde_json::json!({"spec": {"priority": SYSTEM_CRITICAL_PRIORITY,
            "containers": [{"name": "c"}]}}),
        );
        assert!(admit_new(&critical, false, &disk).is_ok());

        let now = Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
        let v = rejected_status(&new, &r, now);
        assert_eq!(v["metadata"]["uid"], "u");
        let s = &v["status"];
        assert_eq!(
            (
                s["phase"].as_str(),
                s["reason"].as_str(),
                s["message"].as_str()
            ),
            (
                Some("Failed"),
                Some("Evicted"),
                Some("Pod was rejected: The node had condition: [DiskPressure]. ")
            )
        );
        assert_eq!(s["qosClass"], "BestEffort");
        assert_eq!(s["startTime"], "1970-01-01T00:00:00Z");
    }
}
