//! What a selector-less Service's Endpoints should look like as EndpointSlices: the
//! Endpoints' subsets repacked as the apiserver's `RepackSubsets` does, every address turned
//! into an endpoint of its address family, at most `max_per_subset` addresses per subset
//! (ready ones first), grouped by address type and port set.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};

use k8s_openapi::api::core::v1::{EndpointAddress, EndpointSubset, Endpoints};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort};

use crate::discovery::endpoints::legacy::SKIP_MIRROR;

/// Annotation of leader-election records kept on Endpoints (never mirrored).
pub const LEADER_ANNOTATION: &str = "control-plane.alpha.kubernetes.io/leader";

/// Whether `endpoints` is mirrored at all: not labelled `skip-mirror: "true"` (the
/// endpoints controller labels its own objects so) and not a leader-election record.
pub fn should_mirror(endpoints: &Endpoints) -> bool {
    let skip = endpoints
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(SKIP_MIRROR))
        .is_some_and(|v| v == "true");
    let leader = endpoints
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(LEADER_ANNOTATION));
    !skip && !leader
}

/// `IPv4` or `IPv6`, as an EndpointSlice's `addressType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AddressType {
    /// `IPv4` (also IPv4-mapped IPv6 addresses, as upstream).
    IPv4,
    /// `IPv6`.
    IPv6,
}

impl AddressType {
    /// The API string.
    pub fn as_str(self) -> &'static str {
        match self {
            AddressType::IPv4 => "IPv4",
            AddressType::IPv6 => "IPv6",
        }
    }

    /// Parses the API string; anything else (e.g. `FQDN`) is `None`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "IPv4" => Some(AddressType::IPv4),
            "IPv6" => Some(AddressType::IPv6),
            _ => None,
        }
    }
}

/// Identifies one mirrored slice: its address type and its port set (order-insensitive).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SliceKey {
    /// The slice's address type.
    pub address_type: String,
    /// The sorted ports, each `name/protocol/port/appProtocol`.
    pub ports: String,
}

impl SliceKey {
    /// The key of a slice with `ports` and `address_type`.
    pub fn new(ports: &[EndpointPort], address_type: &str) -> Self {
        let mut keys: Vec<String> = ports
            .iter()
            .map(|p| {
                format!(
                    "{}/{}/{}/{}",
                    p.name.as_deref().unwrap_or(""),
                    p.protocol.as_deref().unwrap_or(""),
                    p.port.unwrap_or(0),
                    p.app_protocol.as_deref().unwrap_or("")
                )
            })
            .collect();
        keys.sort();
        SliceKey {
            address_type: address_type.to_string(),
            ports: keys.join(","),
        }
    }
}

/// The endpoints and ports one slice should hold.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Group {
    /// The slice's ports, in the order the Endpoints lists them.
    pub ports: Vec<EndpointPort>,
    /// The endpoints, sorted by address (then target UID).
    pub endpoints: Vec<Endpoint>,
}

/// The outcome of [`desired`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Desired {
    /// One group per address type and port set. Groups without endpoints are listed too:
    /// their slices are deleted.
    pub groups: BTreeMap<SliceKey, Group>,
    /// Addresses that are not IPs (upstream's `InvalidIPAddress` event).
    pub invalid: usize,
    /// Addresses left out in total, invalid ones included (beyond `invalid` they were cut
    /// by the per-subset maximum: upstream's `TooManyAddressesToMirror` event).
    pub skipped: usize,
}

impl Desired {
    /// Addresses cut by the per-subset maximum.
    pub fn over_capacity(&self) -> usize {
        self.skipped.saturating_sub(self.invalid)
    }
}

/// Parses an IP as Go's `ParseIPSloppy`: IPv4 octets may have leading zeros (read as
/// decimal). IPv4-mapped IPv6 addresses count as IPv4 and print as such.
pub fn parse_ip(s: &str) -> Option<IpAddr> {
    let ip = s.parse::<IpAddr>().ok().or_else(|| {
        let octets: Vec<&str> = s.split('.').collect();
        if octets.len() != 4 {
            return None;
        }
        let mut out = [0u8; 4];
        for (o, text) in out.iter_mut().zip(octets) {
            if text.is_empty() || text.len() > 3 || !text.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            *o = text.parse().ok()?;
        }
        Some(IpAddr::V4(Ipv4Addr::from(out)))
    })?;
    Some(match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    })
}

