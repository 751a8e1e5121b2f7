//! resourceclaim-controller: creates the ResourceClaims a pod's
//! `spec.resourceClaims[].resourceClaimTemplateName` asks for (recording them in
//! `status.resourceClaimStatuses`), reserves allocated claims for scheduled pods, removes
//! pods that are done or gone from `status.reservedFor`, deallocates claims nothing reserves
//! any more, and deletes generated claims whose pod will not run.

pub mod controller;
pub mod decisions;
pub mod metrics;
pub mod names;

use futures::future::FutureExt;

use crate::machinery::ControllerDescriptor;

/// The identity of the controller with `--use-service-account-credentials` (upstream's,
/// which differs from the controller's name).
pub const SERVICE_ACCOUNT: &str = "resource-claim-controller";

/// Registry entry.
pub fn descriptor() -> ControllerDescriptor {
    ControllerDescriptor {
        name: "resourceclaim-controller",
        enabled_by_default: true,
        start: |ctx| controller::run(ctx).boxed(),
    }
}
