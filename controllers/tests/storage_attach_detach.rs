//! persistentvolume-attach-detach-controller against a real apiserver: a pod on a node whose
//! kubelet leaves attaching to the controller gets a VolumeAttachment (upstream's name) for
//! its CSI PersistentVolume; once the test, playing the external-attacher, marks it
//! attached, the node's `status.volumesAttached` lists it; with the pod gone the attachment
//! stays while the node still reports the volume in use, and goes once it no longer does.

#[path = "lifecycle_support.rs"]
mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::{CSIDriver, VolumeAttachment};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;

const DRIVER: &str = "disk.csi.example.com";
const HANDLE: &str = "vol-0001";
const NODE: &str = "node-a";

/// The name upstream's CSI attacher gives the attachment: `csi-` + hex SHA-256 of
/// handle, driver and node.
fn upstream_attachment_name() -> String {
    let d = ring::digest::digest(
        &ring::digest::SHA256,
        format!("{HANDLE}{DRIVER}{NODE}").as_bytes(),
    );
    let hex: String = d.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("csi-{hex}")
}

fn obj<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).unwrap()
}

fn attached_names(n: &Node) -> Vec<String> {
    n.status
        .as_ref()
        .and_then(|s| s.volumes_attached.as_ref())
        .into_iter()
        .flatten()
        .map(|v| v.name.clone())
        .collect()
}

#[tokio::test]
async fn csi_volumes_are_attached_reported_and_detached_after_unmount() {
    let cluster = e2e::cluster_or_skip!();
    let client = cluster.client();
    support::ensure_default_service_account(&client).await;
    let pp = PostParams::default();
    let nodes: Api<Node> = Api::all(client.clone());
    let drivers: Api<CSIDriver> = Api::all(client.clone());
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let vas: Api<VolumeAttachment> = Api::all(client.clone());
    let unique = format!("kubernetes.io/csi/{DRIVER}^{HANDLE}");
    let va_name = upstream_attachment_name();

    // A node whose kubelet leaves attach/detach to the controller.
    let node: Node = obj(json!({"metadata": {"name": NODE, "annotations": {
        "volumes.kubernetes.io/controller-managed-attach-detach": "true"}}}));
    nodes.create(&pp, &node).await.unwrap();
    let driver: CSIDriver = obj(json!({"metadata": {"name": DRIVER},
        "spec": {"attachRequired": true}}));
    drivers.create(&pp, &driver).await.unwrap();
    // A claim bound to a CSI volume, as the binder would leave them.
    let claim: PersistentVolumeClaim = obj(json!({"metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "volumeName": "pv-csi", "storageClassName": "",
                 "resources": {"requests": {"storage": "1Gi"}}}}));
    let claim = claims.create(&pp, &claim).await.unwrap();
    let pv: PersistentVolume = obj(json!({"metadata": {"name": "pv-csi"},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": "",
                 "claimRef": {"namespace": "default", "name": "data", "uid": claim.uid()},
                 "csi": {"driver": DRIVER, "volumeHandle": HANDLE}}}));
    pvs.create(&pp, &pv).await.unwrap();
    let bound = json!({"status": {"phase": "Bound"}});
    claims
        .patch_status("data", &PatchParams::default(), &Patch::Merge(&bound))
        .await
        .unwrap();
    let pod: Pod = obj(json!({"metadata": {"name": "user"},
        "spec": {"nodeName": NODE, "containers": [{"name": "c", "image": "busybox"}],
                 "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": "data"}}]}}));
    pods.create(&pp, &pod).await.unwrap();

    let (mut kcm, port) = support::start_kcm_on_port(&cluster, "attachdetach", &[]);
    let va = support::eventually(
        "the VolumeAttachment upstream would create",
        Duration::from_secs(20),
        &mut kcm,
        || async { Ok(vas.get_opt(&va_name).await?) },
    )
    .await;
    assert_eq!(va.spec.attacher, DRIVER);
    assert_eq!(va.spec.node_name, NODE);
    assert_eq!(
        va.spec.source.persistent_volume_name.as_deref(),
        Some("pv-csi")
    );
    // Not attached yet: the node does not list it.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(attached_names(&nodes.get(NODE).await.unwrap()).is_empty());

    // The external-attacher's part.
    let attached = json!({"status": {"attached": true}});
    vas.patch_status(&va_name, &PatchParams::default(), &Patch::Merge(&attached))
        .await
        .unwrap();
    support::eventually(
        "the node's volumesAttached to list the volume",
        Duration::from_secs(20),
        &mut kcm,
        || async {
            Ok((attached_names(&nodes.get(NODE).await?) == [unique.clone()]).then_some(()))
        },
    )
    .await;
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    support::eventually(
        "SuccessfulAttachVolume on the pod",
        Duration::from_secs(10),
        &mut kcm,
        || async {
            let list = events.list(&ListParams::default()).await?;
            Ok(list.items.into_iter().find(|e| {
                e.reason.as_deref() == Some("SuccessfulAttachVolume")
                    && e.involved_object.name.as_deref() == Some("user")
            }))
        },
    )
    .await;
    let metrics = support::scrape_metrics_until(&cluster, &mut kcm, port, |m| {
        m.contains("attachdetach_controller_total_volumes")
    })
    .await;
    for state in ["desired_state_of_world", "actual_state_of_world"] {
        let series = format!(
            "attachdetach_controller_total_volumes{{plugin_name=\"kubernetes.io/csi:{DRIVER}\",state=\"{state}\"}}"
        );
        assert_eq!(
            support::sample(&metrics, &series),
            Some(1.0),
            "{series}\n{metrics}"
        );
    }

    // The kubelet mounted it; then the pod goes.
    let in_use = json!({"status": {"volumesInUse": [unique]}});
    nodes
        .patch_status(NODE, &PatchParams::default(), &Patch::Merge(&in_use))
        .await
        .unwrap();
    pods.delete("user", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    support::eventually(
        "the pod to be gone",
        Duration::from_secs(10),
        &mut kcm,
        || async { Ok(pods.get_opt("user").await?.is_none().then_some(())) },
    )
    .await;
    // Still in use by the kubelet: attached and reported.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(vas.get_opt(&va_name).await.unwrap().is_some());
    assert_eq!(
        attached_names(&nodes.get(NODE).await.unwrap()),
        [unique.as_str()]
    );

    // Unmounted: off the node's status and detached.
    let unmounted = json!({"status": {"volumesInUse": null}});
    nodes
        .patch_status(NODE, &PatchParams::default(), &Patch::Merge(&unmounted))
        .await
        .unwrap();
    support::eventually(
        "the VolumeAttachment to be deleted",
        Duration::from_secs(20),
        &mut kcm,
        || async { Ok(vas.get_opt(&va_name).await?.is_none().then_some(())) },
    )
    .await;
    assert!(attached_names(&nodes.get(NODE).await.unwrap()).is_empty());
}
