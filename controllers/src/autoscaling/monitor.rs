//! Upstream's `horizontal_pod_autoscaler_controller_*` metrics: reconciliations and metric
//! computations by action (`scale_up`, `scale_down`, `none`) and error (`spec`,
//! `internal`, `none`), their durations, the number of HPAs and each one's desired
//! replicas.

use std::time::Duration;

use component_base::metrics::Metrics;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};

/// What a reconciliation or a metric computation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The replica count went (or would go) up.
    ScaleUp,
    /// Down.
    ScaleDown,
    /// Neither.
    None,
}

impl Action {
    /// The `action` label.
    pub fn label(self) -> &'static str {
        match self {
            Action::ScaleUp => "scale_up",
            Action::ScaleDown => "scale_down",
            Action::None => "none",
        }
    }

    /// The direction from `current` to `proposed`.
    pub fn between(current: i32, proposed: i32) -> Self {
        match proposed.cmp(&current) {
            std::cmp::Ordering::Greater => Action::ScaleUp,
            std::cmp::Ordering::Less => Action::ScaleDown,
            std::cmp::Ordering::Equal => Action::None,
        }
    }
}

/// The kind of error a reconciliation or computation ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The HPA's spec is invalid (bad apiVersion, unknown metric source type).
    Spec,
    /// Anything else (metrics unavailable, the apiserver refused a write).
    Internal,
    /// No error.
    None,
}

impl ErrorKind {
    /// The `error` label.
    pub fn label(self) -> &'static str {
        match self {
            ErrorKind::Spec => "spec",
            ErrorKind::Internal => "internal",
            ErrorKind::None => "none",
        }
    }
}

type Labels2 = [(&'static str, &'static str); 2];
type Labels3 = [(&'static str, String); 3];
type HpaLabels = [(&'static str, String); 2];

fn histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// The registered metrics of the horizontal-pod-autoscaler. Cheap to clone.
#[derive(Clone)]
pub struct Monitor {
    reconciliations: Family<Labels2, Counter>,
    reconciliation_duration: Family<Labels2, Histogram, fn() -> Histogram>,
    computations: Family<Labels3, Counter>,
    computation_duration: Family<Labels3, Histogram, fn() -> Histogram>,
    hpas: Gauge,
    desired: Family<HpaLabels, Gauge>,
}

impl Monitor {
    /// Registers the metrics in `registry`.
    pub fn register(registry: &Metrics) -> Self {
        let m = Monitor {
            reconciliations: Family::default(),
            reconciliation_duration: Family::new_with_constructor(histogram),
            computations: Family::default(),
            computation_duration: Family::new_with_constructor(histogram),
            hpas: Gauge::default(),
            desired: Family::default(),
        };
        macro_rules! register {
            ($name:literal, $help:literal, $metric:expr) => {
                registry.register(
                    concat!("horizontal_pod_autoscaler_controller_", $name),
                    concat!("[ALPHA] ", $help),
                    $metric,
                )
            };
        }
        register!("reconciliations", "Number of reconciliations of HPA controller. The label 'action' should be either 'scale_down', 'scale_up', or 'none'. Also, the label 'error' should be either 'spec', 'internal', or 'none'. Note that if both spec and internal errors happen during a reconciliation, the first one to occur is reported in `error` label.", m.reconciliations.clone());
        register!("reconciliation_duration_seconds", "The time(seconds) that the HPA controller takes to reconcile once. The label 'action' should be either 'scale_down', 'scale_up', or 'none'. Also, the label 'error' should be either 'spec', 'internal', or 'none'. Note that if both spec and internal errors happen during a reconciliation, the first one to occur is reported in `error` label.", m.reconciliation_duration.clone());
        register!("metric_computation", "Number of metric computations. The label 'action' should be either 'scale_down', 'scale_up', or 'none'. Also, the label 'error' should be either 'spec', 'internal', or 'none'. The label 'metric_type' corresponds to HPA.spec.metrics[*].type", m.computations.clone());
        register!("metric_computation_duration_seconds", "The time(seconds) that the HPA controller takes to calculate one metric. The label 'action' should be either 'scale_down', 'scale_up', or 'none'. The label 'error' should be either 'spec', 'internal', or 'none'. The label 'metric_type' corresponds to HPA.spec.metrics[*].type", m.computation_duration.clone());
        register!(
            "num_horizontal_pod_autoscalers",
            "Current number of controlled HPA objects.",
            m.hpas.clone()
        );
        register!(
            "desired_replicas",
            "Current desired replica count for HPA objects.",
            m.desired.clone()
        );
        m
    }

    /// One reconciliation's outcome.
    pub fn reconciled(&self, action: Action, error: ErrorKind, took: Duration) {
        let l = [("action", action.label()), ("error", error.label())];
        self.reconciliations.get_or_create(&l).inc();
        self.reconciliation_duration
            .get_or_create(&l)
            .observe(took.as_secs_f64());
    }

    /// One metric computation's outcome (`metric_type`: the spec's `type`).
    pub fn computed(&self, action: Action, error: ErrorKind, metric_type: &str, took: Duration) {
        let l = [
            ("action", action.label().to_string()),
            ("error", error.label().to_string()),
            ("metric_type", metric_type.to_string()),
        ];
        self.computations.get_or_create(&l).inc();
        self.computation_duration
            .get_or_create(&l)
            .observe(took.as_secs_f64());
    }

    /// An HPA appeared.
    pub fn added(&self) {
        self.hpas.inc();
    }

    /// An HPA went away (its desired-replicas series with it).
    pub fn deleted(&self, namespace: &str, name: &str) {
        self.hpas.dec();
        self.desired
            .remove(&[("namespace", namespace.into()), ("hpa_name", name.into())]);
    }

    /// The desired replicas of `namespace/name`.
    pub fn desired(&self, namespace: &str, name: &str, replicas: i32) {
        self.desired
            .get_or_create(&[("namespace", namespace.into()), ("hpa_name", name.into())])
            .set(i64::from(replicas));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_upstreams_names_and_labels() {
        let registry = Metrics::new();
        let m = Monitor::register(&registry);
        m.added();
        m.added();
        m.reconciled(Action::ScaleUp, ErrorKind::None, Duration::from_millis(3));
        m.computed(
            Action::between(2, 1),
            ErrorKind::Internal,
            "Resource",
            Duration::from_millis(1),
        );
        m.desired("ns", "web", 4);
        m.deleted("ns", "gone");
        let text = registry.render();
        for line in [
            r#"horizontal_pod_autoscaler_controller_reconciliations_total{action="scale_up",error="none"} 1"#,
            r#"horizontal_pod_autoscaler_controller_reconciliation_duration_seconds_count{action="scale_up",error="none"} 1"#,
            r#"horizontal_pod_autoscaler_controller_metric_computation_total{action="scale_down",error="internal",metric_type="Resource"} 1"#,
            r#"horizontal_pod_autoscaler_controller_metric_computation_duration_seconds_count{action="scale_down",error="internal",metric_type="Resource"} 1"#,
            "horizontal_pod_autoscaler_controller_num_horizontal_pod_autoscalers 1",
            r#"horizontal_pod_autoscaler_controller_desired_replicas{namespace="ns",hpa_name="web"} 4"#,
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }
}
