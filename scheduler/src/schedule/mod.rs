//! One scheduling cycle's algorithm: PreFilter, Filter over (a sample of) the nodes in
//! parallel, PreScore/Score in parallel, and host selection — pure over a snapshot.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rand::Rng;
use rayon::prelude::*;

use crate::framework::*;
use crate::snapshot::{NodeInfo, PodInfo, Snapshot};

/// Upstream's minFeasibleNodesToFind.
pub const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;
/// Upstream's minFeasibleNodesPercentageToFind.
pub const MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND: usize = 5;
/// Upstream's message when the cluster has no nodes.
pub const NO_NODES_AVAILABLE: &str = "no nodes available to schedule pods";

/// How many feasible nodes to find before scoring, as upstream's numFeasibleNodesToFind:
/// with percentage 0 the adaptive default `max(5, 50 - nodes/125)`%, never fewer than 100.
pub fn num_feasible_nodes_to_find(percentage: i32, num_all: usize) -> usize {
    if num_all < MIN_FEASIBLE_NODES_TO_FIND || percentage >= 100 {
        return num_all;
    }
    let pct = if percentage <= 0 {
        (50usize.saturating_sub(num_all / 125)).max(MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND)
    } else {
        percentage as usize
    };
    (num_all * pct / 100).max(MIN_FEASIBLE_NODES_TO_FIND)
}

/// Where the pod should go.
#[derive(Debug, Clone)]
pub struct ScheduleResult {
    /// The chosen node.
    pub node: String,
    /// Nodes evaluated by Filter.
    pub evaluated: usize,
    /// Nodes that passed Filter.
    pub feasible: usize,
}

/// Why no node was chosen.
#[derive(Debug, Clone)]
pub enum ScheduleError {
    /// The cluster has no nodes.
    NoNodes,
    /// The pod fits nowhere; `statuses` has each node's Filter status (by snapshot index).
    Fit {
        /// The diagnosis.
        error: Box<FitError>,
        /// Per snapshot index, the node's status (None: feasible or not evaluated).
        statuses: Vec<Option<Status>>,
    },
    /// A plugin failed.
    Internal(Status),
}

/// Cross-cycle state of the algorithm: where the next cycle starts evaluating nodes.
#[derive(Debug, Default, Clone)]
pub struct Rotation {
    /// Index of the first node the next cycle evaluates.
    pub next_start: usize,
}

/// Nominated pods per node name.
pub type Nominated = HashMap<String, Vec<Arc<PodInfo>>>;

fn fit_error(
    n: usize,
    snap: &Snapshot,
    statuses: Vec<Option<Status>>,
    pre_filter: Option<&Status>,
) -> ScheduleError {
    let mut d = Diagnosis::default();
    if let Some(s) = pre_filter {
        d.pre_filter_msg = s.message();
        d.unschedulable_plugins.insert(s.plugin);
    }
    for (i, s) in statuses.iter().enumerate() {
        if let Some(s) = s {
            d.unschedulable_plugins.insert(s.plugin);
            if pre_filter.is_none() {
                d.node_statuses
                    .push((snap.nodes[i].name.clone(), s.clone()));
            }
        }
    }
    d.unschedulable_plugins.remove("");
    ScheduleError::Fit {
        error: Box::new(FitError {
            num_all_nodes: n,
            diagnosis: d,
        }),
        statuses,
    }
}

