//! Upstream's garbage-collector metrics (`pkg/controller/garbagecollector/metrics`):
//! `garbagecollector_controller_resources_sync_error_total`. Its work queue's
//! `workqueue_*` series come from [`crate::machinery::queue`].

use component_base::metrics::Metrics;
use prometheus_client::metrics::counter::Counter;

/// The registered garbage-collector metrics. Cheap to clone.
#[derive(Clone, Default)]
pub struct GcMetrics {
    /// Resource syncs that failed: discovery reported no deletable resources, or the new
    /// monitors did not finish their first list within the sync period.
    pub resources_sync_error: Counter,
}

impl GcMetrics {
    /// Registers the metrics in `registry` (prometheus-client adds the counter's `_total`).
    pub fn register(registry: &Metrics) -> Self {
        let m = GcMetrics::default();
        registry.register(
            "garbagecollector_controller_resources_sync_error",
            "[ALPHA] Number of garbage collector resources sync errors",
            m.resources_sync_error.clone(),
        );
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_errors_are_exposed_under_upstreams_name() {
        let registry = Metrics::new();
        let m = GcMetrics::register(&registry);
        m.resources_sync_error.inc();
        m.resources_sync_error.inc();
        let text = registry.render();
        assert!(
            text.lines().any(|l| l
                .starts_with("# TYPE garbagecollector_controller_resources_sync_error")
                && l.ends_with(" counter")),
            "{text}"
        );
        assert!(
            text.contains("garbagecollector_controller_resources_sync_error_total 2"),
            "{text}"
        );
    }
}
