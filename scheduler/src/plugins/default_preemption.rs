//! DefaultPreemption: when no node fits, find the node where evicting the fewest and
//! least important lower-priority pods (respecting PodDisruptionBudgets) makes room, and
//! nominate the pod there.

use std::sync::Arc;

use crate::framework::*;
use crate::snapshot::{NodeInfo, PodInfo};
use api_helpers::labels::matches;

/// Registry name.
pub const NAME: &str = "DefaultPreemption";
/// Status of nodes where preemption cannot help.
pub const NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";
/// Status of nodes where removing all lower-priority pods is not enough.
pub const NO_VICTIMS: &str = "No preemption victims found for incoming pod";

/// The DefaultPreemption PostFilter plugin.
#[derive(Debug, Default)]
pub struct DefaultPreemption;

impl Plugin for DefaultPreemption {
    fn name(&self) -> &'static str {
        NAME
    }
    extension_points!(PostFilter);
}

/// The victims on one node and how many PDBs their eviction would violate.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Node index in the snapshot.
    pub node: usize,
    /// Pods to evict.
    pub victims: Vec<Arc<PodInfo>>,
    /// Number of victims whose eviction violates a PDB.
    pub pdb_violations: usize,
}

fn start_time(p: &PodInfo) -> Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time> {
    p.pod.status.as_ref().and_then(|s| s.start_time.as_ref())
}

/// Upstream's MoreImportantPod: higher priority, then earlier start.
fn more_important(a: &PodInfo, b: &PodInfo) -> std::cmp::Ordering {
    b.priority
        .cmp(&a.priority)
        .then_with(|| match (start_time(a), start_time(b)) {
            (Some(x), Some(y)) => x.0.cmp(&y.0),
            _ => std::cmp::Ordering::Equal,
        })
}

/// Splits pods into (violating, non-violating) given PDBs' remaining disruptions.
fn split_by_pdb(
    pods: Vec<Arc<PodInfo>>,
    pdbs: &[(
        String,
        k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
        i32,
    )],
) -> (Vec<Arc<PodInfo>>, Vec<Arc<PodInfo>>) {
    let mut allowed: Vec<i32> = pdbs.iter().map(|p| p.2).collect();
    let (mut violating, mut ok) = (Vec::new(), Vec::new());
    for p in pods {
        let mut violates = false;
        for (i, (ns, sel, _)) in pdbs.iter().enumerate() {
            let empty = sel.match_labels.as_ref().is_none_or(|m| m.is_empty())
                && sel.match_expressions.as_ref().is_none_or(|e| e.is_empty());
            if ns != &p.namespace || empty || !matches(sel, Some(&p.labels)) {
                continue;
            }
            allowed[i] -= 1;
            if allowed[i] < 0 {
                violates = true;
            }
        }
        if violates {
            violating.push(p)
        } else {
            ok.push(p)
        }
    }
    (violating, ok)
}

/// Dry-runs preemption on one node: Ok(candidate) or the node's failure status.
pub fn select_victims(input: &PostFilterInput<'_>, idx: usize) -> Result<Candidate, Status> {
    let (fw, pod) = (input.framework, input.pod);
    let orig: &NodeInfo = &input.snapshot.nodes[idx];
    let mut node = orig.clone();
    let mut state = input.state.clone();
    let mut potential: Vec<Arc<PodInfo>> = orig
        .pods
        .iter()
        .filter(|p| p.priority < pod.priority)
        .cloned()
        .collect();
    if potential.is_empty() {
        return Err(Status::new(Code::UnschedulableAndUnresolvable, NO_VICTIMS));
    }
    for v in &potential {
        node.remove_pod(&v.uid);
        fw.run_pre_filter_remove_pod(&mut state, pod, v, &node);
    }
    let s = fw.run_filters(&state, pod, &node);
    if !s.is_success() {
        return Err(s);
    }
    potential.sort_by(|a, b| more_important(a, b));
    let (violating, ok) = split_by_pdb(potential, &input.snapshot.workloads.pdbs);
    let mut victims = Vec::new();
    let mut pdb_violations = 0;
    for (group, is_violating) in [(violating, true), (ok, false)] {
        for v in group {
            node.add_pod(v.clone());
            fw.run_pre_filter_add_pod(&mut state, pod, &v, &node);
            if !fw.run_filters(&state, pod, &node).is_success() {
                node.remove_pod(&v.uid);
                fw.run_pre_filter_remove_pod(&mut state, pod, &v, &node);
                if is_violating {
                    pdb_violations += 1;
                }
                victims.push(v);
            }
        }
    }
    if victims.is_empty() {
        // The pod fits without evicting anything (e.g. resources freed meanwhile).
        return Err(Status::new(Code::UnschedulableAndUnresolvable, NO_VICTIMS));
    }
    Ok(Candidate {
        node: idx,
        victims,
        pdb_violations,
    })
}

/// Upstream's candidate budget: 10% of the nodes, at least 100.
pub fn num_candidates(nodes: usize) -> usize {
    (nodes * 10 / 100).max(100).min(nodes)
}

/// Upstream's pickOneNodeForPreemption ordering: fewest PDB violations, lowest highest
/// victim priority, lowest priority sum, fewest victims.
pub fn pick_candidate(cands: &[Candidate]) -> Option<&Candidate> {
    cands.iter().min_by_key(|c| {
        let top = c
            .victims
            .iter()
            .map(|v| v.priority)
            .max()
            .unwrap_or(i32::MIN);
        let sum: i64 = c
            .victims
            .iter()
            .map(|v| v.priority as i64 + i32::MAX as i64 + 1)
            .sum();
        (c.pdb_violations, top, sum, c.victims.len())
    })
}

