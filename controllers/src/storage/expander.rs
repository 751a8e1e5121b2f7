//! persistentvolume-expander (`persistentvolume-expander-controller`, upstream's expand
//! controller): a Bound claim whose request grew past its capacity (the apiserver's
//! PersistentVolumeClaimResize admission already checked its class allows expansion) is
//! handed to the resizer that owns its volume. No in-tree plugin expands volumes any more:
//! a volume of an in-tree type migrated to CSI gets the CSI driver's name in
//! `volume.kubernetes.io/storage-resizer`; every other one waits for an external
//! controller. Both say so with an `ExternalExpanding` event.

use futures::future::FutureExt;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::api::{Patch, PatchParams};
use kube::Api;

use super::decide::Event;
use super::matching::requested_storage;
use super::ANN_PRE_RESIZE_CAPACITY;
use crate::machinery::context::{event_recorder, ControllerContext};
use crate::machinery::informers::handlers as informer;
use crate::machinery::queue::WorkQueue;
use crate::machinery::ControllerDescriptor;
use api_helpers::quantity::Quantity;

/// The annotation naming the resizer that should expand a claim.
pub const ANN_STORAGE_RESIZER: &str = "volume.kubernetes.io/storage-resizer";
/// The identity of the expander with `--use-service-account-credentials` (upstream's).
pub const SERVICE_ACCOUNT: &str = "expand-controller";
/// The event source upstream's expander reports as.
pub const EVENT_COMPONENT: &str = "volume_expand";

/// Registry entry (`persistentvolume-expander-controller`).
pub fn descriptor() -> ControllerDescriptor {
    ControllerDescriptor {
        name: "persistentvolume-expander",
        enabled_by_default: true,
        start: |ctx| run(ctx).boxed(),
    }
}

/// In-tree volume types migrated to CSI, as `(plugin, CSI driver)` of a volume, if it is one
/// (upstream's CSI translation library; all are migrated in 1.35).
pub fn migrated_plugin(pv: &PersistentVolume) -> Option<(&'static str, &'static str)> {
    let s = pv.spec.as_ref()?;
    let pairs = [
        (
            s.aws_elastic_block_store.is_some(),
            "kubernetes.io/aws-ebs",
            "ebs.csi.aws.com",
        ),
        (
            s.gce_persistent_disk.is_some(),
            "kubernetes.io/gce-pd",
            "pd.csi.storage.gke.io",
        ),
        (
            s.azure_disk.is_some(),
            "kubernetes.io/azure-disk",
            "disk.csi.azure.com",
        ),
        (
            s.azure_file.is_some(),
            "kubernetes.io/azure-file",
            "file.csi.azure.com",
        ),
        (
            s.cinder.is_some(),
            "kubernetes.io/cinder",
            "cinder.csi.openstack.org",
        ),
        (
            s.vsphere_volume.is_some(),
            "kubernetes.io/vsphere-volume",
            "csi.vsphere.vmware.com",
        ),
        (
            s.portworx_volume.is_some(),
            "kubernetes.io/portworx-volume",
            "pxd.portworx.com",
        ),
    ];
    pairs
        .into_iter()
        .find(|(is, _, _)| *is)
        .map(|(_, plugin, driver)| (plugin, driver))
}

fn status_capacity(claim: &PersistentVolumeClaim) -> Quantity {
    claim
        .status
        .as_ref()
        .and_then(|s| s.capacity.as_ref())
        .and_then(|c| c.get("storage"))
        .and_then(|q| Quantity::from_wire(q).ok())
        .unwrap_or(Quantity::ZERO)
}

/// What an expander sync does.
#[derive(Debug, Clone, PartialEq)]
pub enum ExpandStep {
    /// Nothing to expand.
    Nothing,
    /// The volume is not bound to this claim: an error to retry.
    NotBound(String),
    /// Record the event (an external resizer expands the volume).
    External(Event),
    /// Record the event and name `resizer` in [`ANN_STORAGE_RESIZER`] on the claim.
    Migrated {
        /// `ExternalExpanding`.
        event: Event,
        /// The CSI driver.
        resizer: String,
    },
}

