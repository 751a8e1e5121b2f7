//! resourcequota-controller: keeps every ResourceQuota's `status.hard` and `status.used`
//! current (pods and compute, services, claims and storage classes, object counts of any
//! served kind), with scopes, a full resync every `--resource-quota-sync-period` and
//! replenishment when objects are deleted or pods finish.

pub mod controller;
pub mod pods;
pub mod triggers;
pub mod usage;

use futures::future::FutureExt;

use crate::machinery::ControllerDescriptor;

/// The identity it acts as with `--use-service-account-credentials`.
pub const SERVICE_ACCOUNT: &str = "resourcequota-controller";

/// Registry entry.
pub fn descriptor() -> ControllerDescriptor {
    ControllerDescriptor {
        name: "resourcequota",
        enabled_by_default: true,
        start: |ctx| controller::run(ctx).boxed(),
    }
}
