//! e2e: the attach/detach handshake between the kubelet binary and the controller
//! manager's attach-detach controller, on a real containerd and apiserver. The kubelet
//! registers its node as controller-managed and reports the CSI PersistentVolume of its pod
//! in `status.volumesInUse` (it has no CSI driver: the pod waits with FailedMount); the
//! controller creates the VolumeAttachment; the test, as the external-attacher, marks it
//! attached and the controller lists it in `status.volumesAttached` (which the kubelet's
//! own status updates leave alone); once the pod is deleted the kubelet stops reporting the
//! volume and the controller detaches it.

#[macro_use]
mod common;

use common::process::{wait, KubeletProcess};
use common::{create_pod, default_pods};
use k8s_openapi::api::core::v1::{Event, Node, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::VolumeAttachment;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::ResourceExt;
use std::time::Duration;

const DRIVER: &str = "disk.csi.example.com";

fn obj<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).unwrap()
}

fn in_use(n: &Node) -> Vec<String> {
    n.status
        .as_ref()
        .and_then(|s| s.volumes_in_use.clone())
        .unwrap_or_default()
}

fn attached(n: &Node) -> Vec<String> {
    let list = n.status.as_ref().and_then(|s| s.volumes_attached.as_ref());
    list.into_iter().flatten().map(|v| v.name.clone()).collect()
}

#[tokio::test]
async fn kubelet_and_attach_detach_controller_hand_a_csi_volume_over() {
    let (cluster, containerd) = cluster_and_containerd_or_skip!();
    let kubelet = KubeletProcess::builder(&cluster, &containerd, "attach")
        .config(serde_json::json!({"nodeStatusUpdateFrequency": "1s"}))
        .start();
    let node_name = kubelet.node_name.clone();
    let client = cluster.client();
    let pods = default_pods(&client).await;
    let nodes: Api<Node> = Api::all(client.clone());
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let vas: Api<VolumeAttachment> = Api::all(client.clone());
    let pp = PostParams::default();
    let handle = format!("vol-{}", std::process::id());
    let unique = format!("kubernetes.io/csi/{DRIVER}^{handle}");

    // The kubelet registers its node as controller-managed.
    let node = wait("node registered", Duration::from_secs(30), || async {
        nodes.get_opt(&node_name).await.ok()?
    })
    .await;
    assert_eq!(
        node.annotations()
            .get("volumes.kubernetes.io/controller-managed-attach-detach")
            .map(String::as_str),
        Some("true")
    );

    // A claim bound to a CSI volume (no CSIDriver object: attach required) and a pod.
    let claim: PersistentVolumeClaim = obj(serde_json::json!({"metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "volumeName": "pv-attach", "storageClassName": "",
                 "resources": {"requests": {"storage": "1Gi"}}}}));
    let claim = claims.create(&pp, &claim).await.unwrap();
    let pv: PersistentVolume = obj(serde_json::json!({"metadata": {"name": "pv-attach"},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": "",
                 "claimRef": {"namespace": "default", "name": "data", "uid": claim.uid()},
                 "csi": {"driver": DRIVER, "volumeHandle": handle}}}));
    pvs.create(&pp, &pv).await.unwrap();
    claims
        .patch_status(
            "data",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"status": {"phase": "Bound"}})),
        )
        .await
        .unwrap();
    create_pod(
        &pods,
        serde_json::json!({
            "metadata": {"name": "csi-user"},
            "spec": {"nodeName": node_name, "hostNetwork": true,
                "automountServiceAccountToken": false, "terminationGracePeriodSeconds": 1,
                "containers": [{"name": "app", "image": "busybox:1.35", "command": ["sleep", "3600"],
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
                "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]}
        }),
    )
    .await;

    // The kubelet reports the volume in use; it cannot mount it, and says so.
    wait(
        "volumesInUse lists the volume",
        Duration::from_secs(30),
        || async {
            let n = nodes.get(&node_name).await.ok()?;
            (in_use(&n) == [unique.clone()]).then_some(())
        },
    )
    .await;
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    wait(
        "FailedMount on the pod",
        Duration::from_secs(30),
        || async {
            let list = events.list(&Default::default()).await.ok()?;
            list.items.into_iter().find(|e| {
                e.reason.as_deref() == Some("FailedMount")
                    && e.involved_object.name.as_deref() == Some("csi-user")
            })
        },
    )
    .await;
    let phase = pods
        .get("csi-user")
        .await
        .unwrap()
        .status
        .and_then(|s| s.phase);
    assert_eq!(phase.as_deref(), Some("Pending"));

    // The controller attaches; the test plays the external-attacher.
    let port = e2e::ports::free_port().unwrap();
    let mut args = e2e::components::controller_manager_args(&cluster, port, false).unwrap();
    args.push("--controllers=attachdetach".into());
    args.push("--use-service-account-credentials=true".into());
    let _kcm = cluster
        .spawn_component(e2e::components::KUBE_CONTROLLER_MANAGER, &args)
        .unwrap();
    let va = wait(
        "VolumeAttachment created",
        Duration::from_secs(30),
        || async {
            let list = vas.list(&Default::default()).await.ok()?;
            list.items
                .into_iter()
                .find(|v| v.spec.source.persistent_volume_name.as_deref() == Some("pv-attach"))
        },
    )
    .await;
    assert_eq!(
        (va.spec.attacher.as_str(), va.spec.node_name.as_str()),
        (DRIVER, node_name.as_str())
    );
    vas.patch_status(
        &va.name_any(),
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"status": {"attached": true}})),
    )
    .await
    .unwrap();
    wait(
        "volumesAttached lists the volume",
        Duration::from_secs(30),
        || async {
            let n = nodes.get(&node_name).await.ok()?;
            (attached(&n) == [unique.clone()]).then_some(())
        },
    )
    .await;
    // The kubelet's status updates keep both fields as they are.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let n = nodes.get(&node_name).await.unwrap();
    assert_eq!(
        (in_use(&n), attached(&n)),
        (vec![unique.clone()], vec![unique.clone()])
    );
    assert!(vas.get_opt(&va.name_any()).await.unwrap().is_some());

    // The pod goes: the kubelet lets go of the volume and the controller detaches it.
    pods.delete("csi-user", &DeleteParams::default())
        .await
        .unwrap();
    wait(
        "VolumeAttachment deleted",
        Duration::from_secs(60),
        || async {
            vas.get_opt(&va.name_any())
                .await
                .ok()?
                .is_none()
                .then_some(())
        },
    )
    .await;
    let n = nodes.get(&node_name).await.unwrap();
    assert!(
        in_use(&n).is_empty() && attached(&n).is_empty(),
        "{:?}",
        n.status
    );
}
