//! Controllers of the `admissionregistration.k8s.io` API group.

pub mod vap_status;

use crate::registry::ControllerDescriptor;

/// Every admissionregistration controller this crate implements.
pub fn descriptors() -> Vec<ControllerDescriptor> {
    vec![vap_status::descriptor()]
}
