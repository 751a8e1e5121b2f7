//! Cluster-lifecycle controllers (issue 5): service accounts, namespaces, garbage
//! collection, endpoints, nodes, certificates, quota.

pub mod bootstrap;
pub mod certificates;
pub mod clusterrole_aggregation;
pub mod discovery;
pub mod disruption;
pub mod endpoints;
pub mod endpointslice_mirroring;
pub mod ephemeral_volume;
pub mod gc;
pub mod informer;
pub mod namespace;
pub mod node;
pub mod node_ipam;
pub mod pod_eviction;
pub mod podgc;
pub mod queue;
pub mod resourcequota;
pub mod root_ca;
pub mod serviceaccount;
pub mod serviceaccount_token;
pub mod taint_eviction;
pub mod ttl;
pub mod ttl_after_finished;
pub mod vac_protection;
pub mod volume_protection;

use crate::registry::ControllerDescriptor;

/// Every cluster-lifecycle controller this crate implements.
pub fn descriptors() -> Vec<ControllerDescriptor> {
    vec![
        serviceaccount::descriptor(),
        root_ca::descriptor(),
        namespace::descriptor(),
        gc::descriptor(),
        endpoints::slice_descriptor(),
        endpoints::endpoints_descriptor(),
        endpointslice_mirroring::descriptor(),
        node::descriptor(),
        node_ipam::descriptor(),
        taint_eviction::descriptor(),
        resourcequota::descriptor(),
        podgc::descriptor(),
        disruption::descriptor(),
        ttl_after_finished::descriptor(),
        ttl::descriptor(),
        certificates::approver::descriptor(),
        certificates::signer::descriptor(),
        certificates::cleaner::descriptor(),
        clusterrole_aggregation::descriptor(),
        serviceaccount_token::descriptor(),
        serviceaccount_token::legacy_cleaner::descriptor(),
        bootstrap::signer::descriptor(),
        bootstrap::cleaner::descriptor(),
        volume_protection::pvc_descriptor(),
        volume_protection::pv_descriptor(),
        vac_protection::descriptor(),
        ephemeral_volume::descriptor(),
    ]
}
