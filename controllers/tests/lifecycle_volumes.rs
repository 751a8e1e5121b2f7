//! pvc-protection and pv-protection against a real apiserver: a claim used by a scheduled
//! pod stays Terminating after delete and goes once the pod is gone; a volume gets its
//! finalizer back when it is stripped, and an unbound deleting volume is released;
//! volumeattributesclass-protection keeps a class while a claim names it.

#[path = "lifecycle_support.rs"]
mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;

const PVC_FINALIZER: &str = "kubernetes.io/pvc-protection";
const PV_FINALIZER: &str = "kubernetes.io/pv-protection";

fn has(finalizers: &Option<Vec<String>>, f: &str) -> bool {
    finalizers
        .as_ref()
        .is_some_and(|v| v.iter().any(|x| x == f))
}

#[tokio::test]
async fn claims_in_use_and_volumes_are_protected() {
    let cluster = e2e::cluster_or_skip!();
    let client = cluster.client();
    support::ensure_default_service_account(&client).await;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let volumes: Api<PersistentVolume> = Api::all(client.clone());

    // A claim created without the finalizer (and stripped, in case admission added it).
    let claim: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    }))
    .unwrap();
    claims.create(&PostParams::default(), &claim).await.unwrap();
    let strip = json!({"metadata": {"finalizers": null}});
    claims
        .patch("data", &PatchParams::default(), &Patch::Merge(&strip))
        .await
        .unwrap();
    // A scheduled pod that mounts it (no kubelet: it stays Pending on its node).
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "user"},
        "spec": {
            "nodeName": "node-a",
            "containers": [{"name": "c", "image": "busybox"}],
            "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": "data"}}]
        }
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    // An unbound volume, also stripped of its finalizer.
    let pv: PersistentVolume = serde_json::from_value(json!({
        "metadata": {"name": "vol-a"},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                 "hostPath": {"path": "/tmp/ferrokube-vol-a"}}
    }))
    .unwrap();
    volumes.create(&PostParams::default(), &pv).await.unwrap();
    volumes
        .patch("vol-a", &PatchParams::default(), &Patch::Merge(&strip))
        .await
        .unwrap();

    let mut kcm = support::start_kcm(
        &cluster,
        "persistentvolumeclaim-protection-controller,pv-protection",
        &[],
    );
    support::eventually(
        "finalizers added to claim and volume",
        Duration::from_secs(20),
        &mut kcm,
        || async {
            let c = claims.get("data").await?;
            let v = volumes.get("vol-a").await?;
            Ok((has(&c.metadata.finalizers, PVC_FINALIZER)
                && has(&v.metadata.finalizers, PV_FINALIZER))
            .then_some(()))
        },
    )
    .await;

    // The claim in use stays Terminating.
    claims
        .delete("data", &DeleteParams::default())
        .await
        .unwrap();
    // Give the controller time to (wrongly) release it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let c = claims.get("data").await.expect("claim in use must remain");
    assert!(c.metadata.deletion_timestamp.is_some());
    assert!(has(&c.metadata.finalizers, PVC_FINALIZER));

    // Once the pod is gone the claim goes.
    pods.delete("user", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    support::eventually(
        "unused claim deleted",
        Duration::from_secs(20),
        &mut kcm,
        || async { Ok(claims.get_opt("data").await?.is_none().then_some(())) },
    )
    .await;

    // The unbound volume is released on delete.
    volumes
        .delete("vol-a", &DeleteParams::default())
        .await
        .unwrap();
    support::eventually(
        "unbound volume deleted",
        Duration::from_secs(20),
        &mut kcm,
        || async { Ok(volumes.get_opt("vol-a").await?.is_none().then_some(())) },
    )
    .await;
}

/// volumeattributesclass-protection (conformance: "should run through the lifecycle of a
/// VolumeAttributesClass"): a class no claim names is released as soon as it is deleted; one a
/// claim names stays, finalizer held, until that claim is gone.
#[tokio::test]
async fn volume_attributes_classes_are_protected_while_claims_name_them() {
    use k8s_openapi::api::storage::v1::VolumeAttributesClass;
    let cluster = e2e::cluster_or_skip!();
    let client = cluster.client();
    let mut kcm = support::start_kcm(
        &cluster,
        "volumeattributesclass-protection,pvc-protection",
        &[],
    );
    let classes: Api<VolumeAttributesClass> = Api::all(client.clone());
    let class = |name: &str| -> VolumeAttributesClass {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name}, "driverName": "csi.example.com",
            "parameters": {"iops": "3000"}
        }))
        .unwrap()
    };
    for name in ["unused", "named"] {
        classes
            .create(&PostParams::default(), &class(name))
            .await
            .unwrap();
    }
    let protected = support::eventually(
        "both classes carry kubernetes.io/vac-protection",
        Duration::from_secs(30),
        &mut kcm,
        || async {
            let mut n = 0;
            for name in ["unused", "named"] {
                let c = classes.get(name).await?;
                n += c
                    .finalizers()
                    .iter()
                    .any(|f| f == "kubernetes.io/vac-protection") as usize;
            }
            Ok((n == 2).then_some(n))
        },
    )
    .await;
    assert_eq!(protected, 2);
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    let claim: PersistentVolumeClaim = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "names-a-class"},
        "spec": {"accessModes": ["ReadWriteOnce"], "volumeAttributesClassName": "named",
            "resources": {"requests": {"storage": "1Gi"}}}
    }))
    .unwrap();
    claims.create(&PostParams::default(), &claim).await.unwrap();

    for name in ["unused", "named"] {
        classes
            .delete(name, &DeleteParams::default())
            .await
            .unwrap();
    }
    support::eventually(
        "the unused class gone",
        Duration::from_secs(30),
        &mut kcm,
        || async { Ok(classes.get_opt("unused").await?.is_none().then_some(())) },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let held = classes.get_opt("named").await.unwrap();
    assert!(
        held.is_some_and(|c| c.metadata.deletion_timestamp.is_some()),
        "a class a claim names is kept (deleting) while the claim exists"
    );
    claims
        .delete("names-a-class", &DeleteParams::default())
        .await
        .unwrap();
    support::eventually(
        "the named class gone once its claim went",
        Duration::from_secs(30),
        &mut kcm,
        || async { Ok(classes.get_opt("named").await?.is_none().then_some(())) },
    )
    .await;
    kcm.terminate(Duration::from_secs(10)).unwrap();
}
