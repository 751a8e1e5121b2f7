//! NodeInfo: one node with the pods on it and their aggregate requests, ports and images.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Taint};

use super::pod_info::{HostPort, PodInfo};
use super::resource::Resource;
use api_helpers::labels::{empty, Labels};

/// A node and the pods the scheduler knows (bound or assumed) on it.
#[derive(Debug, Clone, Default)]
pub struct NodeInfo {
    /// The Node object; `None` while only pods reference a node not yet observed.
    pub node: Option<Arc<Node>>,
    /// The node's name.
    pub name: String,
    /// Pods on the node.
    pub pods: Vec<Arc<PodInfo>>,
    /// Pods on the node with any pod (anti-)affinity.
    pub pods_with_affinity: Vec<Arc<PodInfo>>,
    /// Pods on the node with required anti-affinity.
    pub pods_with_required_anti_affinity: Vec<Arc<PodInfo>>,
    /// Host ports in use.
    pub used_ports: Vec<HostPort>,
    /// Sum of the pods' requests.
    pub requested: Resource,
    /// Sum of the pods' requests with upstream's defaults for request-less containers.
    pub non_zero_requested: Resource,
    /// status.allocatable.
    pub allocatable: Resource,
    /// Images present on the node: normalized name → size in bytes.
    pub images: HashMap<String, i64>,
    /// Bumped on every change; lets snapshots share unchanged NodeInfos.
    pub generation: u64,
}

/// Normalizes an image reference as upstream does: no tag and no digest means `:latest`.
pub fn normalize_image(name: &str) -> String {
    let last = name.rsplit('/').next().unwrap_or(name);
    if last.contains(':') || last.contains('@') {
        name.to_string()
    } else {
        format!("{name}:latest")
    }
}

impl NodeInfo {
    /// An empty NodeInfo for a node object.
    pub fn new(node: Arc<Node>) -> Self {
        let mut ni = NodeInfo::default();
        ni.set_node(node);
        ni
    }

    /// Replaces the Node object (allocatable, images), keeping the pods.
    pub fn set_node(&mut self, node: Arc<Node>) {
        self.name = node.metadata.name.clone().unwrap_or_default();
        let status = node.status.as_ref();
        self.allocatable = Resource::from_list(status.and_then(|s| s.allocatable.as_ref()));
        self.images.clear();
        for img in status.and_then(|s| s.images.as_ref()).into_iter().flatten() {
            for n in img.names.iter().flatten() {
                self.images
                    .insert(normalize_image(n), img.size_bytes.unwrap_or(0));
            }
        }
        self.node = Some(node);
    }

    /// The node's labels.
    pub fn labels(&self) -> &Labels {
        self.node
            .as_ref()
            .and_then(|n| n.metadata.labels.as_ref())
            .unwrap_or(empty())
    }

    /// The node's taints.
    pub fn taints(&self) -> &[Taint] {
        self.node
            .as_ref()
            .and_then(|n| n.spec.as_ref())
            .and_then(|s| s.taints.as_deref())
            .unwrap_or(&[])
    }

    /// Adds a pod and its requests.
    pub fn add_pod(&mut self, p: Arc<PodInfo>) {
        self.requested.add(&p.requests);
        self.non_zero_requested.add(&p.non_zero_requests);
        self.used_ports.extend(p.host_ports.iter().cloned());
        if p.has_affinity() {
            self.pods_with_affinity.push(p.clone());
        }
        if !p.required_anti_affinity.is_empty() {
            self.pods_with_required_anti_affinity.push(p.clone());
        }
        self.pods.push(p);
        self.generation += 1;
    }

    /// Removes a pod by uid; returns whether it was there.
    pub fn remove_pod(&mut self, uid: &str) -> bool {
        let Some(i) = self.pods.iter().position(|p| p.uid == uid) else {
            return false;
        };
        let p = self.pods.swap_remove(i);
        self.requested.sub(&p.requests);
        self.non_zero_requested.sub(&p.non_zero_requests);
        for hp in &p.host_ports {
            if let Some(j) = self.used_ports.iter().position(|u| u == hp) {
                self.used_ports.swap_remove(j);
            }
        }
        self.pods_with_affinity.retain(|q| q.uid != uid);
        self.pods_with_required_anti_affinity
            .retain(|q| q.uid != uid);
        self.generation += 1;
        true
    }
}
