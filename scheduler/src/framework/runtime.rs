//! A profile's framework: the ordered plugins of each extension point and the code that
//! runs them.

use std::collections::HashSet;
use std::sync::Arc;

use rayon::prelude::*;

use super::cycle_state::CycleState;
use super::interface::*;
use super::status::{Code, Status};
use crate::snapshot::{NodeInfo, PodInfo, Snapshot};

/// A plugin enabled at the Score extension point, with its weight.
#[derive(Clone)]
pub struct WeightedPlugin {
    /// The plugin.
    pub plugin: Arc<dyn Plugin>,
    /// Its weight (upstream default: 1 unless the plugin's default says otherwise).
    pub weight: i64,
}

/// The plugins of one profile, per extension point, in order.
#[derive(Clone, Default)]
pub struct Framework {
    /// The profile's schedulerName.
    pub profile_name: String,
    /// `percentageOfNodesToScore` of the profile (None: the scheduler-wide value).
    pub percentage_of_nodes_to_score: Option<i32>,
    /// PreEnqueue plugins.
    pub pre_enqueue: Vec<Arc<dyn Plugin>>,
    /// The QueueSort plugin.
    pub queue_sort: Option<Arc<dyn Plugin>>,
    /// PreFilter plugins.
    pub pre_filter: Vec<Arc<dyn Plugin>>,
    /// Filter plugins.
    pub filter: Vec<Arc<dyn Plugin>>,
    /// PostFilter plugins.
    pub post_filter: Vec<Arc<dyn Plugin>>,
    /// PreScore plugins.
    pub pre_score: Vec<Arc<dyn Plugin>>,
    /// Score plugins with weights.
    pub score: Vec<WeightedPlugin>,
    /// Reserve plugins.
    pub reserve: Vec<Arc<dyn Plugin>>,
    /// Permit plugins.
    pub permit: Vec<Arc<dyn Plugin>>,
    /// PreBind plugins.
    pub pre_bind: Vec<Arc<dyn Plugin>>,
    /// Bind plugins.
    pub bind: Vec<Arc<dyn Plugin>>,
    /// PostBind plugins.
    pub post_bind: Vec<Arc<dyn Plugin>>,
}

