//! disruption-controller: keeps every PodDisruptionBudget's status (`currentHealthy`,
//! `desiredHealthy`, `expectedPods`, `disruptionsAllowed`, `disruptedPods`, the
//! `DisruptionAllowed` condition) current from the pods it selects and the scale of their
//! controllers, and resets pods' stale `DisruptionTarget` conditions.

pub mod controller;
pub mod status;

use futures::future::FutureExt;

use crate::machinery::ControllerDescriptor;

/// The identity it acts as with `--use-service-account-credentials`.
pub const SERVICE_ACCOUNT: &str = "disruption-controller";

/// Registry entry.
pub fn descriptor() -> ControllerDescriptor {
    ControllerDescriptor {
        name: "disruption-controller",
        enabled_by_default: true,
        start: |ctx| controller::run(ctx).boxed(),
    }
}