impl PostFilterPlugin for DefaultPreemption {
    fn post_filter(&self, input: &PostFilterInput<'_>) -> (Option<PostFilterResult>, Status) {
        let pod = input.pod;
        let spec = pod.pod.spec.as_ref();
        if spec.and_then(|s| s.preemption_policy.as_deref()) == Some("Never") {
            return (
                None,
                Status::new(
                    Code::Unschedulable,
                    "preemption: not eligible due to preemptionPolicy=Never.",
                ),
            );
        }
        let n = input.snapshot.nodes.len();
        let potential: Vec<usize> = (0..n)
            .filter(|i| {
                input
                    .node_statuses
                    .get(*i)
                    .and_then(|s| s.as_ref())
                    .is_some_and(|s| s.code == Code::Unschedulable)
            })
            .collect();
        let mut statuses: Vec<(String, Status)> = Vec::new();
        let mut cands = Vec::new();
        // As upstream: dry-run from a random offset until enough candidates are found.
        let wanted = num_candidates(n);
        let offset = if potential.is_empty() {
            0
        } else {
            rand::random_range(0..potential.len())
        };
        for k in 0..potential.len() {
            let i = potential[(offset + k) % potential.len()];
            if cands.len() >= wanted {
                break;
            }
            match select_victims(input, i) {
                Ok(c) => cands.push(c),
                Err(s) => statuses.push((input.snapshot.nodes[i].name.clone(), s)),
            }
        }
        let Some(best) = pick_candidate(&cands) else {
            let fe = FitError {
                num_all_nodes: n,
                diagnosis: Diagnosis {
                    node_statuses: statuses,
                    absent_status: Some(Status::new(
                        Code::UnschedulableAndUnresolvable,
                        NOT_HELPFUL,
                    )),
                    ..Default::default()
                },
            };
            return (
                Some(PostFilterResult::default()),
                Status::new(Code::Unschedulable, format!("preemption: {}", fe.message())),
            );
        };
        let result = PostFilterResult {
            nominated_node: input.snapshot.nodes[best.node].name.clone(),
            victims: best.victims.clone(),
        };
        (Some(result), Status::success())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::runtime::Framework;
    use crate::plugins::node_resources_fit::{NodeResourcesFit, NodeResourcesFitArgs};
    use crate::plugins::taint_toleration::TaintToleration;
    use crate::plugins::testutil::*;
    use serde_json::json;

    fn prio(name: &str, cpu: &str, priority: i32) -> Arc<PodInfo> {
        pod(
            name,
            json!({"priority": priority, "containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]}),
        )
    }

    fn run(nodes: Vec<NodeInfo>, p: &PodInfo) -> (Option<PostFilterResult>, Status) {
        let fit: Arc<dyn Plugin> =
            Arc::new(NodeResourcesFit::new(NodeResourcesFitArgs::default()).unwrap());
        let tt: Arc<dyn Plugin> = Arc::new(TaintToleration);
        let fw = Framework {
            filter: vec![tt, fit.clone()],
            pre_filter: vec![fit],
            ..Default::default()
        };
        let snap = snapshot(nodes);
        let st = state();
        let statuses: Vec<Option<Status>> = snap
            .nodes
            .iter()
            .map(|n| Some(fw.run_filters(&st, p, n)))
            .collect();
        let input = PostFilterInput {
            framework: &fw,
            state: &st,
            pod: p,
            snapshot: &snap,
            node_statuses: &statuses,
            nominated: &[],
        };
        DefaultPreemption.post_filter(&input)
    }

    #[test]
    fn evicts_lowest_priority_minimal_set() {
        let a = node_info(
            node("a", "2", "1Gi", json!({})),
            &[prio("a1", "1", 10), prio("a2", "1", 5)],
        );
        let b = node_info(
            node("b", "2", "1Gi", json!({})),
            &[prio("b1", "1", 1), prio("b2", "1", 1)],
        );
        let (r, s) = run(vec![a, b], &prio("hi", "1", 100));
        assert!(s.is_success(), "{s}");
        let r = r.unwrap();
        assert_eq!(r.nominated_node, "b");
        assert_eq!(r.victims.len(), 1);
    }

    #[test]
    fn not_helpful_message() {
        let tainted = node_info(
            node_with(
                "t",
                "2",
                "1Gi",
                json!({}),
                json!({"taints": [{"key": "k", "effect": "NoSchedule"}]}),
            ),
            &[],
        );
        let same_prio = node_info(node("s", "1", "1Gi", json!({})), &[prio("x", "1", 100)]);
        let (_, s) = run(vec![tainted, same_prio], &prio("hi", "1", 100));
        assert_eq!(
            s.message(),
            "preemption: 0/2 nodes are available: 1 No preemption victims found for incoming pod, 1 Preemption is not helpful for scheduling."
        );
    }

    #[test]
    fn policy_never() {
        let p = pod("p", json!({"priority": 5, "preemptionPolicy": "Never"}));
        let (_, s) = run(vec![], &p);
        assert_eq!(
            s.message(),
            "preemption: not eligible due to preemptionPolicy=Never."
        );
    }
}
