//! ferrokube's kubelet: registers the node, keeps its Lease and status, and runs the pods
//! bound to it through CRI v1, as upstream's kubelet does.

pub mod cgroups;
pub mod config;
pub mod cri;
pub mod image;
pub mod node;
pub mod pod;
pub mod runtime;
pub mod testing;
pub mod volumes;
