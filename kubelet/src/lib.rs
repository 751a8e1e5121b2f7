//! ferrokube's kubelet: registers the node, keeps its Lease and status, and runs the pods
//! bound to it through CRI v1, as upstream's kubelet does.

pub mod app;
pub mod certificate;
pub mod cgroups;
pub mod cni;
pub mod config;
pub mod container_gc;
pub mod cri;
pub mod events;
pub mod eviction;
pub mod hooks;
pub mod image;
pub mod manager;
pub mod metrics;
pub mod node;
pub mod pod;
pub mod prober;
pub mod runtime;
pub mod server;
pub mod static_pods;
pub mod stats;
pub mod testing;
pub mod volumes;
