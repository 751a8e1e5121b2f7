//! NodeResourcesFit: the node must have room for the pod's requests (incl. init
//! containers, sidecars and overhead); nodes are scored by LeastAllocated (default),
//! MostAllocated or RequestedToCapacityRatio.

use std::sync::Arc;

use serde::Deserialize;

use crate::framework::*;
use crate::snapshot::{NodeInfo, PodInfo, Resource, Snapshot};

/// Registry name.
pub const NAME: &str = "NodeResourcesFit";

/// A resource and its weight in scoring.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ResourceSpec {
    /// Resource name (cpu, memory, or an extended resource).
    pub name: String,
    /// Weight (default 1).
    #[serde(default = "one")]
    pub weight: i64,
}

fn one() -> i64 {
    1
}

/// One point of a RequestedToCapacityRatio shape.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UtilizationShapePoint {
    /// Utilization in percent (0-100).
    pub utilization: i32,
    /// Score at that utilization (0-10).
    pub score: i32,
}

/// requestedToCapacityRatio parameters.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct RequestedToCapacityRatioParam {
    /// The shape.
    #[serde(default)]
    pub shape: Vec<UtilizationShapePoint>,
}

/// NodeResourcesFitArgs.scoringStrategy.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ScoringStrategy {
    /// LeastAllocated, MostAllocated or RequestedToCapacityRatio.
    #[serde(rename = "type", default = "least")]
    pub kind: String,
    /// Resources and weights (default cpu:1, memory:1).
    #[serde(default = "default_resources")]
    pub resources: Vec<ResourceSpec>,
    /// Shape for RequestedToCapacityRatio.
    #[serde(default)]
    pub requested_to_capacity_ratio: Option<RequestedToCapacityRatioParam>,
}

fn least() -> String {
    "LeastAllocated".into()
}

/// cpu and memory, weight 1 each (upstream's default).
pub fn default_resources() -> Vec<ResourceSpec> {
    vec![
        ResourceSpec {
            name: "cpu".into(),
            weight: 1,
        },
        ResourceSpec {
            name: "memory".into(),
            weight: 1,
        },
    ]
}

impl Default for ScoringStrategy {
    fn default() -> Self {
        ScoringStrategy {
            kind: least(),
            resources: default_resources(),
            requested_to_capacity_ratio: None,
        }
    }
}

/// NodeResourcesFitArgs (kubescheduler.config.k8s.io/v1).
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NodeResourcesFitArgs {
    /// Extended resources the filter ignores.
    #[serde(default)]
    pub ignored_resources: Vec<String>,
    /// Extended resource groups (prefix before '/') the filter ignores.
    #[serde(default)]
    pub ignored_resource_groups: Vec<String>,
    /// How to score.
    #[serde(default)]
    pub scoring_strategy: Option<ScoringStrategy>,
}

/// The NodeResourcesFit plugin (PreFilter, Filter, Score; default weight 1).
#[derive(Debug, Default)]
pub struct NodeResourcesFit {
    args: NodeResourcesFitArgs,
    strategy: ScoringStrategy,
}

impl NodeResourcesFit {
    /// Builds the plugin from its args; rejects an unknown scoring strategy.
    pub fn new(args: NodeResourcesFitArgs) -> anyhow::Result<Self> {
        let strategy = args.scoring_strategy.clone().unwrap_or_default();
        match strategy.kind.as_str() {
            "LeastAllocated" | "MostAllocated" => {}
            "RequestedToCapacityRatio" => {
                let shape = strategy.requested_to_capacity_ratio.as_ref().map(|r| r.shape.len()).unwrap_or(0);
                anyhow::ensure!(shape > 0, "scoringStrategy.requestedToCapacityRatio.shape: Required value");
            }
            other => anyhow::bail!("scoringStrategy.type: Unsupported value: {other:?}: supported values: \"LeastAllocated\", \"MostAllocated\", \"RequestedToCapacityRatio\""),
        }
        Ok(NodeResourcesFit { args, strategy })
    }

