//! Controllers of `certificates.k8s.io` behind feature gates that are off by default:
//! the podcertificaterequest-cleaner ([`pcr_cleaner`], gate PodCertificateRequest) and the
//! kube-apiserver-serving-clustertrustbundle-publisher ([`ctb_publisher`], gate
//! ClusterTrustBundle).

pub mod ctb_publisher;
pub mod pcr_cleaner;

use crate::registry::ControllerDescriptor;

/// Every controller of this module.
pub fn descriptors() -> Vec<ControllerDescriptor> {
    vec![pcr_cleaner::descriptor(), ctb_publisher::descriptor()]
}
