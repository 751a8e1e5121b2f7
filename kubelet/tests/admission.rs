//! e2e: pod admission under node pressure on a real containerd and apiserver — with a met
//! `nodefs.available` threshold the node reports DiskPressure, and a pod bound to it
//! afterwards is refused as upstream's `rejectPod`: Failed, reason `Evicted`, message
//! `Pod was rejected: The node had condition: [DiskPressure]. `, a Warning event with the
//! reason, no sandbox nor container is ever created for it, and
//! `kubelet_admission_rejections_total{reason="Evicted"}` counts it. A pod whose host port
//! an active pod holds is refused as upstream's predicate admit handler: Failed, reason
//! `NodePorts`.

#[macro_use]
mod common;

use common::process::{wait, KubeletProcess};
use common::{create_pod, default_pods, kubelet_get, sample, sleeping_pod, wait_pod_phase};
use k8s_openapi::api::core::v1::{Event, Node};
use kube::api::Api;
use std::time::Duration;

#[tokio::test]
async fn new_pod_under_disk_pressure_is_rejected() {
    let (cluster, containerd) = cluster_and_containerd_or_skip!();
    // nodefs.available<99%: met from the first observation and never relieved.
    let kubelet = KubeletProcess::builder(&cluster, &containerd, "admit")
        .config(serde_json::json!({
            "evictionHard": {"nodefs.available": "99%"},
            "evictionPressureTransitionPeriod": "30s",
        }))
        .webhook_auth()
        .start();
    let node_name = kubelet.node_name.clone();
    let client = cluster.client();
    let nodes: Api<Node> = Api::all(client.clone());
    wait("DiskPressure", Duration::from_secs(60), || async {
        let n = nodes.get_opt(&node_name).await.ok().flatten()?;
        let c = n
            .status?
            .conditions?
            .into_iter()
            .find(|c| c.type_ == "DiskPressure")?;
        (c.status == "True").then_some(())
    })
    .await;

    let pods = default_pods(&client).await;
    let name = format!("admit-refused-{}", std::process::id() % 10000);
    create_pod(&pods, sleeping_pod(&name, &node_name)).await;

    let status = wait_pod_phase(&pods, &name, "Failed", Duration::from_secs(30)).await;
    assert_eq!(
        (status.reason.as_deref(), status.message.as_deref()),
        (
            Some("Evicted"),
            Some("Pod was rejected: The node had condition: [DiskPressure]. ")
        ),
        "{}",
        kubelet.log_tail(30)
    );
    assert_eq!(status.qos_class.as_deref(), Some("BestEffort"));
    assert!(status.container_statuses.unwrap_or_default().is_empty());

    // Upstream's event: Warning, the reason, the admission message.
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let event = wait("Evicted event", Duration::from_secs(20), || async {
        let list = events.list(&Default::default()).await.ok()?;
        list.items.into_iter().find(|e| {
            e.reason.as_deref() == Some("Evicted")
                && e.involved_object.name.as_deref() == Some(name.as_str())
        })
    })
    .await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    assert_eq!(
        event.message.as_deref(),
        Some("The node had condition: [DiskPressure]. ")
    );

    // Never started: no sandbox nor container of it, and it stays Failed.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let cri = kubelet::cri::Cri::connect(&containerd.endpoint())
        .await
        .unwrap();
    let all = kubelet::runtime::observe::observe_all(&cri).await.unwrap();
    assert!(
        all.values().all(|(r, _)| r.name != name),
        "a sandbox was created for the rejected pod"
    );
    let p = pods.get(&name).await.unwrap();
    assert_eq!(p.status.unwrap().phase.as_deref(), Some("Failed"));
    assert_eq!(
        kubelet.log().matches("Pod admission refused").count(),
        1,
        "admitted once, not re-checked on updates"
    );
    let metrics = kubelet_get(&cluster, kubelet.port, "/metrics");
    assert_eq!(
        sample(
            &metrics,
            "kubelet_admission_rejections_total",
            &[("reason", "Evicted")]
        ),
        Some(1.0),
        "{metrics}"
    );

    pods.delete(&name, &Default::default()).await.ok();
    kubelet.stop();
}

#[tokio::test]
async fn pod_with_a_taken_host_port_is_rejected() {
    let (cluster, containerd) = cluster_and_containerd_or_skip!();
    let kubelet = KubeletProcess::builder(&cluster, &containerd, "ports").start();
    let client = cluster.client();
    let pods = default_pods(&client).await;
    let id = std::process::id() % 10000;
    let port = 20000 + (id as i32 % 10000);
    let with_port = |name: &str| {
        let mut p = sleeping_pod(name, &kubelet.node_name);
        p["spec"]["containers"][0]["ports"] =
            serde_json::json!([{"containerPort": port, "hostPort": port}]);
        p
    };
    let first = format!("port-holder-{id}");
    create_pod(&pods, with_port(&first)).await;
    wait_pod_phase(&pods, &first, "Running", Duration::from_secs(30)).await;

    let second = format!("port-taker-{id}");
    create_pod(&pods, with_port(&second)).await;
    let status = wait_pod_phase(&pods, &second, "Failed", Duration::from_secs(30)).await;
    assert_eq!(
        (status.reason.as_deref(), status.message.as_deref()),
        (
            Some("NodePorts"),
            Some(
                "Pod was rejected: Predicate NodePorts failed: node(s) didn't have free ports \
                 for the requested pod ports"
            )
        ),
        "{}",
        kubelet.log_tail(30)
    );
    assert!(status.container_statuses.unwrap_or_default().is_empty());
    // The holder is untouched.
    let holder = pods.get(&first).await.unwrap();
    assert_eq!(holder.status.unwrap().phase.as_deref(), Some("Running"));
    pods.delete(&second, &Default::default()).await.ok();
    common::delete_pod_and_wait_gone(&pods, &first, Duration::from_secs(30)).await;
    kubelet.stop();
}
