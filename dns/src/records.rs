//! Record synthesis: the resource records one Service (with its EndpointSlices) puts in one
//! cluster zone, as the Kubernetes DNS specification and CoreDNS's `kubernetes` plugin
//! define them. Pure functions of plain data; the index stores what they return.

use crate::model::{PortInfo, ServiceInfo, ServiceKind, SliceInfo};
use crate::names;
use hickory_proto::rr::rdata::{A, AAAA, CNAME, PTR, SRV};
use hickory_proto::rr::{Name, RData, Record};
use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;

/// An address record (A or AAAA by family).
pub fn address_record(name: Name, ttl: u32, address: IpAddr) -> Record {
    let data = match address {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    };
    Record::from_rdata(name, ttl, data)
}

/// A ready endpoint as DNS names it: `<label>.<service name>`.
#[derive(Debug, Clone)]
struct NamedEndpoint<'a> {
    label: String,
    address: IpAddr,
    ports: &'a [PortInfo],
}

/// The ready endpoints of `slices`, each address once per label.
fn ready_endpoints<'a>(slices: &[&'a SliceInfo]) -> Vec<NamedEndpoint<'a>> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for slice in slices {
        for ep in slice.endpoints.iter().filter(|ep| ep.ready) {
            for &address in &ep.addresses {
                let label = names::endpoint_label(ep.hostname.as_deref(), address);
                if seen.insert((label.clone(), address)) {
                    out.push(NamedEndpoint {
                        label,
                        address,
                        ports: &slice.ports,
                    });
                }
            }
        }
    }
    out
}

/// SRV targets gathered per owner name, so each owner's weights can be shared out.
#[derive(Default)]
struct SrvSet(BTreeMap<String, (Name, Vec<(u16, Name)>)>);

impl SrvSet {
    /// Adds `port → target` under the Service name itself and, for a named port, under
    /// `_<port>._<proto>.<service name>`.
    fn add(&mut self, service: &Name, port: &PortInfo, number: u16, target: &Name) {
        self.push(service.clone(), number, target);
        if port.name.is_empty() {
            return;
        }
        let owner = names::child(&format!("_{}", port.protocol), service)
            .and_then(|n| names::child(&format!("_{}", port.name), &n));
        if let Some(owner) = owner {
            self.push(owner, number, target);
        }
    }

    fn push(&mut self, owner: Name, port: u16, target: &Name) {
        let entry = self
            .0
            .entry(names::key_of(&owner))
            .or_insert_with(|| (owner, Vec::new()));
        if !entry.1.iter().any(|(p, t)| *p == port && t == target) {
            entry.1.push((port, target.clone()));
        }
    }

    /// The records: priority 0, weights splitting 100 evenly (as CoreDNS does).
    fn into_records(self, ttl: u32, out: &mut Vec<Record>) {
        for (_, (owner, targets)) in self.0 {
            let weight = (100 / targets.len().max(1)).max(1) as u16;
            for (port, target) in targets {
                out.push(Record::from_rdata(
                    owner.clone(),
                    ttl,
                    RData::SRV(SRV::new(0, weight, port, target)),
                ));
            }
        }
    }
}

