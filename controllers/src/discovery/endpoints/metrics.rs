//! Upstream's `endpoint_slice_controller_*` metrics and the pure bookkeeping behind them:
//! endpoints added and removed per sync ([`totals`]), slices changed per sync, EndpointSlice
//! writes by operation, syncs by result, Services by traffic distribution, and the
//! desired/actual slice gauges ([`Efficiency`]).
//!
//! ferrokube does not set topology hints, so `endpointslices_changed_per_sync` always has
//! `topology="Disabled"`; upstream's `stale` sync result does not occur.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use component_base::metrics::Metrics;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointPort, EndpointSlice};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};

use super::efficiency::{Efficiency, GroupSize, ObjectKey};
use super::slices::port_key;
use component_base::metrics::UnsuffixedCounter;

/// An endpoint's identity across syncs: its addresses and the object it points to.
fn identity(e: &Endpoint) -> (Vec<String>, Option<String>, Option<String>) {
    let target = e.target_ref.as_ref();
    (
        e.addresses.clone(),
        target.and_then(|r| r.namespace.clone()),
        target.and_then(|r| r.name.clone()),
    )
}

/// Upstream's per-sync `(added, removed)`: for each desired port set, desired endpoints
/// missing from the existing IPv4 slices with that port set, and existing endpoints of
/// those slices no longer desired.
pub fn totals(
    desired: &[(Vec<EndpointPort>, Vec<Endpoint>)],
    existing: &[EndpointSlice],
) -> (usize, usize) {
    let mut want: BTreeMap<String, HashSet<_>> = BTreeMap::new();
    for (ports, eps) in desired {
        want.entry(port_key(ports))
            .or_default()
            .extend(eps.iter().map(identity));
    }
    let mut have: HashMap<String, HashSet<_>> = HashMap::new();
    for s in existing.iter().filter(|s| s.address_type == "IPv4") {
        have.entry(port_key(s.ports.as_deref().unwrap_or_default()))
            .or_default()
            .extend(s.endpoints.iter().map(identity));
    }
    let empty = HashSet::new();
    want.iter().fold((0, 0), |(added, removed), (key, w)| {
        let h = have.get(key).unwrap_or(&empty);
        (
            added + w.difference(h).count(),
            removed + h.difference(w).count(),
        )
    })
}

/// The sizes of each desired port set: its endpoints and the slices holding them (the
/// placeholder slice of a Service without endpoints counts as a slice of none).
pub fn group_sizes(desired: &[(Vec<EndpointPort>, Vec<Endpoint>)]) -> Vec<GroupSize> {
    let mut by_key: BTreeMap<String, GroupSize> = BTreeMap::new();
    for (ports, eps) in desired {
        let g = by_key.entry(port_key(ports)).or_default();
        g.endpoints += eps.len();
        g.slices += 1;
    }
    by_key.into_values().collect()
}

/// The `traffic_distribution` label of a Service: its `spec.trafficDistribution` when it
/// is one upstream acts on and topology hints are not requested, else empty.
pub fn traffic_distribution(svc: &Service) -> Option<String> {
    let hints = svc.metadata.annotations.as_ref().is_some_and(|a| {
        [
            "service.kubernetes.io/topology-mode",
            "service.kubernetes.io/topology-aware-hints",
        ]
        .iter()
        .any(|k| a.get(*k).is_some_and(|v| v == "Auto" || v == "auto"))
    });
    let value = svc.spec.as_ref()?.traffic_distribution.clone()?;
    let known = ["PreferClose", "PreferSameZone", "PreferSameNode"].contains(&value.as_str());
    (known && !hints).then_some(value)
}

