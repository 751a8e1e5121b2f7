//! The kubelet's own series on `/metrics`, with upstream's names, labels and buckets
//! (pkg/kubelet/metrics): `kubelet_evictions{eviction_signal}`,
//! `kubelet_admission_rejections_total{reason}`, `kubelet_pod_start_duration_seconds`,
//! `kubelet_running_pods` and `kubelet_running_containers{container_state}`. Process-wide
//! like upstream's package-level metrics; [`register`] puts them on the registry once.

use component_base::metrics::UnsuffixedCounter;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// Label pairs of one series.
pub type Labels = Vec<(String, String)>;

/// Upstream's `podStartupDurationBuckets` (seconds).
pub const POD_START_DURATION_BUCKETS: [f64; 25] = [
    0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 20.0, 30.0, 45.0, 60.0, 120.0, 180.0, 240.0,
    300.0, 360.0, 480.0, 600.0, 900.0, 1200.0, 1800.0, 2700.0, 3600.0,
];

/// The container states `kubelet_running_containers` is labelled with (upstream's
/// kubecontainer states).
pub const CONTAINER_STATES: [&str; 4] = ["created", "running", "exited", "unknown"];

/// Admission rejection reasons recorded as they are (upstream's allowlist); any other
/// `OutOf…` reason is `OutOfExtendedResources`, anything else `Other`.
const ADMISSION_REJECTION_REASONS: [&str; 20] = [
    "AppArmor",
    "PodOSSelectorNodeLabelDoesNotMatch",
    "PodOSNotSupported",
    "InvalidNodeInfo",
    "InitContainerRestartPolicyForbidden",
    "SupplementalGroupsPolicyNotSupported",
    "UnexpectedAdmissionError",
    "UnknownReason",
    "UnexpectedPredicateFailureType",
    "OutOfcpu",
    "OutOfmemory",
    "OutOfephemeral-storage",
    "OutOfpods",
    "PodLevelResourcesNotSupported",
    "node(s) had taints that the pod didn't tolerate",
    "Evicted",
    "SysctlForbidden",
    "TopologyAffinityError",
    "NodeShutdown",
    "VolumeAttachmentLimitExceeded",
];

struct KubeletMetrics {
    evictions: Family<Labels, UnsuffixedCounter>,
    admission_rejections: Family<Labels, Counter>,
    pod_start_duration: Histogram,
    running_pods: Gauge,
    running_containers: Family<Labels, Gauge>,
}

fn all() -> &'static KubeletMetrics {
    static METRICS: OnceLock<KubeletMetrics> = OnceLock::new();
    METRICS.get_or_init(|| KubeletMetrics {
        evictions: Family::default(),
        admission_rejections: Family::default(),
        pod_start_duration: Histogram::new(POD_START_DURATION_BUCKETS),
        running_pods: Gauge::default(),
        running_containers: Family::default(),
    })
}

fn label(k: &str, v: &str) -> Labels {
    vec![(k.to_string(), v.to_string())]
}

/// Registers the kubelet's series on `metrics` (prometheus-client appends `_total` to the
/// admission counter; `kubelet_evictions` keeps its bare name, as upstream).
pub fn register(metrics: &component_base::metrics::Metrics) {
    let m = all();
    metrics.register(
        "kubelet_evictions",
        "Cumulative number of pod evictions by eviction signal",
        m.evictions.clone(),
    );
    metrics.register(
        "kubelet_admission_rejections",
        "Cumulative number pod admission rejections by the Kubelet.",
        m.admission_rejections.clone(),
    );
    metrics.register(
        "kubelet_pod_start_duration_seconds",
        "Duration in seconds from kubelet seeing a pod for the first time to the pod starting to run",
        m.pod_start_duration.clone(),
    );
    metrics.register(
        "kubelet_running_pods",
        "Number of pods that have a running pod sandbox",
        m.running_pods.clone(),
    );
    metrics.register(
        "kubelet_running_containers",
        "Number of containers currently running",
        m.running_containers.clone(),
    );
}

/// Counts one eviction under `signal` (`memory.available`, `nodefs.available`, …).
pub fn count_eviction(signal: &str) {
    all()
        .evictions
        .get_or_create(&label("eviction_signal", signal))
        .inc();
}

/// The `reason` label an admission rejection is counted under.
pub fn admission_rejection_label(reason: &str) -> &str {
    if ADMISSION_REJECTION_REASONS.contains(&reason) {
        reason
    } else if reason.starts_with("OutOf") {
        "OutOfExtendedResources"
    } else {
        "Other"
    }
}

/// Counts one pod refused at admission for `reason`.
pub fn count_admission_rejection(reason: &str) {
    all()
        .admission_rejections
        .get_or_create(&label("reason", admission_rejection_label(reason)))
        .inc();
}

/// Whether a sync that moves a pod's phase from `previous` (`None`: the first sync this
/// kubelet made) to `current` records the pod's start duration: upstream observes it on
/// the first sync and when the pod goes from Pending to Running.
pub fn records_pod_start(previous: Option<&str>, current: &str) -> bool {
    match previous {
        None => true,
        Some(p) => p == "Pending" && current == "Running",
    }
}

