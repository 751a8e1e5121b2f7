//! Helpers for the scheduler's e2e tests: nodes and pods as API objects, and waiting for
//! the scheduler's effects.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::{json, Value};

/// Creates a Ready node with the given capacity, labels and taints (replacing the
/// not-ready taint the TaintNodesByCondition admission adds).
pub async fn create_node(
    client: &kube::Client,
    name: &str,
    cpu: &str,
    mem: &str,
    labels: Value,
    taints: Value,
) {
    let api: Api<Node> = Api::all(client.clone());
    let mut labels = labels;
    labels["kubernetes.io/hostname"] = json!(name);
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "status": {
            "allocatable": {"cpu": cpu, "memory": mem, "pods": "110"},
            "capacity": {"cpu": cpu, "memory": mem, "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "ok"}]
        }
    }))
    .unwrap();
    api.create(&PostParams::default(), &node).await.unwrap();
    let patch = json!({"spec": {"taints": taints}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let status = json!({"status": {"allocatable": {"cpu": cpu, "memory": mem, "pods": "110"},
        "capacity": {"cpu": cpu, "memory": mem, "pods": "110"},
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "ok",
            "lastHeartbeatTime": "2026-01-01T00:00:00Z", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
}

/// Makes sure `ns` exists with its default ServiceAccount (no controller-manager runs).
pub async fn namespace(client: &kube::Client, ns: &str) {
    if ns != "default" {
        let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
        let _ = api
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap(),
            )
            .await;
    }
    let sa: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let _ = sa
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "default"}})).unwrap(),
        )
        .await;
}

/// Creates a pod in `default` from a spec (a pause-like container is added when absent).
pub async fn create_pod(client: &kube::Client, name: &str, labels: Value, mut spec: Value) -> Pod {
    if spec.get("containers").is_none() {
        spec["containers"] = json!([{"name": "c", "image": "registry.k8s.io/pause:3.10"}]);
    }
    let pod: Pod =
        serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}, "spec": spec}))
            .unwrap();
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    api.create(&PostParams::default(), &pod).await.unwrap()
}

/// A container requesting cpu and memory.
pub fn requests(cpu: &str, mem: &str) -> Value {
    json!([{"name": "c", "image": "registry.k8s.io/pause:3.10", "resources": {"requests": {"cpu": cpu, "memory": mem}}}])
}

/// Polls `f` until it returns Some or `timeout` passes.
pub async fn wait_for<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The node a pod is bound to, once it is.
pub async fn bound_node(client: &kube::Client, name: &str) -> String {
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    wait_for(
        Duration::from_secs(30),
        &format!("pod {name} to be bound"),
        || {
            let api = api.clone();
            async move {
                api.get(name)
                    .await
                    .ok()
                    .and_then(|p| p.spec.and_then(|s| s.node_name))
            }
        },
    )
    .await
}

/// Events about a pod.
pub async fn pod_events(client: &kube::Client, name: &str) -> Vec<Event> {
    let api: Api<Event> = Api::namespaced(client.clone(), "default");
    let lp = ListParams::default().fields(&format!("regarding.name={name}"));
    api.list(&lp).await.map(|l| l.items).unwrap_or_default()
}

/// Starts our kube-scheduler against the cluster with extra args.
pub fn start_scheduler(
    cluster: &e2e::TestCluster,
    extra: &[String],
) -> e2e::process::ManagedProcess {
    let port = e2e::ports::free_port().unwrap();
    let mut args = e2e::components::scheduler_args(cluster, port, false).unwrap();
    args.extend_from_slice(extra);
    cluster.spawn_component("kube-scheduler", &args).unwrap()
}
