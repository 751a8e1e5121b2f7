//! garbage-collector-controller: deletes objects whose owners are gone, and carries out
//! foreground (`foregroundDeletion`) and orphan (`orphan`) deletions, over every resource
//! the apiserver serves (CRDs included), watched metadata-only.

pub mod controller;
pub mod graph;
pub mod metrics;
pub mod monitors;

use futures::future::FutureExt;

use crate::machinery::ControllerDescriptor;

/// The identity it acts as with `--use-service-account-credentials`.
pub const SERVICE_ACCOUNT: &str = "generic-garbage-collector";

/// Registry entry.
pub fn descriptor() -> ControllerDescriptor {
    ControllerDescriptor {
        name: "garbagecollector",
        enabled_by_default: true,
        start: |ctx| controller::run(ctx).boxed(),
    }
}
