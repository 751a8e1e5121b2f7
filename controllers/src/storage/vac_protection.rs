//! volumeattributesclass-protection-controller: keeps the `kubernetes.io/vac-protection`
//! finalizer on every VolumeAttributesClass (the apiserver's StorageObjectInUseProtection
//! admission adds it at creation) and releases a deleting class once no claim and no volume
//! names it, as upstream's vacprotection controller.

use futures::future::FutureExt;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::VolumeAttributesClass;
use kube::Api;

use crate::machinery::context::ControllerContext;
use crate::machinery::informers::handlers::{self as informer, Change};
use crate::machinery::queue::WorkQueue;
use crate::machinery::ControllerDescriptor;
use crate::storage::volume_protection::{protection_update, replace_finalizers};

/// The finalizer that keeps a class while claims or volumes name it.
pub const FINALIZER: &str = "kubernetes.io/vac-protection";
/// The identity of the controller with `--use-service-account-credentials`.
pub const SERVICE_ACCOUNT: &str = "volumeattributesclass-protection-controller";

/// Registry entry.
pub fn descriptor() -> ControllerDescriptor {
    ControllerDescriptor {
        name: "volumeattributesclass-protection-controller",
        enabled_by_default: true,
        start: |ctx| run(ctx).boxed(),
    }
}

/// The classes a claim names: the one it asks for, the one it has, and the one a
/// modification in progress moves it to.
pub fn classes_of_claim(pvc: &PersistentVolumeClaim) -> Vec<String> {
    let spec = pvc
        .spec
        .as_ref()
        .and_then(|s| s.volume_attributes_class_name.clone());
    let status = pvc.status.as_ref();
    let current = status.and_then(|s| s.current_volume_attributes_class_name.clone());
    let target = status
        .and_then(|s| s.modify_volume_status.as_ref())
        .and_then(|m| m.target_volume_attributes_class_name.clone());
    [spec, current, target]
        .into_iter()
        .flatten()
        .filter(|n| !n.is_empty())
        .collect()
}

/// The class a volume names.
pub fn classes_of_volume(pv: &PersistentVolume) -> Vec<String> {
    pv.spec
        .as_ref()
        .and_then(|s| s.volume_attributes_class_name.clone())
        .filter(|n| !n.is_empty())
        .into_iter()
        .collect()
}

/// Whether any of `claims` or `volumes` names class `name`.
pub fn in_use(
    name: &str,
    claims: &[&PersistentVolumeClaim],
    volumes: &[&PersistentVolume],
) -> bool {
    claims
        .iter()
        .any(|c| classes_of_claim(c).iter().any(|n| n == name))
        || volumes
            .iter()
            .any(|v| classes_of_volume(v).iter().any(|n| n == name))
}

async fn run(ctx: ControllerContext) -> anyhow::Result<()> {
    let sd = ctx.shutdown.clone();
    let queue: WorkQueue<String> =
        WorkQueue::new().with_metrics(&ctx.metrics, "volumeattributesclass_protection");
    let informers = ctx.informers();
    let classes = informers.informer::<VolumeAttributesClass>();
    let q = queue.clone();
    informer::on(&classes, move |c: &VolumeAttributesClass, change| {
        if change == Change::Applied {
            if let Some(name) = &c.metadata.name {
                q.add(name.clone());
            }
        }
    });
    // A claim or volume that changes or goes may release the classes it named.
    let claims = informers.informer::<PersistentVolumeClaim>();
    let q = queue.clone();
    informer::on(&claims, move |c: &PersistentVolumeClaim, _| {
        for name in classes_of_claim(c) {
            q.add(name);
        }
    });
    let volumes = informers.informer::<PersistentVolume>();
    let q = queue.clone();
    informer::on(&volumes, move |v: &PersistentVolume, _| {
        for name in classes_of_volume(v) {
            q.add(name);
        }
    });
    informer::wait_synced(&sd, async {
        classes.wait_synced().await;
        claims.wait_synced().await;
        volumes.wait_synced().await;
    })
    .await?;
    let client = ctx.client_for(SERVICE_ACCOUNT).await?;
    queue
        .run("volumeattributesclass-protection", 1, sd, move |name| {
            let (client, classes, claims, volumes) = (
                client.clone(),
                classes.clone(),
                claims.clone(),
                volumes.clone(),
            );
            async move {
                let Some(class) = classes.get("", &name) else {
                    return Ok(());
                };
                let Some(finalizers) = protection_update(&class.metadata, FINALIZER, || {
                    let (claims, volumes) = (claims.list(), volumes.list());
                    let claims: Vec<&PersistentVolumeClaim> =
                        claims.iter().map(|c| c.as_ref()).collect();
                    let volumes: Vec<&PersistentVolume> =
                        volumes.iter().map(|v| v.as_ref()).collect();
                    in_use(&name, &claims, &volumes)
                }) else {
                    return Ok(());
                };
                replace_finalizers(&Api::all(client), &name, class.as_ref(), finalizers).await?;
                Ok(())
            }
        })
        .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn claims_name_their_wanted_current_and_target_classes() {
        let pvc: PersistentVolumeClaim = serde_json::from_value(json!({
            "spec": {"volumeAttributesClassName": "gold"},
            "status": {"currentVolumeAttributesClassName": "silver",
                "modifyVolumeStatus": {"status": "InProgress", "targetVolumeAttributesClassName": "platinum"}}
        }))
        .unwrap();
        assert_eq!(classes_of_claim(&pvc), ["gold", "silver", "platinum"]);
        assert!(classes_of_claim(&PersistentVolumeClaim::default()).is_empty());
    }

    #[test]
    fn a_class_named_by_a_claim_or_volume_is_in_use() {
        let pvc: PersistentVolumeClaim =
            serde_json::from_value(json!({"spec": {"volumeAttributesClassName": "gold"}})).unwrap();
        let pv: PersistentVolume =
            serde_json::from_value(json!({"spec": {"volumeAttributesClassName": "silver"}}))
                .unwrap();
        assert!(in_use("gold", &[&pvc], &[]));
        assert!(in_use("silver", &[], &[&pv]));
        assert!(!in_use("bronze", &[&pvc], &[&pv]));
    }
}