/// Every record `svc` (with its `slices`) has in `zone`:
/// - ClusterIP: A/AAAA of the ClusterIPs at `svc.ns.svc.zone`, PTR for them, SRV per port;
/// - headless: A/AAAA of each ready endpoint at `svc.ns.svc.zone`, SRV per endpoint and port;
/// - both: A/AAAA and PTR of each ready endpoint as `<hostname or dashed IP>.svc.ns.svc.zone`;
/// - ExternalName: a CNAME to the external name.
///
/// SRV records are at the Service name (all ports) and at `_port._proto.<svc name>` for
/// named ports; their additional A/AAAA records are looked up when answering.
pub fn service_records(
    svc: &ServiceInfo,
    slices: &[&SliceInfo],
    zone: &Name,
    ttl: u32,
) -> Vec<Record> {
    let Some(service) = names::service_name(&svc.key.name, &svc.key.namespace, zone) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut srv = SrvSet::default();
    match &svc.kind {
        ServiceKind::ExternalName(target) => {
            if let Some(target) = names::fqdn(target).filter(|t| t.num_labels() > 0) {
                out.push(Record::from_rdata(
                    service,
                    ttl,
                    RData::CNAME(CNAME(target)),
                ));
            }
            return out;
        }
        ServiceKind::ClusterIp(ips) => {
            for &ip in ips {
                out.push(address_record(service.clone(), ttl, ip));
                out.push(Record::from_rdata(
                    names::reverse_name(ip),
                    ttl,
                    RData::PTR(PTR(service.clone())),
                ));
            }
            if !ips.is_empty() {
                for port in &svc.ports {
                    srv.add(&service, port, port.port, &service);
                }
            }
        }
        ServiceKind::Headless => {}
    }
    let headless = svc.kind == ServiceKind::Headless;
    let mut service_addresses = HashSet::new();
    for ep in ready_endpoints(slices) {
        let Some(host) = names::child(&ep.label, &service) else {
            continue;
        };
        out.push(address_record(host.clone(), ttl, ep.address));
        out.push(Record::from_rdata(
            names::reverse_name(ep.address),
            ttl,
            RData::PTR(PTR(host.clone())),
        ));
        if headless {
            if service_addresses.insert(ep.address) {
                out.push(address_record(service.clone(), ttl, ep.address));
            }
            for port in ep.ports {
                srv.add(&service, port, port.port, &host);
            }
        }
    }
    srv.into_records(ttl, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{EndpointInfo, ServiceKey};

    fn zone() -> Name {
        names::fqdn("cluster.local").unwrap()
    }

    fn port(name: &str, protocol: &str, port: u16) -> PortInfo {
        PortInfo {
            name: name.into(),
            protocol: protocol.into(),
            port,
        }
    }

    fn rendered(records: &[Record]) -> Vec<String> {
        let mut v: Vec<String> = records.iter().map(|r| r.to_string()).collect();
        v.sort();
        v
    }

    fn slice(service: &str, eps: Vec<EndpointInfo>, ports: Vec<PortInfo>) -> SliceInfo {
        SliceInfo {
            name: format!("{service}-abc"),
            service: ServiceKey::new("default", service),
            endpoints: eps,
            ports,
        }
    }

    fn ep(ip: &str, hostname: Option<&str>, ready: bool) -> EndpointInfo {
        EndpointInfo {
            addresses: vec![ip.parse().unwrap()],
            hostname: hostname.map(str::to_string),
            ready,
        }
    }

    #[test]
    fn cluster_ip_service_has_a_aaaa_ptr_and_srv_for_named_ports() {
        let svc = ServiceInfo {
            key: ServiceKey::new("default", "web"),
            kind: ServiceKind::ClusterIp(vec![
                "10.96.0.20".parse().unwrap(),
                "fd00::20".parse().unwrap(),
            ]),
            ports: vec![port("http", "tcp", 80), port("", "tcp", 8080)],
        };
        let r = rendered(&service_records(&svc, &[], &zone(), 30));
        let expected = [
            "web.default.svc.cluster.local. 30 IN A 10.96.0.20",
            "web.default.svc.cluster.local. 30 IN AAAA fd00::20",
            "20.0.96.10.in-addr.arpa. 30 IN PTR web.default.svc.cluster.local.",
            "_http._tcp.web.default.svc.cluster.local. 30 IN SRV 0 100 80 web.default.svc.cluster.local.",
            "web.default.svc.cluster.local. 30 IN SRV 0 50 80 web.default.svc.cluster.local.",
            "web.default.svc.cluster.local. 30 IN SRV 0 50 8080 web.default.svc.cluster.local.",
        ];
        for e in expected {
            assert!(r.contains(&e.to_string()), "missing {e} in {r:#?}");
        }
        // The IPv6 PTR, and nothing else.
        assert_eq!(r.len(), expected.len() + 1, "{r:#?}");
        assert!(r
            .iter()
            .any(|s| s.contains("ip6.arpa. 30 IN PTR web.default")));
    }

    #[test]
    fn headless_service_names_each_ready_endpoint_with_hostnames_and_srv() {
        let svc = ServiceInfo {
            key: ServiceKey::new("default", "db"),
            kind: ServiceKind::Headless,
            ports: vec![port("sql", "tcp", 5432)],
        };
        let s = slice(
            "db",
            vec![
                ep("10.1.0.1", Some("db-0"), true),
                ep("10.1.0.2", None, true),
                ep("10.1.0.3", Some("db-2"), false),
            ],
            vec![port("sql", "tcp", 5432)],
        );
        let r = rendered(&service_records(&svc, &[&s], &zone(), 30));
        let expected = [
            "db.default.svc.cluster.local. 30 IN A 10.1.0.1",
            "db.default.svc.cluster.local. 30 IN A 10.1.0.2",
            "db-0.db.default.svc.cluster.local. 30 IN A 10.1.0.1",
            "10-1-0-2.db.default.svc.cluster.local. 30 IN A 10.1.0.2",
            "1.0.1.10.in-addr.arpa. 30 IN PTR db-0.db.default.svc.cluster.local.",
            "2.0.1.10.in-addr.arpa. 30 IN PTR 10-1-0-2.db.default.svc.cluster.local.",
            "_sql._tcp.db.default.svc.cluster.local. 30 IN SRV 0 50 5432 db-0.db.default.svc.cluster.local.",
            "_sql._tcp.db.default.svc.cluster.local. 30 IN SRV 0 50 5432 10-1-0-2.db.default.svc.cluster.local.",
            "db.default.svc.cluster.local. 30 IN SRV 0 50 5432 db-0.db.default.svc.cluster.local.",
            "db.default.svc.cluster.local. 30 IN SRV 0 50 5432 10-1-0-2.db.default.svc.cluster.local.",
        ];
        for e in expected {
            assert!(r.contains(&e.to_string()), "missing {e} in {r:#?}");
        }
        assert_eq!(r.len(), expected.len(), "not-ready endpoint leaked: {r:#?}");
    }

    #[test]
    fn cluster_ip_service_endpoints_get_hostname_records_but_service_keeps_cluster_ip() {
        let svc = ServiceInfo {
            key: ServiceKey::new("default", "web"),
            kind: ServiceKind::ClusterIp(vec!["10.96.0.20".parse().unwrap()]),
            ports: vec![port("http", "tcp", 80)],
        };
        let s = slice(
            "web",
            vec![ep("10.1.0.9", Some("web-0"), true)],
            vec![port("http", "tcp", 8080)],
        );
        let r = rendered(&service_records(&svc, &[&s], &zone(), 30));
        assert!(r.contains(&"web-0.web.default.svc.cluster.local. 30 IN A 10.1.0.9".to_string()));
        assert!(!r.contains(&"web.default.svc.cluster.local. 30 IN A 10.1.0.9".to_string()));
        assert!(r.contains(
            &"9.0.1.10.in-addr.arpa. 30 IN PTR web-0.web.default.svc.cluster.local.".to_string()
        ));
    }

    #[test]
    fn external_name_is_a_cname_and_invalid_targets_give_nothing() {
        let mut svc = ServiceInfo {
            key: ServiceKey::new("default", "ext"),
            kind: ServiceKind::ExternalName("example.com".into()),
            ports: vec![port("http", "tcp", 80)],
        };
        assert_eq!(
            rendered(&service_records(&svc, &[], &zone(), 30)),
            vec!["ext.default.svc.cluster.local. 30 IN CNAME example.com.".to_string()]
        );
        svc.kind = ServiceKind::ExternalName("".into());
        assert!(service_records(&svc, &[], &zone(), 30).is_empty());
    }

    #[test]
    fn cluster_ip_service_without_ips_has_no_records() {
        let svc = ServiceInfo {
            key: ServiceKey::new("default", "pending"),
            kind: ServiceKind::ClusterIp(vec![]),
            ports: vec![port("http", "tcp", 80)],
        };
        assert!(service_records(&svc, &[], &zone(), 30).is_empty());
    }
}
