//! Dynamic resource allocation (resource.k8s.io, issue 18): resourceclaim-controller
//! (claims from templates, `status.reservedFor`, deallocation) and
//! device-taint-eviction-controller (pods using devices with NoExecute taints).

pub mod claim;
pub mod device_taint;
