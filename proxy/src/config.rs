//! What the proxier of one family (nftables or iptables) needs to know besides Services
//! and endpoints.

use crate::model::{Cidr, IpFamily};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// Settings of one family's proxier (from flags / KubeProxyConfiguration).
#[derive(Debug, Clone)]
pub struct ProxierConfig {
    /// The family (`ip` or `ip6` table).
    pub family: IpFamily,
    /// `--iptables-masquerade-bit` (default 14): the mark bit for SNAT.
    pub masquerade_bit: u32,
    /// `--masquerade-all`: SNAT all ClusterIP traffic.
    pub masquerade_all: bool,
    /// `--cluster-cidr` of this family: traffic from outside it is masqueraded.
    pub cluster_cidr: Option<Cidr>,
    /// Node IPs accepting NodePorts (`--nodeport-addresses`); `None` means every local IP.
    pub nodeport_ips: Option<Vec<IpAddr>>,
    /// Service CIDRs of this family (unallocated ClusterIPs are dropped); may be empty.
    pub service_cidrs: Vec<Cidr>,
    /// This node's primary IP of this family (for loadBalancerSourceRanges).
    pub node_ip: Option<IpAddr>,
    /// This Node's name.
    pub node_name: String,
    /// This Node's labels (topology zone).
    pub node_labels: BTreeMap<String, String>,
    /// iptables mode: `--iptables-localhost-nodeports` (IPv4 NodePorts on 127.0.0.0/8,
    /// guarded by the `KUBE-FIREWALL` localnet rule).
    pub localhost_nodeports: bool,
    /// `--conntrack-tcp-be-liberal`: when false (default) the iptables proxier drops
    /// conntrack-INVALID forwarded packets.
    pub conntrack_tcp_liberal: bool,
}

impl ProxierConfig {
    /// Defaults for `family` on `node_name`: upstream's mark bit, nothing masqueraded.
    pub fn new(family: IpFamily, node_name: &str) -> Self {
        ProxierConfig {
            family,
            masquerade_bit: 14,
            masquerade_all: false,
            cluster_cidr: None,
            nodeport_ips: None,
            service_cidrs: Vec::new(),
            node_ip: None,
            node_name: node_name.to_string(),
            node_labels: BTreeMap::new(),
            localhost_nodeports: true,
            conntrack_tcp_liberal: false,
        }
    }

    /// The masquerade mark as nft and iptables spell it, e.g. `0x4000`.
    pub fn mark(&self) -> String {
        format!("{:#x}", 1u32 << self.masquerade_bit.min(31))
    }
}
