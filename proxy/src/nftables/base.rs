//! The fixed part of the table, written on every full sync: base chains hooked into
//! netfilter, the top-level chains they jump to, the dispatch verdict maps and sets, the
//! masquerade-mark chains and the reject/no-endpoint plumbing — upstream's layout.

use super::elements::ElementStore;
use super::tx::{nft_family, Transaction};
use super::NftConfig;
use crate::model::IpFamily;

/// Chains with a netfilter hook: (name, type, hook, priority).
pub const BASE_CHAINS: &[(&str, &str, &str, i32)] = &[
    ("filter-prerouting-pre-dnat", "filter", "prerouting", -110),
    ("filter-output-pre-dnat", "filter", "output", -110),
    ("filter-input", "filter", "input", 0),
    ("filter-forward", "filter", "forward", 0),
    ("filter-output", "filter", "output", 0),
    ("nat-prerouting", "nat", "prerouting", -100),
    ("nat-output", "nat", "output", -100),
    ("nat-postrouting", "nat", "postrouting", 100),
];

/// Jumps from base chains: (target, source, match).
const JUMPS: &[(&str, &str, &str)] = &[
    ("nodeport-endpoints-check", "filter-input", "ct state new"),
    ("service-endpoints-check", "filter-input", "ct state new"),
    ("service-endpoints-check", "filter-forward", "ct state new"),
    ("service-endpoints-check", "filter-output", "ct state new"),
    (
        "firewall-check",
        "filter-prerouting-pre-dnat",
        "ct state new",
    ),
    ("firewall-check", "filter-output-pre-dnat", "ct state new"),
    ("services", "nat-output", ""),
    ("services", "nat-prerouting", ""),
    ("masquerading", "nat-postrouting", ""),
    ("cluster-ips-check", "filter-forward", "ct state new"),
    ("cluster-ips-check", "filter-output", "ct state new"),
];

/// The sets and maps a sync fills, as element stores.
#[derive(Debug, Clone)]
pub struct Stores {
    /// `cluster-ips`: every active ClusterIP.
    pub cluster_ips: ElementStore,
    /// `service-ips`: ClusterIP/externalIP/LB IP . proto . port → service chain.
    pub service_ips: ElementStore,
    /// `service-nodeports`: proto . nodePort → external chain.
    pub service_nodeports: ElementStore,
    /// `no-endpoint-services`: reject/drop for services without (local) endpoints.
    pub no_endpoint_services: ElementStore,
    /// `no-endpoint-nodeports`: the same for NodePorts.
    pub no_endpoint_nodeports: ElementStore,
    /// `firewall-ips`: LB IPs with loadBalancerSourceRanges → firewall chain.
    pub firewall_ips: ElementStore,
}

impl Default for Stores {
    fn default() -> Self {
        Stores {
            cluster_ips: ElementStore::new("set", "cluster-ips"),
            service_ips: ElementStore::new("map", "service-ips"),
            service_nodeports: ElementStore::new("map", "service-nodeports"),
            no_endpoint_services: ElementStore::new("map", "no-endpoint-services"),
            no_endpoint_nodeports: ElementStore::new("map", "no-endpoint-nodeports"),
            firewall_ips: ElementStore::new("map", "firewall-ips"),
        }
    }
}

impl Stores {
    /// Every store, in a fixed order.
    pub fn all_mut(&mut self) -> [&mut ElementStore; 6] {
        [
            &mut self.cluster_ips,
            &mut self.service_ips,
            &mut self.service_nodeports,
            &mut self.no_endpoint_services,
            &mut self.no_endpoint_nodeports,
            &mut self.firewall_ips,
        ]
    }
}

/// `ipv4_addr` / `ipv6_addr`.
pub fn addr_type(family: IpFamily) -> &'static str {
    match family {
        IpFamily::V4 => "ipv4_addr",
        IpFamily::V6 => "ipv6_addr",
    }
}

