//! `prober_probe_total`, as upstream: one counter per probe type, result, container, pod,
//! namespace and pod UID. Like upstream's package-level metric it is process-wide; the
//! kubelet registers it on its registry once.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use std::sync::OnceLock;

/// Label pairs of one series.
pub type Labels = Vec<(String, String)>;

/// The process-wide counter family.
pub fn probe_total() -> &'static Family<Labels, Counter> {
    static FAMILY: OnceLock<Family<Labels, Counter>> = OnceLock::new();
    FAMILY.get_or_init(Family::default)
}

/// Registers `prober_probe_total` on `metrics` (prometheus-client appends `_total`).
pub fn register(metrics: &component_base::metrics::Metrics) {
    metrics.register(
        "prober_probe",
        "Cumulative number of a liveness, readiness or startup probe for a container by result.",
        probe_total().clone(),
    );
}

/// Counts one probe run; `result` is `successful`, `failed` or `unknown`.
pub fn count(
    probe_type: &str,
    result: &str,
    container: &str,
    pod: &str,
    namespace: &str,
    uid: &str,
) {
    let labels: Labels = [
        ("probe_type", probe_type),
        ("result", result),
        ("container", container),
        ("pod", pod),
        ("namespace", namespace),
        ("pod_uid", uid),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    probe_total().get_or_create(&labels).inc();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_with_upstream_name_and_labels() {
        let metrics = component_base::metrics::Metrics::new();
        register(&metrics);
        count("Readiness", "successful", "app", "web", "ns", "u1");
        let text = metrics.render();
        assert!(
            text.lines().any(|l| l.starts_with("prober_probe_total{")
                && l.contains("probe_type=\"Readiness\"")
                && l.contains("result=\"successful\"")
                && l.contains("container=\"app\"")
                && l.contains("namespace=\"ns\"")),
            "{text}"
        );
    }
}