    fn ignored(&self, name: &str) -> bool {
        self.args.ignored_resources.iter().any(|r| r == name)
            || name
                .split_once('/')
                .is_some_and(|(g, _)| self.args.ignored_resource_groups.iter().any(|r| r == g))
    }
}

impl Plugin for NodeResourcesFit {
    fn name(&self) -> &'static str {
        NAME
    }
    fn events(&self) -> Vec<ClusterEvent> {
        vec![
            ClusterEvent::new(EventResource::AssignedPod, Action::DELETE | Action::UPDATE),
            ClusterEvent::new(
                EventResource::Node,
                Action::ADD | Action::UPDATE_ALLOCATABLE,
            ),
            ClusterEvent::new(EventResource::UnscheduledPod, Action::UPDATE),
        ]
    }
    extension_points!(PreFilter, Filter, Score);
}

impl PreFilterPlugin for NodeResourcesFit {
    fn pre_filter(
        &self,
        _: &mut CycleState,
        _: &PodInfo,
        _: &Snapshot,
    ) -> (Option<PreFilterResult>, Status) {
        // Requests are precomputed on PodInfo; nothing to store.
        (None, Status::success())
    }
}

/// One resource the node lacks.
#[derive(Debug, Clone, PartialEq)]
pub struct Insufficient {
    /// Upstream's reason, e.g. "Insufficient cpu".
    pub reason: String,
    /// The pod asks for more than the node's whole allocatable.
    pub unresolvable: bool,
}

/// Which of the pod's requests the node cannot satisfy, as upstream's fitsRequest.
pub fn fits_request(
    req: &Resource,
    node: &NodeInfo,
    ignored: impl Fn(&str) -> bool,
) -> Vec<Insufficient> {
    let mut out = Vec::new();
    if node.pods.len() as i64 + 1 > node.allocatable.allowed_pod_number {
        out.push(Insufficient {
            reason: "Too many pods".into(),
            unresolvable: false,
        });
    }
    if req.is_zero() {
        return out;
    }
    let (a, u) = (&node.allocatable, &node.requested);
    let mut check = |name: &str, want: i64, alloc: i64, used: i64| {
        if want > 0 && want > alloc - used {
            out.push(Insufficient {
                reason: format!("Insufficient {name}"),
                unresolvable: want > alloc,
            });
        }
    };
    check("cpu", req.milli_cpu, a.milli_cpu, u.milli_cpu);
    check("memory", req.memory, a.memory, u.memory);
    check(
        "ephemeral-storage",
        req.ephemeral_storage,
        a.ephemeral_storage,
        u.ephemeral_storage,
    );
    for (name, want) in &req.scalar {
        if *want == 0 || ignored(name) {
            continue;
        }
        let alloc = a.scalar.get(name).copied().unwrap_or(0);
        let used = u.scalar.get(name).copied().unwrap_or(0);
        if *want > alloc - used {
            out.push(Insufficient {
                reason: format!("Insufficient {name}"),
                unresolvable: *want > alloc,
            });
        }
    }
    out
}

impl FilterPlugin for NodeResourcesFit {
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let missing = fits_request(&pod.requests, node, |n| self.ignored(n));
        if missing.is_empty() {
            return Status::success();
        }
        let code = if missing.iter().any(|m| m.unresolvable) {
            Code::UnschedulableAndUnresolvable
        } else {
            Code::Unschedulable
        };
        Status::with_reasons(code, missing.into_iter().map(|m| m.reason).collect())
    }
}

