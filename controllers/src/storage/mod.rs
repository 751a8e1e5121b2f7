//! Storage controllers (issue 18): the persistentvolume-binder
//! (`persistentvolume-binder-controller`), binding claims to volumes as upstream's
//! PersistentVolumeController does, and the persistentvolume-expander ([`expander`]).
//!
//! - [`classes`]: a claim's or volume's class, the default class, WaitForFirstConsumer;
//! - [`matching`]: which volume fits a claim (upstream's `FindMatchingVolume` and index);
//! - [`binding`]: the object updates of a binding, unbinding and phase changes;
//! - [`decide`]: what a claim or volume sync does, from observed state;
//! - [`metrics`]: upstream's `pv_collector_*` and retroactive-class metrics;
//! - [`controller`]: the informers, queues and API writes.
//!
//! And the persistentvolume-attach-detach-controller ([`attach_detach`]), the pvc- and
//! pv-protection controllers ([`volume_protection`]), volumeattributesclass-protection
//! ([`vac_protection`]) and the ephemeral-volume controller ([`ephemeral_volume`]).

pub mod attach_detach;
pub mod binding;
pub mod classes;
pub mod controller;
pub mod decide;
pub mod ephemeral_volume;
pub mod expander;
pub mod matching;
pub mod metrics;
pub mod vac_protection;
pub mod volume_protection;

/// Set on a claim once the controller finished binding it.
pub const ANN_BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
/// Set on a claim or volume whose binding the controller (not the user) chose.
pub const ANN_BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";
/// The node the scheduler picked for a WaitForFirstConsumer claim.
pub const ANN_SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
/// The provisioner that created a volume.
pub const ANN_DYNAMICALLY_PROVISIONED: &str = "pv.kubernetes.io/provisioned-by";
/// A volume or claim handled by a CSI driver through migration.
pub const ANN_MIGRATED_TO: &str = "pv.kubernetes.io/migrated-to";
/// The provisioner asked to provision a claim.
pub const ANN_STORAGE_PROVISIONER: &str = "volume.kubernetes.io/storage-provisioner";
/// The beta form of [`ANN_STORAGE_PROVISIONER`], still written as upstream does.
pub const ANN_BETA_STORAGE_PROVISIONER: &str = "volume.beta.kubernetes.io/storage-provisioner";
/// The capacity a volume had before an offline resize.
pub const ANN_PRE_RESIZE_CAPACITY: &str = "volume.alpha.kubernetes.io/pre-resize-capacity";