/// The endpoint of `address` (its IP re-printed in canonical form) and its address type,
/// or `None` when the address is not an IP.
pub fn endpoint(address: &EndpointAddress, ready: bool) -> Option<(Endpoint, AddressType)> {
    let ip = parse_ip(&address.ip)?;
    let address_type = match ip {
        IpAddr::V4(_) => AddressType::IPv4,
        IpAddr::V6(_) => AddressType::IPv6,
    };
    let endpoint = Endpoint {
        addresses: vec![ip.to_string()],
        conditions: Some(EndpointConditions {
            ready: Some(ready),
            ..Default::default()
        }),
        hostname: address.hostname.clone().filter(|h| !h.is_empty()),
        node_name: address.node_name.clone(),
        target_ref: address.target_ref.clone(),
        ..Default::default()
    };
    Some((endpoint, address_type))
}

/// The ports of a subset as slice ports (a missing name becomes `""`, as upstream).
pub fn slice_ports(ports: &[k8s_openapi::api::core::v1::EndpointPort]) -> Vec<EndpointPort> {
    ports
        .iter()
        .map(|p| EndpointPort {
            name: Some(p.name.clone().unwrap_or_default()),
            port: Some(p.port),
            protocol: p.protocol.clone(),
            app_protocol: p.app_protocol.clone(),
        })
        .collect()
}

/// An address's identity in [`repack`]: its IP and its target's UID.
type AddressKey = (String, String);

fn address_key(a: &EndpointAddress) -> AddressKey {
    let uid = a.target_ref.as_ref().and_then(|r| r.uid.clone());
    (a.ip.clone(), uid.unwrap_or_default())
}

/// A port's identity in [`repack`] (the sentinel `port == -1` stands for "no ports").
type PortKey = (String, i32, String, String);

fn port_key(p: &k8s_openapi::api::core::v1::EndpointPort) -> PortKey {
    (
        p.name.clone().unwrap_or_default(),
        p.port,
        p.protocol.clone().unwrap_or_default(),
        p.app_protocol.clone().unwrap_or_default(),
    )
}

/// Canonical subsets, as the apiserver's `RepackSubsets`: every port is listed with the
/// exact set of addresses behind it (an address not ready for a port in any subset is not
/// ready for it), ports with the same address set share a subset, addresses sorted by IP
/// then target UID.
pub fn repack(subsets: &[EndpointSubset]) -> Vec<EndpointSubset> {
    let mut addresses: HashMap<AddressKey, EndpointAddress> = HashMap::new();
    let mut ports: HashMap<PortKey, k8s_openapi::api::core::v1::EndpointPort> = HashMap::new();
    let mut by_port: BTreeMap<PortKey, BTreeMap<AddressKey, bool>> = BTreeMap::new();
    let sentinel = k8s_openapi::api::core::v1::EndpointPort {
        port: -1,
        ..Default::default()
    };
    for subset in subsets {
        let subset_ports = subset.ports.as_deref().unwrap_or_default();
        let subset_ports: Vec<&k8s_openapi::api::core::v1::EndpointPort> =
            if subset_ports.is_empty() {
                vec![&sentinel]
            } else {
                subset_ports.iter().collect()
            };
        let listed = [
            (&subset.addresses, true),
            (&subset.not_ready_addresses, false),
        ];
        for port in subset_ports {
            let pk = port_key(port);
            ports.entry(pk.clone()).or_insert_with(|| port.clone());
            let set = by_port.entry(pk).or_default();
            for (list, ready) in listed {
                for a in list.iter().flatten() {
                    let ak = address_key(a);
                    addresses.entry(ak.clone()).or_insert_with(|| a.clone());
                    let state = set.entry(ak).or_insert(ready);
                    *state = *state && ready;
                }
            }
        }
    }
    // Ports with identical (address, readiness) sets share a subset; the sentinel only
    // creates a subset of its own when no real port has the same set.
    let mut groups: BTreeMap<Vec<(AddressKey, bool)>, Option<Vec<PortKey>>> = BTreeMap::new();
    for (pk, set) in by_port {
        let set: Vec<(AddressKey, bool)> = set.into_iter().collect();
        let entry = groups.entry(set).or_insert(None);
        if pk.1 > 0 {
            entry.get_or_insert_with(Vec::new).push(pk);
        }
    }
    groups
        .into_iter()
        .map(|(set, pks)| {
            let (mut ready, mut not_ready) = (Vec::new(), Vec::new());
            for (ak, is_ready) in set {
                let a = addresses[&ak].clone();
                if is_ready {
                    ready.push(a);
                } else {
                    not_ready.push(a);
                }
            }
            EndpointSubset {
                addresses: (!ready.is_empty()).then_some(ready),
                not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
                ports: pks.map(|pks| pks.iter().map(|pk| ports[pk].clone()).collect()),
            }
        })
        .collect()
}

