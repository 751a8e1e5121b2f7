//! Cluster-lifecycle controllers (issue 5): service accounts, namespaces, garbage
//! collection, endpoints, nodes, certificates, quota.

use crate::registry::ControllerDescriptor;

/// Every cluster-lifecycle controller this crate implements.
pub fn descriptors() -> Vec<ControllerDescriptor> {
    Vec::new()
}
