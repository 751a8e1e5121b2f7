//! The desired state of the world (upstream's `DesiredStateOfWorld` and its populator): which
//! attachable volumes each managed node needs, and for which pods.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    ContainerStatus, Node, PersistentVolume, PersistentVolumeClaim, Pod,
};
use k8s_openapi::api::storage::v1::CSIDriver;

use super::names;
use crate::storage::ephemeral_volume::claim_is_for_pod;
use api_helpers::volumes::ephemeral_claim_name;

/// The annotation a kubelet sets on its Node to leave attach/detach to this controller.
pub const CONTROLLER_MANAGED_ANNOTATION: &str =
    "volumes.kubernetes.io/controller-managed-attach-detach";

/// A pod that uses a volume (the target of its attach events).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PodRef {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub name: String,
    /// The pod's uid.
    pub uid: String,
}

/// A volume that must be attached to a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeToAttach {
    /// The node.
    pub node: String,
    /// Upstream's unique volume name (`kubernetes.io/csi/<driver>^<handle>`).
    pub volume: String,
    /// The PersistentVolume (the name upstream's events give the volume).
    pub pv: String,
    /// The CSI driver (the VolumeAttachment's attacher).
    pub driver: String,
    /// The CSI volume handle.
    pub handle: String,
    /// Whether the volume may be attached to several nodes at once (its access modes say
    /// ReadWriteMany or ReadOnlyMany, or say nothing).
    pub multi_attach: bool,
    /// The pods on the node that use it, sorted.
    pub pods: Vec<PodRef>,
}

impl VolumeToAttach {
    /// The VolumeAttachment that attaches it.
    pub fn attachment_name(&self) -> String {
        names::attachment_name(&self.handle, &self.driver, &self.node)
    }
}

/// Desired volumes by (node, unique volume name).
pub type DesiredState = BTreeMap<(String, String), VolumeToAttach>;

/// Read access to the objects a pod's volumes resolve through.
pub trait VolumeLookup {
    /// The claim `name` in `namespace`.
    fn claim(&self, namespace: &str, name: &str) -> Option<Arc<PersistentVolumeClaim>>;
    /// The PersistentVolume `name`.
    fn volume(&self, name: &str) -> Option<Arc<PersistentVolume>>;
    /// The CSIDriver `name`.
    fn driver(&self, name: &str) -> Option<Arc<CSIDriver>>;
}

/// Whether the node's kubelet leaves attach/detach to the controller: upstream only looks
/// for the annotation's presence, whatever its value.
pub fn is_managed(node: &Node) -> bool {
    node.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(CONTROLLER_MANAGED_ANNOTATION))
}

fn not_running(statuses: Option<&Vec<ContainerStatus>>) -> bool {
    statuses.into_iter().flatten().all(|s| {
        s.state
            .as_ref()
            .is_none_or(|st| st.terminated.is_some() || st.waiting.is_some())
    })
}

/// Whether the pod no longer needs its volumes (upstream's `IsPodTerminated`): it
/// Succeeded or Failed, or it is being deleted and none of its containers runs.
pub fn pod_terminated(pod: &Pod) -> bool {
    let status = pod.status.as_ref();
    let phase = status.and_then(|s| s.phase.as_deref());
    matches!(phase, Some("Succeeded" | "Failed"))
        || (pod.metadata.deletion_timestamp.is_some()
            && not_running(status.and_then(|s| s.init_container_statuses.as_ref()))
            && not_running(status.and_then(|s| s.container_statuses.as_ref()))
            && not_running(status.and_then(|s| s.ephemeral_container_statuses.as_ref())))
}

/// Whether the CSI driver needs attaching: its CSIDriver says `attachRequired: true` or
/// says nothing, or there is no CSIDriver (upstream's `skipAttach`).
pub fn attach_required(driver: Option<&CSIDriver>) -> bool {
    driver.and_then(|d| d.spec.attach_required).unwrap_or(true)
}

