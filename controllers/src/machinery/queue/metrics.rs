//! Upstream's work queue metrics (client-go's queue metrics as component-base's Prometheus
//! provider names them): `workqueue_adds_total`, `workqueue_depth`,
//! `workqueue_queue_duration_seconds`, `workqueue_work_duration_seconds`,
//! `workqueue_retries_total`, `workqueue_unfinished_work_seconds` and
//! `workqueue_longest_running_processor_seconds`, each labelled with the queue's `name`.
//!
//! The two "unfinished work" gauges are computed when /metrics is scraped from the start times
//! of the keys being processed (upstream refreshes them every 500 ms instead).
//!
//! Help texts are upstream's, without a final period (component-base renders them as registered).

use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use component_base::metrics::Metrics;
use prometheus_client::encoding::{EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;

/// The `name` label every work queue metric carries.
pub type NameLabel = [(&'static str, String); 1];

type HistogramFamily = Family<NameLabel, Histogram, fn() -> Histogram>;

/// Upstream's buckets for both duration histograms: 10ns × 10^i, ten buckets (10ns .. 10s).
fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(10e-9, 10.0, 10))
}

/// Something with keys in flight: reports when each of them started processing.
pub trait InFlight: Send + Sync {
    /// `(sum of the ages, oldest age)` in seconds of the keys being processed at `now`.
    fn unfinished_work(&self, now: Instant) -> (f64, f64);
}

/// The queues whose in-flight work is reported, by queue name.
type InFlightQueues = Arc<Mutex<Vec<(String, Weak<dyn InFlight>)>>>;

/// The work queue metric families of one registry; hands out per-queue handles. Cheap to
/// clone; register it once per registry.
#[derive(Clone)]
pub struct WorkqueueMetrics {
    depth: Family<NameLabel, Gauge>,
    adds: Family<NameLabel, Counter>,
    latency: HistogramFamily,
    work_duration: HistogramFamily,
    retries: Family<NameLabel, Counter>,
    in_flight: InFlightQueues,
}

impl WorkqueueMetrics {
    /// Registers the work queue families in `registry`.
    pub fn register(registry: &Metrics) -> Self {
        let m = WorkqueueMetrics {
            depth: Family::default(),
            adds: Family::default(),
            latency: Family::new_with_constructor(duration_histogram),
            work_duration: Family::new_with_constructor(duration_histogram),
            retries: Family::default(),
            in_flight: Arc::default(),
        };
        registry.register(
            "workqueue_depth",
            "[ALPHA] Current depth of workqueue",
            m.depth.clone(),
        );
        registry.register(
            "workqueue_adds",
            "[ALPHA] Total number of adds handled by workqueue",
            m.adds.clone(),
        );
        registry.register(
            "workqueue_queue_duration_seconds",
            "[ALPHA] How long in seconds an item stays in workqueue before being requested",
            m.latency.clone(),
        );
        registry.register(
            "workqueue_work_duration_seconds",
            "[ALPHA] How long in seconds processing an item from workqueue takes",
            m.work_duration.clone(),
        );
        registry.register(
            "workqueue_unfinished_work_seconds",
            "[ALPHA] How many seconds of work has done that is in progress and hasn't been observed by work_duration. Large values indicate stuck threads. One can deduce the number of stuck threads by observing the rate at which this increases",
            UnfinishedWork {
                queues: m.in_flight.clone(),
                longest: false,
            },
        );
        registry.register(
            "workqueue_longest_running_processor_seconds",
            "[ALPHA] How many seconds has the longest running processor for workqueue been running",
            UnfinishedWork {
                queues: m.in_flight.clone(),
                longest: true,
            },
        );
        registry.register(
            "workqueue_retries",
            "[ALPHA] Total number of retries handled by workqueue",
            m.retries.clone(),
        );
        m
    }

    /// The handles of the queue `name`; `in_flight` reports its keys being processed for as
    /// long as it lives.
    pub fn queue(&self, name: &str, in_flight: Weak<dyn InFlight>) -> QueueMetrics {
        let label = [("name", name.to_string())];
        {
            let mut queues = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
            queues.retain(|(_, q)| q.strong_count() > 0);
            queues.push((name.to_string(), in_flight));
        }
        QueueMetrics {
            depth: self.depth.get_or_create(&label).clone(),
            adds: self.adds.get_or_create(&label).clone(),
            latency: self.latency.get_or_create(&label).clone(),
            work_duration: self.work_duration.get_or_create(&label).clone(),
            retries: self.retries.get_or_create(&label).clone(),
        }
    }
}

/// One queue's metric handles (atomics shared with the registry: no lookup per update).
#[derive(Debug, Clone)]
pub struct QueueMetrics {
    /// Keys waiting (`workqueue_depth`).
    pub depth: Gauge,
    /// Keys queued (`workqueue_adds_total`).
    pub adds: Counter,
    /// Seconds from add to get (`workqueue_queue_duration_seconds`).
    pub latency: Histogram,
    /// Seconds from get to done (`workqueue_work_duration_seconds`).
    pub work_duration: Histogram,
    /// Delayed and rate-limited adds (`workqueue_retries_total`).
    pub retries: Counter,
}

/// `workqueue_unfinished_work_seconds` (sum of ages) or
/// `workqueue_longest_running_processor_seconds` (oldest age), computed at scrape time.
#[derive(Debug)]
struct UnfinishedWork {
    queues: InFlightQueues,
    longest: bool,
}

impl std::fmt::Debug for dyn InFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InFlight")
    }
}

impl EncodeMetric for UnfinishedWork {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let now = Instant::now();
        // Queues sharing a name (e.g. several certificate controllers) are reported as one.
        let mut by_name: std::collections::BTreeMap<String, (f64, f64)> = Default::default();
        // A copy, so that no queue's lock is taken under the list's (a queue being named
        // holds its own lock while it joins the list).
        let queues = self
            .queues
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for (name, queue) in queues {
            let Some(queue) = queue.upgrade() else {
                continue;
            };
            let (total, oldest) = queue.unfinished_work(now);
            let entry = by_name.entry(name).or_default();
            entry.0 += total;
            entry.1 = entry.1.max(oldest);
        }
        for (name, (total, oldest)) in by_name {
            let value = if self.longest { oldest } else { total };
            let label: NameLabel = [("name", name)];
            encoder.encode_family(&label)?.encode_gauge(&value)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Gauge
    }
}