/// (allocatable, requested incl. the pod) of one resource, as upstream's
/// calculateResourceAllocatableRequest; (0, 0) skips the resource.
pub fn alloc_and_request(
    node: &NodeInfo,
    name: &str,
    pod_req: i64,
    use_requested: bool,
) -> (i64, i64) {
    if pod_req == 0 && !matches!(name, "cpu" | "memory" | "ephemeral-storage") {
        return (0, 0);
    }
    let requested = if use_requested {
        &node.requested
    } else {
        &node.non_zero_requested
    };
    match name {
        "cpu" => (node.allocatable.milli_cpu, requested.milli_cpu + pod_req),
        "memory" => (node.allocatable.memory, requested.memory + pod_req),
        "ephemeral-storage" => (
            node.allocatable.ephemeral_storage,
            node.requested.ephemeral_storage + pod_req,
        ),
        other => match node.allocatable.scalar.get(other) {
            Some(a) => (
                *a,
                node.requested.scalar.get(other).copied().unwrap_or(0) + pod_req,
            ),
            None => (0, 0),
        },
    }
}

fn least_requested(requested: i64, capacity: i64) -> i64 {
    if capacity == 0 || requested > capacity {
        return 0;
    }
    (capacity - requested) * MAX_NODE_SCORE / capacity
}

fn most_requested(requested: i64, capacity: i64) -> i64 {
    if capacity == 0 {
        return 0;
    }
    requested.min(capacity) * MAX_NODE_SCORE / capacity
}

/// Piecewise-linear function over the (utilization, score×10) shape.
fn broken_linear(shape: &[UtilizationShapePoint], utilization: i64) -> i64 {
    let pts: Vec<(i64, i64)> = shape
        .iter()
        .map(|p| (p.utilization as i64, p.score as i64 * MAX_NODE_SCORE / 10))
        .collect();
    let Some(first) = pts.first() else { return 0 };
    if utilization <= first.0 {
        return first.1;
    }
    for w in pts.windows(2) {
        let ((x0, y0), (x1, y1)) = (w[0], w[1]);
        if utilization <= x1 {
            return y0 + (y1 - y0) * (utilization - x0) / (x1 - x0);
        }
    }
    pts.last().map(|p| p.1).unwrap_or(0)
}

impl ScorePlugin for NodeResourcesFit {
    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> (i64, Status) {
        let (mut sum, mut weights, mut fsum) = (0i64, 0i64, 0f64);
        for r in &self.strategy.resources {
            let pod_req = pod.non_zero_requests.get(&r.name);
            let (alloc, req) = alloc_and_request(node, &r.name, pod_req, false);
            if alloc == 0 {
                continue;
            }
            match self.strategy.kind.as_str() {
                "MostAllocated" => sum += most_requested(req, alloc) * r.weight,
                "RequestedToCapacityRatio" => {
                    let shape = &self
                        .strategy
                        .requested_to_capacity_ratio
                        .as_ref()
                        .expect("validated")
                        .shape;
                    let util = if req > alloc { 100 } else { req * 100 / alloc };
                    fsum += (broken_linear(shape, util) * r.weight) as f64;
                }
                _ => sum += least_requested(req, alloc) * r.weight,
            }
            weights += r.weight;
        }
        if weights == 0 {
            return (0, Status::success());
        }
        let score = if self.strategy.kind == "RequestedToCapacityRatio" {
            (fsum / weights as f64).round() as i64
        } else {
            sum / weights
        };
        (score, Status::success())
    }
}