/// Whether a PersistentVolume may be attached to several nodes (upstream's
/// `IsMultiAttachAllowed`): no access modes (unknown), or ReadWriteMany / ReadOnlyMany.
pub fn multi_attach_allowed(pv: &PersistentVolume) -> bool {
    let modes = pv.spec.as_ref().and_then(|s| s.access_modes.as_ref());
    match modes {
        None => true,
        Some(m) if m.is_empty() => true,
        Some(m) => m
            .iter()
            .any(|m| m == "ReadWriteMany" || m == "ReadOnlyMany"),
    }
}

/// The bound PersistentVolume of claim `name` used by `pod` (upstream's
/// `getPVCFromCache`/`getPVSpecFromCache`): the claim is Bound, names a volume, and that
/// volume's claimRef carries the claim's uid.
fn bound_volume(pod: &Pod, name: &str, lookup: &dyn VolumeLookup) -> Option<Arc<PersistentVolume>> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let claim = lookup.claim(ns, name)?;
    let bound = claim.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
    let volume_name = claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .filter(|v| !v.is_empty())?;
    if !bound {
        return None;
    }
    let pv = lookup.volume(volume_name)?;
    let claim_ref = pv.spec.as_ref()?.claim_ref.as_ref()?;
    (claim_ref.uid.is_some() && claim_ref.uid == claim.metadata.uid).then_some(pv)
}

/// The volumes of `pod` that need attaching to its node, each with the pod alone.
/// Pod-inline CSI volumes (CSI ephemeral) are never attached; PersistentVolumes with
/// `spec.csi` are, when their driver requires it.
pub fn pod_volumes(pod: &Pod, node: &str, lookup: &dyn VolumeLookup) -> Vec<VolumeToAttach> {
    let pod_ref = PodRef {
        namespace: pod.metadata.namespace.clone().unwrap_or_default(),
        name: pod.metadata.name.clone().unwrap_or_default(),
        uid: pod.metadata.uid.clone().unwrap_or_default(),
    };
    let volumes = pod.spec.as_ref().and_then(|s| s.volumes.as_ref());
    volumes
        .into_iter()
        .flatten()
        .filter_map(|v| {
            let pv = if let Some(c) = &v.persistent_volume_claim {
                bound_volume(pod, &c.claim_name, lookup)?
            } else if v.ephemeral.is_some() {
                let claim = ephemeral_claim_name(pod, &v.name);
                let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
                if !claim_is_for_pod(pod, &*lookup.claim(ns, &claim)?) {
                    return None;
                }
                bound_volume(pod, &claim, lookup)?
            } else {
                return None;
            };
            let csi = pv.spec.as_ref()?.csi.as_ref()?;
            if !attach_required(lookup.driver(&csi.driver).as_deref()) {
                return None;
            }
            Some(VolumeToAttach {
                node: node.to_string(),
                volume: names::unique_volume_name(&csi.driver, &csi.volume_handle),
                pv: pv.metadata.name.clone().unwrap_or_default(),
                driver: csi.driver.clone(),
                handle: csi.volume_handle.clone(),
                multi_attach: multi_attach_allowed(&pv),
                pods: vec![pod_ref.clone()],
            })
        })
        .collect()
}

/// The desired state: the attachable volumes of every pod scheduled to a managed node
/// (`managed(node)`) and not terminated, merged per (node, volume).
pub fn desired_state<'a>(
    pods: impl IntoIterator<Item = &'a Pod>,
    managed: impl Fn(&str) -> bool,
    lookup: &dyn VolumeLookup,
) -> DesiredState {
    let mut desired = DesiredState::new();
    for pod in pods {
        let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) else {
            continue;
        };
        if node.is_empty() || !managed(node) || pod_terminated(pod) {
            continue;
        }
        for v in pod_volumes(pod, node, lookup) {
            match desired.entry((v.node.clone(), v.volume.clone())) {
                std::collections::btree_map::Entry::Occupied(mut e) => {
                    let pods = &mut e.get_mut().pods;
                    pods.extend(v.pods);
                    pods.sort();
                    pods.dedup();
                }
                std::collections::btree_map::Entry::Vacant(e) => {
                    e.insert(v);
                }
            }
        }
    }
    desired
}
