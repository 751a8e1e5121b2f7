//! Controllers of the `internal.apiserver.k8s.io` API group.

pub mod storageversion_gc;

use crate::registry::ControllerDescriptor;

/// Every internal.apiserver.k8s.io controller this crate implements.
pub fn descriptors() -> Vec<ControllerDescriptor> {
    vec![storageversion_gc::descriptor()]
}
