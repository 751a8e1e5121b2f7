//! The binder's metrics, as upstream's PV controller exposes them: `pv_collector_*` gauges
//! counting volumes and claims (recomputed from the caches every resync, where upstream's
//! collector counts at scrape time) and the retroactive default-class counters.

use std::collections::BTreeMap;
use std::sync::Arc;

use component_base::metrics::Metrics;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use super::classes::claim_class;
use super::matching::volume_phase;

type Labels = Vec<(String, String)>;

/// The binder's metric families.
#[derive(Clone)]
pub struct BinderMetrics {
    total_pv: Family<Labels, Gauge>,
    bound_pv: Family<Labels, Gauge>,
    unbound_pv: Family<Labels, Gauge>,
    bound_pvc: Family<Labels, Gauge>,
    unbound_pvc: Family<Labels, Gauge>,
    /// `retroactive_storageclass_total`: default classes assigned to existing claims.
    pub retroactive: Counter,
    /// `retroactive_storageclass_errors_total`: failed assignments.
    pub retroactive_errors: Counter,
}

impl BinderMetrics {
    /// Registers the families in `registry`.
    pub fn register(registry: &Metrics) -> Self {
        let m = BinderMetrics {
            total_pv: Family::default(),
            bound_pv: Family::default(),
            unbound_pv: Family::default(),
            bound_pvc: Family::default(),
            unbound_pvc: Family::default(),
            retroactive: Counter::default(),
            retroactive_errors: Counter::default(),
        };
        let gauges = [
            (
                "pv_collector_total_pv_count",
                "[ALPHA] Gauge measuring total number of persistent volumes",
                &m.total_pv,
            ),
            (
                "pv_collector_bound_pv_count",
                "[ALPHA] Gauge measuring number of persistent volume currently bound",
                &m.bound_pv,
            ),
            (
                "pv_collector_unbound_pv_count",
                "[ALPHA] Gauge measuring number of persistent volume currently unbound",
                &m.unbound_pv,
            ),
            (
                "pv_collector_bound_pvc_count",
                "[ALPHA] Gauge measuring number of persistent volume claim currently bound",
                &m.bound_pvc,
            ),
            (
                "pv_collector_unbound_pvc_count",
                "[ALPHA] Gauge measuring number of persistent volume claim currently unbound",
                &m.unbound_pvc,
            ),
        ];
        for (name, help, family) in gauges {
            registry.register(name, help, family.clone());
        }
        registry.register(
            "retroactive_storageclass",
            "[ALPHA] Total number of retroactive StorageClass assignments to persistent volume claim",
            m.retroactive.clone(),
        );
        registry.register(
            "retroactive_storageclass_errors",
            "[ALPHA] Total number of failed retroactive StorageClass assignments to persistent volume claim",
            m.retroactive_errors.clone(),
        );
        m
    }

    /// Replaces the gauges with `counts`.
    pub fn set(&self, counts: &Counts) {
        for (family, values) in [
            (&self.total_pv, &counts.total_pv),
            (&self.bound_pv, &counts.bound_pv),
            (&self.unbound_pv, &counts.unbound_pv),
            (&self.bound_pvc, &counts.bound_pvc),
            (&self.unbound_pvc, &counts.unbound_pvc),
        ] {
            family.clear();
            for (labels, n) in values {
                family.get_or_create(labels).set(*n);
            }
        }
    }
}

/// The gauges' values by label set.
#[derive(Debug, Default, PartialEq)]
pub struct Counts {
    /// By `plugin_name`, `volume_mode`.
    pub total_pv: BTreeMap<Labels, i64>,
    /// By `storage_class`.
    pub bound_pv: BTreeMap<Labels, i64>,
    /// By `storage_class`.
    pub unbound_pv: BTreeMap<Labels, i64>,
    /// By `namespace`, `storage_class`, `volume_attributes_class`.
    pub bound_pvc: BTreeMap<Labels, i64>,
    /// As `bound_pvc`.
    pub unbound_pvc: BTreeMap<Labels, i64>,
}

