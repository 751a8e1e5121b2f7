//! `kubelet_image_garbage_collected_total{reason}`, as upstream: images removed by the
//! image garbage collector, by reason (`age`: past `imageMaximumGCAge`; `space`: to free
//! disk). Process-wide like upstream's package-level metric; registered once.

use super::policy::Reason;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use std::sync::OnceLock;

type Labels = Vec<(String, String)>;

/// The process-wide counter family.
pub fn collected_total() -> &'static Family<Labels, Counter> {
    static FAMILY: OnceLock<Family<Labels, Counter>> = OnceLock::new();
    FAMILY.get_or_init(Family::default)
}

/// Registers the counter on `metrics` (prometheus-client appends `_total`).
pub fn register(metrics: &component_base::metrics::Metrics) {
    metrics.register(
        "kubelet_image_garbage_collected",
        "Total number of images garbage collected by the kubelet, whether through disk usage or image age.",
        collected_total().clone(),
    );
}

/// Counts one removed image.
pub fn count(reason: Reason) {
    let r = match reason {
        Reason::Age => "age",
        Reason::Space => "space",
    };
    collected_total()
        .get_or_create(&vec![("reason".to_string(), r.to_string())])
        .inc();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_with_upstream_name_and_label() {
        let metrics = component_base::metrics::Metrics::new();
        register(&metrics);
        count(Reason::Space);
        let text = metrics.render();
        assert!(
            text.contains("kubelet_image_garbage_collected_total{reason=\"space\"}"),
            "{text}"
        );
    }
}
