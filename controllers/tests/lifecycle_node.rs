//! A node whose Lease stops being renewed turns Ready=Unknown, gets the unreachable taints,
//! its pods are marked not ready and evicted after their tolerationSeconds; a healthy node
//! loses the not-ready:NoSchedule taint admission put on it.

#[path = "lifecycle_support.rs"]
mod support;

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::json;

async fn heartbeat(nodes: &Api<Node>, leases: &Api<Lease>, name: &str) {
    let now = jiff::Timestamp::now().to_string();
    let status = json!({"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "lastHeartbeatTime": now, "lastTransitionTime": now}]}});
    nodes
        .patch_status(name, &PatchParams::default(), &Patch::Strategic(&status))
        .await
        .unwrap();
    let micro = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string();
    let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": name}, "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": micro}});
    leases
        .patch(
            name,
            &PatchParams::apply("test-kubelet").force(),
            &Patch::Apply(&lease),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn silent_node_is_tainted_and_its_pods_evicted() {
    let cluster = e2e::cluster_or_skip!();
    let client = cluster.client();
    let nodes: Api<Node> = Api::all(client.clone());
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    for name in ["alive", "silent"] {
        let node: Node = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
        nodes.create(&PostParams::default(), &node).await.unwrap();
        heartbeat(&nodes, &leases, name).await;
    }
    let (mut kcm, metrics_port) = support::start_kcm_on_port(
        &cluster,
        "serviceaccount,nodelifecycle,taint-eviction-controller,nodeipam",
        &[
            "--node-monitor-period=1s",
            "--node-monitor-grace-period=8s",
            "--node-startup-grace-period=8s",
        ],
    );
    let keep_alive = {
        let (nodes, leases) = (nodes.clone(), leases.clone());
        tokio::spawn(async move {
            loop {
                heartbeat(&nodes, &leases, "alive").await;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };
    // Admission's not-ready:NoSchedule taint is cleared from Ready nodes.
    support::eventually(
        "alive untainted",
        Duration::from_secs(30),
        &mut kcm,
        || async {
            Ok(nodes
                .get("alive")
                .await?
                .spec
                .and_then(|s| s.taints)
                .unwrap_or_default()
                .is_empty()
                .then_some(()))
        },
    )
    .await;

    // node-ipam gives each node its own block of --cluster-cidr (10.244.0.0/16 here).
    let cidrs = support::eventually(
        "pod CIDRs on both nodes",
        Duration::from_secs(30),
        &mut kcm,
        || async {
            let mut cidrs = Vec::new();
            for n in ["alive", "silent"] {
                cidrs.extend(nodes.get(n).await?.spec.and_then(|s| s.pod_cidr));
            }
            Ok((cidrs.len() == 2).then_some(cidrs))
        },
    )
    .await;
    assert_ne!(cidrs[0], cidrs[1]);
    assert!(
        cidrs
            .iter()
            .all(|c| c.starts_with("10.244.") && c.ends_with("/24")),
        "{cidrs:?}"
    );

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    support::eventually(
        "default ServiceAccount",
        Duration::from_secs(30),
        &mut kcm,
        || async {
            Ok(
                Api::<k8s_openapi::api::core::v1::ServiceAccount>::namespaced(
                    client.clone(),
                    "default",
                )
                .get_opt("default")
                .await?,
            )
        },
    )
    .await;
    for (name, toleration) in [
        (
            "short",
            json!({"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 3}),
        ),
        (
            "forever",
            json!({"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"}),
        ),
    ] {
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": name},
            "spec": {"nodeName": "silent", "tolerations": [toleration], "containers": [{"name": "c", "image": "busybox"}]}})).unwrap();
        pods.create(&PostParams::default(), &pod).await.unwrap();
        let status = json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}});
        pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .unwrap();
    }

    // "silent" gets no more heartbeats.
    let node = support::eventually(
        "silent Ready=Unknown and tainted unreachable:NoExecute",
        Duration::from_secs(60),
        &mut kcm,
        || async {
            let n = nodes.get("silent").await?;
            let tainted = n
                .spec
                .as_ref()
                .and_then(|s| s.taints.as_ref())
                .is_some_and(|t| {
                    t.iter().any(|t| {
                        t.key == "node.kubernetes.io/unreachable" && t.effect == "NoExecute"
                    })
                });
            Ok(tainted.then_some(n))
        },
    )
    .await;
    let ready = node
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_deref()),
        ("Unknown", Some("NodeStatusUnknown"))
    );
    let taints = node.spec.unwrap().taints.unwrap();
    assert!(
        taints
            .iter()
            .any(|t| t.key == "node.kubernetes.io/unreachable" && t.effect == "NoSchedule"),
        "{taints:?}"
    );

    let evicted = support::eventually(
        "pod short evicted",
        Duration::from_secs(30),
        &mut kcm,
        || async {
            Ok(pods
                .get_opt("short")
                .await?
                .filter(|p| p.metadata.deletion_timestamp.is_some()))
        },
    )
    .await;
    let conditions = evicted.status.unwrap().conditions.unwrap();
    assert!(
        conditions.iter().any(|c| c.type_ == "DisruptionTarget"
            && c.reason.as_deref() == Some("DeletionByTaintManager")),
        "{conditions:?}"
    );
    assert!(
        conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "False"),
        "{conditions:?}"
    );
    // Upstream's event and metrics for the deletion.
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let event = support::eventually(
        "TaintManagerEviction event",
        Duration::from_secs(30),
        &mut kcm,
        || async {
            Ok(events
                .list(&Default::default())
                .await?
                .items
                .into_iter()
                .find(|e| {
                    e.reason.as_deref() == Some("TaintManagerEviction")
                        && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("short")
                }))
        },
    )
    .await;
    assert_eq!(
        event.note.as_deref(),
        Some("Marking for deletion Pod default/short")
    );
    let metrics = support::scrape_metrics(&cluster, &mut kcm, metrics_port).await;
    let deletions = support::sample(&metrics, "taint_eviction_controller_pod_deletions_total");
    assert!(deletions >= Some(1.0), "{deletions:?}");
    let timed = support::sample(
        &metrics,
        "taint_eviction_controller_pod_deletion_duration_seconds_count",
    );
    assert!(timed >= Some(1.0), "{timed:?}");

    let kept = pods.get("forever").await.unwrap();
    assert!(kept.metadata.deletion_timestamp.is_none());
    assert!(kept
        .status
        .unwrap()
        .conditions
        .unwrap()
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "False"));
    // The healthy node stayed untouched.
    assert!(nodes
        .get("alive")
        .await
        .unwrap()
        .spec
        .and_then(|s| s.taints)
        .unwrap_or_default()
        .is_empty());
    keep_alive.abort();
    kcm.terminate(Duration::from_secs(10)).unwrap();
}