/// Writes the fixed layout. `first` re-creates base chains (add + delete first) so a
/// changed priority from an older version cannot fail the transaction.
pub fn write_base(tx: &mut Transaction, cfg: &NftConfig, stores: &mut Stores, first: bool) {
    let ip = nft_family(cfg.family);
    let addr = addr_type(cfg.family);
    let no_localhost = match cfg.family {
        IpFamily::V4 => "ip daddr != 127.0.0.0/8",
        IpFamily::V6 => "ip6 daddr != ::1",
    };
    let mark = cfg.mark();
    tx.add_table();
    if first {
        for (name, ..) in BASE_CHAINS {
            tx.add_chain(name);
            tx.delete_chain(name);
        }
    }
    for (name, kind, hook, priority) in BASE_CHAINS {
        tx.add_base_chain(name, kind, hook, *priority);
        tx.flush_chain(name);
    }
    let mut created: Vec<&str> = Vec::new();
    let mut ensure = |tx: &mut Transaction, chain: &'static str| {
        if !created.contains(&chain) {
            created.push(chain);
            tx.add_chain(chain);
            tx.flush_chain(chain);
        }
    };
    for (target, source, matches) in JUMPS {
        ensure(tx, target);
        let rule = if matches.is_empty() {
            format!("jump {target}")
        } else {
            format!("{matches} jump {target}")
        };
        tx.add_rule(source, &rule, None);
    }
    for chain in [
        "services",
        "cluster-ips-check",
        "masquerading",
        "mark-for-masquerade",
        "firewall-check",
    ] {
        ensure(tx, chain);
    }
    tx.add_rule(
        "mark-for-masquerade",
        &format!("mark set mark or {mark}"),
        None,
    );
    tx.add_rule(
        "masquerading",
        &format!("mark and {mark} == 0 return"),
        None,
    );
    tx.add_rule("masquerading", &format!("mark set mark xor {mark}"), None);
    tx.add_rule("masquerading", "masquerade fully-random", None);

    tx.add_container(
        "set",
        "cluster-ips",
        &format!("type {addr} ; comment \"Active ClusterIPs\" ;"),
    );
    write_cluster_ips_check(tx, cfg);

    tx.add_container(
        "set",
        "nodeport-ips",
        &format!("type {addr} ; comment \"IPs that accept NodePort traffic\" ;"),
    );
    match &cfg.nodeport_ips {
        None => tx.delete_container("set", "nodeport-ips"),
        Some(ips) => {
            tx.flush_container("set", "nodeport-ips");
            for node_ip in ips.iter().filter(|i| !i.is_loopback()) {
                tx.add_element("nodeport-ips", &node_ip.to_string(), None, None);
            }
        }
    }

    let verdict_map = |key: &str| format!("type {key} : verdict ;");
    tx.add_container(
        "map",
        "no-endpoint-services",
        &format!(
            "{} comment \"vmap to drop or reject packets to services with no endpoints\" ;",
            verdict_map(&format!("{addr} . inet_proto . inet_service"))
        ),
    );
    tx.add_container(
        "map",
        "no-endpoint-nodeports",
        &format!("{} comment \"vmap to drop or reject packets to service nodeports with no endpoints\" ;", verdict_map("inet_proto . inet_service")),
    );
    tx.add_chain_commented(
        "reject-chain",
        "helper for @no-endpoint-services / @no-endpoint-nodeports",
    );
    tx.flush_chain("reject-chain");
    tx.add_rule("reject-chain", "reject", None);
    tx.add_rule(
        "service-endpoints-check",
        &format!("{ip} daddr . meta l4proto . th dport vmap @no-endpoint-services"),
        None,
    );
    let nodeport_match = match cfg.nodeport_ips {
        None => no_localhost.to_string(),
        Some(_) => format!("{ip} daddr @nodeport-ips"),
    };
    tx.add_rule(
        "nodeport-endpoints-check",
        &format!("{nodeport_match} meta l4proto . th dport vmap @no-endpoint-nodeports"),
        None,
    );

    tx.add_container(
        "map",
        "firewall-ips",
        &format!(
            "{} comment \"destinations that are subject to LoadBalancerSourceRanges\" ;",
            verdict_map(&format!("{addr} . inet_proto . inet_service"))
        ),
    );
    tx.add_rule(
        "firewall-check",
        &format!("{ip} daddr . meta l4proto . th dport vmap @firewall-ips"),
        None,
    );

    tx.add_container(
        "map",
        "service-ips",
        &format!(
            "{} comment \"ClusterIP, ExternalIP and LoadBalancer IP traffic\" ;",
            verdict_map(&format!("{addr} . inet_proto . inet_service"))
        ),
    );
    tx.add_container(
        "map",
        "service-nodeports",
        &format!(
            "{} comment \"NodePort traffic\" ;",
            verdict_map("inet_proto . inet_service")
        ),
    );
    tx.add_rule(
        "services",
        &format!("{ip} daddr . meta l4proto . th dport vmap @service-ips"),
        None,
    );
    let nodeport_dispatch = match cfg.nodeport_ips {
        None => format!("fib daddr type local {no_localhost}"),
        Some(_) => format!("{ip} daddr @nodeport-ips"),
    };
    tx.add_rule(
        "services",
        &format!("{nodeport_dispatch} meta l4proto . th dport vmap @service-nodeports"),
        None,
    );
    for store in stores.all_mut() {
        store.flush(tx);
    }
}

/// The rules of `cluster-ips-check` (the chain exists and is empty): reject new
/// connections to a ClusterIP's undefined ports, drop those to unallocated addresses of
/// the Service CIDRs. Rewritten alone when only the ServiceCIDRs changed.
pub fn write_cluster_ips_check(tx: &mut Transaction, cfg: &NftConfig) {
    let ip = nft_family(cfg.family);
    tx.add_rule(
        "cluster-ips-check",
        &format!("{ip} daddr @cluster-ips reject"),
        Some("Reject traffic to invalid ports of ClusterIPs"),
    );
    if !cfg.service_cidrs.is_empty() {
        let cidrs: Vec<String> = cfg.service_cidrs.iter().map(|c| c.to_string()).collect();
        tx.add_rule(
            "cluster-ips-check",
            &format!("{ip} daddr {{ {} }} drop", cidrs.join(", ")),
            Some("Drop traffic to unallocated ClusterIPs"),
        );
    }
}
