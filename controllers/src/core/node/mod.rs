//! node-lifecycle-controller: Lease-based node health, the condition taints, pods of
//! unhealthy nodes marked not ready.

pub mod controller;
pub mod health;
pub mod taints;

use futures::future::FutureExt;

use crate::machinery::ControllerDescriptor;

/// The identity it acts as with `--use-service-account-credentials`.
pub const SERVICE_ACCOUNT: &str = "node-controller";

/// Registry entry.
pub fn descriptor() -> ControllerDescriptor {
    ControllerDescriptor {
        name: "nodelifecycle",
        enabled_by_default: true,
        start: |ctx| controller::run(ctx).boxed(),
    }
}
