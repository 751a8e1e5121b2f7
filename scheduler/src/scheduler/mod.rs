//! The running scheduler: the scheduling loop on a dedicated thread (CPU-bound work stays
//! off the async runtime; filtering and scoring fan out on rayon), binding cycles as async
//! tasks, and the informers feeding the cache and queue.

pub mod effects;
pub mod informers;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, OwnedSemaphorePermit};

use crate::cache::Cache;
use crate::framework::{ClusterEvent, CycleState, Framework, PostFilterInput, QueuedPod, Status};
use crate::metrics::{AttemptResult, SchedulerMetrics};
use crate::queue::{Backoff, LessFn, PreEnqueueFn, SchedulingQueue};
use crate::schedule::{
    rejectors, schedule_pod, Nominated, Rotation, ScheduleError, NO_NODES_AVAILABLE,
};
use crate::snapshot::{PodInfo, Snapshot};
use effects::{
    failed_event, scheduled_event, Effect, REASON_SCHEDULER_ERROR, REASON_UNSCHEDULABLE,
};

/// Shared state between the informers, the scheduling loop and binding tasks.
pub struct Shared {
    /// Profiles by schedulerName.
    pub profiles: HashMap<String, Arc<Framework>>,
    /// The queue.
    pub queue: Arc<SchedulingQueue>,
    /// The cache.
    pub cache: Mutex<Cache>,
    /// Pods nominated to nodes (by preemption), per node.
    pub nominated: Mutex<Nominated>,
    /// Metrics.
    pub metrics: SchedulerMetrics,
    /// Scheduler-wide percentageOfNodesToScore (0: adaptive).
    pub percentage: i32,
    /// Effects writer (None in tests without a server).
    pub effects: Option<mpsc::Sender<Effect>>,
    /// Set to stop the loop.
    pub stop: AtomicBool,
    /// Bounds concurrent binding cycles: kube-rs speaks HTTP/1.1, so each request in
    /// flight holds a connection; a bounded set of kept-alive connections is much faster
    /// than thousands of TLS handshakes. The scheduling loop takes a slot before it pops a
    /// pod (back-pressure): it never runs ahead of binding, so a pod's attempt does not sit
    /// assumed in a queue of bindings waiting for a connection.
    pub bind_slots: Arc<tokio::sync::Semaphore>,
}

/// Binding cycles allowed in flight at once.
pub const MAX_BINDS_IN_FLIGHT: usize = 64;

