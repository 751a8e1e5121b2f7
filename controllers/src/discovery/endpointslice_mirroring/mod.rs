//! endpointslice-mirroring-controller: the hand-written Endpoints of a Service without a
//! selector become EndpointSlices (one per address type and port set, at most
//! `--mirroring-max-endpoints-per-subset` endpoints), owned by the Endpoints and labelled
//! `endpointslice.kubernetes.io/managed-by: endpointslicemirroring-controller.k8s.io`.
//! Endpoints labelled `endpointslice.kubernetes.io/skip-mirror: "true"` (those the
//! endpoints controller writes) and leader-election records are not mirrored.

pub mod controller;
pub mod desired;
pub mod metrics;
pub mod plan;
pub mod tracker;

use futures::future::FutureExt;

use crate::machinery::ControllerDescriptor;

/// `endpointslice.kubernetes.io/managed-by` value of mirrored slices.
pub const MANAGED_BY: &str = "endpointslicemirroring-controller.k8s.io";
/// The identity it acts as with `--use-service-account-credentials`.
pub const SERVICE_ACCOUNT: &str = "endpointslicemirroring-controller";
/// The event source, as upstream's.
pub const COMPONENT: &str = "endpoint-slice-mirroring-controller";
/// Upstream's `--mirroring-max-endpoints-per-subset` default.
pub const MAX_ENDPOINTS_PER_SUBSET: usize = 1000;

/// Registry entry of endpointslice-mirroring-controller.
pub fn descriptor() -> ControllerDescriptor {
    ControllerDescriptor {
        name: "endpointslicemirroring",
        enabled_by_default: true,
        start: |ctx| controller::run(ctx).boxed(),
    }
}
