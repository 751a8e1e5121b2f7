//! What kube-proxy reads back from the kernel's tools: `nft -j list table`,
//! `iptables-save -t TABLE` and conntrack's summary line.

/// Feeds the text to each reader.
pub fn fuzz(data: &[u8]) {
    let s = crate::text(data);
    let _ = proxy::nftables::runner::parse_inventory(&s);
    let _ = proxy::iptables::runner::parse_chains(&s);
    let _ = proxy::conntrack::parse_deleted(&s);
}
