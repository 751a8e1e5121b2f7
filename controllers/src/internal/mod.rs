//! Controllers of the `internal.apiserver.k8s.io` API group.

pub mod storageversion_gc;
