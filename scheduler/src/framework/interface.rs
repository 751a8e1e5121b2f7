//! The extension points of the scheduling framework, one trait each, and [`Plugin`] which
//! exposes the ones a plugin implements.

use std::collections::HashSet;
use std::sync::Arc;

use futures::future::BoxFuture;

use super::cycle_state::CycleState;
use super::events::ClusterEvent;
use super::status::Status;
use crate::snapshot::{NodeInfo, PodInfo, Snapshot};

/// Highest score a Score plugin may return after normalization.
pub const MAX_NODE_SCORE: i64 = 100;

/// Inside `impl Plugin for X`, declares the extension points `X` implements:
/// `extension_points!(PreFilter, Filter, Score);` makes `as_pre_filter`, `as_filter` and
/// `as_score` return `Some(self)` (the others keep returning `None`).
macro_rules! extension_points {
    ($($point:ident),+ $(,)?) => { $( extension_points!(@one $point); )+ };
    (@one PreEnqueue) => { extension_points!(@fn as_pre_enqueue PreEnqueuePlugin); };
    (@one QueueSort) => { extension_points!(@fn as_queue_sort QueueSortPlugin); };
    (@one PreFilter) => { extension_points!(@fn as_pre_filter PreFilterPlugin); };
    (@one Filter) => { extension_points!(@fn as_filter FilterPlugin); };
    (@one PostFilter) => { extension_points!(@fn as_post_filter PostFilterPlugin); };
    (@one PreScore) => { extension_points!(@fn as_pre_score PreScorePlugin); };
    (@one Score) => { extension_points!(@fn as_score ScorePlugin); };
    (@one Reserve) => { extension_points!(@fn as_reserve ReservePlugin); };
    (@one Permit) => { extension_points!(@fn as_permit PermitPlugin); };
    (@one PreBind) => { extension_points!(@fn as_pre_bind PreBindPlugin); };
    (@one Bind) => { extension_points!(@fn as_bind BindPlugin); };
    (@one PostBind) => { extension_points!(@fn as_post_bind PostBindPlugin); };
    (@fn $method:ident $trait:ident) => {
        fn $method(&self) -> Option<&dyn $crate::framework::$trait> {
            Some(self)
        }
    };
}

/// A named plugin, with accessors for each extension point it implements.
pub trait Plugin: Send + Sync {
    /// The plugin's registry name (e.g. "NodeResourcesFit").
    fn name(&self) -> &'static str;
    /// Cluster events that may make a pod this plugin rejected schedulable.
    fn events(&self) -> Vec<ClusterEvent> {
        Vec::new()
    }
    /// PreEnqueue, if implemented.
    fn as_pre_enqueue(&self) -> Option<&dyn PreEnqueuePlugin> {
        None
    }
    /// QueueSort, if implemented.
    fn as_queue_sort(&self) -> Option<&dyn QueueSortPlugin> {
        None
    }
    /// PreFilter, if implemented.
    fn as_pre_filter(&self) -> Option<&dyn PreFilterPlugin> {
        None
    }
    /// Filter, if implemented.
    fn as_filter(&self) -> Option<&dyn FilterPlugin> {
        None
    }
    /// PostFilter, if implemented.
    fn as_post_filter(&self) -> Option<&dyn PostFilterPlugin> {
        None
    }
    /// PreScore, if implemented.
    fn as_pre_score(&self) -> Option<&dyn PreScorePlugin> {
        None
    }
    /// Score (+ NormalizeScore), if implemented.
    fn as_score(&self) -> Option<&dyn ScorePlugin> {
        None
    }
    /// Reserve, if implemented.
    fn as_reserve(&self) -> Option<&dyn ReservePlugin> {
        None
    }
    /// Permit, if implemented.
    fn as_permit(&self) -> Option<&dyn PermitPlugin> {
        None
    }
    /// PreBind, if implemented.
    fn as_pre_bind(&self) -> Option<&dyn PreBindPlugin> {
        None
    }
    /// Bind, if implemented.
    fn as_bind(&self) -> Option<&dyn BindPlugin> {
        None
    }
    /// PostBind, if implemented.
    fn as_post_bind(&self) -> Option<&dyn PostBindPlugin> {
        None
    }
}

/// Gates a pod before it enters the active queue.
pub trait PreEnqueuePlugin: Send + Sync {
    /// Success lets the pod in; anything else keeps it in the unschedulable pool.
    fn pre_enqueue(&self, pod: &PodInfo) -> Status;
}

/// Orders the active queue.
pub trait QueueSortPlugin: Send + Sync {
    /// Whether `a` should be scheduled before `b`.
    fn less(&self, a: &QueuedPod, b: &QueuedPod) -> bool;
}

/// A pod as it sits in the scheduling queue.
#[derive(Debug, Clone)]
pub struct QueuedPod {
    /// The pod.
    pub info: Arc<PodInfo>,
    /// When the pod was (last) added to the queue, in ms since the queue started.
    pub timestamp_ms: u64,
    /// When the pod was first queued.
    pub initial_attempt: Option<std::time::Instant>,
    /// Number of scheduling attempts so far.
    pub attempts: u32,
    /// Plugins that rejected the pod in its last attempt.
    pub unschedulable_plugins: HashSet<&'static str>,
    /// Whether a PreEnqueue plugin is holding the pod back (e.g. scheduling gates).
    pub gated: bool,
}

