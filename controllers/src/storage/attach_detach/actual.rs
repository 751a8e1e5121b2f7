//! The actual state of the world (upstream's `ActualStateOfWorld`), read from what the
//! cluster says: the VolumeAttachments (created by this controller, attached by the CSI
//! driver's external-attacher) and each Node's `volumesAttached` / `volumesInUse`.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{Node, PersistentVolume};
use k8s_openapi::api::storage::v1::VolumeAttachment;

use super::desired::is_managed;
use super::names;
use crate::machinery::nodes::{is_ready, out_of_service};

/// One VolumeAttachment of a PersistentVolume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// The VolumeAttachment's name.
    pub name: String,
    /// `spec.nodeName`.
    pub node: String,
    /// `spec.attacher`: the CSI driver.
    pub driver: String,
    /// `spec.source.persistentVolumeName`.
    pub pv: String,
    /// The unique volume name, when the volume or the node's status says which it is.
    pub volume: Option<String>,
    /// `status.attached`.
    pub attached: bool,
    /// `status.attachError.message`.
    pub attach_error: Option<String>,
    /// It has a deletion timestamp: detaching.
    pub deleting: bool,
}

/// What the controller needs of a Node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeView {
    /// It carries the controller-managed annotation.
    pub managed: bool,
    /// Its Ready condition is True.
    pub ready: bool,
    /// It has the `node.kubernetes.io/out-of-service` taint.
    pub out_of_service: bool,
    /// `status.volumesInUse`: volumes its kubelet has mounted or is about to mount.
    pub in_use: BTreeSet<String>,
    /// `status.volumesAttached` names.
    pub reported: BTreeSet<String>,
}

/// The controller's view of `node`.
pub fn node_view(node: &Node) -> NodeView {
    let status = node.status.as_ref();
    NodeView {
        managed: is_managed(node),
        ready: is_ready(node),
        out_of_service: out_of_service(node),
        in_use: status
            .and_then(|s| s.volumes_in_use.clone())
            .into_iter()
            .flatten()
            .collect(),
        reported: status
            .and_then(|s| s.volumes_attached.as_ref())
            .into_iter()
            .flatten()
            .map(|v| v.name.clone())
            .collect(),
    }
}

/// The attachment `va` describes, or `None` when it is not one this controller handles
/// (no `persistentVolumeName` source: inline specs of CSI migration). Its unique volume
/// name comes from the PersistentVolume's `spec.csi`, or, with the volume gone, from a name
/// in the node's status whose attachment name is `va`'s.
pub fn attachment(
    va: &VolumeAttachment,
    pv: Option<&PersistentVolume>,
    node: Option<&NodeView>,
) -> Option<Attachment> {
    let name = va.metadata.name.clone()?;
    let pv_name = va.spec.source.persistent_volume_name.clone()?;
    let driver = va.spec.attacher.clone();
    let node_name = va.spec.node_name.clone();
    let from_pv = pv
        .and_then(|p| p.spec.as_ref()?.csi.as_ref())
        .filter(|c| c.driver == driver)
        .map(|c| names::unique_volume_name(&c.driver, &c.volume_handle));
    let from_node = || {
        let n = node?;
        n.reported.iter().chain(&n.in_use).find_map(|v| {
            let (d, h) = names::parse_unique_volume_name(v)?;
            (d == driver && names::attachment_name(h, d, &node_name) == name).then(|| v.clone())
        })
    };
    let volume = from_pv.or_else(from_node);
    let status = va.status.as_ref();
    Some(Attachment {
        name,
        node: node_name,
        driver,
        pv: pv_name,
        volume,
        attached: status.is_some_and(|s| s.attached),
        attach_error: status
            .and_then(|s| s.attach_error.as_ref())
            .and_then(|e| e.message.clone()),
        deleting: va.metadata.deletion_timestamp.is_some(),
    })
}
