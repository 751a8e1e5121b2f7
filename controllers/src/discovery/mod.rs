//! Controllers of the `discovery.k8s.io` API group: the EndpointSlice controller (which
//! also keeps the legacy Endpoints) and EndpointSlice mirroring.

pub mod endpoints;
pub mod endpointslice_mirroring;
