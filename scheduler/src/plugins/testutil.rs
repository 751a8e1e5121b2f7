//! Builders for unit tests: nodes, pods and snapshots from JSON.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{json, Value};

use crate::framework::CycleState;
use crate::snapshot::{NodeInfo, PodInfo, Snapshot};

/// A node with cpu (e.g. "4"), memory ("8Gi"), 110 pods and the given labels.
pub fn node(name: &str, cpu: &str, mem: &str, labels: Value) -> Node {
    node_with(name, cpu, mem, labels, json!({}))
}

/// A node with an extra spec (taints, unschedulable).
pub fn node_with(name: &str, cpu: &str, mem: &str, labels: Value, spec: Value) -> Node {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "spec": spec,
        "status": {"allocatable": {"cpu": cpu, "memory": mem, "pods": "110"}}
    }))
    .expect("valid node")
}

/// A pod named `name` in `default` from a spec; containers default to one request-less container.
pub fn pod(name: &str, mut spec: Value) -> Arc<PodInfo> {
    pod_labeled(name, json!({}), spec.take())
}

/// A pod with labels.
pub fn pod_labeled(name: &str, labels: Value, mut spec: Value) -> Arc<PodInfo> {
    if spec.get("containers").is_none() {
        spec["containers"] = json!([{"name": "c"}]);
    }
    let p: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default", "uid": name, "labels": labels},
        "spec": spec
    }))
    .expect("valid pod");
    PodInfo::new(Arc::new(p))
}

/// A pod requesting cpu and memory.
pub fn pod_req(name: &str, cpu: &str, mem: &str) -> Arc<PodInfo> {
    pod(
        name,
        json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu, "memory": mem}}}]}),
    )
}

/// A NodeInfo with pods on it.
pub fn node_info(n: Node, pods: &[Arc<PodInfo>]) -> NodeInfo {
    let mut ni = NodeInfo::new(Arc::new(n));
    for p in pods {
        ni.add_pod(p.clone());
    }
    ni
}

/// A snapshot of NodeInfos.
pub fn snapshot(nodes: Vec<NodeInfo>) -> Snapshot {
    Snapshot::new(nodes.into_iter().map(Arc::new).collect())
}

/// A fresh cycle state.
pub fn state() -> CycleState {
    CycleState::default()
}
