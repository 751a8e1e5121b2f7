//! ferrokube's kube-proxy: Services and EndpointSlices programmed into the kernel's
//! nftables (one atomic `nft -f` transaction per sync), as upstream's `nftables` proxier.

pub mod conntrack;
pub mod metrics;
pub mod model;
pub mod nftables;
pub mod sync;