/// Decides an expander sync for `claim` and its volume `pv`.
pub fn decide_expand(claim: &PersistentVolumeClaim, pv: &PersistentVolume) -> ExpandStep {
    let bound = pv
        .spec
        .as_ref()
        .and_then(|s| s.claim_ref.as_ref())
        .is_some_and(|r| r.namespace == claim.metadata.namespace && r.uid == claim.metadata.uid);
    if !bound {
        return ExpandStep::NotBound(format!(
            "persistent Volume is not bound to PVC being updated : {}/{}",
            claim.metadata.namespace.as_deref().unwrap_or_default(),
            claim.metadata.name.as_deref().unwrap_or_default()
        ));
    }
    let pre_resize = pv
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(ANN_PRE_RESIZE_CAPACITY));
    if requested_storage(claim) <= status_capacity(claim) && !pre_resize {
        return ExpandStep::Nothing;
    }
    if let Some((plugin, driver)) = migrated_plugin(pv) {
        return ExpandStep::Migrated {
            event: Event {
                warning: false,
                reason: "ExternalExpanding",
                message: format!(
                    "CSI migration enabled for {plugin}; waiting for external resizer to expand the pvc"
                ),
            },
            resizer: driver.to_string(),
        };
    }
    ExpandStep::External(Event {
        warning: false,
        reason: "ExternalExpanding",
        message: "waiting for an external controller to expand this PVC".into(),
    })
}

/// Whether a claim update may need the expander: its request or its capacity grew.
pub fn grew(old: &PersistentVolumeClaim, new: &PersistentVolumeClaim) -> bool {
    requested_storage(new) > requested_storage(old) || status_capacity(new) > status_capacity(old)
}

fn is_bound(claim: &PersistentVolumeClaim) -> bool {
    claim.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound")
}

