//! endpointslice-controller and endpoints-controller: a selector Service's pods become
//! EndpointSlices (discovery.k8s.io/v1) and the legacy Endpoints object.

pub mod controller;
pub mod efficiency;
pub mod legacy;
pub mod metrics;
pub mod pods;
pub mod slices;

use futures::future::FutureExt;

use crate::machinery::ControllerDescriptor;

/// Registry entry of endpointslice-controller.
pub fn slice_descriptor() -> ControllerDescriptor {
    ControllerDescriptor {
        name: "endpointslice",
        enabled_by_default: true,
        start: |ctx| controller::run(ctx, controller::Kind::Slices).boxed(),
    }
}

/// Registry entry of endpoints-controller.
pub fn endpoints_descriptor() -> ControllerDescriptor {
    ControllerDescriptor {
        name: "endpoint",
        enabled_by_default: true,
        start: |ctx| controller::run(ctx, controller::Kind::Endpoints).boxed(),
    }
}
