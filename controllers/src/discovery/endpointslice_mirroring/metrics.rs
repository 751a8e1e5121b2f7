//! Upstream's `endpoint_slice_mirroring_controller_*` metrics and the pure bookkeeping
//! behind them: per-sync endpoint changes ([`totals`]), skipped addresses, sync duration,
//! EndpointSlice writes by operation, and the desired/actual slice gauges kept over every
//! mirrored Endpoints ([`Efficiency`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use component_base::metrics::{Metrics, UnsuffixedCounter};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};

use super::desired::{endpoint_identity, Desired, SliceKey};
use super::tracker::Key;
use crate::discovery::endpoints::efficiency::{Efficiency, GroupSize};

/// Endpoint changes one sync makes (upstream's `totalsByAction`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Desired endpoints missing from the existing slices.
    pub added: usize,
    /// Endpoints present but different (conditions, node, zone, target).
    pub updated: usize,
    /// Existing endpoints no longer desired.
    pub removed: usize,
}

/// Upstream's per-sync totals: for each desired address type and port set, an empty set
/// removes every endpoint of its slices, no slice adds every endpoint, otherwise the first
/// slice (by name) is compared with the desired endpoints (at most `max_per_slice`).
pub fn totals(desired: &Desired, existing: &[EndpointSlice], max_per_slice: usize) -> Totals {
    let mut by_key: BTreeMap<SliceKey, Vec<&EndpointSlice>> = BTreeMap::new();
    for s in existing {
        let key = SliceKey::new(s.ports.as_deref().unwrap_or_default(), &s.address_type);
        by_key.entry(key).or_default().push(s);
    }
    let mut t = Totals::default();
    for (key, group) in &desired.groups {
        let mut have = by_key.get(key).cloned().unwrap_or_default();
        have.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        let want = &group.endpoints[..group.endpoints.len().min(max_per_slice.max(1))];
        if want.is_empty() {
            t.removed += have.iter().map(|s| s.endpoints.len()).sum::<usize>();
            continue;
        }
        let Some(first) = have.first() else {
            t.added += want.len();
            continue;
        };
        let wanted: HashMap<_, &Endpoint> =
            want.iter().map(|e| (endpoint_identity(e), e)).collect();
        let mut matched = 0;
        for e in &first.endpoints {
            match wanted.get(&endpoint_identity(e)) {
                None => t.removed += 1,
                Some(w) => {
                    matched += 1;
                    if !same_beyond_hash(w, e) {
                        t.updated += 1;
                    }
                }
            }
        }
        t.added += wanted.len().saturating_sub(matched);
    }
    t
}

/// Upstream's `EndpointsEqualBeyondHash`: node, zone, conditions and target reference.
fn same_beyond_hash(a: &Endpoint, b: &Endpoint) -> bool {
    let target = |e: &Endpoint| {
        e.target_ref.clone().map(|mut r| {
            r.resource_version = None;
            r
        })
    };
    a.node_name == b.node_name
        && a.zone == b.zone
        && a.conditions == b.conditions
        && target(a) == target(b)
}

/// The sizes of each desired group after a sync: mirroring keeps one slice per non-empty
/// group and none for an empty one.
pub fn group_sizes(desired: &Desired, max_per_slice: usize) -> Vec<GroupSize> {
    desired
        .groups
        .values()
        .map(|g| {
            let endpoints = g.endpoints.len().min(max_per_slice.max(1));
            GroupSize {
                endpoints,
                slices: usize::from(endpoints > 0),
            }
        })
        .collect()
}

/// The `operation` label of `endpoint_slice_mirroring_controller_changes`.
pub type OperationLabel = [(&'static str, &'static str); 1];

/// The registered metrics of endpointslice-mirroring-controller. Cheap to clone.
#[derive(Clone)]
pub struct MirroringMetrics {
    added: Histogram,
    updated: Histogram,
    removed: Histogram,
    skipped: Histogram,
    sync_duration: Histogram,
    endpoints_desired: Gauge,
    num_slices: Gauge,
    desired_slices: Gauge,
    changes: Family<OperationLabel, UnsuffixedCounter>,
    efficiency: Arc<Mutex<Efficiency>>,
}

fn per_sync_histogram() -> Histogram {
    Histogram::new(exponential_buckets(2.0, 2.0, 15))
}

