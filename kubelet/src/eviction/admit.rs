//! Pod admission under node pressure, as upstream's eviction manager admits pods: with no
//! pressure everything is admitted; critical pods (static, mirror, or priority at least
//! system-critical) always are; under memory pressure alone only BestEffort pods that do
//! not tolerate the memory-pressure taint are refused; any other pressure refuses every
//! pod, with reason `Evicted` and `The node had condition: [DiskPressure]. `.

use crate::pod::qos::{qos_class, QosClass};
use k8s_openapi::api::core::v1::Pod;
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
}