/// The node set a PreFilter narrows the search to (None: all nodes).
#[derive(Debug, Clone, Default)]
pub struct PreFilterResult {
    /// The only nodes worth filtering, if restricted.
    pub node_names: Option<HashSet<String>>,
}

/// Computes per-cycle state before filtering, and may reject the pod outright.
pub trait PreFilterPlugin: Send + Sync {
    /// Runs once per cycle. Skip disables this plugin's Filter for the cycle.
    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        snapshot: &Snapshot,
    ) -> (Option<PreFilterResult>, Status);
    /// Updates the state as if `other` were added to `node` (preemption dry-runs).
    fn add_pod(&self, _state: &mut CycleState, _pod: &PodInfo, _other: &PodInfo, _node: &NodeInfo) {
    }
    /// Updates the state as if `other` were removed from `node` (preemption dry-runs).
    fn remove_pod(
        &self,
        _state: &mut CycleState,
        _pod: &PodInfo,
        _other: &PodInfo,
        _node: &NodeInfo,
    ) {
    }
}

/// Decides whether the pod can run on one node. Must be pure: it runs in parallel.
pub trait FilterPlugin: Send + Sync {
    /// Success if the pod fits on `node`.
    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status;
}

/// What a PostFilter plugin (preemption) proposes.
#[derive(Debug, Clone, Default)]
pub struct PostFilterResult {
    /// The node the pod is nominated to (empty: clear the nomination).
    pub nominated_node: String,
    /// Pods to delete so that the preemptor fits.
    pub victims: Vec<Arc<PodInfo>>,
}

/// Inputs of a PostFilter plugin.
pub struct PostFilterInput<'a> {
    /// The framework of the pod's profile (to re-run filters).
    pub framework: &'a super::runtime::Framework,
    /// The cycle's state after PreFilter.
    pub state: &'a CycleState,
    /// The pod that did not fit.
    pub pod: &'a PodInfo,
    /// The cycle's snapshot.
    pub snapshot: &'a Snapshot,
    /// Filter status of each node (by snapshot index), None for nodes not evaluated.
    pub node_statuses: &'a [Option<Status>],
    /// Nominated pods (by uid) and their nominated node, to avoid preempting twice.
    pub nominated: &'a [(Arc<PodInfo>, String)],
}

/// Runs when no node fits (preemption).
pub trait PostFilterPlugin: Send + Sync {
    /// Proposes a way to make the pod schedulable.
    fn post_filter(&self, input: &PostFilterInput<'_>) -> (Option<PostFilterResult>, Status);
}

/// Computes per-cycle state before scoring.
pub trait PreScorePlugin: Send + Sync {
    /// Runs once per cycle with the feasible nodes. Skip disables this plugin's Score.
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        nodes: &[Arc<NodeInfo>],
        snapshot: &Snapshot,
    ) -> Status;
}

/// Ranks feasible nodes. Must be pure: it runs in parallel.
pub trait ScorePlugin: Send + Sync {
    /// A raw score for `node`.
    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> (i64, Status);
    /// Maps raw scores into [0, MAX_NODE_SCORE]; default leaves them unchanged.
    fn normalize(
        &self,
        _state: &CycleState,
        _pod: &PodInfo,
        _nodes: &[Arc<NodeInfo>],
        _scores: &mut [i64],
    ) -> Status {
        Status::success()
    }
}

/// Reserves resources for an assumed pod, and undoes it on failure.
pub trait ReservePlugin: Send + Sync {
    /// Reserves; a failure aborts the cycle.
    fn reserve(&self, state: &CycleState, pod: &PodInfo, node: &str) -> Status;
    /// Undoes `reserve`.
    fn unreserve(&self, state: &CycleState, pod: &PodInfo, node: &str);
}

/// Approves, rejects or delays binding.
pub trait PermitPlugin: Send + Sync {
    /// Success, a rejection, or Wait (with the maximum wait).
    fn permit(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        node: &str,
    ) -> (Status, std::time::Duration);
}

/// Prepares binding (e.g. volumes). Runs in the binding cycle.
pub trait PreBindPlugin: Send + Sync {
    /// Prepares the pod's binding to `node`.
    fn pre_bind<'a>(
        &'a self,
        state: &'a CycleState,
        pod: &'a PodInfo,
        node: &'a str,
    ) -> BoxFuture<'a, Status>;
}

/// Binds the pod to the node in the API. Skip lets the next Bind plugin try.
pub trait BindPlugin: Send + Sync {
    /// Binds `pod` to `node`.
    fn bind<'a>(
        &'a self,
        state: &'a CycleState,
        pod: &'a PodInfo,
        node: &'a str,
    ) -> BoxFuture<'a, Status>;
}

/// Informational hook after a successful bind.
pub trait PostBindPlugin: Send + Sync {
    /// Called after binding succeeded.
    fn post_bind(&self, state: &CycleState, pod: &PodInfo, node: &str);
}