/// Runs one scheduling cycle's algorithm for `pod` over `snap`.
pub fn schedule_pod(
    fw: &Framework,
    state: &mut CycleState,
    pod: &PodInfo,
    snap: &Snapshot,
    rotation: &mut Rotation,
    nominated: &Nominated,
    percentage: i32,
) -> Result<ScheduleResult, ScheduleError> {
    let n = snap.nodes.len();
    if n == 0 {
        return Err(ScheduleError::NoNodes);
    }
    let (allowed, s) = fw.run_pre_filter(state, pod, snap);
    if !s.is_success() {
        if s.code == Code::Error {
            return Err(ScheduleError::Internal(s));
        }
        return Err(fit_error(n, snap, vec![Some(s.clone()); n], Some(&s)));
    }
    let no_nominated = Vec::new();
    let nominated_on = |node: &NodeInfo| nominated.get(&node.name).unwrap_or(&no_nominated);

    // The nominated node (from an earlier preemption) is tried first.
    let nominated_node = pod
        .pod
        .status
        .as_ref()
        .and_then(|s| s.nominated_node_name.as_deref())
        .filter(|s| !s.is_empty());
    if let Some(node) = nominated_node.and_then(|name| snap.get(name)) {
        if allowed.as_ref().is_none_or(|a| a.contains(&node.name))
            && fw
                .run_filters_with_nominated(state, pod, node, nominated_on(node))
                .is_success()
        {
            return Ok(ScheduleResult {
                node: node.name.clone(),
                evaluated: 1,
                feasible: 1,
            });
        }
    }

    let mut statuses: Vec<Option<Status>> = Vec::new();
    let candidates: Vec<usize> = match &allowed {
        Some(set) => {
            statuses = vec![None; n];
            let outside = Status::new(
                Code::UnschedulableAndUnresolvable,
                "node(s) didn't satisfy plugin(s) [NodeAffinity]",
            );
            let mut idx = Vec::new();
            for (i, node) in snap.nodes.iter().enumerate() {
                if set.contains(&node.name) {
                    idx.push(i);
                } else {
                    statuses[i] = Some(outside.clone());
                }
            }
            idx
        }
        None => Vec::new(),
    };
    let total = if allowed.is_some() {
        candidates.len()
    } else {
        n
    };
    let to_find =
        num_feasible_nodes_to_find(fw.percentage_of_nodes_to_score.unwrap_or(percentage), total);
    let start = if allowed.is_some() {
        0
    } else {
        rotation.next_start % n
    };
    let found = AtomicUsize::new(0);
    let state_ref: &CycleState = state;
    let results: Vec<(usize, usize, Status)> = (0..total)
        .into_par_iter()
        .with_min_len(16)
        .filter_map(|k| {
            if found.load(Ordering::Relaxed) >= to_find {
                return None;
            }
            let i = if allowed.is_some() {
                candidates[k]
            } else {
                (start + k) % n
            };
            let node = &snap.nodes[i];
            let s = fw.run_filters_with_nominated(state_ref, pod, node, nominated_on(node));
            if s.is_success() {
                found.fetch_add(1, Ordering::Relaxed);
            }
            Some((k, i, s))
        })
        .collect();
    let evaluated = results.len();
    if allowed.is_none() {
        rotation.next_start = (start + evaluated) % n;
    }
    let mut feasible: Vec<(usize, usize)> = Vec::new();
    let mut failed: Vec<(usize, Status)> = Vec::new();
    for (k, i, s) in results {
        if s.is_success() {
            feasible.push((k, i));
        } else if s.code == Code::Error {
            return Err(ScheduleError::Internal(s));
        } else {
            failed.push((i, s));
        }
    }
    if feasible.is_empty() {
        if statuses.is_empty() {
            statuses = vec![None; n];
        }
        for (i, s) in failed {
            statuses[i] = Some(s);
        }
        return Err(fit_error(n, snap, statuses, None));
    }
    feasible.sort_unstable();
    feasible.truncate(to_find);
    let nodes: Vec<Arc<NodeInfo>> = feasible
        .iter()
        .map(|(_, i)| snap.nodes[*i].clone())
        .collect();
    if nodes.len() == 1 {
        return Ok(ScheduleResult {
            node: nodes[0].name.clone(),
            evaluated,
            feasible: 1,
        });
    }
    let s = fw.run_pre_score(state, pod, &nodes, snap);
    if !s.is_success() {
        return Err(ScheduleError::Internal(s));
    }
    let scores = fw
        .run_score(state, pod, &nodes)
        .map_err(ScheduleError::Internal)?;
    let best = select_host(&scores, &mut rand::rng());
    Ok(ScheduleResult {
        node: nodes[best].name.clone(),
        evaluated,
        feasible: nodes.len(),
    })
}

/// Index of the highest score; ties broken uniformly at random (reservoir sampling).
pub fn select_host(scores: &[i64], rng: &mut impl Rng) -> usize {
    let mut best = 0;
    let mut ties = 0u32;
    for (i, s) in scores.iter().enumerate() {
        if *s > scores[best] || i == 0 {
            best = i;
            ties = 1;
        } else if *s == scores[best] {
            ties += 1;
            if rng.random_range(0..ties) == 0 {
                best = i;
            }
        }
    }
    best
}

/// The plugins that rejected the pod, for the queue's event filtering.
pub fn rejectors(err: &ScheduleError) -> HashSet<&'static str> {
    match err {
        ScheduleError::Fit { error, .. } => error.diagnosis.unschedulable_plugins.clone(),
        _ => HashSet::new(),
    }
}

#[cfg(test)]
mod tests;