impl std::fmt::Debug for Framework {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names = |v: &[Arc<dyn Plugin>]| v.iter().map(|p| p.name()).collect::<Vec<_>>();
        f.debug_struct("Framework")
            .field("profile", &self.profile_name)
            .field("filter", &names(&self.filter))
            .field(
                "score",
                &self
                    .score
                    .iter()
                    .map(|w| (w.plugin.name(), w.weight))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Framework {
    /// Runs PreEnqueue plugins; the first non-success keeps the pod out of the active queue.
    pub fn run_pre_enqueue(&self, pod: &PodInfo) -> Status {
        for p in &self.pre_enqueue {
            if let Some(pe) = p.as_pre_enqueue() {
                let s = pe.pre_enqueue(pod);
                if !s.is_success() {
                    return s.by(p.name());
                }
            }
        }
        Status::success()
    }

    /// Whether `a` goes before `b` in the active queue.
    pub fn queue_less(&self, a: &QueuedPod, b: &QueuedPod) -> bool {
        match self.queue_sort.as_ref().and_then(|p| p.as_queue_sort()) {
            Some(qs) => qs.less(a, b),
            None => a.timestamp_ms < b.timestamp_ms,
        }
    }

    /// Runs PreFilter plugins. Returns the intersection of their node sets, and the first
    /// rejection (plugins after it do not run).
    pub fn run_pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        snapshot: &Snapshot,
    ) -> (Option<HashSet<String>>, Status) {
        let mut nodes: Option<HashSet<String>> = None;
        for p in &self.pre_filter {
            let Some(pf) = p.as_pre_filter() else {
                continue;
            };
            let (res, s) = pf.pre_filter(state, pod, snapshot);
            match s.code {
                Code::Success => {}
                Code::Skip => {
                    state.skip_filter.push(p.name());
                    continue;
                }
                _ => return (None, s.by(p.name())),
            }
            if let Some(set) = res.and_then(|r| r.node_names) {
                nodes = Some(match nodes {
                    None => set,
                    Some(prev) => prev.intersection(&set).cloned().collect(),
                });
            }
        }
        (nodes, Status::success())
    }

    /// Lets PreFilter plugins account for `other` being added to `node` (preemption, nominated pods).
    pub fn run_pre_filter_add_pod(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        other: &PodInfo,
        node: &NodeInfo,
    ) {
        for p in &self.pre_filter {
            if let Some(pf) = p.as_pre_filter() {
                if !state.skip_filter.contains(&p.name()) {
                    pf.add_pod(state, pod, other, node);
                }
            }
        }
    }

    /// Lets PreFilter plugins account for `other` being removed from `node` (preemption).
    pub fn run_pre_filter_remove_pod(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        other: &PodInfo,
        node: &NodeInfo,
    ) {
        for p in &self.pre_filter {
            if let Some(pf) = p.as_pre_filter() {
                if !state.skip_filter.contains(&p.name()) {
                    pf.remove_pod(state, pod, other, node);
                }
            }
        }
    }

    /// Runs Filter plugins on one node, stopping at the first rejection.
    pub fn run_filters(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        for p in &self.filter {
            if state.skip_filter.contains(&p.name()) {
                continue;
            }
            let Some(f) = p.as_filter() else { continue };
            let s = f.filter(state, pod, node);
            if !s.is_success() && s.code != Code::Skip {
                return s.by(p.name());
            }
        }
        Status::success()
    }

    /// Runs Filter plugins as upstream's RunFilterPluginsWithNominatedPods: when pods of
    /// equal or higher priority are nominated to this node, the pod must fit both with
    /// and without them.
    pub fn run_filters_with_nominated(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        node: &NodeInfo,
        nominated: &[Arc<PodInfo>],
    ) -> Status {
        let relevant: Vec<&Arc<PodInfo>> = nominated
            .iter()
            .filter(|n| n.uid != pod.uid && n.priority >= pod.priority)
            .collect();
        if !relevant.is_empty() {
            let mut with = node.clone();
            let mut st = state.clone();
            for n in relevant {
                with.add_pod(n.clone());
                self.run_pre_filter_add_pod(&mut st, pod, n, &with);
            }
            let s = self.run_filters(&st, pod, &with);
            if !s.is_success() {
                return s;
            }
        }
        self.run_filters(state, pod, node)
    }

    /// Runs PostFilter plugins until one succeeds or says Unschedulable-and-done.
    pub fn run_post_filter(
        &self,
        input: &PostFilterInput<'_>,
    ) -> (Option<PostFilterResult>, Status) {
        let mut last = Status::new(Code::Unschedulable, "");
        for p in &self.post_filter {
            let Some(pf) = p.as_post_filter() else {
                continue;
            };
            let (r, s) = pf.post_filter(input);
            if s.is_success() {
                return (r, s.by(p.name()));
            }
            if s.code == Code::Error {
                return (None, s.by(p.name()));
            }
            last = s.by(p.name());
        }
        (None, last)
    }

    /// Runs PreScore plugins with the feasible nodes.
    pub fn run_pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        nodes: &[Arc<NodeInfo>],
        snapshot: &Snapshot,
    ) -> Status {
        for p in &self.pre_score {
            let Some(ps) = p.as_pre_score() else { continue };
            let s = ps.pre_score(state, pod, nodes, snapshot);
            match s.code {
                Code::Success => {}
                Code::Skip => state.skip_score.push(p.name()),
                _ => return s.by(p.name()),
            }
        }
        Status::success()
    }

    /// Runs Score plugins over the feasible nodes (in parallel), normalizes each plugin's
    /// scores and returns the weighted total per node.
    pub fn run_score(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        nodes: &[Arc<NodeInfo>],
    ) -> Result<Vec<i64>, Status> {
        let active: Vec<&WeightedPlugin> = self
            .score
            .iter()
            .filter(|w| {
                !state.skip_score.contains(&w.plugin.name()) && w.plugin.as_score().is_some()
            })
            .collect();
        // Per node, the raw score of each active plugin.
        let per_node: Vec<Result<Vec<i64>, Status>> = nodes
            .par_iter()
            .with_min_len(32)
            .map(|n| {
                active
                    .iter()
                    .map(|w| {
                        let (v, s) = w.plugin.as_score().expect("filtered").score(state, pod, n);
                        if s.is_success() {
                            Ok(v)
                        } else {
                            Err(s.by(w.plugin.name()))
                        }
                    })
                    .collect()
            })
            .collect();
        let mut matrix: Vec<Vec<i64>> = vec![Vec::with_capacity(nodes.len()); active.len()];
        for row in per_node {
            for (i, v) in row?.into_iter().enumerate() {
                matrix[i].push(v);
            }
        }
        let mut total = vec![0i64; nodes.len()];
        for (w, scores) in active.iter().zip(matrix.iter_mut()) {
            let s = w
                .plugin
                .as_score()
                .expect("filtered")
                .normalize(state, pod, nodes, scores);
            if !s.is_success() {
                return Err(s.by(w.plugin.name()));
            }
            for (t, v) in total.iter_mut().zip(scores.iter()) {
                if !(0..=MAX_NODE_SCORE).contains(v) {
                    return Err(Status::error(format!(
                        "plugin {:?} returns an invalid score {v}, it should in the range of [0, 100] after normalizing",
                        w.plugin.name()
                    )));
                }
                *t += v * w.weight;
            }
        }
        Ok(total)
    }

