//! device-taint-eviction-controller (feature gate DRADeviceTaints): evicts pods that use,
//! through allocated ResourceClaims, devices with NoExecute taints (from their
//! ResourceSlice or from DeviceTaintRules) that the allocation does not tolerate, at once or
//! after the tolerations' `tolerationSeconds`.

pub mod controller;
pub mod rule;
pub mod taints;

use futures::future::FutureExt;

use crate::machinery::ControllerDescriptor;

/// The identity of the controller with `--use-service-account-credentials`.
pub const SERVICE_ACCOUNT: &str = "device-taint-eviction-controller";

/// Registry entry.
pub fn descriptor() -> ControllerDescriptor {
    ControllerDescriptor {
        name: "device-taint-eviction-controller",
        enabled_by_default: true,
        start: |ctx| controller::run(ctx).boxed(),
    }
}
