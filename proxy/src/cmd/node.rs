//! What kube-proxy learns about its own Node and host: primary IPs, labels, and the
//! local addresses that `--nodeport-addresses` selects.

use k8s_openapi::api::core::v1::Node;
use proxy::model::{Cidr, IpFamily};
use std::net::IpAddr;

/// The Node's InternalIPs (else ExternalIPs), in order.
pub fn node_ips(node: &Node) -> Vec<IpAddr> {
    let addrs = node.status.as_ref().and_then(|s| s.addresses.as_ref());
    let of = |kind: &str| -> Vec<IpAddr> {
        addrs
            .into_iter()
            .flatten()
            .filter(|a| a.type_ == kind)
            .filter_map(|a| a.address.parse().ok())
            .collect()
    };
    let internal = of("InternalIP");
    if internal.is_empty() {
        of("ExternalIP")
    } else {
        internal
    }
}

/// Every address on this host's interfaces (`ip -j addr`).
pub fn local_addresses() -> Vec<IpAddr> {
    let Ok(out) = std::process::Command::new("ip")
        .args(["-j", "addr", "show"])
        .output()
    else {
        return Vec::new();
    };
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    json.as_array()
        .into_iter()
        .flatten()
        .flat_map(|link| link["addr_info"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a["local"].as_str().and_then(|s| s.parse().ok()))
        .collect()
}

/// The NodePort addresses of `family` for `--nodeport-addresses` (`None`: all local IPs).
pub fn nodeport_ips(
    spec: &[String],
    family: IpFamily,
    node_ips: &[IpAddr],
    local: &[IpAddr],
) -> Option<Vec<IpAddr>> {
    if spec.is_empty() {
        return None;
    }
    if spec.iter().any(|s| s == "primary") {
        return Some(
            node_ips
                .iter()
                .filter(|ip| IpFamily::of(ip) == family)
                .copied()
                .collect(),
        );
    }
    let cidrs: Vec<Cidr> = spec
        .iter()
        .filter_map(|s| s.parse().ok())
        .filter(|c: &Cidr| IpFamily::of(&c.addr) == family)
        .collect();
    Some(
        local
            .iter()
            .filter(|ip| cidrs.iter().any(|c| c.contains(ip)))
            .copied()
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodeport_address_selection() {
        let local: Vec<IpAddr> = ["127.0.0.1", "10.0.0.5", "192.168.1.2", "fd00::5"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(nodeport_ips(&[], IpFamily::V4, &[], &local), None);
        let got = nodeport_ips(&["10.0.0.0/8".into()], IpFamily::V4, &[], &local).unwrap();
        assert_eq!(got, vec!["10.0.0.5".parse::<IpAddr>().unwrap()]);
        let node = ["192.168.1.2".parse().unwrap()];
        assert_eq!(
            nodeport_ips(&["primary".into()], IpFamily::V4, &node, &local).unwrap(),
            node.to_vec()
        );
        assert!(
            nodeport_ips(&["primary".into()], IpFamily::V6, &node, &local)
                .unwrap()
                .is_empty()
        );
    }
}