/// Sort order of endpoints in a slice: address, then target UID.
fn endpoint_order(e: &Endpoint) -> (Vec<String>, String) {
    let uid = e.target_ref.as_ref().and_then(|r| r.uid.clone());
    (e.addresses.clone(), uid.unwrap_or_default())
}

/// Upstream's endpoint identity within a slice (addresses, hostname, target namespace and
/// name): a later endpoint with the same identity replaces an earlier one.
pub fn endpoint_identity(e: &Endpoint) -> (Vec<String>, String, String, String) {
    let r = e.target_ref.as_ref();
    (
        e.addresses.clone(),
        e.hostname.clone().unwrap_or_default(),
        r.and_then(|r| r.namespace.clone()).unwrap_or_default(),
        r.and_then(|r| r.name.clone()).unwrap_or_default(),
    )
}

/// The slices `endpoints` should have, at most `max_per_subset` addresses per repacked
/// subset (ready ones first).
pub fn desired(endpoints: &Endpoints, max_per_subset: usize) -> Desired {
    let mut out = Desired::default();
    let mut sets: BTreeMap<SliceKey, BTreeMap<_, Endpoint>> = BTreeMap::new();
    for subset in repack(endpoints.subsets.as_deref().unwrap_or_default()) {
        let ports = slice_ports(subset.ports.as_deref().unwrap_or_default());
        let key = |t: AddressType| SliceKey::new(&ports, t.as_str());
        for t in [AddressType::IPv4, AddressType::IPv6] {
            sets.entry(key(t)).or_default();
            out.groups.entry(key(t)).or_insert_with(|| Group {
                ports: ports.clone(),
                endpoints: Vec::new(),
            });
        }
        let listed = [
            (subset.addresses.unwrap_or_default(), true),
            (subset.not_ready_addresses.unwrap_or_default(), false),
        ];
        let total: usize = listed.iter().map(|(l, _)| l.len()).sum();
        let mut added = 0;
        'lists: for (list, ready) in listed {
            for a in &list {
                if added >= max_per_subset {
                    break 'lists;
                }
                match endpoint(a, ready) {
                    Some((ep, t)) => {
                        added += 1;
                        let set = sets.get_mut(&key(t)).expect("initialised above");
                        set.insert(endpoint_identity(&ep), ep);
                    }
                    None => out.invalid += 1,
                }
            }
        }
        out.skipped += total - added;
    }
    for (key, set) in sets {
        let mut eps: Vec<Endpoint> = set.into_values().collect();
        eps.sort_by_key(endpoint_order);
        if let Some(g) = out.groups.get_mut(&key) {
            g.endpoints = eps;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn eps(v: serde_json::Value) -> Endpoints {
        serde_json::from_value(v).unwrap()
    }

    fn ips(g: &Group) -> Vec<(String, Option<bool>)> {
        g.endpoints
            .iter()
            .map(|e| {
                (
                    e.addresses[0].clone(),
                    e.conditions.as_ref().and_then(|c| c.ready),
                )
            })
            .collect()
    }

    #[test]
    fn skip_mirror_and_leader_records_are_not_mirrored() {
        assert!(should_mirror(&eps(json!({"metadata": {"name": "a"}}))));
        assert!(should_mirror(&eps(
            json!({"metadata": {"name": "a", "labels": {SKIP_MIRROR: "false"}}})
        )));
        assert!(!should_mirror(&eps(
            json!({"metadata": {"name": "a", "labels": {SKIP_MIRROR: "true"}}})
        )));
        assert!(!should_mirror(&eps(
            json!({"metadata": {"name": "a", "annotations": {LEADER_ANNOTATION: "{}"}}})
        )));
    }

    #[test]
    fn ips_are_parsed_sloppily_and_reprinted() {
        assert_eq!(parse_ip("010.000.0.1").unwrap().to_string(), "10.0.0.1");
        assert_eq!(parse_ip("::ffff:1.2.3.4").unwrap().to_string(), "1.2.3.4");
        assert_eq!(
            parse_ip("2001:DB8::0:1").unwrap().to_string(),
            "2001:db8::1"
        );
        assert!(parse_ip("not-an-ip").is_none());
        assert!(parse_ip("1.2.3.256").is_none());
    }

    #[test]
    fn addresses_become_endpoints_with_ready_condition_and_refs() {
        let e = eps(json!({
            "metadata": {"name": "ext", "namespace": "ns"},
            "subsets": [{
                "addresses": [{"ip": "10.0.0.2", "hostname": "h", "nodeName": "n1",
                    "targetRef": {"kind": "Pod", "name": "p", "namespace": "ns", "uid": "u"}}],
                "notReadyAddresses": [{"ip": "10.0.0.1"}, {"ip": "fd00::1"}],
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]
            }]
        }));
        let d = desired(&e, 1000);
        assert_eq!((d.invalid, d.skipped), (0, 0));
        let v4 = &d.groups[&SliceKey::new(&d.groups.values().next().unwrap().ports, "IPv4")];
        assert_eq!(
            ips(v4),
            vec![
                ("10.0.0.1".to_string(), Some(false)),
                ("10.0.0.2".to_string(), Some(true))
            ]
        );
        let ready = &v4.endpoints[1];
        assert_eq!(ready.hostname.as_deref(), Some("h"));
        assert_eq!(ready.node_name.as_deref(), Some("n1"));
        assert_eq!(ready.target_ref.as_ref().unwrap().uid.as_deref(), Some("u"));
        let c = ready.conditions.as_ref().unwrap();
        assert_eq!((c.serving, c.terminating), (None, None));
        assert_eq!(v4.ports[0].name.as_deref(), Some("http"));
        assert_eq!(v4.ports[0].port, Some(8080));
        let v6 = &d.groups[&SliceKey::new(&v4.ports, "IPv6")];
        assert_eq!(ips(v6), vec![("fd00::1".to_string(), Some(false))]);
    }

    #[test]
    fn each_subset_is_capped_ready_first_and_invalid_ips_counted() {
        let ready: Vec<_> = (1..=3)
            .map(|i| json!({"ip": format!("10.0.0.{i}")}))
            .collect();
        let e = eps(json!({
            "metadata": {"name": "ext"},
            "subsets": [
                {"addresses": ready, "notReadyAddresses": [{"ip": "10.0.1.1"}], "ports": [{"port": 80}]},
                {"addresses": [{"ip": "bogus"}, {"ip": "10.0.2.1"}], "ports": [{"port": 81}]}
            ]
        }));
        let d = desired(&e, 2);
        assert_eq!(d.invalid, 1);
        // Subset 80: 4 addresses, 2 kept; subset 81: one invalid, one kept.
        assert_eq!(d.skipped, 3);
        assert_eq!(d.over_capacity(), 2);
        let g80 = d
            .groups
            .iter()
            .find(|(k, _)| k.address_type == "IPv4" && k.ports.contains("/80/"))
            .unwrap()
            .1;
        assert_eq!(
            ips(g80),
            vec![
                ("10.0.0.1".to_string(), Some(true)),
                ("10.0.0.2".to_string(), Some(true))
            ]
        );
    }

    #[test]
    fn repack_merges_ports_with_the_same_addresses_and_not_ready_wins() {
        let subsets: Vec<EndpointSubset> = serde_json::from_value(json!([
            {"addresses": [{"ip": "10.0.0.1"}], "ports": [{"name": "a", "port": 80}]},
            {"addresses": [{"ip": "10.0.0.1"}], "ports": [{"name": "b", "port": 81}]},
            {"addresses": [{"ip": "10.0.0.2"}], "ports": [{"name": "c", "port": 82}]},
            {"notReadyAddresses": [{"ip": "10.0.0.2"}], "ports": [{"name": "c", "port": 82}]}
        ]))
        .unwrap();
        let r = repack(&subsets);
        assert_eq!(r.len(), 2);
        let ab = r
            .iter()
            .find(|s| s.ports.as_ref().unwrap().len() == 2)
            .unwrap();
        assert_eq!(ab.addresses.as_ref().unwrap()[0].ip, "10.0.0.1");
        let c = r
            .iter()
            .find(|s| s.ports.as_ref().unwrap().len() == 1)
            .unwrap();
        assert!(c.addresses.is_none());
        assert_eq!(c.not_ready_addresses.as_ref().unwrap()[0].ip, "10.0.0.2");
    }

    #[test]
    fn subsets_without_ports_give_a_portless_slice() {
        let e = eps(
            json!({"metadata": {"name": "ext"}, "subsets": [{"addresses": [{"ip": "1.2.3.4"}]}]}),
        );
        let d = desired(&e, 10);
        let g = &d.groups[&SliceKey::new(&[], "IPv4")];
        assert!(g.ports.is_empty());
        assert_eq!(ips(g), vec![("1.2.3.4".to_string(), Some(true))]);
    }
}
