//! NodeUnschedulable: cordoned nodes (`spec.unschedulable`) only take pods tolerating
//! `node.kubernetes.io/unschedulable:NoSchedule`.

use k8s_openapi::api::core::v1::Taint;

use crate::framework::{
    Action, ClusterEvent, Code, CycleState, EventResource, FilterPlugin, Plugin, Status,
};
use crate::snapshot::{NodeInfo, PodInfo};
use api_helpers::taints::tolerated_by;

/// Registry name.
pub const NAME: &str = "NodeUnschedulable";
/// Upstream's failure reason.
pub const ERR_REASON: &str = "node(s) were unschedulable";
/// Upstream's reason when the Node object is unknown.
pub const ERR_REASON_UNKNOWN: &str = "node(s) had unknown conditions";

/// The NodeUnschedulable filter.
#[derive(Debug, Default)]
pub struct NodeUnschedulable;

impl Plugin for NodeUnschedulable {
    fn name(&self) -> &'static str {
        NAME
    }
    fn events(&self) -> Vec<ClusterEvent> {
        vec![ClusterEvent::new(
            EventResource::Node,
            Action::ADD | Action::UPDATE_TAINT | Action::UPDATE_OTHER,
        )]
    }
    extension_points!(Filter);
}

impl FilterPlugin for NodeUnschedulable {
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let Some(n) = node.node.as_ref() else {
            return Status::new(Code::UnschedulableAndUnresolvable, ERR_REASON_UNKNOWN);
        };
        if !n
            .spec
            .as_ref()
            .and_then(|s| s.unschedulable)
            .unwrap_or(false)
        {
            return Status::success();
        }
        let taint = Taint {
            key: "node.kubernetes.io/unschedulable".into(),
            effect: "NoSchedule".into(),
            ..Default::default()
        };
        let tols = pod
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.tolerations.as_deref())
            .unwrap_or(&[]);
        if tolerated_by(tols, &taint) {
            Status::success()
        } else {
            Status::new(Code::UnschedulableAndUnresolvable, ERR_REASON)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testutil::*;
    use serde_json::json;

    #[test]
    fn cordoned_node_needs_toleration() {
        let n = node_info(
            node_with("n", "1", "1Gi", json!({}), json!({"unschedulable": true})),
            &[],
        );
        let s = NodeUnschedulable.filter(&state(), &pod("p", json!({})), &n);
        assert_eq!(s.message(), ERR_REASON);
        let tolerant = pod(
            "p",
            json!({"tolerations": [
            {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]}),
        );
        assert!(NodeUnschedulable
            .filter(&state(), &tolerant, &n)
            .is_success());
        let open = node_info(node("m", "1", "1Gi", json!({})), &[]);
        assert!(NodeUnschedulable
            .filter(&state(), &pod("p", json!({})), &open)
            .is_success());
    }
}
