//! TaintToleration: filter out nodes with NoSchedule/NoExecute taints the pod does not
//! tolerate; prefer nodes with fewer untolerated PreferNoSchedule taints.

use k8s_openapi::api::core::v1::Toleration;

use super::helper::normalize;
use crate::framework::*;
use crate::snapshot::{NodeInfo, PodInfo, Snapshot};
use api_helpers::taints::{first_untolerated, tolerated_by};
use std::sync::Arc;

/// Registry name.
pub const NAME: &str = "TaintToleration";

/// The TaintToleration plugin (Filter, PreScore, Score; default weight 3).
#[derive(Debug, Default)]
pub struct TaintToleration;

fn tolerations(pod: &PodInfo) -> &[Toleration] {
    pod.pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or(&[])
}

impl Plugin for TaintToleration {
    fn name(&self) -> &'static str {
        NAME
    }
    fn events(&self) -> Vec<ClusterEvent> {
        vec![
            ClusterEvent::new(EventResource::Node, Action::ADD | Action::UPDATE_TAINT),
            ClusterEvent::new(EventResource::UnscheduledPod, Action::UPDATE),
        ]
    }
    extension_points!(Filter, PreScore, Score);
}

impl FilterPlugin for TaintToleration {
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let hard = |t: &k8s_openapi::api::core::v1::Taint| {
            t.effect == "NoSchedule" || t.effect == "NoExecute"
        };
        match first_untolerated(node.taints(), tolerations(pod), hard) {
            None => Status::success(),
            Some(t) => Status::new(
                Code::UnschedulableAndUnresolvable,
                format!(
                    "node(s) had untolerated taint {{{}: {}}}",
                    t.key,
                    t.value.as_deref().unwrap_or("")
                ),
            ),
        }
    }
}

/// Tolerations that apply to PreferNoSchedule taints.
#[derive(Clone)]
struct PreScoreState(Vec<Toleration>);

impl PreScorePlugin for TaintToleration {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _: &[Arc<NodeInfo>],
        _: &Snapshot,
    ) -> Status {
        let tols = tolerations(pod)
            .iter()
            .filter(|t| {
                matches!(
                    t.effect.as_deref(),
                    None | Some("") | Some("PreferNoSchedule")
                )
            })
            .cloned()
            .collect();
        state.write(NAME, PreScoreState(tols));
        Status::success()
    }
}

impl ScorePlugin for TaintToleration {
    fn score(&self, state: &CycleState, _: &PodInfo, node: &NodeInfo) -> (i64, Status) {
        let Some(PreScoreState(tols)) = state.read::<PreScoreState>(NAME) else {
            return (0, Status::error("TaintToleration: no PreScore state"));
        };
        let count = node
            .taints()
            .iter()
            .filter(|t| t.effect == "PreferNoSchedule" && !tolerated_by(tols, t))
            .count();
        (count as i64, Status::success())
    }
    fn normalize(
        &self,
        _: &CycleState,
        _: &PodInfo,
        _: &[Arc<NodeInfo>],
        scores: &mut [i64],
    ) -> Status {
        normalize(true, scores);
        Status::success()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testutil::*;
    use serde_json::json;

    fn tainted(name: &str, taints: serde_json::Value) -> NodeInfo {
        node_info(
            node_with(name, "1", "1Gi", json!({}), json!({"taints": taints})),
            &[],
        )
    }

    #[test]
    fn filter_message_names_first_untolerated_taint() {
        let n = tainted(
            "cp",
            json!([{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]),
        );
        let s = TaintToleration.filter(&state(), &pod("p", json!({})), &n);
        assert_eq!(s.code, Code::UnschedulableAndUnresolvable);
        assert_eq!(
            s.message(),
            "node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }"
        );
        let soft = tainted(
            "s",
            json!([{"key": "k", "value": "v", "effect": "PreferNoSchedule"}]),
        );
        assert!(TaintToleration
            .filter(&state(), &pod("p", json!({})), &soft)
            .is_success());
    }

    #[test]
    fn score_prefers_fewer_prefer_no_schedule_taints() {
        let nodes = [
            tainted("a", json!([])),
            tainted("b", json!([{"key": "k1", "effect": "PreferNoSchedule"}])),
            tainted(
                "c",
                json!([{"key": "k1", "effect": "PreferNoSchedule"}, {"key": "k2", "effect": "PreferNoSchedule"}]),
            ),
        ];
        let p = pod(
            "p",
            json!({"tolerations": [{"key": "k2", "operator": "Exists", "effect": "PreferNoSchedule"}]}),
        );
        let mut st = state();
        TaintToleration.pre_score(&mut st, &p, &[], &Snapshot::default());
        let mut scores: Vec<i64> = nodes
            .iter()
            .map(|n| TaintToleration.score(&st, &p, n).0)
            .collect();
        assert_eq!(scores, vec![0, 1, 1]);
        TaintToleration.normalize(&st, &p, &[], &mut scores);
        assert_eq!(scores, vec![100, 0, 0]);
    }
}
