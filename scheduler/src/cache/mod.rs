//! The scheduler cache: nodes with the pods bound or assumed on them. A pod is assumed
//! as soon as the scheduling cycle picks its node, so the next cycle already sees it;
//! the informer's add confirms it; a failed binding forgets it; an assumed pod whose
//! binding finished but was never confirmed expires after a TTL.

mod node_tree;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;

use crate::snapshot::{NodeInfo, PodInfo, Snapshot, StorageView, WorkloadView};
use api_helpers::labels::Labels;
pub use node_tree::zone_interleaved;

#[derive(Debug, Clone)]
struct PodState {
    info: Arc<PodInfo>,
    node: String,
    assumed: bool,
    deadline: Option<Instant>,
}

/// Nodes and pods as the scheduler sees them.
#[derive(Default)]
pub struct Cache {
    nodes: HashMap<String, Arc<NodeInfo>>,
    pods: HashMap<String, PodState>,
    /// Nodes changed since the last snapshot update.
    dirty: HashSet<String>,
    /// Node set changed (add/remove/zone change) since the last snapshot update.
    topology_changed: bool,
    /// Image → number of nodes with it.
    image_nodes: HashMap<String, usize>,
    namespaces: Arc<HashMap<String, Labels>>,
    storage: Arc<StorageView>,
    workloads: Arc<WorkloadView>,
    views_changed: bool,
}

/// Error from cache operations that indicate a bookkeeping bug or a race.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// Assuming a pod that is already known.
    #[error("pod {0} is in the cache, so can't be assumed")]
    AlreadyKnown(String),
}

impl Cache {
    fn node_mut(&mut self, name: &str) -> &mut NodeInfo {
        self.dirty.insert(name.to_string());
        let entry = self.nodes.entry(name.to_string()).or_insert_with(|| {
            Arc::new(NodeInfo {
                name: name.to_string(),
                ..Default::default()
            })
        });
        Arc::make_mut(entry)
    }

    fn count_images(&mut self, node: &NodeInfo, delta: isize) {
        for img in node.images.keys() {
            let c = self.image_nodes.entry(img.clone()).or_default();
            *c = (*c as isize + delta).max(0) as usize;
        }
    }

    /// Adds or updates a node.
    pub fn upsert_node(&mut self, node: Arc<Node>) {
        let name = node.metadata.name.clone().unwrap_or_default();
        let old = self.nodes.get(&name).cloned();
        if let Some(old) = &old {
            self.count_images(old, -1);
            let zone = |n: &NodeInfo| node_tree::zone_of(n.labels());
            if old.node.is_none()
                || zone(old)
                    != node_tree::zone_of(
                        node.metadata
                            .labels
                            .as_ref()
                            .unwrap_or(api_helpers::labels::empty()),
                    )
            {
                self.topology_changed = true;
            }
        } else {
            self.topology_changed = true;
        }
        self.node_mut(&name).set_node(node);
        let updated = self.nodes[&name].clone();
        self.count_images(&updated, 1);
    }

    /// Removes a node (its pods stay accounted until they are deleted, as upstream).
    pub fn remove_node(&mut self, name: &str) {
        if let Some(old) = self.nodes.get(name).cloned() {
            self.count_images(&old, -1);
            let has_pods = !old.pods.is_empty();
            if has_pods {
                let n = self.node_mut(name);
                n.node = None;
            } else {
                self.nodes.remove(name);
            }
            self.topology_changed = true;
        }
    }

    /// Assumes `pod` runs on `node` (before binding).
    pub fn assume(&mut self, pod: Arc<PodInfo>, node: &str) -> Result<(), CacheError> {
        if self.pods.contains_key(&pod.uid) {
            return Err(CacheError::AlreadyKnown(pod.key()));
        }
        self.node_mut(node).add_pod(pod.clone());
        self.pods.insert(
            pod.uid.clone(),
            PodState {
                info: pod,
                node: node.to_string(),
                assumed: true,
                deadline: None,
            },
        );
        Ok(())
    }

    /// Binding finished: start the expiry clock of the assumed pod.
    pub fn finish_binding(&mut self, uid: &str, ttl: Option<Duration>) {
        if let Some(p) = self.pods.get_mut(uid) {
            if p.assumed {
                p.deadline = ttl.map(|t| Instant::now() + t);
            }
        }
    }

    /// Binding failed: drop the assumed pod.
    pub fn forget(&mut self, uid: &str) {
        if let Some(p) = self.pods.get(uid).cloned() {
            if p.assumed {
                self.pods.remove(uid);
                self.node_mut(&p.node).remove_pod(uid);
            }
        }
    }

