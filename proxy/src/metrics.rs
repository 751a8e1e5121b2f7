//! kube-proxy's metrics under upstream's names (subsystem `kubeproxy`), labelled by
//! `ip_family` as upstream labels them.

use crate::model::IpFamily;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

type Labels = Vec<(String, String)>;
type Hist = Family<Labels, Histogram, fn() -> Histogram>;

fn sync_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

fn programming_histogram() -> Histogram {
    let mut b = vec![0.25, 0.5];
    b.extend((1..=59).map(f64::from));
    b.extend((0..12).map(|i| 60.0 + 5.0 * f64::from(i)));
    b.extend((0..7).map(|i| 120.0 + 30.0 * f64::from(i)));
    Histogram::new(b)
}

/// Every metric kube-proxy exports.
#[derive(Clone)]
pub struct ProxyMetrics {
    sync: Hist,
    sync_full: Hist,
    sync_partial: Hist,
    programming: Hist,
    last_sync: Family<Labels, Gauge<f64, AtomicU64>>,
    last_queued: Family<Labels, Gauge<f64, AtomicU64>>,
    nft_failures: Family<Labels, Counter>,
    endpoint_pending: Gauge,
    endpoint_total: Counter,
    service_pending: Gauge,
    service_total: Counter,
    no_local: Family<Labels, Gauge>,
    conntrack_deleted: Family<Labels, Counter>,
    healthz: Family<Labels, Counter>,
    livez: Family<Labels, Counter>,
}

fn family(f: IpFamily) -> Labels {
    vec![("ip_family".into(), f.api_name().into())]
}

fn now_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

impl ProxyMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &component_base::metrics::Metrics) -> Self {
        let m = ProxyMetrics {
            sync: Family::new_with_constructor(sync_histogram),
            sync_full: Family::new_with_constructor(sync_histogram),
            sync_partial: Family::new_with_constructor(sync_histogram),
            programming: Family::new_with_constructor(programming_histogram),
            last_sync: Family::default(),
            last_queued: Family::default(),
            nft_failures: Family::default(),
            endpoint_pending: Gauge::default(),
            endpoint_total: Counter::default(),
            service_pending: Gauge::default(),
            service_total: Counter::default(),
            no_local: Family::default(),
            conntrack_deleted: Family::default(),
            healthz: Family::default(),
            livez: Family::default(),
        };
        let r = registry;
        r.register(
            "kubeproxy_sync_proxy_rules_duration_seconds",
            "SyncProxyRules latency in seconds",
            m.sync.clone(),
        );
        r.register(
            "kubeproxy_sync_full_proxy_rules_duration_seconds",
            "SyncProxyRules latency in seconds for full resyncs",
            m.sync_full.clone(),
        );
        r.register(
            "kubeproxy_sync_partial_proxy_rules_duration_seconds",
            "SyncProxyRules latency in seconds for partial resyncs",
            m.sync_partial.clone(),
        );
        r.register(
            "kubeproxy_network_programming_duration_seconds",
            "In Cluster Network Programming Latency in seconds",
            m.programming.clone(),
        );
        r.register(
            "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
            "The last time proxy rules were successfully synced",
            m.last_sync.clone(),
        );
        r.register(
            "kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds",
            "The last time a sync of proxy rules was queued",
            m.last_queued.clone(),
        );
        r.register(
            "kubeproxy_sync_proxy_rules_nftables_sync_failures",
            "Cumulative proxy nftables sync failures",
            m.nft_failures.clone(),
        );
        r.register(
            "kubeproxy_sync_proxy_rules_endpoint_changes_pending",
            "Pending proxy rules Endpoint changes",
            m.endpoint_pending.clone(),
        );
        r.register(
            "kubeproxy_sync_proxy_rules_endpoint_changes",
            "Cumulative proxy rules Endpoint changes",
            m.endpoint_total.clone(),
        );
        r.register(
            "kubeproxy_sync_proxy_rules_service_changes_pending",
            "Pending proxy rules Service changes",
            m.service_pending.clone(),
        );
        r.register(
            "kubeproxy_sync_proxy_rules_service_changes",
            "Cumulative proxy rules Service changes",
            m.service_total.clone(),
        );
        r.register(
            "kubeproxy_sync_proxy_rules_no_local_endpoints_total",
            "Number of services with a Local traffic policy and no endpoints",
            m.no_local.clone(),
        );
        r.register(
            "kubeproxy_conntrack_reconciler_deleted_entries",
            "Cumulative conntrack flows deleted by conntrack reconciler",
            m.conntrack_deleted.clone(),
        );
        r.register(
            "kubeproxy_proxy_healthz",
            "Cumulative proxy healthz HTTP status",
            m.healthz.clone(),
        );
        r.register(
            "kubeproxy_proxy_livez",
            "Cumulative proxy livez HTTP status",
            m.livez.clone(),
        );
        m
    }

    /// Counts one `/healthz` (or, with `livez`, `/livez`) answer by HTTP status code.
    pub fn health_answered(&self, livez: bool, code: u16) {
        let counters = if livez { &self.livez } else { &self.healthz };
        counters
            .get_or_create(&vec![("code".into(), code.to_string())])
            .inc();
    }

    /// Records a change queued for the next sync (pending counts per kind).
    pub fn queued(&self, f: IpFamily, services_pending: usize, endpoints_pending: usize) {
        self.last_queued
            .get_or_create(&family(f))
            .set(now_seconds());
        self.service_pending.set(services_pending as i64);
        self.endpoint_pending.set(endpoints_pending as i64);
    }

    /// Records one sync of family `f`.
    pub fn synced(&self, f: IpFamily, out: &crate::sync::SyncOutcome, elapsed: Duration) {
        let l = family(f);
        let secs = elapsed.as_secs_f64();
        self.sync.get_or_create(&l).observe(secs);
        if out.full {
            self.sync_full.get_or_create(&l).observe(secs);
        } else {
            self.sync_partial.get_or_create(&l).observe(secs);
        }
        self.service_total.inc_by(out.update.service_changes as u64);
        self.endpoint_total
            .inc_by(out.update.endpoint_changes as u64);
        self.service_pending.set(0);
        self.endpoint_pending.set(0);
        if out.error.is_some() {
            self.nft_failures.get_or_create(&l).inc();
            return;
        }
        let now = SystemTime::now();
        for t in &out.update.trigger_times {
            if let Ok(latency) = now.duration_since(*t) {
                self.programming
                    .get_or_create(&l)
                    .observe(latency.as_secs_f64());
            }
        }
        for (policy, n) in [
            ("internal", out.no_local_endpoints.0),
            ("external", out.no_local_endpoints.1),
        ] {
            let labels = vec![
                ("traffic_policy".into(), policy.into()),
                ("ip_family".into(), f.api_name().into()),
            ];
            self.no_local.get_or_create(&labels).set(n as i64);
        }
        self.last_sync.get_or_create(&l).set(now_seconds());
    }

    /// Records conntrack entries deleted.
    pub fn conntrack_deleted(&self, f: IpFamily, n: u64) {
        self.conntrack_deleted.get_or_create(&family(f)).inc_by(n);
    }
}
