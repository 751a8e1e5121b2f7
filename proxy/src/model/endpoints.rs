//! From the EndpointSlices of one Service to the endpoints of each of its ports, merged
//! across slices and de-duplicated (a local copy wins), sorted by `ip:port` as upstream's
//! endpoint cache sorts them.

use super::{IpFamily, Protocol, ServiceName, ServicePortName};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// The label naming the Service an EndpointSlice belongs to.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// One backend of one service port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Address and target port.
    pub addr: SocketAddr,
    /// `conditions.ready` (absent means ready).
    pub ready: bool,
    /// `conditions.serving` (absent means serving).
    pub serving: bool,
    /// `conditions.terminating` (absent means not terminating).
    pub terminating: bool,
    /// Whether the endpoint runs on this node (`nodeName` equals ours).
    pub local: bool,
    /// `hints.forZones` names.
    pub zone_hints: Vec<String>,
    /// `hints.forNodes` names.
    pub node_hints: Vec<String>,
}

impl Endpoint {
    /// The IP address.
    pub fn ip(&self) -> IpAddr {
        self.addr.ip()
    }

    /// A ready endpoint, for tests and benchmarks.
    pub fn ready(addr: SocketAddr, local: bool) -> Self {
        Endpoint {
            addr,
            ready: true,
            serving: true,
            terminating: false,
            local,
            zone_hints: Vec::new(),
            node_hints: Vec::new(),
        }
    }
}

impl fmt::Display for Endpoint {
    /// `ip:port`, IPv6 in brackets — upstream's endpoint string.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.addr)
    }
}

/// The Service a slice belongs to, from its label.
pub fn slice_service(slice: &EndpointSlice) -> Option<ServiceName> {
    let name = slice.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?;
    Some(ServiceName::new(
        slice.metadata.namespace.as_deref().unwrap_or("default"),
        name,
    ))
}

fn slice_family(slice: &EndpointSlice) -> Option<IpFamily> {
    match slice.address_type.as_str() {
        "IPv4" => Some(IpFamily::V4),
        "IPv6" => Some(IpFamily::V6),
        _ => None, // FQDN slices are not proxied.
    }
}

/// Endpoints per service port from `slices` (all of one Service), for `family`, with
/// locality judged against `node_name`.
pub fn endpoints_from_slices<'a>(
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
    family: IpFamily,
    node_name: &str,
) -> BTreeMap<ServicePortName, Vec<Endpoint>> {
    let mut by_port: BTreeMap<ServicePortName, BTreeMap<String, Endpoint>> = BTreeMap::new();
    for slice in slices {
        if slice_family(slice) != Some(family) {
            continue;
        }
        let Some(service) = slice_service(slice) else {
            continue;
        };
        for port in slice.ports.iter().flatten() {
            let (Some(number), Some(protocol)) = (
                port.port.and_then(|p| u16::try_from(p).ok()),
                Protocol::parse(port.protocol.as_deref()),
            ) else {
                continue;
            };
            let name = ServicePortName {
                service: service.clone(),
                port: port.name.clone().unwrap_or_default(),
                protocol,
            };
            let set = by_port.entry(name).or_default();
            for ep in &slice.endpoints {
                let Some(ip) = ep.addresses.first().and_then(|a| a.parse::<IpAddr>().ok()) else {
                    continue;
                };
                let local = !node_name.is_empty() && ep.node_name.as_deref() == Some(node_name);
                let c = ep.conditions.as_ref();
                let hints = ep.hints.as_ref();
                let endpoint = Endpoint {
                    addr: SocketAddr::new(ip, number),
                    ready: c.and_then(|c| c.ready).unwrap_or(true),
                    serving: c.and_then(|c| c.serving).unwrap_or(true),
                    terminating: c.and_then(|c| c.terminating).unwrap_or(false),
                    local,
                    zone_hints: hints
                        .and_then(|h| h.for_zones.as_ref())
                        .map(|z| z.iter().map(|z| z.name.clone()).collect())
                        .unwrap_or_default(),
                    node_hints: hints
                        .and_then(|h| h.for_nodes.as_ref())
                        .map(|n| n.iter().map(|n| n.name.clone()).collect())
                        .unwrap_or_default(),
                };
                let key = endpoint.to_string();
                if local || !set.contains_key(&key) {
                    set.insert(key, endpoint);
                }
            }
        }
    }
    by_port
        .into_iter()
        .filter(|(_, set)| !set.is_empty())
        .map(|(name, set)| (name, set.into_values().collect()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn slice(v: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn merges_slices_dedups_sorts_and_reads_conditions() {
        let a = slice(json!({
            "metadata": {"namespace": "ns", "name": "s-a", "labels": {SERVICE_NAME_LABEL: "svc"}},
            "addressType": "IPv4",
            "endpoints": [
                {"addresses": ["10.0.0.9"], "conditions": {"ready": false, "serving": true, "terminating": true}},
                {"addresses": ["10.0.0.1"], "nodeName": "other"}
            ],
            "ports": [{"name": "http", "port": 8080}]
        }));
        let b = slice(json!({
            "metadata": {"namespace": "ns", "name": "s-b", "labels": {SERVICE_NAME_LABEL: "svc"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.0.0.1"], "nodeName": "me", "hints": {"forZones": [{"name": "z1"}]}}],
            "ports": [{"name": "http", "port": 8080}]
        }));
        let fqdn = slice(json!({
            "metadata": {"namespace": "ns", "name": "s-c", "labels": {SERVICE_NAME_LABEL: "svc"}},
            "addressType": "FQDN", "endpoints": [{"addresses": ["x.example"]}],
            "ports": [{"name": "http", "port": 8080}]
        }));
        let map = endpoints_from_slices([&a, &b, &fqdn], IpFamily::V4, "me");
        assert_eq!(map.len(), 1);
        let (name, eps) = map.iter().next().unwrap();
        assert_eq!(name.to_string(), "ns/svc:http");
        let shown: Vec<String> = eps.iter().map(|e| e.to_string()).collect();
        assert_eq!(shown, vec!["10.0.0.1:8080", "10.0.0.9:8080"]);
        assert!(eps[0].local && eps[0].ready && eps[0].zone_hints == vec!["z1"]);
        assert!(!eps[1].ready && eps[1].serving && eps[1].terminating);
        assert!(endpoints_from_slices([&a], IpFamily::V6, "me").is_empty());
    }

    #[test]
    fn slice_without_service_label_is_ignored() {
        let s = slice(json!({"metadata": {"name": "x"}, "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.0.0.1"]}], "ports": [{"port": 80}]}));
        assert!(endpoints_from_slices([&s], IpFamily::V4, "").is_empty());
    }
}