impl Shared {
    /// Builds the shared state; the queue's order and PreEnqueue come from the profiles
    /// (upstream requires the same QueueSort in all profiles).
    pub fn new(
        profiles: HashMap<String, Arc<Framework>>,
        metrics: SchedulerMetrics,
        percentage: i32,
        backoff: Backoff,
        effects: Option<mpsc::Sender<Effect>>,
    ) -> Arc<Self> {
        let first = profiles.values().next().cloned().unwrap_or_default();
        let less: LessFn = Arc::new(move |a, b| first.queue_less(a, b));
        let by_name = profiles.clone();
        let pre_enqueue: PreEnqueueFn =
            Arc::new(move |p: &PodInfo| match by_name.get(scheduler_name(p)) {
                Some(fw) => fw.run_pre_enqueue(p),
                None => Status::success(),
            });
        let mut events: HashMap<&'static str, Vec<ClusterEvent>> = HashMap::new();
        for fw in profiles.values() {
            for p in fw.all_plugins() {
                events.entry(p.name()).or_default().extend(p.events());
            }
        }
        Arc::new(Shared {
            queue: Arc::new(SchedulingQueue::new(less, pre_enqueue, events, backoff)),
            profiles,
            cache: Mutex::new(Cache::default()),
            nominated: Mutex::new(Nominated::new()),
            metrics,
            percentage,
            effects,
            stop: AtomicBool::new(false),
            bind_slots: Arc::new(tokio::sync::Semaphore::new(MAX_BINDS_IN_FLIGHT)),
        })
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn emit(&self, e: Effect) {
        if let Some(tx) = &self.effects {
            if tx.try_send(e).is_err() {
                tracing::warn!("Effect queue full; dropping an event or status update");
            }
        }
    }

    /// Records (or clears) a pod's nomination.
    pub fn set_nominated(&self, pod: &Arc<PodInfo>, node: Option<&str>) {
        let mut n = self.nominated.lock().unwrap_or_else(|p| p.into_inner());
        for list in n.values_mut() {
            list.retain(|p| p.uid != pod.uid);
        }
        n.retain(|_, l| !l.is_empty());
        if let Some(node) = node.filter(|s| !s.is_empty()) {
            n.entry(node.to_string()).or_default().push(pod.clone());
        }
    }
}

/// spec.schedulerName (default-scheduler when empty).
pub fn scheduler_name(p: &PodInfo) -> &str {
    p.pod
        .spec
        .as_ref()
        .and_then(|s| s.scheduler_name.as_deref())
        .filter(|s| !s.is_empty())
        .unwrap_or(crate::config::DEFAULT_SCHEDULER_NAME)
}

/// Runs the scheduling loop until `shared.stop`. Binding tasks are spawned on `rt`.
pub fn run_loop(shared: Arc<Shared>, rt: tokio::runtime::Handle) {
    let mut snapshot = Snapshot::default();
    let mut rotation = Rotation::default();
    let mut last_flush = Instant::now();
    let mut slot: Option<OwnedSemaphorePermit> = None;
    while !shared.stop.load(Ordering::Relaxed) {
        if last_flush.elapsed() >= Duration::from_secs(1) {
            shared.metrics.pending(shared.queue.pending());
            last_flush = Instant::now();
        }
        // A binding slot first, so the cycle starts only when its binding can.
        let permit = match slot.take() {
            Some(p) => p,
            None => {
                let wait = shared.bind_slots.clone().acquire_owned();
                // The timer needs the runtime's context: build it inside block_on.
                let waited = rt.block_on(async {
                    tokio::time::timeout(Duration::from_millis(200), wait).await
                });
                match waited {
                    Ok(Ok(p)) => p,
                    Ok(Err(_)) => return,
                    Err(_) => continue,
                }
            }
        };
        let Some((qp, cycle)) = shared.queue.pop(Duration::from_millis(200)) else {
            slot = Some(permit);
            continue;
        };
        schedule_one(
            &shared,
            &rt,
            &mut snapshot,
            &mut rotation,
            qp,
            cycle,
            permit,
        );
    }
}

/// One scheduling cycle for one pod, then (asynchronously) its binding cycle.
#[allow(clippy::too_many_arguments)]
pub fn schedule_one(
    shared: &Arc<Shared>,
    rt: &tokio::runtime::Handle,
    snapshot: &mut Snapshot,
    rotation: &mut Rotation,
    qp: QueuedPod,
    cycle: u64,
    slot: OwnedSemaphorePermit,
) {
    let pod = qp.info.clone();
    let Some(fw) = shared.profiles.get(scheduler_name(&pod)).cloned() else {
        shared.queue.done(&pod.uid);
        return;
    };
    if pod.terminating() || shared.cache().has_pod(&pod.uid) {
        shared.queue.done(&pod.uid);
        return;
    }
    let start = Instant::now();
    shared.cache().update_snapshot(snapshot);
    let nominated = shared
        .nominated
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let mut state = CycleState::default();
    match schedule_pod(
        &fw,
        &mut state,
        &pod,
        snapshot,
        rotation,
        &nominated,
        shared.percentage,
    ) {
        Ok(result) => {
            if let Err(e) = shared.cache().assume(pod.clone(), &result.node) {
                tracing::error!(pod = %pod.key(), error = %e, "Scheduler cache AssumePod failed");
                return fail(
                    shared,
                    &fw,
                    pod,
                    cycle,
                    start,
                    HashSet::new(),
                    Status::error(e),
                    None,
                );
            }
            let s = fw.run_reserve(&state, &pod, &result.node);
            let s = if s.is_success() {
                fw.run_permit(&state, &pod, &result.node)
            } else {
                s
            };
            if !s.is_success() {
                fw.run_unreserve(&state, &pod, &result.node);
                shared.cache().forget(&pod.uid);
                let rejected = if s.is_rejected() {
                    HashSet::from([s.plugin])
                } else {
                    HashSet::new()
                };
                return fail(shared, &fw, pod, cycle, start, rejected, s, None);
            }
            // In flight until the binding cycle ends (see SchedulingQueue::done).
            shared.set_nominated(&pod, None);
            let shared = shared.clone();
            rt.spawn(
                async move { bind(shared, fw, state, qp, cycle, result.node, start, slot).await },
            );
        }
        Err(err) => {
            let rejected = rejectors(&err);
            match err {
                ScheduleError::NoNodes => {
                    let s = Status::new(
                        crate::framework::Code::UnschedulableAndUnresolvable,
                        NO_NODES_AVAILABLE,
                    );
                    fail(shared, &fw, pod, cycle, start, rejected, s, None)
                }
                ScheduleError::Internal(s) => {
                    fail(shared, &fw, pod, cycle, start, rejected, s, None)
                }
                ScheduleError::Fit {
                    mut error,
                    statuses,
                } => {
                    let mut nominated_node = None;
                    if !fw.post_filter.is_empty() {
                        let input = PostFilterInput {
                            framework: &fw,
                            state: &state,
                            pod: &pod,
                            snapshot,
                            node_statuses: &statuses,
                            nominated: &[],
                        };
                        let (res, s) = fw.run_post_filter(&input);
                        let victims = res.as_ref().map(|r| r.victims.len()).unwrap_or(0);
                        shared.metrics.preemption(victims);
                        if s.is_success() {
                            if let Some(r) = res {
                                for v in r.victims {
                                    shared.emit(Effect::Evict {
                                        victim: v,
                                        preemptor: pod.clone(),
                                        node: r.nominated_node.clone(),
                                        profile: fw.profile_name.clone(),
                                    });
                                }
                                shared.set_nominated(&pod, Some(&r.nominated_node));
                                nominated_node = Some(r.nominated_node);
                            }
                        } else {
                            error.diagnosis.post_filter_msg = s.message();
                            if res.is_some() {
                                nominated_node = Some(String::new());
                            }
                        }
                    }
                    let s = Status::new(crate::framework::Code::Unschedulable, error.message());
                    fail(shared, &fw, pod, cycle, start, rejected, s, nominated_node)
                }
            }
        }
    }
}

/// Upstream's handleSchedulingFailure: metrics, requeue, event, status.
#[allow(clippy::too_many_arguments)]
fn fail(
    shared: &Arc<Shared>,
    fw: &Framework,
    pod: Arc<PodInfo>,
    cycle: u64,
    start: Instant,
    rejected: HashSet<&'static str>,
    s: Status,
    nominated: Option<String>,
) {
    let is_error = s.code == crate::framework::Code::Error;
    let (result, reason) = if is_error {
        (AttemptResult::Error, REASON_SCHEDULER_ERROR)
    } else {
        (AttemptResult::Unschedulable, REASON_UNSCHEDULABLE)
    };
    shared
        .metrics
        .attempt(&fw.profile_name, result, start.elapsed().as_secs_f64());
    let message = s.message();
    tracing::info!(pod = %pod.key(), err = %message, "Unable to schedule pod; no fit; waiting");
    if !shared.queue.requeue(pod.clone(), cycle, rejected, is_error) {
        // Deleted meanwhile (upstream: "Pod doesn't exist in informer cache"): forgotten,
        // no event nor status for a pod that is gone.
        tracing::info!(pod = %pod.key(), "Pod doesn't exist in informer cache; not requeued");
        return;
    }
    shared.emit(Effect::Event {
        profile: fw.profile_name.clone(),
        spec: Box::new(failed_event(&pod, &message)),
    });
    shared.emit(Effect::Unschedulable {
        pod,
        reason,
        message,
        nominated,
    });
}

/// The binding cycle; `_slot` (taken by the loop) is held until it ends.
#[allow(clippy::too_many_arguments)]
async fn bind(
    shared: Arc<Shared>,
    fw: Arc<Framework>,
    state: CycleState,
    qp: QueuedPod,
    cycle: u64,
    node: String,
    start: Instant,
    _slot: OwnedSemaphorePermit,
) {
    let pod = qp.info.clone();
    let mut s = fw.run_pre_bind(&state, &pod, &node).await;
    if s.is_success() {
        s = fw.run_bind(&state, &pod, &node).await;
    }
    if !s.is_success() {
        fw.run_unreserve(&state, &pod, &node);
        shared.cache().forget(&pod.uid);
        let msg = format!(
            "Binding rejected: running Bind plugin {:?}: {}",
            s.plugin,
            s.message()
        );
        return fail(
            &shared,
            &fw,
            pod,
            cycle,
            start,
            HashSet::new(),
            Status::error(msg),
            None,
        );
    }
    shared.cache().finish_binding(&pod.uid, None);
    shared.queue.done(&pod.uid);
    fw.run_post_bind(&state, &pod, &node);
    shared.metrics.attempt(
        &fw.profile_name,
        AttemptResult::Scheduled,
        start.elapsed().as_secs_f64(),
    );
    let since = qp
        .initial_attempt
        .map(|t| t.elapsed().as_secs_f64())
        .unwrap_or(0.0);
    shared.metrics.scheduled(qp.attempts, since);
    shared.emit(Effect::Event {
        profile: fw.profile_name.clone(),
        spec: Box::new(scheduled_event(&pod, &node)),
    });
}