/// Observes one pod start, `seconds` after the kubelet first saw the pod.
pub fn observe_pod_start(seconds: f64) {
    all().pod_start_duration.observe(seconds);
}

/// What the runtime runs now: pods with a ready sandbox, and containers by state.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RunningCounts {
    /// Pods with at least one ready sandbox.
    pub pods: i64,
    /// Containers by upstream's state name.
    pub containers: BTreeMap<&'static str, i64>,
}

impl RunningCounts {
    /// Counts the pods of one relist.
    pub fn of<'a>(pods: impl IntoIterator<Item = &'a crate::pod::observed::ObservedPod>) -> Self {
        use crate::pod::observed::ContainerState;
        let mut out = RunningCounts::default();
        for p in pods {
            if p.sandboxes.iter().any(|s| s.ready) {
                out.pods += 1;
            }
            for c in &p.containers {
                let state = match c.state {
                    ContainerState::Created => "created",
                    ContainerState::Running => "running",
                    ContainerState::Exited => "exited",
                    ContainerState::Unknown => "unknown",
                };
                *out.containers.entry(state).or_default() += 1;
            }
        }
        out
    }
}

/// Sets `kubelet_running_pods` and `kubelet_running_containers` from one relist; a state
/// seen before and absent now drops to 0.
pub fn set_running(counts: &RunningCounts) {
    let m = all();
    m.running_pods.set(counts.pods);
    for state in CONTAINER_STATES {
        let labels = label("container_state", state);
        let n = counts.containers.get(state).copied().unwrap_or(0);
        if n > 0 || m.running_containers.get(&labels).is_some() {
            m.running_containers.get_or_create(&labels).set(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::observed::{ObservedContainer, ObservedPod, ObservedSandbox};

    #[test]
    fn names_labels_and_the_bare_evictions_counter() {
        let metrics = component_base::metrics::Metrics::new();
        register(&metrics);
        count_eviction("nodefs.available");
        count_eviction("nodefs.available");
        count_admission_rejection("Evicted");
        count_admission_rejection("OutOfnvidia.com/gpu");
        observe_pod_start(1.5);
        let text = metrics.render();
        for want in [
            "# TYPE kubelet_evictions counter",
            "kubelet_evictions{eviction_signal=\"nodefs.available\"} 2\n",
            "kubelet_admission_rejections_total{reason=\"Evicted\"} 1\n",
            "kubelet_admission_rejections_total{reason=\"OutOfExtendedResources\"} 1\n",
            "kubelet_pod_start_duration_seconds_bucket{le=\"2.0\"}",
            "kubelet_running_pods ",
        ] {
            assert!(text.contains(want), "no {want:?} in\n{text}");
        }
        assert!(!text.contains("kubelet_evictions_total"), "{text}");
    }

    #[test]
    fn rejection_reasons_are_allowlisted() {
        assert_eq!(admission_rejection_label("Evicted"), "Evicted");
        assert_eq!(admission_rejection_label("OutOfcpu"), "OutOfcpu");
        assert_eq!(
            admission_rejection_label("OutOfexample.com/foo"),
            "OutOfExtendedResources"
        );
        assert_eq!(admission_rejection_label("Whatever"), "Other");
    }

    #[test]
    fn pod_start_is_recorded_on_first_sync_and_pending_to_running() {
        assert!(records_pod_start(None, "Pending"));
        assert!(records_pod_start(Some("Pending"), "Running"));
        assert!(!records_pod_start(Some("Running"), "Running"));
        assert!(!records_pod_start(Some("Pending"), "Pending"));
        assert!(!records_pod_start(Some("Running"), "Succeeded"));
    }

    #[test]
    fn running_counts_come_from_ready_sandboxes_and_container_states() {
        use crate::pod::observed::ContainerState;
        let container = |state| ObservedContainer {
            id: String::new(),
            sandbox_id: String::new(),
            name: "c".into(),
            restart_count: 0,
            hash: String::new(),
            state,
            exit_code: 0,
            reason: String::new(),
            message: String::new(),
            created_at: 0,
            started_at: 0,
            finished_at: 0,
            image: String::new(),
            image_ref: String::new(),
        };
        let sandbox = |ready| ObservedSandbox {
            id: String::new(),
            attempt: 0,
            ready,
            created_at: 0,
            ips: Vec::new(),
        };
        let running = ObservedPod {
            sandboxes: vec![sandbox(false), sandbox(true)],
            containers: vec![
                container(ContainerState::Running),
                container(ContainerState::Exited),
            ],
        };
        let stopped = ObservedPod {
            sandboxes: vec![sandbox(false)],
            containers: vec![container(ContainerState::Exited)],
        };
        let c = RunningCounts::of([&running, &stopped]);
        assert_eq!(c.pods, 1);
        assert_eq!(
            c.containers,
            BTreeMap::from([("exited", 2), ("running", 1)])
        );
    }
}
