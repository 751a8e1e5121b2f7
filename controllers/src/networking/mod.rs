//! Controllers of the `networking.k8s.io` API group.

pub mod service_cidr;
