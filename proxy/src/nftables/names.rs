//! Upstream's nftables object names, so a node switching binaries keeps the same table:
//! `service-HASH-ns/name/proto/port`, `endpoint-HASH-ns/name/proto/port__ip/port`, where
//! HASH is the first 8 characters of base32(sha256(name)).

use crate::model::{Endpoint, ServicePortName};
use sha2::{Digest, Sha256};

/// The table's name in both families.
pub const TABLE: &str = "kube-proxy";
/// nftables' maximum object name length.
const NAME_LENGTH_MAX: usize = 256;
/// Room left for the longest prefix (`external-`, `affinity-`, …).
const BASE_LENGTH_MAX: usize = NAME_LENGTH_MAX - 16;

/// Prefixes `name` with a hash of itself, truncating (with `...`) to fit nftables' limit.
pub fn hash_and_truncate(name: &str) -> String {
    let hash = Sha256::digest(name.as_bytes());
    let encoded = data_encoding::BASE32.encode(&hash);
    let mut out = format!("{}-{}", &encoded[..8], name);
    if out.len() > BASE_LENGTH_MAX {
        out.truncate(BASE_LENGTH_MAX - 3);
        out.push_str("...");
    }
    out
}

/// The per-service-port base name, e.g. `ULMVA6XW-ns1/svc1/tcp/p80`.
pub fn service_base(name: &ServicePortName) -> String {
    hash_and_truncate(&format!(
        "{}/{}/{}/{}",
        name.service.namespace,
        name.service.name,
        name.protocol.lower(),
        name.port
    ))
}

/// The per-endpoint base name, e.g. `5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80` (IPv6
/// colons become dots, which chain names allow).
pub fn endpoint_base(name: &ServicePortName, ep: &Endpoint) -> String {
    hash_and_truncate(&format!(
        "{}/{}/{}/{}__{}/{}",
        name.service.namespace,
        name.service.name,
        name.protocol.lower(),
        name.port,
        ep.ip().to_string().replace(':', "."),
        ep.addr.port()
    ))
}

/// The chain and set names of one service port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceChains {
    /// `service-…`: Cluster-policy endpoint selection.
    pub cluster: String,
    /// `local-…`: Local-policy endpoint selection.
    pub local: String,
    /// `external-…`: traffic from outside (NodePort, externalIPs, LoadBalancer).
    pub external: String,
    /// `firewall-…`: loadBalancerSourceRanges.
    pub firewall: String,
}

impl ServiceChains {
    /// The names for `name`.
    pub fn new(name: &ServicePortName) -> Self {
        let base = service_base(name);
        ServiceChains {
            cluster: format!("service-{base}"),
            local: format!("local-{base}"),
            external: format!("external-{base}"),
            firewall: format!("firewall-{base}"),
        }
    }
}

/// `endpoint-…` chain and `affinity-…` set names of one endpoint of a service port.
pub fn endpoint_names(name: &ServicePortName, ep: &Endpoint) -> (String, String) {
    let base = endpoint_base(name, ep);
    (format!("endpoint-{base}"), format!("affinity-{base}"))
}

/// Whether a chain is one of the per-service/per-endpoint chains (they all contain `/`).
pub fn is_service_chain(chain: &str) -> bool {
    chain.contains('/')
}

/// Whether a set is a ClientIP affinity set.
pub fn is_affinity_set(set: &str) -> bool {
    set.starts_with("affinity-")
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

    /// The hashes upstream's own golden tests show for these names.
    #[test]
    fn hashes_match_upstream() {
        assert_eq!(
            ServiceChains::new(&port("ns1", "svc1")).cluster,
            "service-ULMVA6XW-ns1/svc1/tcp/p80"
        );
        assert_eq!(
            ServiceChains::new(&port("ns2", "svc2")).external,
            "external-42NFTM6N-ns2/svc2/tcp/p80"
        );
        let ep = Endpoint::ready("10.180.0.1:80".parse().unwrap(), false);
        assert_eq!(
            endpoint_names(&port("ns1", "svc1"), &ep).0,
            "endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80"
        );
        let ep = Endpoint::ready("10.180.0.3:80".parse().unwrap(), false);
        assert_eq!(
            endpoint_names(&port("ns5", "svc5"), &ep).1,
            "affinity-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80"
        );
    }

    #[test]
    fn long_names_are_truncated_and_ipv6_colons_replaced() {
        let long = "a".repeat(300);
        let n = hash_and_truncate(&long);
        assert_eq!(n.len(), BASE_LENGTH_MAX);
        assert!(n.ends_with("..."));
        let ep = Endpoint::ready("[fd00::1]:80".parse().unwrap(), false);
        assert!(endpoint_base(&port("ns", "s"), &ep).ends_with("__fd00..1/80"));
        assert!(is_service_chain("service-X-a/b/tcp/p") && !is_service_chain("services"));
    }
}
