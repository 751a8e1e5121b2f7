//! ferrokube's kube-proxy: Services and EndpointSlices programmed into the kernel's
//! nftables (one atomic `nft -f` transaction per sync) or iptables (one iptables-restore
//! transaction per sync), as upstream's `nftables` and `iptables` proxiers.

pub mod config;
pub mod conntrack;
pub mod healthcheck;
pub mod iptables;
pub mod metrics;
pub mod model;
pub mod nftables;
pub mod sync;
pub mod testing;
