//! Upstream's predicate admit handler, for host ports: a new pod whose host ports collide
//! with an active pod's on this node is refused with reason `NodePorts` and message
//! `Predicate NodePorts failed: node(s) didn't have free ports for the requested pod ports`
//! (upstream's `PredicateFailureError`), and left Failed as any refused pod.

use super::admit::Rejection;
use component_base::host_ports::{conflicts_with, host_ports};
use k8s_openapi::api::core::v1::Pod;

/// The predicate's name: the rejection reason.
pub const NODE_PORTS: &str = "NodePorts";
/// The scheduler's NodePorts failure reason, which upstream's message quotes.
pub const NODE_PORTS_REASON: &str = "node(s) didn't have free ports for the requested pod ports";

/// Whether `pod` still holds what it asked for: neither terminal nor refused.
fn active(pod: &Pod) -> bool {
    !matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// Decides whether `pod` fits next to `others` (the node's other admitted pods).
pub fn admit<'a>(pod: &Pod, others: impl IntoIterator<Item = &'a Pod>) -> Result<(), Rejection> {
    let wanted = host_ports(pod);
    if wanted.is_empty() {
        return Ok(());
    }
    let uid = pod.metadata.uid.as_deref();
    let used: Vec<_> = others
        .into_iter()
        .filter(|o| o.metadata.uid.as_deref() != uid && active(o))
        .flat_map(host_ports)
        .collect();
    if conflicts_with(&wanted, &used) {
        return Err(Rejection {
            reason: NODE_PORTS,
            message: format!("Predicate {NODE_PORTS} failed: {NODE_PORTS_REASON}"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(uid: &str, port: i32, phase: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"uid": uid},
            "spec": {"containers": [{"name": "c",
                "ports": [{"containerPort": 80, "hostPort": port}]}]},
            "status": {"phase": phase},
        }))
        .unwrap()
    }

    #[test]
    fn a_taken_host_port_is_refused_as_upstream() {
        let running = pod("a", 8080, "Running");
        let r = admit(&pod("b", 8080, "Pending"), [&running]).unwrap_err();
        assert_eq!(r.reason, "NodePorts");
        assert_eq!(
            r.message,
            "Predicate NodePorts failed: node(s) didn't have free ports for the requested pod ports"
        );
    }

    #[test]
    fn free_ports_finished_pods_and_itself_do_not_conflict() {
        let running = pod("a", 8080, "Running");
        assert!(admit(&pod("b", 8081, "Pending"), [&running]).is_ok());
        let done = pod("a", 8080, "Succeeded");
        assert!(admit(&pod("b", 8080, "Pending"), [&done]).is_ok());
        assert!(admit(&running, [&running]).is_ok());
        let no_ports: Pod =
            serde_json::from_value(serde_json::json!({"spec": {"containers": [{"name": "c"}]}}))
                .unwrap();
        assert!(admit(&no_ports, [&running]).is_ok());
    }
}
