//! The scheduler's per-cycle view of the cluster: immutable [`NodeInfo`]s shared by `Arc`.

mod node_info;
mod pod_info;
pub mod resource;
pub mod slim;

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;

pub use node_info::{normalize_image, NodeInfo};
pub use pod_info::{AffinityTerm, HostPort, PodInfo};
pub use resource::Resource;

use api_helpers::labels::Labels;

/// Storage objects the volume plugins read (shared, rebuilt when they change).
#[derive(Debug, Default, Clone)]
pub struct StorageView {
    /// PVCs by `namespace/name`.
    pub pvcs: HashMap<String, Arc<PersistentVolumeClaim>>,
    /// PVs by name.
    pub pvs: HashMap<String, Arc<PersistentVolume>>,
    /// StorageClasses by name.
    pub classes: HashMap<String, Arc<StorageClass>>,
}

/// Selectors of workloads (Services, ReplicaSets, StatefulSets, ReplicationControllers),
/// used by PodTopologySpread's system default constraints.
#[derive(Debug, Default, Clone)]
pub struct WorkloadView {
    /// (namespace, selector) of each Service.
    pub services: Vec<(String, Labels)>,
    /// (namespace, selector) of each ReplicaSet, StatefulSet and ReplicationController.
    pub controllers: Vec<(
        String,
        k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
    )>,
    /// (namespace, selector, disruptionsAllowed) of each PodDisruptionBudget.
    pub pdbs: Vec<(
        String,
        k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
        i32,
    )>,
}

/// A consistent view of all nodes for one scheduling cycle.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    /// Nodes in scheduling order (zones interleaved, as upstream's node tree).
    pub nodes: Vec<Arc<NodeInfo>>,
    /// Node name → index in `nodes`.
    pub index: HashMap<String, usize>,
    /// Indices of nodes hosting pods with any pod (anti-)affinity.
    pub with_affinity: Vec<usize>,
    /// Indices of nodes hosting pods with required anti-affinity.
    pub with_required_anti_affinity: Vec<usize>,
    /// Image (normalized) → number of nodes that have it.
    pub image_nodes: HashMap<String, usize>,
    /// Namespace name → labels (for namespaceSelector).
    pub namespace_labels: Arc<HashMap<String, Labels>>,
    /// PVs, PVCs and StorageClasses.
    pub storage: Arc<StorageView>,
    /// Workload selectors.
    pub workloads: Arc<WorkloadView>,
}

impl Snapshot {
    /// Builds a snapshot from node infos (already in scheduling order).
    pub fn new(nodes: Vec<Arc<NodeInfo>>) -> Self {
        let mut s = Snapshot {
            nodes,
            ..Default::default()
        };
        s.reindex();
        s
    }

    /// Recomputes the derived indices after `nodes` changed.
    pub fn reindex(&mut self) {
        self.index.clear();
        self.with_affinity.clear();
        self.with_required_anti_affinity.clear();
        self.image_nodes.clear();
        for (i, n) in self.nodes.iter().enumerate() {
            self.index.insert(n.name.clone(), i);
            if !n.pods_with_affinity.is_empty() {
                self.with_affinity.push(i);
            }
            if !n.pods_with_required_anti_affinity.is_empty() {
                self.with_required_anti_affinity.push(i);
            }
            for img in n.images.keys() {
                *self.image_nodes.entry(img.clone()).or_default() += 1;
            }
        }
    }

    /// The NodeInfo of a node by name.
    pub fn get(&self, name: &str) -> Option<&Arc<NodeInfo>> {
        self.index.get(name).map(|i| &self.nodes[*i])
    }

    /// Labels of a namespace, when known.
    pub fn ns_labels(&self, ns: &str) -> Option<&Labels> {
        self.namespace_labels.get(ns)
    }
}
