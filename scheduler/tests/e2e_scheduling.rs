//! The scheduler against a real kube-apiserver: pods with each kind of constraint land where
//! upstream would put them; an impossible pod gets upstream's condition and event.

mod common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use serde_json::json;

#[tokio::test]
async fn pods_land_where_upstream_puts_them() {
    let cluster = e2e::cluster_or_skip!();
    let c = cluster.client();
    namespace(&c, "default").await;
    create_node(
        &c,
        "small",
        "1",
        "2Gi",
        json!({"topology.kubernetes.io/zone": "a", "disk": "hdd"}),
        json!([]),
    )
    .await;
    create_node(
        &c,
        "big",
        "8",
        "16Gi",
        json!({"topology.kubernetes.io/zone": "a", "disk": "ssd"}),
        json!([]),
    )
    .await;
    create_node(
        &c,
        "gpu",
        "8",
        "16Gi",
        json!({"topology.kubernetes.io/zone": "b", "disk": "ssd"}),
        json!([{"key": "gpu", "value": "true", "effect": "NoSchedule"}]),
    )
    .await;
    let _sched = start_scheduler(&cluster, &[]);

    // Resources: only big and gpu have 2 cpus, gpu is tainted.
    create_pod(
        &c,
        "needs-cpu",
        json!({}),
        json!({"containers": requests("2", "1Gi")}),
    )
    .await;
    assert_eq!(bound_node(&c, "needs-cpu").await, "big");
    // nodeSelector.
    create_pod(
        &c,
        "hdd",
        json!({}),
        json!({"nodeSelector": {"disk": "hdd"}}),
    )
    .await;
    assert_eq!(bound_node(&c, "hdd").await, "small");
    // Toleration + required node affinity to zone b.
    create_pod(&c, "tolerant", json!({}), json!({
        "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["b"]}]}]}}}})).await;
    assert_eq!(bound_node(&c, "tolerant").await, "gpu");
    // Pod affinity: follow "needs-cpu"'s app onto the same host.
    create_pod(
        &c,
        "db",
        json!({"app": "db"}),
        json!({"nodeSelector": {"disk": "ssd"}, "tolerations": [{"operator": "Exists"}]}),
    )
    .await;
    let db_node = bound_node(&c, "db").await;
    create_pod(&c, "near-db", json!({}), json!({"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "kubernetes.io/hostname"}]}},
        "tolerations": [{"operator": "Exists"}]})).await;
    assert_eq!(bound_node(&c, "near-db").await, db_node);
    // Anti-affinity: away from db's host.
    create_pod(&c, "far-from-db", json!({}), json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "kubernetes.io/hostname"}]}}})).await;
    assert_ne!(bound_node(&c, "far-from-db").await, db_node);
    // Host ports: two pods with the same hostPort, pinned to ssd non-tainted → second can't share.
    for n in ["port-1", "port-2"] {
        create_pod(&c, n, json!({}), json!({"tolerations": [{"operator": "Exists"}], "nodeSelector": {"disk": "ssd"},
            "containers": [{"name": "c", "image": "x", "ports": [{"containerPort": 80, "hostPort": 8080}]}]})).await;
    }
    assert_ne!(
        bound_node(&c, "port-1").await,
        bound_node(&c, "port-2").await
    );
    // Topology spread over zones with maxSkew 1: web pods alternate zones a / b.
    let mut zones = vec![];
    for i in 0..4 {
        let name = format!("web-{i}");
        create_pod(&c, &name, json!({"app": "web"}), json!({"tolerations": [{"operator": "Exists"}],
            "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "web"}}}]})).await;
        let node = bound_node(&c, &name).await;
        zones.push(if node == "gpu" { "b" } else { "a" });
    }
    assert_eq!(zones.iter().filter(|z| **z == "a").count(), 2, "{zones:?}");
}

#[tokio::test]
async fn impossible_pod_gets_condition_and_event() {
    let cluster = e2e::cluster_or_skip!();
    let c = cluster.client();
    namespace(&c, "default").await;
    for i in 0..2 {
        create_node(&c, &format!("worker-{i}"), "1", "2Gi", json!({}), json!([])).await;
    }
    for i in 0..3 {
        create_node(
            &c,
            &format!("cp-{i}"),
            "8",
            "16Gi",
            json!({}),
            json!([{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]),
        )
        .await;
    }
    let _sched = start_scheduler(&cluster, &[]);
    create_pod(
        &c,
        "huge",
        json!({}),
        json!({"containers": requests("2", "1Gi")}),
    )
    .await;
    let want = "0/5 nodes are available: 2 Insufficient cpu, 3 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }. preemption: 0/5 nodes are available: 5 Preemption is not helpful for scheduling.";
    let api: Api<Pod> = Api::namespaced(c.clone(), "default");
    let cond = wait_for(Duration::from_secs(30), "PodScheduled=False", || {
        let api = api.clone();
        async move {
            let p = api.get("huge").await.ok()?;
            p.status?
                .conditions?
                .into_iter()
                .find(|c| c.type_ == "PodScheduled" && c.status == "False")
        }
    })
    .await;
    assert_eq!(cond.reason.as_deref(), Some("Unschedulable"));
    assert_eq!(cond.message.as_deref(), Some(want));
    let ev = wait_for(Duration::from_secs(30), "FailedScheduling event", || {
        let c = c.clone();
        async move {
            pod_events(&c, "huge")
                .await
                .into_iter()
                .find(|e| e.reason.as_deref() == Some("FailedScheduling"))
        }
    })
    .await;
    assert_eq!(ev.note.as_deref(), Some(want));
    assert_eq!(ev.type_.as_deref(), Some("Warning"));
    assert_eq!(
        ev.reporting_controller.as_deref(),
        Some("default-scheduler")
    );
    assert_eq!(ev.action.as_deref(), Some("Scheduling"));
}
