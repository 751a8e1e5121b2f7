//! NodeAffinity: `spec.nodeSelector` and required node affinity filter nodes; preferred
//! terms score them by summed weight.

use std::collections::HashSet;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{NodeSelector, PreferredSchedulingTerm};

use super::helper::normalize;
use crate::framework::*;
use crate::snapshot::{NodeInfo, PodInfo, Snapshot};
use api_helpers::node_affinity::term_matches;

/// Registry name.
pub const NAME: &str = "NodeAffinity";
/// Upstream's failure reason.
pub const ERR_REASON: &str = "node(s) didn't match Pod's node affinity/selector";

/// The NodeAffinity plugin (PreFilter, Filter, PreScore, Score; default weight 2).
#[derive(Debug, Default)]
pub struct NodeAffinity;

fn required(pod: &PodInfo) -> Option<&NodeSelector> {
    api_helpers::node_affinity::required(pod.pod.spec.as_ref()?)
}

fn preferred(pod: &PodInfo) -> &[PreferredSchedulingTerm] {
    pod.pod
        .spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.preferred_during_scheduling_ignored_during_execution
                .as_deref()
        })
        .unwrap_or(&[])
}

/// Whether the node satisfies the pod's nodeSelector and required node affinity.
pub fn pod_matches_node(pod: &PodInfo, node: &NodeInfo) -> bool {
    match (pod.pod.spec.as_ref(), node.node.as_ref()) {
        (Some(spec), Some(n)) => api_helpers::node_affinity::pod_matches_node(spec, n),
        (None, Some(_)) => true,
        (_, None) => false,
    }
}

impl Plugin for NodeAffinity {
    fn name(&self) -> &'static str {
        NAME
    }
    fn events(&self) -> Vec<ClusterEvent> {
        vec![
            ClusterEvent::new(EventResource::Node, Action::ADD | Action::UPDATE_LABEL),
            ClusterEvent::new(EventResource::UnscheduledPod, Action::UPDATE),
        ]
    }
    extension_points!(PreFilter, Filter, PreScore, Score);
}

impl PreFilterPlugin for NodeAffinity {
    /// Skips when the pod has no selector or required affinity; narrows the node set when
    /// every term pins `metadata.name` with `In`.
    fn pre_filter(
        &self,
        _: &mut CycleState,
        pod: &PodInfo,
        _: &Snapshot,
    ) -> (Option<PreFilterResult>, Status) {
        let has_selector = pod
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.node_selector.as_ref())
            .is_some_and(|s| !s.is_empty());
        let Some(req) = required(pod) else {
            return if has_selector {
                (None, Status::success())
            } else {
                (None, Status::skip())
            };
        };
        let mut names: Option<HashSet<String>> = Some(HashSet::new());
        for t in &req.node_selector_terms {
            let pinned: Option<Vec<String>> = t.match_fields.iter().flatten().find_map(|f| {
                (f.key == "metadata.name" && f.operator == "In")
                    .then(|| f.values.clone().unwrap_or_default())
            });
            match (pinned, names.as_mut()) {
                (Some(v), Some(set)) => set.extend(v),
                _ => names = None,
            }
        }
        match names {
            Some(set) if set.is_empty() => (
                None,
                Status::new(
                    Code::UnschedulableAndUnresolvable,
                    "node(s) didn't match Pod's node affinity/selector",
                ),
            ),
            Some(set) => (
                Some(PreFilterResult {
                    node_names: Some(set),
                }),
                Status::success(),
            ),
            None => (None, Status::success()),
        }
    }
}

impl FilterPlugin for NodeAffinity {
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        if pod_matches_node(pod, node) {
            Status::success()
        } else {
            Status::new(Code::UnschedulableAndUnresolvable, ERR_REASON)
        }
    }
}

impl PreScorePlugin for NodeAffinity {
    fn pre_score(
        &self,
        _: &mut CycleState,
        pod: &PodInfo,
        _: &[Arc<NodeInfo>],
        _: &Snapshot,
    ) -> Status {
        if preferred(pod).is_empty() {
            Status::skip()
        } else {
            Status::success()
        }
    }
}

impl ScorePlugin for NodeAffinity {
    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> (i64, Status) {
        let Some(n) = node.node.as_ref() else {
            return (0, Status::success());
        };
        let sum = preferred(pod)
            .iter()
            .filter(|t| t.weight != 0 && term_matches(&t.preference, n))
            .map(|t| t.weight as i64)
            .sum();
        (sum, Status::success())
    }
    fn normalize(
        &self,
        _: &CycleState,
        _: &PodInfo,
        _: &[Arc<NodeInfo>],
        scores: &mut [i64],
    ) -> Status {
        normalize(false, scores);
        Status::success()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testutil::*;
    use serde_json::json;

    #[test]
    fn node_selector_and_required_terms() {
        let a = node_info(
            node("a", "1", "1Gi", json!({"zone": "z1", "disk": "ssd"})),
            &[],
        );
        let b = node_info(node("b", "1", "1Gi", json!({"zone": "z2"})), &[]);
        let p = pod("p", json!({"nodeSelector": {"disk": "ssd"}}));
        assert!(NodeAffinity.filter(&state(), &p, &a).is_success());
        assert_eq!(NodeAffinity.filter(&state(), &p, &b).message(), ERR_REASON);
        let p = pod(
            "p",
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
            {"nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z2"]}]}]}}}}),
        );
        assert!(!NodeAffinity.filter(&state(), &p, &a).is_success());
        assert!(NodeAffinity.filter(&state(), &p, &b).is_success());
    }

    #[test]
    fn prefilter_skips_and_pins_names() {
        let (_, s) =
            NodeAffinity.pre_filter(&mut state(), &pod("p", json!({})), &Snapshot::default());
        assert_eq!(s.code, Code::Skip);
        let p = pod(
            "p",
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
            {"nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}]}}}}),
        );
        let (r, s) = NodeAffinity.pre_filter(&mut state(), &p, &Snapshot::default());
        assert!(s.is_success());
        assert_eq!(
            r.unwrap().node_names.unwrap(),
            HashSet::from(["n1".to_string()])
        );
    }

    #[test]
    fn preferred_terms_score_by_weight() {
        let a = node_info(node("a", "1", "1Gi", json!({"zone": "z1"})), &[]);
        let b = node_info(
            node("b", "1", "1Gi", json!({"zone": "z2", "gpu": "yes"})),
            &[],
        );
        let p = pod(
            "p",
            json!({"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 2, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z1"]}]}},
            {"weight": 8, "preference": {"matchExpressions": [{"key": "gpu", "operator": "Exists"}]}}]}}}),
        );
        let mut scores = vec![
            NodeAffinity.score(&state(), &p, &a).0,
            NodeAffinity.score(&state(), &p, &b).0,
        ];
        assert_eq!(scores, vec![2, 8]);
        NodeAffinity.normalize(&state(), &p, &[], &mut scores);
        assert_eq!(scores, vec![25, 100]);
    }
}
