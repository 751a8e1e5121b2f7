//! Storage controllers (issue 18): volumes and their attachment to nodes.

pub mod attach_detach;

use crate::registry::ControllerDescriptor;

/// Every storage controller this crate implements.
pub fn descriptors() -> Vec<ControllerDescriptor> {
    vec![attach_detach::descriptor()]
}
