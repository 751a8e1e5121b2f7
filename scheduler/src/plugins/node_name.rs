//! NodeName: a pod with `spec.nodeName` only fits that node.

use crate::framework::{
    Action, ClusterEvent, Code, CycleState, EventResource, FilterPlugin, Plugin, Status,
};
use crate::snapshot::{NodeInfo, PodInfo};

/// Registry name.
pub const NAME: &str = "NodeName";
/// Upstream's failure reason.
pub const ERR_REASON: &str = "node(s) didn't match the requested node name";

/// The NodeName filter.
#[derive(Debug, Default)]
pub struct NodeName;

impl Plugin for NodeName {
    fn name(&self) -> &'static str {
        NAME
    }
    fn events(&self) -> Vec<ClusterEvent> {
        vec![ClusterEvent::new(EventResource::Node, Action::ADD)]
    }
    extension_points!(Filter);
}

impl FilterPlugin for NodeName {
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        match pod.node_name() {
            Some(n) if n != node.name => {
                Status::new(Code::UnschedulableAndUnresolvable, ERR_REASON)
            }
            _ => Status::success(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testutil::*;
    use serde_json::json;

    #[test]
    fn only_the_named_node() {
        let n = node_info(node("n1", "1", "1Gi", json!({})), &[]);
        let s = NodeName.filter(&state(), &pod("p", json!({"nodeName": "n2"})), &n);
        assert_eq!(s.code, Code::UnschedulableAndUnresolvable);
        assert_eq!(s.message(), ERR_REASON);
        assert!(NodeName
            .filter(&state(), &pod("p", json!({"nodeName": "n1"})), &n)
            .is_success());
        assert!(NodeName
            .filter(&state(), &pod("p", json!({})), &n)
            .is_success());
    }
}
