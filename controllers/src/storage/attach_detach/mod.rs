//! persistentvolume-attach-detach-controller (upstream's `attachdetach`): for pods on nodes
//! whose kubelet leaves attaching to the controller (annotation
//! `volumes.kubernetes.io/controller-managed-attach-detach`), attaches their CSI
//! PersistentVolumes by creating `storage.k8s.io/v1` VolumeAttachments (named as upstream's
//! CSI attacher names them) that the driver's external-attacher acts on, lists them in the
//! Node's `status.volumesAttached` once attached, and deletes them when no pod on the node
//! uses the volume and the kubelet no longer lists it in `status.volumesInUse`.
//!
//! [`desired`] and [`actual`] read the two states of the world from the cluster,
//! [`reconcile`] decides (pure), [`controller`] carries the decisions out.

pub mod actual;
pub mod controller;
pub mod desired;
pub mod names;
pub mod reconcile;

use futures::future::FutureExt;

use crate::machinery::ControllerDescriptor;

/// Registry entry.
pub fn descriptor() -> ControllerDescriptor {
    ControllerDescriptor {
        name: "persistentvolume-attach-detach-controller",
        enabled_by_default: true,
        start: |ctx| controller::run(ctx).boxed(),
    }
}

#[cfg(test)]
mod tests;