    /// An assigned pod was observed (add or update): confirms an assumed pod.
    pub fn upsert_pod(&mut self, pod: Arc<PodInfo>) {
        let Some(node) = pod.node_name().map(str::to_string) else {
            return;
        };
        if let Some(old) = self.pods.get(&pod.uid).cloned() {
            self.node_mut(&old.node).remove_pod(&pod.uid);
            if old.node != node {
                tracing::warn!(pod = %pod.key(), assumed = %old.node, actual = %node, "Pod was assumed on a different node than it was bound to");
            }
        }
        self.node_mut(&node).add_pod(pod.clone());
        self.pods.insert(
            pod.uid.clone(),
            PodState {
                info: pod,
                node,
                assumed: false,
                deadline: None,
            },
        );
    }

    /// An assigned pod was deleted (or finished).
    pub fn remove_pod(&mut self, uid: &str) {
        if let Some(p) = self.pods.remove(uid) {
            let n = self.node_mut(&p.node);
            n.remove_pod(uid);
            let gone = n.node.is_none() && n.pods.is_empty();
            if gone {
                self.nodes.remove(&p.node);
                self.topology_changed = true;
            }
        }
    }

    /// Whether the pod is known (bound or assumed).
    pub fn has_pod(&self, uid: &str) -> bool {
        self.pods.contains_key(uid)
    }

    /// Whether the pod is assumed and not yet confirmed.
    pub fn is_assumed(&self, uid: &str) -> bool {
        self.pods.get(uid).is_some_and(|p| p.assumed)
    }

    /// Drops assumed pods whose deadline passed; returns their keys.
    pub fn expire(&mut self, now: Instant) -> Vec<String> {
        let expired: Vec<(String, String)> = self
            .pods
            .iter()
            .filter(|(_, p)| p.assumed && p.deadline.is_some_and(|d| d <= now))
            .map(|(u, p)| (u.clone(), p.info.key()))
            .collect();
        for (uid, _) in &expired {
            self.forget(uid);
        }
        expired.into_iter().map(|(_, k)| k).collect()
    }

    /// Replaces namespace labels.
    pub fn set_namespaces(&mut self, ns: HashMap<String, Labels>) {
        self.namespaces = Arc::new(ns);
        self.views_changed = true;
    }

    /// Replaces the storage view.
    pub fn set_storage(&mut self, s: StorageView) {
        self.storage = Arc::new(s);
        self.views_changed = true;
    }

    /// Replaces the workload view.
    pub fn set_workloads(&mut self, w: WorkloadView) {
        self.workloads = Arc::new(w);
        self.views_changed = true;
    }

    /// Number of nodes with a Node object.
    pub fn node_count(&self) -> usize {
        self.nodes.values().filter(|n| n.node.is_some()).count()
    }

    /// Brings `snap` up to date: a full rebuild when the node set changed, otherwise only
    /// the NodeInfos that changed are swapped in (unchanged ones stay shared).
    pub fn update_snapshot(&mut self, snap: &mut Snapshot) {
        if self.topology_changed || (snap.nodes.is_empty() && !self.nodes.is_empty()) {
            let live: Vec<Arc<NodeInfo>> = self
                .nodes
                .values()
                .filter(|n| n.node.is_some())
                .cloned()
                .collect();
            snap.nodes = zone_interleaved(live);
            snap.index = snap
                .nodes
                .iter()
                .enumerate()
                .map(|(i, n)| (n.name.clone(), i))
                .collect();
            self.topology_changed = false;
        } else {
            for name in &self.dirty {
                if let (Some(&i), Some(n)) = (snap.index.get(name), self.nodes.get(name)) {
                    snap.nodes[i] = n.clone();
                }
            }
        }
        if !self.dirty.is_empty() || self.views_changed {
            snap.with_affinity = (0..snap.nodes.len())
                .filter(|&i| !snap.nodes[i].pods_with_affinity.is_empty())
                .collect();
            snap.with_required_anti_affinity = (0..snap.nodes.len())
                .filter(|&i| !snap.nodes[i].pods_with_required_anti_affinity.is_empty())
                .collect();
            snap.image_nodes = self.image_nodes.clone();
        }
        self.dirty.clear();
        snap.namespace_labels = self.namespaces.clone();
        snap.storage = self.storage.clone();
        snap.workloads = self.workloads.clone();
        self.views_changed = false;
    }
}

#[cfg(test)]
mod tests;
