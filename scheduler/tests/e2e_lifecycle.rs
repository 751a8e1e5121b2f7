//! Preemption, multiple profiles and restarts against a real kube-apiserver.

mod common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::scheduling::v1::PriorityClass;
use kube::api::{Api, PostParams};
use serde_json::json;

async fn priority_class(c: &kube::Client, name: &str, value: i32) {
    let api: Api<PriorityClass> = Api::all(c.clone());
    let pc: PriorityClass =
        serde_json::from_value(json!({"metadata": {"name": name}, "value": value})).unwrap();
    api.create(&PostParams::default(), &pc).await.unwrap();
}

#[tokio::test]
async fn high_priority_pod_preempts_low_priority_pod() {
    let cluster = e2e::cluster_or_skip!();
    let c = cluster.client();
    namespace(&c, "default").await;
    priority_class(&c, "low", 10).await;
    priority_class(&c, "high", 1000).await;
    create_node(&c, "only", "1", "2Gi", json!({}), json!([])).await;
    let _sched = start_scheduler(&cluster, &[]);
    create_pod(
        &c,
        "victim",
        json!({}),
        json!({"priorityClassName": "low", "containers": requests("800m", "100Mi")}),
    )
    .await;
    assert_eq!(bound_node(&c, "victim").await, "only");
    create_pod(
        &c,
        "preemptor",
        json!({}),
        json!({"priorityClassName": "high", "containers": requests("800m", "100Mi")}),
    )
    .await;
    let api: Api<Pod> = Api::namespaced(c.clone(), "default");
    // The victim is deleted (no kubelet: it goes away at once with grace period handling by
    // the apiserver only when unbound; here it is marked for deletion).
    wait_for(Duration::from_secs(30), "victim deletion", || {
        let api = api.clone();
        async move {
            match api.get_opt("victim").await.ok()? {
                None => Some(()),
                Some(p) => p.metadata.deletion_timestamp.map(|_| ()),
            }
        }
    })
    .await;
    let nominated = wait_for(Duration::from_secs(30), "nominatedNodeName", || {
        let api = api.clone();
        async move { api.get("preemptor").await.ok()?.status?.nominated_node_name }
    })
    .await;
    assert_eq!(nominated, "only");
    let evs = pod_events(&c, "victim").await;
    assert!(
        evs.iter().any(|e| e.reason.as_deref() == Some("Preempted")),
        "{evs:?}"
    );
    // Without a kubelet the victim stays terminating; force its removal and the preemptor binds.
    let _ = api
        .delete(
            "victim",
            &kube::api::DeleteParams {
                grace_period_seconds: Some(0),
                ..Default::default()
            },
        )
        .await;
    assert_eq!(bound_node(&c, "preemptor").await, "only");
}

#[tokio::test]
async fn two_profiles_schedule_their_own_pods() {
    let cluster = e2e::cluster_or_skip!();
    let c = cluster.client();
    namespace(&c, "default").await;
    create_node(&c, "a", "4", "8Gi", json!({}), json!([])).await;
    create_node(&c, "b", "4", "8Gi", json!({}), json!([])).await;
    let cfg = cluster.dir().join("sched-config.yaml");
    std::fs::write(
        &cfg,
        r#"apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
profiles:
- schedulerName: default-scheduler
- schedulerName: bin-packer
  plugins:
    score:
      disabled: [{name: NodeResourcesBalancedAllocation}]
  pluginConfig:
  - name: NodeResourcesFit
    args:
      scoringStrategy:
        type: MostAllocated
"#,
    )
    .unwrap();
    let _sched = start_scheduler(&cluster, &[format!("--config={}", cfg.display())]);
    create_pod(
        &c,
        "first",
        json!({}),
        json!({"schedulerName": "bin-packer", "containers": requests("1", "1Gi")}),
    )
    .await;
    let first = bound_node(&c, "first").await;
    // MostAllocated packs the second pod onto the same node.
    create_pod(
        &c,
        "second",
        json!({}),
        json!({"schedulerName": "bin-packer", "containers": requests("1", "1Gi")}),
    )
    .await;
    assert_eq!(bound_node(&c, "second").await, first);
    // The default profile spreads (LeastAllocated) onto the other node.
    create_pod(
        &c,
        "spread",
        json!({}),
        json!({"containers": requests("1", "1Gi")}),
    )
    .await;
    assert_ne!(bound_node(&c, "spread").await, first);
    // A pod for a scheduler nobody runs stays pending.
    create_pod(&c, "orphan", json!({}), json!({"schedulerName": "nobody"})).await;
    let ev = wait_for(Duration::from_secs(10), "Scheduled event", || {
        let c = c.clone();
        async move {
            pod_events(&c, "second")
                .await
                .into_iter()
                .find(|e| e.reason.as_deref() == Some("Scheduled"))
        }
    })
    .await;
    assert_eq!(ev.reporting_controller.as_deref(), Some("bin-packer"));
    assert_eq!(
        ev.note.as_deref(),
        Some(format!("Successfully assigned default/second to {first}").as_str())
    );
    let api: Api<Pod> = Api::namespaced(c.clone(), "default");
    assert!(api
        .get("orphan")
        .await
        .unwrap()
        .spec
        .unwrap()
        .node_name
        .is_none());
}

#[tokio::test]
async fn restart_loses_no_pod() {
    let cluster = e2e::cluster_or_skip!();
    let c = cluster.client();
    namespace(&c, "default").await;
    for i in 0..3 {
        create_node(&c, &format!("n{i}"), "4", "8Gi", json!({}), json!([])).await;
    }
    let mut sched = start_scheduler(&cluster, &[]);
    for i in 0..20 {
        create_pod(
            &c,
            &format!("before-{i}"),
            json!({}),
            json!({"containers": requests("100m", "64Mi")}),
        )
        .await;
    }
    sched.kill().unwrap();
    for i in 0..20 {
        create_pod(
            &c,
            &format!("during-{i}"),
            json!({}),
            json!({"containers": requests("100m", "64Mi")}),
        )
        .await;
    }
    let _sched = start_scheduler(&cluster, &[]);
    for i in 0..20 {
        bound_node(&c, &format!("before-{i}")).await;
        bound_node(&c, &format!("during-{i}")).await;
    }
    // Accounting survived the restart: 40 × 100m over 3 nodes of 4 cpus, all bound once.
    let api: Api<Pod> = Api::namespaced(c.clone(), "default");
    let pods = api.list(&Default::default()).await.unwrap().items;
    assert_eq!(
        pods.iter()
            .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some())
            .count(),
        40
    );
}
