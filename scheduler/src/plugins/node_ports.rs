//! NodePorts: a pod's host ports must be free on the node.

use crate::framework::*;
use crate::snapshot::{NodeInfo, PodInfo, Snapshot};

/// Registry name.
pub const NAME: &str = "NodePorts";
/// Upstream's failure reason.
pub const ERR_REASON: &str = "node(s) didn't have free ports for the requested pod ports";

/// The NodePorts plugin (PreFilter, Filter).
#[derive(Debug, Default)]
pub struct NodePorts;

impl Plugin for NodePorts {
    fn name(&self) -> &'static str {
        NAME
    }
    fn events(&self) -> Vec<ClusterEvent> {
        vec![
            ClusterEvent::new(EventResource::AssignedPod, Action::DELETE),
            ClusterEvent::new(EventResource::Node, Action::ADD),
        ]
    }
    extension_points!(PreFilter, Filter);
}

impl PreFilterPlugin for NodePorts {
    fn pre_filter(
        &self,
        _: &mut CycleState,
        pod: &PodInfo,
        _: &Snapshot,
    ) -> (Option<PreFilterResult>, Status) {
        if pod.host_ports.is_empty() {
            (None, Status::skip())
        } else {
            (None, Status::success())
        }
    }
}

impl FilterPlugin for NodePorts {
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        if component_base::host_ports::conflicts_with(&pod.host_ports, &node.used_ports) {
            Status::new(Code::Unschedulable, ERR_REASON)
        } else {
            Status::success()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testutil::*;
    use serde_json::json;

    fn with_port(name: &str, port: i32, ip: &str, proto: &str) -> std::sync::Arc<PodInfo> {
        pod(
            name,
            json!({"containers": [{"name": "c", "ports": [
            {"containerPort": 80, "hostPort": port, "hostIP": ip, "protocol": proto}]}]}),
        )
    }

    #[test]
    fn conflicts_follow_protocol_and_wildcard_ip() {
        let n = node_info(
            node("n", "1", "1Gi", json!({})),
            &[with_port("a", 8080, "127.0.0.1", "TCP")],
        );
        let s = NodePorts.filter(&state(), &with_port("p", 8080, "", "TCP"), &n);
        assert_eq!(s.code, Code::Unschedulable);
        assert_eq!(s.message(), ERR_REASON);
        assert!(NodePorts
            .filter(&state(), &with_port("p", 8080, "127.0.0.2", "TCP"), &n)
            .is_success());
        assert!(NodePorts
            .filter(&state(), &with_port("p", 8080, "127.0.0.1", "UDP"), &n)
            .is_success());
        assert!(NodePorts
            .filter(&state(), &with_port("p", 8081, "127.0.0.1", "TCP"), &n)
            .is_success());
    }
}