impl MirroringMetrics {
    /// Registers the metrics in `registry`, for slices of at most `max_per_slice` endpoints.
    pub fn register(registry: &Metrics, max_per_slice: usize) -> Self {
        let m = MirroringMetrics {
            added: per_sync_histogram(),
            updated: per_sync_histogram(),
            removed: per_sync_histogram(),
            skipped: per_sync_histogram(),
            sync_duration: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
            endpoints_desired: Gauge::default(),
            num_slices: Gauge::default(),
            desired_slices: Gauge::default(),
            changes: Family::default(),
            efficiency: Arc::new(Mutex::new(Efficiency::new(max_per_slice))),
        };
        const P: &str = "endpoint_slice_mirroring_controller_";
        let histograms = [
            ("endpoints_added_per_sync", "Number of endpoints added on each Endpoints sync", &m.added),
            ("endpoints_updated_per_sync", "Number of endpoints updated on each Endpoints sync", &m.updated),
            ("endpoints_removed_per_sync", "Number of endpoints removed on each Endpoints sync", &m.removed),
            ("addresses_skipped_per_sync", "Number of addresses skipped on each Endpoints sync due to being invalid or exceeding MaxEndpointsPerSubset", &m.skipped),
            ("endpoints_sync_duration", "Duration of syncEndpoints() in seconds", &m.sync_duration),
        ];
        for (name, help, h) in histograms {
            registry.register(&format!("{P}{name}"), &format!("[ALPHA] {help}"), h.clone());
        }
        let gauges = [
            (
                "endpoints_desired",
                "Number of endpoints desired",
                &m.endpoints_desired,
            ),
            (
                "num_endpoint_slices",
                "Number of EndpointSlices",
                &m.num_slices,
            ),
            (
                "desired_endpoint_slices",
                "Number of EndpointSlices that would exist with perfect endpoint allocation",
                &m.desired_slices,
            ),
        ];
        for (name, help, g) in gauges {
            registry.register(&format!("{P}{name}"), &format!("[ALPHA] {help}"), g.clone());
        }
        registry.register(
            &format!("{P}changes"),
            "[ALPHA] Number of EndpointSlice changes",
            m.changes.clone(),
        );
        m
    }

    /// Records a reconcile of `key`: its endpoint changes, skipped addresses and groups.
    pub fn reconciled(&self, key: Key, totals: Totals, skipped: usize, sizes: Vec<GroupSize>) {
        self.skipped.observe(skipped as f64);
        self.added.observe(totals.added as f64);
        self.updated.observe(totals.updated as f64);
        self.removed.observe(totals.removed as f64);
        let mut eff = self.efficiency.lock().unwrap_or_else(|e| e.into_inner());
        eff.update(key, sizes);
        self.publish(&eff);
    }

    /// Forgets `key`, whose Endpoints is gone or no longer mirrored.
    pub fn deleted(&self, key: &Key) {
        let mut eff = self.efficiency.lock().unwrap_or_else(|e| e.into_inner());
        if eff.delete(key) {
            self.publish(&eff);
        }
    }

    fn publish(&self, eff: &Efficiency) {
        let (endpoints, slices, desired) = eff.sums();
        self.endpoints_desired.set(endpoints as i64);
        self.num_slices.set(slices as i64);
        self.desired_slices.set(desired as i64);
    }

    /// Records how long a sync took (upstream truncates to milliseconds).
    pub fn synced_in(&self, elapsed: std::time::Duration) {
        self.sync_duration
            .observe(elapsed.as_millis() as f64 / 1000.0);
    }