fn l(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The volume plugin upstream's controller manager names for a volume (`N/A` for sources
/// it has no plugin for, e.g. `local`).
pub fn plugin_name(pv: &PersistentVolume) -> String {
    let Some(spec) = pv.spec.as_ref() else {
        return "N/A".into();
    };
    if let Some(csi) = &spec.csi {
        return format!("kubernetes.io/csi:{}", csi.driver);
    }
    let name = if spec.host_path.is_some() {
        "kubernetes.io/host-path"
    } else if spec.nfs.is_some() {
        "kubernetes.io/nfs"
    } else if spec.fc.is_some() {
        "kubernetes.io/fc"
    } else if spec.iscsi.is_some() {
        "kubernetes.io/iscsi"
    } else {
        "N/A"
    };
    name.into()
}

/// Counts volumes and claims as upstream's collector does (a volume or claim not in phase
/// Bound counts as unbound; volumes by `spec.storageClassName`).
pub fn count(volumes: &[Arc<PersistentVolume>], claims: &[Arc<PersistentVolumeClaim>]) -> Counts {
    let mut c = Counts::default();
    for pv in volumes {
        let spec = pv.spec.clone().unwrap_or_default();
        let mode = spec.volume_mode.as_deref().unwrap_or("Filesystem");
        *c.total_pv
            .entry(l(&[
                ("plugin_name", &plugin_name(pv)),
                ("volume_mode", mode),
            ]))
            .or_default() += 1;
        let class = spec.storage_class_name.as_deref().unwrap_or("");
        let target = if volume_phase(pv) == "Bound" {
            &mut c.bound_pv
        } else {
            &mut c.unbound_pv
        };
        *target.entry(l(&[("storage_class", class)])).or_default() += 1;
    }
    for pvc in claims {
        let vac = pvc
            .spec
            .as_ref()
            .and_then(|s| s.volume_attributes_class_name.as_deref())
            .unwrap_or("");
        let labels = l(&[
            ("namespace", pvc.metadata.namespace.as_deref().unwrap_or("")),
            ("storage_class", claim_class(pvc)),
            ("volume_attributes_class", vac),
        ]);
        let bound = pvc.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
        let target = if bound {
            &mut c.bound_pvc
        } else {
            &mut c.unbound_pvc
        };
        *target.entry(labels).or_default() += 1;
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn counts_by_upstreams_labels() {
        let pv = |v| Arc::new(serde_json::from_value::<PersistentVolume>(v).unwrap());
        let volumes = vec![
            pv(
                json!({"spec": {"hostPath": {"path": "/tmp/a"}, "storageClassName": "x"},
                      "status": {"phase": "Bound"}}),
            ),
            pv(
                json!({"spec": {"local": {"path": "/mnt"}, "volumeMode": "Block"},
                      "status": {"phase": "Available"}}),
            ),
            pv(json!({"spec": {"csi": {"driver": "d.io", "volumeHandle": "h"}}})),
        ];
        let claims = vec![
            Arc::new(
                serde_json::from_value::<PersistentVolumeClaim>(json!({
                "metadata": {"namespace": "ns"}, "spec": {"storageClassName": "x"},
                "status": {"phase": "Bound"}}))
                .unwrap(),
            ),
            Arc::new(
                serde_json::from_value::<PersistentVolumeClaim>(json!({
                "metadata": {"namespace": "ns"}, "spec": {}}))
                .unwrap(),
            ),
        ];
        let c = count(&volumes, &claims);
        assert_eq!(
            c.total_pv[&l(&[
                ("plugin_name", "kubernetes.io/host-path"),
                ("volume_mode", "Filesystem")
            ])],
            1
        );
        assert_eq!(
            c.total_pv[&l(&[("plugin_name", "N/A"), ("volume_mode", "Block")])],
            1
        );
        assert_eq!(
            c.total_pv[&l(&[
                ("plugin_name", "kubernetes.io/csi:d.io"),
                ("volume_mode", "Filesystem")
            ])],
            1
        );
        assert_eq!(c.bound_pv[&l(&[("storage_class", "x")])], 1);
        assert_eq!(c.unbound_pv[&l(&[("storage_class", "")])], 2);
        let labels = |class: &str| {
            l(&[
                ("namespace", "ns"),
                ("storage_class", class),
                ("volume_attributes_class", ""),
            ])
        };
        assert_eq!(c.bound_pvc[&labels("x")], 1);
        assert_eq!(c.unbound_pvc[&labels("")], 1);
        let registry = Metrics::new();
        let m = BinderMetrics::register(&registry);
        m.set(&c);
        let text = registry.render();
        assert!(
            text.contains(r#"pv_collector_bound_pv_count{storage_class="x"} 1"#),
            "{text}"
        );
    }
}
