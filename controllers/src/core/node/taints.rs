//! The taints node-lifecycle-controller keeps in step with a Node's conditions, and
//! toleration matching (shared with taint-eviction).

use k8s_openapi::api::core::v1::{Node, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// `node.kubernetes.io/not-ready`.
pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
/// `node.kubernetes.io/unreachable`.
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// `node.kubernetes.io/unschedulable`.
pub const UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

/// Condition type and status → NoSchedule taint key (upstream's TaintNodesByCondition map).
const CONDITION_TAINTS: &[(&str, &str, &str)] = &[
    ("Ready", "False", NOT_READY),
    ("Ready", "Unknown", UNREACHABLE),
    (
        "MemoryPressure",
        "True",
        "node.kubernetes.io/memory-pressure",
    ),
    ("DiskPressure", "True", "node.kubernetes.io/disk-pressure"),
    (
        "NetworkUnavailable",
        "True",
        "node.kubernetes.io/network-unavailable",
    ),
    ("PIDPressure", "True", "node.kubernetes.io/pid-pressure"),
];

/// The node's Ready condition status (`True`, `False`, `Unknown`), if reported.
pub fn ready_status(node: &Node) -> Option<&str> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.as_str())
}

fn taint(key: &str, effect: &str, now: Option<&Time>) -> Taint {
    Taint {
        key: key.into(),
        effect: effect.into(),
        time_added: now.cloned(),
        value: None,
    }
}

fn managed_no_schedule(t: &Taint) -> bool {
    t.effect == "NoSchedule"
        && (t.key == UNSCHEDULABLE || CONDITION_TAINTS.iter().any(|(_, _, k)| *k == t.key))
}

fn managed_no_execute(t: &Taint) -> bool {
    t.effect == "NoExecute" && (t.key == NOT_READY || t.key == UNREACHABLE)
}

/// The node's taints after the NoSchedule pass (conditions and `spec.unschedulable`) and
/// the NoExecute pass (Ready False/Unknown), keeping every taint not managed here and the
/// `timeAdded` of those that stay. `evict` false (all nodes down: upstream's full
/// disruption) removes NoExecute taints instead of adding them.
pub fn desired(node: &Node, evict: bool, now: &Time) -> Vec<Taint> {
    let current = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let conditions = node.status.as_ref().and_then(|s| s.conditions.as_ref());
    let mut want: Vec<Taint> = CONDITION_TAINTS
        .iter()
        .filter(|(t, s, _)| {
            conditions.is_some_and(|cs| cs.iter().any(|c| c.type_ == *t && c.status == *s))
        })
        .map(|(_, _, k)| taint(k, "NoSchedule", None))
        .collect();
    if node
        .spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false)
    {
        want.push(taint(UNSCHEDULABLE, "NoSchedule", None));
    }
    if evict {
        match ready_status(node) {
            Some("False") => want.push(taint(NOT_READY, "NoExecute", Some(now))),
            Some("Unknown") => want.push(taint(UNREACHABLE, "NoExecute", Some(now))),
            _ => {}
        }
    }
    let mut out: Vec<Taint> = current
        .iter()
        .filter(|t| !managed_no_schedule(t) && !managed_no_execute(t))
        .cloned()
        .collect();
    for w in want {
        // Keep an existing identical taint (and its timeAdded).
        let kept = current
            .iter()
            .find(|t| t.key == w.key && t.effect == w.effect)
            .cloned();
        out.push(kept.unwrap_or(w));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(v: serde_json::Value) -> Node {
        serde_json::from_value(v).unwrap()
    }

    fn now() -> Time {
        Time(jiff::Timestamp::from_second(1_000).unwrap())
    }

    fn keys(t: &[Taint]) -> Vec<(String, String)> {
        let mut k: Vec<_> = t
            .iter()
            .map(|t| (t.key.clone(), t.effect.clone()))
            .collect();
        k.sort();
        k
    }

    #[test]
    fn ready_node_loses_admission_not_ready_taint() {
        let n = node(
            json!({"metadata": {"name": "n"}, "spec": {"taints": [{"key": NOT_READY, "effect": "NoSchedule"}, {"key": "dedicated", "value": "x", "effect": "NoSchedule"}]},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
        );
        assert_eq!(
            keys(&desired(&n, true, &now())),
            vec![("dedicated".into(), "NoSchedule".into())]
        );
    }

    #[test]
    fn unknown_node_gets_unreachable_taints_and_keeps_time_added() {
        let n = node(
            json!({"metadata": {"name": "n"}, "spec": {"unschedulable": true, "taints": [{"key": UNREACHABLE, "effect": "NoExecute", "timeAdded": "1970-01-01T00:05:00Z"}]},
            "status": {"conditions": [{"type": "Ready", "status": "Unknown"}, {"type": "DiskPressure", "status": "True"}]}}),
        );
        let t = desired(&n, true, &now());
        assert_eq!(
            keys(&t),
            vec![
                (
                    "node.kubernetes.io/disk-pressure".into(),
                    "NoSchedule".into()
                ),
                (UNREACHABLE.into(), "NoExecute".into()),
                (UNREACHABLE.into(), "NoSchedule".into()),
                (UNSCHEDULABLE.into(), "NoSchedule".into()),
            ]
        );
        let ne = t.iter().find(|t| t.effect == "NoExecute").unwrap();
        assert_eq!(ne.time_added.as_ref().unwrap().0.as_second(), 300);
        // Full disruption: no NoExecute taint.
        assert!(desired(&n, false, &now())
            .iter()
            .all(|t| t.effect != "NoExecute"));
    }
}