/// Resources requested by a pod list (used by preemption to test fits after removals).
pub fn pods_request(pods: &[Arc<PodInfo>]) -> Resource {
    let mut r = Resource::default();
    for p in pods {
        r.add(&p.requests);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testutil::*;
    use serde_json::json;

    fn fit() -> NodeResourcesFit {
        NodeResourcesFit::new(NodeResourcesFitArgs::default()).unwrap()
    }

    #[test]
    fn insufficient_cpu_and_memory_reasons() {
        let n = node_info(
            node("n", "2", "4Gi", json!({})),
            &[pod_req("a", "1500m", "3Gi")],
        );
        let s = fit().filter(&state(), &pod_req("p", "1", "2Gi"), &n);
        assert_eq!(s.code, Code::Unschedulable);
        assert_eq!(s.reasons, vec!["Insufficient cpu", "Insufficient memory"]);
        let s = fit().filter(&state(), &pod_req("p", "3", "1Mi"), &n);
        assert_eq!(s.code, Code::UnschedulableAndUnresolvable);
        assert!(fit()
            .filter(&state(), &pod_req("p", "500m", "1Gi"), &n)
            .is_success());
    }

    #[test]
    fn init_containers_and_overhead_count() {
        let n = node_info(node("n", "2", "4Gi", json!({})), &[]);
        let p = pod(
            "p",
            json!({
            "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "2"}}}],
            "containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}],
            "overhead": {"cpu": "100m"}}),
        );
        assert_eq!(
            fit().filter(&state(), &p, &n).reasons,
            vec!["Insufficient cpu"]
        );
    }

    #[test]
    fn too_many_pods() {
        let mut n = node_info(node("n", "2", "4Gi", json!({})), &[]);
        n.allocatable.allowed_pod_number = 1;
        n.add_pod(pod("a", json!({})));
        assert_eq!(
            fit().filter(&state(), &pod("p", json!({})), &n).reasons,
            vec!["Too many pods"]
        );
    }

    #[test]
    fn extended_resources_and_ignored() {
        let mut nd = node("n", "2", "4Gi", json!({}));
        nd.status
            .as_mut()
            .unwrap()
            .allocatable
            .as_mut()
            .unwrap()
            .insert(
                "example.com/gpu".into(),
                k8s_openapi::apimachinery::pkg::api::resource::Quantity("1".into()),
            );
        let n = node_info(nd, &[]);
        let p = pod(
            "p",
            json!({"containers": [{"name": "c", "resources": {"requests": {"example.com/gpu": "2"}}}]}),
        );
        assert_eq!(
            fit().filter(&state(), &p, &n).reasons,
            vec!["Insufficient example.com/gpu"]
        );
        let ignoring = NodeResourcesFit::new(NodeResourcesFitArgs {
            ignored_resource_groups: vec!["example.com".into()],
            ..Default::default()
        })
        .unwrap();
        assert!(ignoring.filter(&state(), &p, &n).is_success());
    }

    #[test]
    fn least_allocated_score_as_upstream() {
        // Upstream example: node 4000m/10000 with nothing; pod 3000m/5000 → cpu 25, mem 50 → 37.
        let n = node_info(node("n", "4", "10000", json!({})), &[]);
        let p = pod_req("p", "3", "5000");
        assert_eq!(fit().score(&state(), &p, &n).0, 37);
        let most = NodeResourcesFit::new(NodeResourcesFitArgs {
            scoring_strategy: Some(ScoringStrategy {
                kind: "MostAllocated".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(most.score(&state(), &p, &n).0, 62);
    }

    #[test]
    fn requested_to_capacity_ratio() {
        let args: NodeResourcesFitArgs = serde_json::from_value(json!({"scoringStrategy": {
            "type": "RequestedToCapacityRatio",
            "requestedToCapacityRatio": {"shape": [{"utilization": 0, "score": 0}, {"utilization": 100, "score": 10}]}}})).unwrap();
        let f = NodeResourcesFit::new(args).unwrap();
        let n = node_info(node("n", "4", "10000", json!({})), &[]);
        // cpu 75% → 75, mem 50% → 50; mean 62.5 → 63.
        assert_eq!(f.score(&state(), &pod_req("p", "3", "5000"), &n).0, 63);
        assert!(NodeResourcesFit::new(NodeResourcesFitArgs {
            scoring_strategy: Some(ScoringStrategy {
                kind: "Bogus".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .is_err());
    }

    #[test]
    fn request_less_pods_use_defaults_for_scoring() {
        let n = node_info(node("n", "1", "1000Mi", json!({})), &[]);
        // 100m of 1000m → 90; 200Mi of 1000Mi → 80; mean 85.
        assert_eq!(fit().score(&state(), &pod("p", json!({})), &n).0, 85);
    }
}
