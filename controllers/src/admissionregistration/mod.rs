//! Controllers of the `admissionregistration.k8s.io` API group.

pub mod vap_status;
