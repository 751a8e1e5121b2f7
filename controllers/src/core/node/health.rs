//! Node health from heartbeats (the node's Lease and its Ready condition), as upstream's
//! monitorNodeHealth: a node silent for longer than the grace period has its conditions set
//! to Unknown.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, NodeCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// Conditions the kubelet owns that turn Unknown when it goes silent.
pub const KUBELET_CONDITIONS: &[&str] = &["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

/// The last heartbeat we saw and when we saw it change (local clock, immune to skew).
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    /// The newest of the Lease's renewTime and the Ready condition's lastHeartbeatTime.
    pub heartbeat: Option<Time>,
    /// When `heartbeat` last changed, by our clock.
    pub observed_at: Instant,
}

/// The node's newest heartbeat.
pub fn heartbeat(node: &Node, lease_renew: Option<&Time>) -> Option<Time> {
    let ready_hb = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .and_then(|c| c.last_heartbeat_time.clone());
    match (ready_hb, lease_renew.cloned()) {
        (Some(a), Some(b)) => Some(if a.0 > b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

/// Updates `previous` with the heartbeat seen now.
pub fn observe(previous: Option<Probe>, heartbeat: Option<Time>, now: Instant) -> Probe {
    match previous {
        Some(p) if p.heartbeat == heartbeat => p,
        _ => Probe {
            heartbeat,
            observed_at: now,
        },
    }
}

/// The node's conditions with the kubelet's set to Unknown if it has been silent longer
/// than its grace period (`startup_grace` until it first reports Ready); `None` when
/// nothing changes.
pub fn stale_conditions(
    node: &Node,
    probe: &Probe,
    now: Instant,
    wall: &Time,
    grace: Duration,
    startup_grace: Duration,
) -> Option<Vec<NodeCondition>> {
    let conditions = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let has_ready = conditions.iter().any(|c| c.type_ == "Ready");
    let limit = if has_ready { grace } else { startup_grace };
    if now.saturating_duration_since(probe.observed_at) <= limit {
        return None;
    }
    let (reason, message) = if has_ready {
        ("NodeStatusUnknown", "Kubelet stopped posting node status.")
    } else {
        (
            "NodeStatusNeverUpdated",
            "Kubelet never posted node status.",
        )
    };
    let mut out = conditions.clone();
    let mut changed = false;
    for t in KUBELET_CONDITIONS {
        match out.iter_mut().find(|c| c.type_ == *t) {
            Some(c) if c.status == "Unknown" => {}
            Some(c) => {
                c.status = "Unknown".into();
                c.reason = Some(reason.into());
                c.message = Some(message.into());
                c.last_transition_time = Some(wall.clone());
                changed = true;
            }
            None => {
                out.push(NodeCondition {
                    type_: t.to_string(),
                    status: "Unknown".into(),
                    reason: Some(reason.into()),
                    message: Some(message.into()),
                    last_heartbeat_time: node.metadata.creation_timestamp.clone(),
                    last_transition_time: Some(wall.clone()),
                });
                changed = true;
            }
        }
    }
    changed.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn t(s: i64) -> Time {
        Time(jiff::Timestamp::from_second(s).unwrap())
    }

    fn ready_node() -> Node {
        serde_json::from_value(json!({"metadata": {"name": "n"}, "status": {"conditions": [
            {"type": "Ready", "status": "True", "lastHeartbeatTime": "1970-01-01T00:00:10Z"},
            {"type": "MemoryPressure", "status": "False"}]}}))
        .unwrap()
    }

    #[test]
    fn newest_heartbeat_wins() {
        assert_eq!(heartbeat(&ready_node(), Some(&t(50))), Some(t(50)));
        assert_eq!(heartbeat(&ready_node(), Some(&t(5))), Some(t(10)));
        assert_eq!(heartbeat(&ready_node(), None), Some(t(10)));
    }

    #[test]
    fn silent_node_turns_unknown_after_grace_only() {
        let start = Instant::now();
        let p = observe(None, Some(t(10)), start);
        let grace = Duration::from_secs(50);
        let n = ready_node();
        assert!(stale_conditions(
            &n,
            &p,
            start + Duration::from_secs(49),
            &t(100),
            grace,
            grace
        )
        .is_none());
        // A renewed heartbeat resets the clock.
        let renewed = observe(
            Some(p.clone()),
            Some(t(20)),
            start + Duration::from_secs(40),
        );
        assert!(stale_conditions(
            &n,
            &renewed,
            start + Duration::from_secs(80),
            &t(100),
            grace,
            grace
        )
        .is_none());
        let out = stale_conditions(
            &n,
            &p,
            start + Duration::from_secs(51),
            &t(100),
            grace,
            grace,
        )
        .unwrap();
        let ready = out.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_deref()),
            ("Unknown", Some("NodeStatusUnknown"))
        );
        assert_eq!(ready.last_heartbeat_time, Some(t(10)));
        assert_eq!(
            out.len(),
            4,
            "missing kubelet conditions are added as Unknown"
        );
        let mut already = n.clone();
        already.status.as_mut().unwrap().conditions = Some(out);
        assert!(stale_conditions(
            &already,
            &p,
            start + Duration::from_secs(60),
            &t(110),
            grace,
            grace
        )
        .is_none());
    }

    #[test]
    fn never_reporting_node_uses_startup_grace() {
        let n: Node = serde_json::from_value(
            json!({"metadata": {"name": "n", "creationTimestamp": "1970-01-01T00:00:01Z"}}),
        )
        .unwrap();
        let start = Instant::now();
        let p = observe(None, None, start);
        let (grace, startup) = (Duration::from_secs(50), Duration::from_secs(60));
        assert!(stale_conditions(
            &n,
            &p,
            start + Duration::from_secs(55),
            &t(100),
            grace,
            startup
        )
        .is_none());
        let out = stale_conditions(
            &n,
            &p,
            start + Duration::from_secs(61),
            &t(100),
            grace,
            startup,
        )
        .unwrap();
        assert_eq!(out[0].reason.as_deref(), Some("NodeStatusNeverUpdated"));
        assert_eq!(out[0].last_heartbeat_time, Some(t(1)));
    }
}