    /// Counts one EndpointSlice `operation` (`create`, `update` or `delete`).
    pub fn changed(&self, operation: &'static str) {
        self.changes
            .get_or_create(&[("operation", operation)])
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::endpointslice_mirroring::desired::desired;
    use crate::discovery::endpointslice_mirroring::plan::plan;
    use k8s_openapi::api::core::v1::Endpoints;
    use serde_json::json;

    /// Endpoints `ns/ext` with `ready` and not-ready IPs on port 80.
    fn endpoints(ready: &[&str], not_ready: &[&str]) -> Endpoints {
        let list = |ips: &[&str]| -> Vec<_> { ips.iter().map(|ip| json!({"ip": ip})).collect() };
        serde_json::from_value(json!({
            "metadata": {"name": "ext", "namespace": "ns", "uid": "u"},
            "subsets": [{"addresses": list(ready), "notReadyAddresses": list(not_ready),
                "ports": [{"port": 80, "protocol": "TCP"}]}]
        }))
        .unwrap()
    }

    /// The slices mirroring `e` would have once written.
    fn mirrored(e: &Endpoints) -> Vec<EndpointSlice> {
        let mut slices = plan(e, &desired(e, 1000), &[], 1000).create;
        for (i, s) in slices.iter_mut().enumerate() {
            s.metadata.name = Some(format!("ext-{i}"));
        }
        slices
    }

    #[test]
    fn totals_count_added_updated_and_removed_endpoints_as_upstream() {
        let before = endpoints(&["10.0.0.1", "10.0.0.2"], &[]);
        let existing = mirrored(&before);
        let new = totals(&desired(&before, 1000), &[], 1000);
        assert_eq!(
            new,
            Totals {
                added: 2,
                updated: 0,
                removed: 0
            }
        );
        let same = totals(&desired(&before, 1000), &existing, 1000);
        assert_eq!(same, Totals::default());
        // .2 turns not ready (updated), .1 goes (removed), .3 and .4 come (added).
        let after = endpoints(&["10.0.0.3"], &["10.0.0.2", "10.0.0.4"]);
        let changed = totals(&desired(&after, 1000), &existing, 1000);
        assert_eq!(
            changed,
            Totals {
                added: 2,
                updated: 1,
                removed: 1
            }
        );
        let empty = endpoints(&[], &[]);
        let gone = totals(&desired(&empty, 1000), &existing, 1000);
        assert_eq!(
            gone,
            Totals {
                added: 0,
                updated: 0,
                removed: 2
            }
        );
    }

    #[test]
    fn group_sizes_keep_one_slice_per_non_empty_group() {
        let e = endpoints(&["10.0.0.9", "fd00::1"], &[]);
        let mut sizes = group_sizes(&desired(&e, 1000), 1000);
        sizes.sort_by_key(|g| g.endpoints);
        let one = GroupSize {
            endpoints: 1,
            slices: 1,
        };
        assert_eq!(sizes, vec![one, one]);
        let empty = endpoints(&[], &[]);
        let sizes = group_sizes(&desired(&empty, 1000), 1000);
        assert!(
            sizes.iter().all(|g| *g == GroupSize::default()),
            "{sizes:?}"
        );
    }

    #[test]
    fn renders_upstream_names_and_changes_without_total_suffix() {
        let registry = Metrics::new();
        let m = MirroringMetrics::register(&registry, 1000);
        let e = endpoints(&["10.0.0.1", "10.0.0.2"], &[]);
        let want = desired(&e, 1000);
        m.reconciled(
            ("ns".into(), "ext".into()),
            totals(&want, &[], 1000),
            want.skipped,
            group_sizes(&want, 1000),
        );
        m.changed("create");
        m.changed("create");
        m.synced_in(std::time::Duration::from_millis(3));
        let text = registry.render();
        for line in [
            "endpoint_slice_mirroring_controller_endpoints_added_per_sync_sum 2.0",
            "endpoint_slice_mirroring_controller_endpoints_added_per_sync_count 1",
            r#"endpoint_slice_mirroring_controller_endpoints_added_per_sync_bucket{le="2.0"} 1"#,
            r#"endpoint_slice_mirroring_controller_endpoints_added_per_sync_bucket{le="32768.0"} 1"#,
            "endpoint_slice_mirroring_controller_endpoints_updated_per_sync_count 1",
            "endpoint_slice_mirroring_controller_endpoints_removed_per_sync_count 1",
            "endpoint_slice_mirroring_controller_addresses_skipped_per_sync_count 1",
            "endpoint_slice_mirroring_controller_endpoints_sync_duration_sum 0.003",
            r#"endpoint_slice_mirroring_controller_endpoints_sync_duration_bucket{le="0.004"} 1"#,
            "endpoint_slice_mirroring_controller_endpoints_desired 2",
            "endpoint_slice_mirroring_controller_num_endpoint_slices 1",
            "endpoint_slice_mirroring_controller_desired_endpoint_slices 1",
            "# TYPE endpoint_slice_mirroring_controller_changes counter",
            r#"endpoint_slice_mirroring_controller_changes{operation="create"} 2"#,
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        m.deleted(&("ns".into(), "ext".into()));
        let text = registry.render();
        assert!(text
            .lines()
            .any(|l| l == "endpoint_slice_mirroring_controller_endpoints_desired 0"));
    }
}
