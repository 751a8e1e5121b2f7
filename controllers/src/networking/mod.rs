//! Controllers of the `networking.k8s.io` API group.

pub mod service_cidr;

use crate::registry::ControllerDescriptor;

/// Every networking controller this crate implements.
pub fn descriptors() -> Vec<ControllerDescriptor> {
    vec![service_cidr::descriptor()]
}