async fn run(ctx: ControllerContext) -> anyhow::Result<()> {
    let sd = ctx.shutdown.clone();
    let queue: WorkQueue<(String, String)> =
        WorkQueue::new().with_metrics(&ctx.metrics, "volume_expand");
    let claims = ctx.informers().informer::<PersistentVolumeClaim>();
    let q = queue.clone();
    claims.add_handler(move |change| {
        use crate::machinery::informers::Change;
        let c = match change {
            Change::Added(c) | Change::Deleted(c) => c,
            Change::Updated { old, new } if grew(old, new) => new,
            Change::Updated { .. } => return,
        };
        if let (true, Some(ns), Some(n)) = (is_bound(c), &c.metadata.namespace, &c.metadata.name) {
            q.add((ns.clone(), n.clone()));
        }
    });
    informer::wait_synced(&sd, claims.wait_synced()).await?;
    let client = ctx.client_for(SERVICE_ACCOUNT).await?;
    let recorder = event_recorder(client.clone(), EVENT_COMPONENT);
    tracing::info!("Starting expand controller");
    queue
        .run("persistentvolume-expander", 1, sd, move |(ns, name)| {
            let (client, claims, recorder) = (client.clone(), claims.clone(), recorder.clone());
            async move {
                let Some(claim) = claims.get(&ns, &name) else {
                    return Ok(());
                };
                let volume = claim
                    .spec
                    .as_ref()
                    .and_then(|s| s.volume_name.clone())
                    .unwrap_or_default();
                let pv = Api::<PersistentVolume>::all(client.clone())
                    .get(&volume)
                    .await
                    .map_err(|e| anyhow::anyhow!("failed to get PV {volume:?}: {e}"))?;
                let record = |e: Event| {
                    let mut regarding = kube::Resource::object_ref(claim.as_ref(), &());
                    regarding.field_path = None;
                    let spec = component_base::events::EventSpec {
                        regarding,
                        related: None,
                        type_: component_base::events::EventType::Normal,
                        reason: e.reason.into(),
                        action: "Resize".into(),
                        note: e.message,
                    };
                    let recorder = recorder.clone();
                    async move { recorder.record(spec).await }
                };
                match decide_expand(&claim, &pv) {
                    ExpandStep::Nothing => Ok(()),
                    ExpandStep::NotBound(e) => anyhow::bail!(e),
                    ExpandStep::External(e) => {
                        record(e).await;
                        Ok(())
                    }
                    ExpandStep::Migrated { event, resizer } => {
                        record(event).await;
                        let current = claim
                            .metadata
                            .annotations
                            .as_ref()
                            .and_then(|a| a.get(ANN_STORAGE_RESIZER));
                        if current != Some(&resizer) {
                            let patch = serde_json::json!({"metadata": {"annotations": {ANN_STORAGE_RESIZER: resizer}}});
                            Api::<PersistentVolumeClaim>::namespaced(client, &ns)
                                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                                .await
                                .map_err(|e| {
                                    anyhow::anyhow!(
                                        "error setting resizer annotation to pvc {ns}/{name}, with error {e}"
                                    )
                                })?;
                        }
                        Ok(())
                    }
                }
            }
        })
        .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claim(request: &str, capacity: &str) -> PersistentVolumeClaim {
        serde_json::from_value(json!({
            "metadata": {"name": "c", "namespace": "ns", "uid": "u"},
            "spec": {"resources": {"requests": {"storage": request}}, "volumeName": "v"},
            "status": {"phase": "Bound", "capacity": {"storage": capacity}}
        }))
        .unwrap()
    }

    fn pv(source: serde_json::Value, uid: &str) -> PersistentVolume {
        let mut spec = json!({"claimRef": {"namespace": "ns", "name": "c", "uid": uid},
                              "capacity": {"storage": "1Gi"}});
        spec.as_object_mut()
            .unwrap()
            .extend(source.as_object().unwrap().clone());
        serde_json::from_value(json!({"metadata": {"name": "v"}, "spec": spec})).unwrap()
    }

    #[test]
    fn grown_claims_go_to_their_resizer() {
        let csi = pv(json!({"csi": {"driver": "d", "volumeHandle": "h"}}), "u");
        assert_eq!(
            decide_expand(&claim("1Gi", "1Gi"), &csi),
            ExpandStep::Nothing
        );
        match decide_expand(&claim("2Gi", "1Gi"), &csi) {
            ExpandStep::External(e) => {
                assert_eq!(e.reason, "ExternalExpanding");
                assert_eq!(
                    e.message,
                    "waiting for an external controller to expand this PVC"
                );
            }
            other => panic!("{other:?}"),
        }
        let gce = pv(json!({"gcePersistentDisk": {"pdName": "disk"}}), "u");
        match decide_expand(&claim("2Gi", "1Gi"), &gce) {
            ExpandStep::Migrated { event, resizer } => {
                assert_eq!(resizer, "pd.csi.storage.gke.io");
                assert_eq!(
                    event.message,
                    "CSI migration enabled for kubernetes.io/gce-pd; waiting for external resizer to expand the pvc"
                );
            }
            other => panic!("{other:?}"),
        }
        // A pending pre-resize annotation keeps the claim in the expander's hands.
        let mut resized = csi.clone();
        resized.metadata.annotations =
            Some([(ANN_PRE_RESIZE_CAPACITY.to_string(), "1Gi".to_string())].into());
        assert!(matches!(
            decide_expand(&claim("1Gi", "1Gi"), &resized),
            ExpandStep::External(_)
        ));
        let other = pv(
            json!({"csi": {"driver": "d", "volumeHandle": "h"}}),
            "someone-else",
        );
        assert!(matches!(
            decide_expand(&claim("2Gi", "1Gi"), &other),
            ExpandStep::NotBound(_)
        ));
    }

    #[test]
    fn only_growth_requeues() {
        assert!(grew(&claim("1Gi", "1Gi"), &claim("2Gi", "1Gi")));
        assert!(grew(&claim("2Gi", "1Gi"), &claim("2Gi", "2Gi")));
        assert!(!grew(&claim("2Gi", "1Gi"), &claim("1Gi", "1Gi")));
        assert!(!grew(&claim("1Gi", "1Gi"), &claim("1Gi", "1Gi")));
    }
}
