//! NodeResourcesBalancedAllocation: prefer nodes whose cpu and memory utilization stay
//! balanced after placing the pod.

use std::sync::Arc;

use super::node_resources_fit::{alloc_and_request, default_resources, ResourceSpec};
use crate::framework::*;
use crate::snapshot::{NodeInfo, PodInfo, Snapshot};

/// Registry name.
pub const NAME: &str = "NodeResourcesBalancedAllocation";

/// NodeResourcesBalancedAllocationArgs.
#[derive(Debug, Clone, serde::Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BalancedAllocationArgs {
    /// Resources considered (default cpu and memory).
    #[serde(default = "default_resources")]
    pub resources: Vec<ResourceSpec>,
}

impl Default for BalancedAllocationArgs {
    fn default() -> Self {
        BalancedAllocationArgs {
            resources: default_resources(),
        }
    }
}

/// The BalancedAllocation plugin (PreScore, Score; default weight 1).
#[derive(Debug, Default)]
pub struct BalancedAllocation {
    args: BalancedAllocationArgs,
}

impl BalancedAllocation {
    /// Builds the plugin.
    pub fn new(args: BalancedAllocationArgs) -> Self {
        BalancedAllocation { args }
    }
}

impl Plugin for BalancedAllocation {
    fn name(&self) -> &'static str {
        NAME
    }
    extension_points!(PreScore, Score);
}

impl PreScorePlugin for BalancedAllocation {
    /// Best-effort pods (no requests at all) are skipped, as upstream (kubernetes#129138).
    fn pre_score(
        &self,
        _: &mut CycleState,
        pod: &PodInfo,
        _: &[Arc<NodeInfo>],
        _: &Snapshot,
    ) -> Status {
        if self
            .args
            .resources
            .iter()
            .all(|r| pod.requests.get(&r.name) == 0)
        {
            Status::skip()
        } else {
            Status::success()
        }
    }
}

/// (1 - standard deviation of the utilization fractions) × 100.
pub fn balanced_score(requested: &[i64], allocatable: &[i64]) -> i64 {
    let fractions: Vec<f64> = requested
        .iter()
        .zip(allocatable)
        .filter(|(_, a)| **a != 0)
        .map(|(r, a)| (*r as f64 / *a as f64).min(1.0))
        .collect();
    let std = match fractions.len() {
        2 => ((fractions[0] - fractions[1]) / 2.0).abs(),
        n if n > 2 => {
            let mean = fractions.iter().sum::<f64>() / n as f64;
            (fractions
                .iter()
                .map(|f| (f - mean) * (f - mean))
                .sum::<f64>()
                / n as f64)
                .sqrt()
        }
        _ => 0.0,
    };
    ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
}

impl ScorePlugin for BalancedAllocation {
    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> (i64, Status) {
        let (mut req, mut alloc) = (Vec::new(), Vec::new());
        for r in &self.args.resources {
            let (a, q) = alloc_and_request(node, &r.name, pod.requests.get(&r.name), true);
            alloc.push(a);
            req.push(q);
        }
        (balanced_score(&req, &alloc), Status::success())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testutil::*;
    use serde_json::json;

    #[test]
    fn balanced_is_better() {
        let n = node_info(node("n", "4", "4000", json!({})), &[]);
        // cpu 50%, mem 50% → 100; cpu 75%, mem 25% → 75.
        let b = BalancedAllocation::default();
        assert_eq!(b.score(&state(), &pod_req("p", "2", "2000"), &n).0, 100);
        assert_eq!(b.score(&state(), &pod_req("p", "3", "1000"), &n).0, 75);
    }

    #[test]
    fn best_effort_pods_skip() {
        let s = BalancedAllocation::default().pre_score(
            &mut state(),
            &pod("p", json!({})),
            &[],
            &Snapshot::default(),
        );
        assert_eq!(s.code, Code::Skip);
    }

    #[test]
    fn three_resources_use_std_formula() {
        assert_eq!(balanced_score(&[1, 1, 1], &[2, 2, 2]), 100);
        // fractions 0, 0.5, 1 → std ≈ 0.408 → 59
        assert_eq!(balanced_score(&[0, 1, 2], &[2, 2, 2]), 59);
    }
}
