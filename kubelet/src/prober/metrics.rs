//! The prober's metrics, served on `/metrics/probes` (not on `/metrics`), as upstream:
//! `prober_probe_total{probe_type,result,container,pod,namespace,pod_uid}` and
//! `prober_probe_duration_seconds{probe_type,container,pod,namespace}`, next to
//! `process_start_time_seconds`. Process-wide like upstream's package-level metrics; a
//! pod's series go when its probes stop for good ([`forget`]).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, OnceLock};

/// Label pairs of one series.
pub type Labels = Vec<(String, String)>;

/// The Prometheus client's default buckets, which upstream's duration histogram uses.
pub const DEFAULT_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The result label values, as upstream names them.
pub const RESULTS: [&str; 3] = ["successful", "failed", "unknown"];

type Durations = Family<Labels, Histogram>;

fn new_duration_histogram() -> Histogram {
    Histogram::new(DEFAULT_BUCKETS)
}

/// The process-wide result counters.
pub fn probe_total() -> &'static Family<Labels, Counter> {
    static FAMILY: OnceLock<Family<Labels, Counter>> = OnceLock::new();
    FAMILY.get_or_init(Family::default)
}

/// The process-wide duration histograms.
pub fn probe_duration() -> &'static Durations {
    static FAMILY: OnceLock<Durations> = OnceLock::new();
    FAMILY.get_or_init(|| Family::new_with_constructor(new_duration_histogram as fn() -> Histogram))
}

/// Who a probe series belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// `Liveness`, `Readiness` or `Startup`.
    pub probe_type: &'static str,
    /// The container's name.
    pub container: String,
    /// The pod's name.
    pub pod: String,
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's UID.
    pub pod_uid: String,
}

impl Target {
    fn result_labels(&self, result: &str) -> Labels {
        [
            ("probe_type", self.probe_type),
            ("result", result),
            ("container", &self.container),
            ("pod", &self.pod),
            ("namespace", &self.namespace),
            ("pod_uid", &self.pod_uid),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn duration_labels(&self) -> Labels {
        [
            ("probe_type", self.probe_type),
            ("container", &self.container),
            ("pod", &self.pod),
            ("namespace", &self.namespace),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }
}

/// Records one probe run; `result` is `successful`, `failed` or `unknown`. As upstream,
/// the duration is observed for successful and unknown results only.
pub fn record(target: &Target, result: &str, seconds: f64) {
    probe_total()
        .get_or_create(&target.result_labels(result))
        .inc();
    if result != "failed" {
        probe_duration()
            .get_or_create(&target.duration_labels())
            .observe(seconds);
    }
}

/// Removes a probe's series (its worker stopped for good), as upstream's worker does.
pub fn forget(target: &Target) {
    for result in RESULTS {
        probe_total().remove(&target.result_labels(result));
    }
    probe_duration().remove(&target.duration_labels());
}

/// The `/metrics/probes` registry.
fn registry() -> &'static Mutex<Registry> {
    static REGISTRY: OnceLock<Mutex<Registry>> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let mut r = Registry::default();
        let start = Gauge::<f64, AtomicU64>::default();
        if let Some(t) = process_start_time() {
            start.set(t);
        }
        r.register(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            start,
        );
        r.register(
            "prober_probe",
            "Cumulative number of a liveness, readiness or startup probe for a container by result.",
            probe_total().clone(),
        );
        r.register(
            "prober_probe_duration_seconds",
            "Duration in seconds for a probe response.",
            probe_duration().clone(),
        );
        Mutex::new(r)
    })
}

/// `/metrics/probes` in the Prometheus text format.
pub fn render() -> String {
    let r = registry().lock().unwrap_or_else(|p| p.into_inner());
    component_base::metrics::render_registry(&r)
}

/// This process's start, seconds since the epoch (boot time plus /proc/self/stat's
/// start ticks).
fn process_start_time() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = stat.rsplit_once(')')?.1;
    // Fields after the command name start at field 3; starttime is field 22.
    let ticks: f64 = rest.split_whitespace().nth(19)?.parse().ok()?;
    let boot: f64 = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())?;
    let hz = match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(v)) if v > 0 => v as f64,
        _ => 100.0,
    };
    Some(boot + ticks / hz)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_with_upstream_names_and_labels_and_forgets() {
        let t = Target {
            probe_type: "Readiness",
            container: "app".into(),
            pod: "web".into(),
            namespace: "ns".into(),
            pod_uid: "u1".into(),
        };
        record(&t, "successful", 0.02);
        record(&t, "failed", 0.5);
        let text = render();
        let line = |prefix: &str, parts: &[&str]| {
            text.lines()
                .find(|l| l.starts_with(prefix) && parts.iter().all(|p| l.contains(p)))
                .map(str::to_string)
        };
        let ok = line(
            "prober_probe_total{",
            &[
                "probe_type=\"Readiness\"",
                "result=\"successful\"",
                "container=\"app\"",
                "pod=\"web\"",
                "namespace=\"ns\"",
                "pod_uid=\"u1\"",
            ],
        )
        .unwrap_or_else(|| panic!("{text}"));
        assert!(ok.ends_with(" 1"), "{ok}");
        assert!(line("prober_probe_total{", &["result=\"failed\"", "pod=\"web\""]).is_some());
        // Duration: successful results only (the failed one is not observed); no pod_uid.
        let count = line("prober_probe_duration_seconds_count{", &["pod=\"web\""])
            .unwrap_or_else(|| panic!("{text}"));
        assert!(
            count.ends_with(" 1") && !count.contains("pod_uid"),
            "{count}"
        );
        assert!(line(
            "prober_probe_duration_seconds_bucket{",
            &["le=\"0.025\"", "pod=\"web\""]
        )
        .is_some_and(|l| l.ends_with(" 1")));
        let start = line("process_start_time_seconds ", &[]).unwrap();
        let v: f64 = start.split_whitespace().nth(1).unwrap().parse().unwrap();
        assert!(v > 1.6e9, "{start}");
        forget(&t);
        assert!(!render().contains("pod=\"web\""));
    }
}