type LabelPair = [(&'static str, String); 2];
type Label = [(&'static str, String); 1];

/// The Service sizes and traffic distributions behind the gauges.
#[derive(Debug)]
struct Cache {
    efficiency: Efficiency,
    traffic: HashMap<ObjectKey, String>,
}

/// The registered metrics of endpointslice-controller. Cheap to clone.
#[derive(Clone)]
pub struct SliceMetrics {
    added: Histogram,
    removed: Histogram,
    endpoints_desired: Gauge,
    num_slices: Gauge,
    desired_slices: Gauge,
    changes: Family<[(&'static str, &'static str); 1], UnsuffixedCounter>,
    changed_per_sync: Family<LabelPair, Histogram, fn() -> Histogram>,
    syncs: Family<[(&'static str, &'static str); 1], UnsuffixedCounter>,
    by_traffic: Family<Label, Gauge>,
    cache: Arc<Mutex<Cache>>,
}

fn per_sync_histogram() -> Histogram {
    Histogram::new(exponential_buckets(2.0, 2.0, 15))
}

/// Prometheus' default buckets (upstream sets none for `endpointslices_changed_per_sync`).
fn default_buckets_histogram() -> Histogram {
    Histogram::new([
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ])
}

impl SliceMetrics {
    /// Registers the metrics in `registry`, for slices of at most `max_per_slice` endpoints.
    pub fn register(registry: &Metrics, max_per_slice: usize) -> Self {
        let m = SliceMetrics {
            added: per_sync_histogram(),
            removed: per_sync_histogram(),
            endpoints_desired: Gauge::default(),
            num_slices: Gauge::default(),
            desired_slices: Gauge::default(),
            changes: Family::default(),
            changed_per_sync: Family::new_with_constructor(default_buckets_histogram),
            syncs: Family::default(),
            by_traffic: Family::default(),
            cache: Arc::new(Mutex::new(Cache {
                efficiency: Efficiency::new(max_per_slice),
                traffic: HashMap::new(),
            })),
        };
        macro_rules! register {
            ($name:literal, $help:literal, $metric:expr) => {
                registry.register(
                    concat!("endpoint_slice_controller_", $name),
                    concat!("[ALPHA] ", $help),
                    $metric,
                )
            };
        }
        register!(
            "endpoints_added_per_sync",
            "Number of endpoints added on each Service sync",
            m.added.clone()
        );
        register!(
            "endpoints_removed_per_sync",
            "Number of endpoints removed on each Service sync",
            m.removed.clone()
        );
        register!(
            "endpoints_desired",
            "Number of endpoints desired",
            m.endpoints_desired.clone()
        );
        register!(
            "num_endpoint_slices",
            "Number of EndpointSlices",
            m.num_slices.clone()
        );
        register!(
            "desired_endpoint_slices",
            "Number of EndpointSlices that would exist with perfect endpoint allocation",
            m.desired_slices.clone()
        );
        register!(
            "changes",
            "Number of EndpointSlice changes",
            m.changes.clone()
        );
        register!(
            "endpointslices_changed_per_sync",
            "Number of EndpointSlices changed on each Service sync",
            m.changed_per_sync.clone()
        );
        register!("syncs", "Number of EndpointSlice syncs", m.syncs.clone());
        register!(
            "services_count_by_traffic_distribution",
            "Number of Services using some specific trafficDistribution",
            m.by_traffic.clone()
        );
        m
    }

    /// Records a reconcile of the Service `key`: endpoints added and removed, its port set
    /// sizes and its traffic distribution.
    pub fn reconciled(
        &self,
        key: ObjectKey,
        (added, removed): (usize, usize),
        sizes: Vec<GroupSize>,
        traffic: Option<String>,
    ) {
        self.added.observe(added as f64);
        self.removed.observe(removed as f64);
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.efficiency.update(key.clone(), sizes);
        match traffic {
            Some(t) => cache.traffic.insert(key, t),
            None => cache.traffic.remove(&key),
        };
        self.publish(&cache);
    }

    /// Forgets the Service `key` (deleted or no longer selecting pods).
    pub fn deleted(&self, key: &ObjectKey) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let known = cache.efficiency.delete(key);
        if cache.traffic.remove(key).is_some() || known {
            self.publish(&cache);
        }
    }

    fn publish(&self, cache: &Cache) {
        let (endpoints, slices, desired) = cache.efficiency.sums();
        self.endpoints_desired.set(endpoints as i64);
        self.num_slices.set(slices as i64);
        self.desired_slices.set(desired as i64);
        let mut counts: BTreeMap<&str, i64> = BTreeMap::new();
        for t in cache.traffic.values() {
            *counts.entry(t.as_str()).or_default() += 1;
        }
        self.by_traffic.clear();
        for (t, n) in counts {
            self.by_traffic
                .get_or_create(&[("traffic_distribution", t.to_string())])
                .set(n);
        }
    }

    /// Counts one EndpointSlice `operation` (`create`, `update` or `delete`).
    pub fn changed(&self, operation: &'static str) {
        self.changes
            .get_or_create(&[("operation", operation)])
            .inc();
    }

    /// Records the slices one sync of a Service with `traffic` distribution wrote.
    pub fn slices_changed(&self, traffic: Option<&str>, slices: usize) {
        let labels = [
            ("topology", "Disabled".to_string()),
            (
                "traffic_distribution",
                traffic.unwrap_or_default().to_string(),
            ),
        ];
        self.changed_per_sync
            .get_or_create(&labels)
            .observe(slices as f64);
    }

    /// Counts one sync by its result: `success` or `error`.
    pub fn synced(&self, ok: bool) {
        let result = if ok { "success" } else { "error" };
        self.syncs.get_or_create(&[("result", result)]).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::endpoints::pods::tests::pod;
    use crate::discovery::endpoints::slices::{desired, plan};
    use k8s_openapi::api::core::v1::Pod;
    use serde_json::json;

    fn svc(extra: serde_json::Value) -> Service {
        let mut v = json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "svc-uid"},
            "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}
        });
        if let (Some(spec), Some(more)) = (v["spec"].as_object_mut(), extra.as_object()) {
            spec.extend(more.clone());
        }
        serde_json::from_value(v).unwrap()
    }

    fn web_pod(i: usize) -> Pod {
        pod(json!({
            "metadata": {"name": format!("p{i}"), "namespace": "ns", "uid": format!("u{i}"), "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c"}]},
            "status": {"phase": "Running", "podIP": format!("10.0.0.{i}"),
                "conditions": [{"type": "Ready", "status": "True"}]}
        }))
    }

    /// The slices a sync of `pods` would leave behind.
    fn written(svc: &Service, pods: &[Pod]) -> Vec<EndpointSlice> {
        let refs: Vec<&Pod> = pods.iter().collect();
        let mut slices = plan(svc, desired(svc, &refs, &Default::default(), 100), &[]).create;
        for (i, s) in slices.iter_mut().enumerate() {
            s.metadata.name = Some(format!("web-{i}"));
        }
        slices
    }

    #[test]
    fn totals_count_endpoints_added_and_removed_per_port_set() {
        let s = svc(json!({}));
        let before = [web_pod(1), web_pod(2)];
        let existing = written(&s, &before);
        let refs: Vec<&Pod> = before.iter().collect();
        assert_eq!(
            totals(&desired(&s, &refs, &Default::default(), 100), &[]),
            (2, 0)
        );
        assert_eq!(
            totals(&desired(&s, &refs, &Default::default(), 100), &existing),
            (0, 0)
        );
        let after = [web_pod(2), web_pod(3), web_pod(4)];
        let refs: Vec<&Pod> = after.iter().collect();
        assert_eq!(
            totals(&desired(&s, &refs, &Default::default(), 100), &existing),
            (2, 1)
        );
    }

    #[test]
    fn group_sizes_count_chunks_and_the_placeholder() {
        let s = svc(json!({}));
        let pods: Vec<Pod> = (1..=3).map(web_pod).collect();
        let refs: Vec<&Pod> = pods.iter().collect();
        let sizes = group_sizes(&desired(&s, &refs, &Default::default(), 2));
        assert_eq!(
            sizes,
            vec![GroupSize {
                endpoints: 3,
                slices: 2
            }]
        );
        let none = group_sizes(&desired(&s, &[], &Default::default(), 2));
        assert_eq!(
            none,
            vec![GroupSize {
                endpoints: 0,
                slices: 1
            }]
        );
    }

    #[test]
    fn traffic_distribution_is_reported_only_when_upstream_acts_on_it() {
        assert_eq!(traffic_distribution(&svc(json!({}))), None);
        let close = svc(json!({"trafficDistribution": "PreferClose"}));
        assert_eq!(traffic_distribution(&close).as_deref(), Some("PreferClose"));
        assert_eq!(
            traffic_distribution(&svc(json!({"trafficDistribution": "Bogus"}))),
            None
        );
        let mut hinted = close.clone();
        hinted.metadata.annotations = Some(
            [(
                "service.kubernetes.io/topology-mode".to_string(),
                "Auto".to_string(),
            )]
            .into(),
        );
        assert_eq!(traffic_distribution(&hinted), None);
    }

    #[test]
    fn renders_upstream_names_and_labels() {
        let registry = Metrics::new();
        let m = SliceMetrics::register(&registry, 100);
        let s = svc(json!({"trafficDistribution": "PreferClose"}));
        let pods: Vec<Pod> = (1..=3).map(web_pod).collect();
        let refs: Vec<&Pod> = pods.iter().collect();
        let want = desired(&s, &refs, &Default::default(), 100);
        let key = ("ns".to_string(), "web".to_string());
        let traffic = traffic_distribution(&s);
        m.reconciled(
            key.clone(),
            totals(&want, &[]),
            group_sizes(&want),
            traffic.clone(),
        );
        m.changed("create");
        m.slices_changed(traffic.as_deref(), 1);
        m.synced(true);
        m.synced(false);
        let text = registry.render();
        for line in [
            "endpoint_slice_controller_endpoints_added_per_sync_sum 3.0",
            "endpoint_slice_controller_endpoints_removed_per_sync_count 1",
            "endpoint_slice_controller_endpoints_desired 3",
            "endpoint_slice_controller_num_endpoint_slices 1",
            "endpoint_slice_controller_desired_endpoint_slices 1",
            "# TYPE endpoint_slice_controller_changes counter",
            r#"endpoint_slice_controller_changes{operation="create"} 1"#,
            r#"endpoint_slice_controller_endpointslices_changed_per_sync_count{topology="Disabled",traffic_distribution="PreferClose"} 1"#,
            r#"endpoint_slice_controller_syncs{result="success"} 1"#,
            r#"endpoint_slice_controller_syncs{result="error"} 1"#,
            r#"endpoint_slice_controller_services_count_by_traffic_distribution{traffic_distribution="PreferClose"} 1"#,
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        m.deleted(&key);
        let text = registry.render();
        assert!(text
            .lines()
            .any(|l| l == "endpoint_slice_controller_endpoints_desired 0"));
        assert!(
            !text.contains("services_count_by_traffic_distribution{"),
            "{text}"
        );
    }
}
