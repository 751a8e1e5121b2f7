//! The scheduler's metrics, with upstream's names, labels and buckets.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};

type Labels = Vec<(String, String)>;

fn labels(kv: &[(&str, &str)]) -> Labels {
    kv.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Handles on every scheduler metric.
#[derive(Clone)]
pub struct SchedulerMetrics {
    attempts: Family<Labels, Counter>,
    attempt_duration: Family<Labels, Histogram>,
    pending: Family<Labels, Gauge>,
    preemption_attempts: Counter,
    preemption_victims: Histogram,
    pod_attempts: Histogram,
    sli_duration: Family<Labels, Histogram>,
    incoming: Family<Labels, Counter>,
}

impl Default for SchedulerMetrics {
    fn default() -> Self {
        SchedulerMetrics {
            attempts: Family::default(),
            attempt_duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.001, 2.0, 15))
            }),
            pending: Family::default(),
            preemption_attempts: Counter::default(),
            preemption_victims: Histogram::new(exponential_buckets(1.0, 2.0, 7)),
            pod_attempts: Histogram::new(exponential_buckets(1.0, 2.0, 5)),
            sli_duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.01, 2.0, 20))
            }),
            incoming: Family::default(),
        }
    }
}

/// Outcome label of a scheduling attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptResult {
    /// The pod was assigned a node.
    Scheduled,
    /// No node fits.
    Unschedulable,
    /// An internal error.
    Error,
}

impl AttemptResult {
    fn label(self) -> &'static str {
        match self {
            AttemptResult::Scheduled => "scheduled",
            AttemptResult::Unschedulable => "unschedulable",
            AttemptResult::Error => "error",
        }
    }
}

impl SchedulerMetrics {
    /// Creates the metrics and registers them.
    pub fn register(registry: &component_base::metrics::Metrics) -> Self {
        let m = SchedulerMetrics::default();
        registry.register("scheduler_schedule_attempts", "Number of attempts to schedule pods, by the result. 'unschedulable' means a pod could not be scheduled, while 'error' means an internal scheduler problem.", m.attempts.clone());
        registry.register(
            "scheduler_scheduling_attempt_duration_seconds",
            "Scheduling attempt latency in seconds (scheduling algorithm + binding)",
            m.attempt_duration.clone(),
        );
        registry.register("scheduler_pending_pods", "Number of pending pods, by the queue type. 'active' means number of pods in activeQ; 'backoff' means number of pods in backoffQ; 'unschedulable' means number of pods in unschedulablePods that the scheduler attempted to schedule and failed; 'gated' is the number of unschedulable pods that the scheduler never attempted to schedule because they are gated.", m.pending.clone());
        registry.register(
            "scheduler_preemption_attempts",
            "Total preemption attempts in the cluster till now",
            m.preemption_attempts.clone(),
        );
        registry.register(
            "scheduler_preemption_victims",
            "Number of selected preemption victims",
            m.preemption_victims.clone(),
        );
        registry.register(
            "scheduler_pod_scheduling_attempts",
            "Number of attempts to successfully schedule a pod.",
            m.pod_attempts.clone(),
        );
        registry.register("scheduler_pod_scheduling_sli_duration_seconds", "E2e latency for a pod being scheduled, from the time the pod enters the scheduling queue and might involve multiple scheduling attempts.", m.sli_duration.clone());
        registry.register(
            "scheduler_queue_incoming_pods",
            "Number of pods added to scheduling queues by event and queue type.",
            m.incoming.clone(),
        );
        m
    }

    /// Records one scheduling attempt.
    pub fn attempt(&self, profile: &str, result: AttemptResult, seconds: f64) {
        let l = labels(&[("profile", profile), ("result", result.label())]);
        self.attempts.get_or_create(&l).inc();
        self.attempt_duration.get_or_create(&l).observe(seconds);
    }

    /// Records a pod scheduled after `attempts` attempts, `seconds` after it was first queued.
    pub fn scheduled(&self, attempts: u32, seconds: f64) {
        self.pod_attempts.observe(attempts as f64);
        self.sli_duration
            .get_or_create(&labels(&[("attempts", &attempts.to_string())]))
            .observe(seconds);
    }

    /// Sets the pending gauges.
    pub fn pending(&self, p: crate::queue::Pending) {
        for (q, v) in [
            ("active", p.active),
            ("backoff", p.backoff),
            ("unschedulable", p.unschedulable),
            ("gated", p.gated),
        ] {
            self.pending
                .get_or_create(&labels(&[("queue", q)]))
                .set(v as i64);
        }
    }

    /// Records a preemption attempt with its number of victims.
    pub fn preemption(&self, victims: usize) {
        self.preemption_attempts.inc();
        if victims > 0 {
            self.preemption_victims.observe(victims as f64);
        }
    }

    /// Counts pods moved into a queue by an event.
    pub fn incoming(&self, queue: &str, event: &str, n: usize) {
        self.incoming
            .get_or_create(&labels(&[("queue", queue), ("event", event)]))
            .inc_by(n as u64);
    }
}