    /// Runs Reserve plugins; on failure the already-reserved ones are undone.
    pub fn run_reserve(&self, state: &CycleState, pod: &PodInfo, node: &str) -> Status {
        for (i, p) in self.reserve.iter().enumerate() {
            let Some(r) = p.as_reserve() else { continue };
            let s = r.reserve(state, pod, node);
            if !s.is_success() {
                for q in self.reserve[..i].iter().rev() {
                    if let Some(r) = q.as_reserve() {
                        r.unreserve(state, pod, node);
                    }
                }
                return s.by(p.name());
            }
        }
        Status::success()
    }

    /// Runs Unreserve of every Reserve plugin, in reverse order.
    pub fn run_unreserve(&self, state: &CycleState, pod: &PodInfo, node: &str) {
        for p in self.reserve.iter().rev() {
            if let Some(r) = p.as_reserve() {
                r.unreserve(state, pod, node);
            }
        }
    }

    /// Runs Permit plugins. Wait is reported as a rejection: no default plugin waits, and
    /// waiting pods are not supported yet.
    pub fn run_permit(&self, state: &CycleState, pod: &PodInfo, node: &str) -> Status {
        for p in &self.permit {
            let Some(pm) = p.as_permit() else { continue };
            let (s, _) = pm.permit(state, pod, node);
            match s.code {
                Code::Success | Code::Skip => {}
                Code::Wait => {
                    return Status::new(
                        Code::Unschedulable,
                        "waiting permit plugins are not supported",
                    )
                    .by(p.name())
                }
                _ => return s.by(p.name()),
            }
        }
        Status::success()
    }

    /// Runs PreBind plugins.
    pub async fn run_pre_bind(&self, state: &CycleState, pod: &PodInfo, node: &str) -> Status {
        for p in &self.pre_bind {
            let Some(pb) = p.as_pre_bind() else { continue };
            let s = pb.pre_bind(state, pod, node).await;
            if !s.is_success() && s.code != Code::Skip {
                return s.by(p.name());
            }
        }
        Status::success()
    }

    /// Runs Bind plugins until one does not Skip.
    pub async fn run_bind(&self, state: &CycleState, pod: &PodInfo, node: &str) -> Status {
        for p in &self.bind {
            let Some(b) = p.as_bind() else { continue };
            let s = b.bind(state, pod, node).await;
            if s.code != Code::Skip {
                return s.by(p.name());
            }
        }
        Status::error("no bind plugin bound the pod")
    }

    /// Runs PostBind plugins.
    pub fn run_post_bind(&self, state: &CycleState, pod: &PodInfo, node: &str) {
        for p in &self.post_bind {
            if let Some(pb) = p.as_post_bind() {
                pb.post_bind(state, pod, node);
            }
        }
    }

    /// Names of all plugins in this framework (deduplicated), for event registration.
    pub fn all_plugins(&self) -> Vec<Arc<dyn Plugin>> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        let lists = [
            &self.pre_enqueue,
            &self.pre_filter,
            &self.filter,
            &self.post_filter,
            &self.pre_score,
            &self.reserve,
            &self.permit,
            &self.pre_bind,
            &self.bind,
            &self.post_bind,
        ];
        for l in lists {
            for p in l {
                if seen.insert(p.name()) {
                    out.push(p.clone());
                }
            }
        }
        for w in &self.score {
            if seen.insert(w.plugin.name()) {
                out.push(w.plugin.clone());
            }
        }
        out
    }
}
