//! Upstream's iptables chain names: the fixed top-level chains and the per-service-port
//! `KUBE-SVC-`/`KUBE-SVL-`/`KUBE-EXT-`/`KUBE-FW-` chains and per-endpoint `KUBE-SEP-`
//! chains, named by the first 16 characters of base32(sha256(…)) so that a node switching
//! binaries keeps (and cleans up) the same chains.

use crate::model::{Endpoint, ServicePortName};
use sha2::{Digest, Sha256};

/// `KUBE-SERVICES` (filter and nat): service portals.
pub const SERVICES: &str = "KUBE-SERVICES";
/// `KUBE-EXTERNAL-SERVICES` (filter): reject/drop for external destinations.
pub const EXTERNAL_SERVICES: &str = "KUBE-EXTERNAL-SERVICES";
/// `KUBE-NODEPORTS` (filter: health check ports; nat: NodePorts).
pub const NODEPORTS: &str = "KUBE-NODEPORTS";
/// `KUBE-POSTROUTING` (nat): masquerade marked packets.
pub const POSTROUTING: &str = "KUBE-POSTROUTING";
/// `KUBE-MARK-MASQ` (nat): set the masquerade mark.
pub const MARK_MASQ: &str = "KUBE-MARK-MASQ";
/// `KUBE-FORWARD` (filter): accept marked and established forwarded traffic.
pub const FORWARD: &str = "KUBE-FORWARD";
/// `KUBE-PROXY-FIREWALL` (filter): loadBalancerSourceRanges drops.
pub const PROXY_FIREWALL: &str = "KUBE-PROXY-FIREWALL";
/// `KUBE-FIREWALL` (filter): kubelet's localnet guard, also ensured by kube-proxy.
pub const KUBELET_FIREWALL: &str = "KUBE-FIREWALL";

/// Per-service chain prefixes (upstream's `isServiceChainName`).
const SERVICE_CHAIN_PREFIXES: [&str; 5] = [
    "KUBE-SVC-",
    "KUBE-SVL-",
    "KUBE-EXT-",
    "KUBE-FW-",
    "KUBE-SEP-",
];

/// A jump from a built-in chain to one of ours: (table, target, source, comment, extra
/// match arguments), as upstream's `iptablesJumpChains`.
pub type Jump = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static [&'static str],
);

const NEW: &[&str] = &["-m", "conntrack", "--ctstate", "NEW"];

/// The jumps kube-proxy ensures on every full sync.
pub const JUMPS: &[Jump] = &[
    (
        "filter",
        EXTERNAL_SERVICES,
        "INPUT",
        "kubernetes externally-visible service portals",
        NEW,
    ),
    (
        "filter",
        EXTERNAL_SERVICES,
        "FORWARD",
        "kubernetes externally-visible service portals",
        NEW,
    ),
    (
        "filter",
        NODEPORTS,
        "INPUT",
        "kubernetes health check service ports",
        &[],
    ),
    (
        "filter",
        SERVICES,
        "FORWARD",
        "kubernetes service portals",
        NEW,
    ),
    (
        "filter",
        SERVICES,
        "OUTPUT",
        "kubernetes service portals",
        NEW,
    ),
    (
        "filter",
        FORWARD,
        "FORWARD",
        "kubernetes forwarding rules",
        &[],
    ),
    (
        "filter",
        PROXY_FIREWALL,
        "INPUT",
        "kubernetes load balancer firewall",
        NEW,
    ),
    (
        "filter",
        PROXY_FIREWALL,
        "OUTPUT",
        "kubernetes load balancer firewall",
        NEW,
    ),
    (
        "filter",
        PROXY_FIREWALL,
        "FORWARD",
        "kubernetes load balancer firewall",
        NEW,
    ),
    ("nat", SERVICES, "OUTPUT", "kubernetes service portals", &[]),
    (
        "nat",
        SERVICES,
        "PREROUTING",
        "kubernetes service portals",
        &[],
    ),
    (
        "nat",
        POSTROUTING,
        "POSTROUTING",
        "kubernetes postrouting rules",
        &[],
    ),
    // Kubelet's; ensured but never removed by --cleanup (as upstream).
    ("filter", KUBELET_FIREWALL, "INPUT", "", &[]),
    ("filter", KUBELET_FIREWALL, "OUTPUT", "", &[]),
];

fn hash16(input: &str) -> String {
    let hash = Sha256::digest(input.as_bytes());
    let mut encoded = data_encoding::BASE32.encode(&hash);
    encoded.truncate(16);
    encoded
}

/// The chain names of one service port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceChains {
    /// `KUBE-SVC-…`: Cluster-policy endpoint selection.
    pub cluster: String,
    /// `KUBE-SVL-…`: Local-policy endpoint selection.
    pub local: String,
    /// `KUBE-EXT-…`: traffic to external destinations (NodePort, externalIPs, LB IPs).
    pub external: String,
    /// `KUBE-FW-…`: loadBalancerSourceRanges.
    pub firewall: String,
}

impl ServiceChains {
    /// The names for `name` (hash of `ns/svc:port` + lower-case protocol).
    pub fn new(name: &ServicePortName) -> Self {
        let hash = hash16(&format!("{name}{}", name.protocol.lower()));
        ServiceChains {
            cluster: format!("KUBE-SVC-{hash}"),
            local: format!("KUBE-SVL-{hash}"),
            external: format!("KUBE-EXT-{hash}"),
            firewall: format!("KUBE-FW-{hash}"),
        }
    }
}

/// `KUBE-SEP-…` of one endpoint of a service port (hash of `ns/svc:port` + protocol +
/// `ip:port`).
pub fn endpoint_chain(name: &ServicePortName, ep: &Endpoint) -> String {
    format!(
        "KUBE-SEP-{}",
        hash16(&format!("{name}{}{}", name.protocol.lower(), ep.addr))
    )
}

/// Whether `chain` is a per-service or per-endpoint chain of ours.
pub fn is_service_chain(chain: &str) -> bool {
    SERVICE_CHAIN_PREFIXES.iter().any(|p| chain.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Protocol, ServiceName};

    fn port(ns: &str, svc: &str) -> ServicePortName {
        ServicePortName {
            service: ServiceName::new(ns, svc),
            port: "p80".into(),
            protocol: Protocol::Tcp,
        }
    }

    /// The names upstream's own TestOverallIPTablesRules shows.
    #[test]
    fn hashes_match_upstream() {
        assert_eq!(
            ServiceChains::new(&port("ns1", "svc1")).cluster,
            "KUBE-SVC-XPGD46QRK7WJZT7O"
        );
        assert_eq!(
            ServiceChains::new(&port("ns2", "svc2")).external,
            "KUBE-EXT-GNZBNJ2PO5MGZ6GT"
        );
        assert_eq!(
            ServiceChains::new(&port("ns5", "svc5")).firewall,
            "KUBE-FW-NUKIZ6OKUXPJNT4C"
        );
        let ep = Endpoint::ready("10.180.0.1:80".parse().unwrap(), false);
        assert_eq!(
            endpoint_chain(&port("ns1", "svc1"), &ep),
            "KUBE-SEP-SXIVWICOYRO3J4NJ"
        );
        assert!(is_service_chain("KUBE-SEP-SXIVWICOYRO3J4NJ"));
        assert!(!is_service_chain(SERVICES) && !is_service_chain(MARK_MASQ));
    }
}
