//! Change tracking between syncs, as upstream's `ServiceChangeTracker` and
//! `EndpointsChangeTracker`: watch events update the stored objects and mark the Service
//! pending only when what the proxier programs changes; [`ChangeTracker::apply`] folds
//! pending changes into the applied view and says which Services need their rules
//! rewritten, which UDP flows went stale, and when the changes were triggered.

use super::endpoints::{endpoints_from_slices, slice_service};
use super::{
    service_ports, Endpoint, IpFamily, Protocol, ServiceName, ServicePortInfo, ServicePortName,
};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::time::SystemTime;

/// The annotation the EndpointSlice controller sets to when the change was triggered.
pub const LAST_CHANGE_TRIGGER_TIME: &str = "endpoints.kubernetes.io/last-change-trigger-time";

/// A UDP flow set that conntrack must forget after a sync.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum StaleUdp {
    /// Flows to `service_ip:port` DNATed to `endpoint`, which is gone.
    Endpoint {
        /// ClusterIP, externalIP or LoadBalancer IP.
        service_ip: IpAddr,
        /// The gone endpoint.
        endpoint: IpAddr,
    },
    /// NodePort flows DNATed to `endpoint`, which is gone.
    NodePortEndpoint {
        /// The NodePort.
        node_port: u16,
        /// The gone endpoint.
        endpoint: IpAddr,
    },
    /// Flows to `service_ip:port` cached while it had no endpoints.
    Service {
        /// ClusterIP, externalIP or LoadBalancer IP.
        service_ip: IpAddr,
        /// The service port.
        port: u16,
    },
    /// NodePort flows cached while the service had no endpoints.
    NodePort {
        /// The NodePort.
        node_port: u16,
    },
}

/// What [`ChangeTracker::apply`] found.
#[derive(Debug, Default)]
pub struct UpdateResult {
    /// Services whose rules must be rewritten.
    pub updated_services: BTreeSet<ServiceName>,
    /// Trigger times of the applied endpoint changes (for the network-programming latency).
    pub trigger_times: Vec<SystemTime>,
    /// UDP conntrack entries to delete once the new rules are in place.
    pub stale_udp: Vec<StaleUdp>,
    /// How many Service events were folded in.
    pub service_changes: usize,
    /// How many EndpointSlice events were folded in.
    pub endpoint_changes: usize,
}

type SliceData = (
    String,
    Option<Vec<k8s_openapi::api::discovery::v1::EndpointPort>>,
    Vec<k8s_openapi::api::discovery::v1::Endpoint>,
);

/// The stored state of one IP family's proxier.
#[derive(Debug)]
pub struct ChangeTracker {
    family: IpFamily,
    node_name: String,
    services: HashMap<ServiceName, Vec<ServicePortInfo>>,
    slices: HashMap<ServiceName, BTreeMap<String, EndpointSlice>>,
    pending: BTreeSet<ServiceName>,
    trigger_times: Vec<SystemTime>,
    service_changes: usize,
    endpoint_changes: usize,
    /// The applied service ports.
    pub ports: BTreeMap<ServicePortName, ServicePortInfo>,
    /// The applied endpoints of each service port.
    pub endpoints: BTreeMap<ServicePortName, Vec<Endpoint>>,
}

impl ChangeTracker {
    /// An empty tracker for `family` on node `node_name`.
    pub fn new(family: IpFamily, node_name: &str) -> Self {
        ChangeTracker {
            family,
            node_name: node_name.to_string(),
            services: HashMap::new(),
            slices: HashMap::new(),
            pending: BTreeSet::new(),
            trigger_times: Vec::new(),
            service_changes: 0,
            endpoint_changes: 0,
            ports: BTreeMap::new(),
            endpoints: BTreeMap::new(),
        }
    }

    /// The family this tracker serves.
    pub fn family(&self) -> IpFamily {
        self.family
    }

    /// Number of Service / EndpointSlice changes waiting for a sync.
    pub fn pending_changes(&self) -> (usize, usize) {
        (self.service_changes, self.endpoint_changes)
    }

    /// Whether anything waits for a sync.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Records a Service added or updated (`Some`) or deleted (`None` with its name).
    /// Returns whether the programmed view changes.
    pub fn update_service(&mut self, name: ServiceName, svc: Option<&Service>) -> bool {
        let ports = svc
            .map(|s| service_ports(s, self.family))
            .unwrap_or_default();
        let old = self.services.get(&name).cloned().unwrap_or_default();
        if old == ports {
            return false;
        }
        if ports.is_empty() {
            self.services.remove(&name);
        } else {
            self.services.insert(name.clone(), ports);
        }
        self.pending.insert(name);
        self.service_changes += 1;
        true
    }

    /// Records an EndpointSlice added/updated or deleted. Returns whether it matters.
    pub fn update_slice(&mut self, slice: &EndpointSlice, deleted: bool) -> bool {
        let Some(service) = slice_service(slice) else {
            return false;
        };
        let key = slice.metadata.name.clone().unwrap_or_default();
        let set = self.slices.entry(service.clone()).or_default();
        let data = |s: &EndpointSlice| -> SliceData {
            (s.address_type.clone(), s.ports.clone(), s.endpoints.clone())
        };
        let changed = if deleted {
            set.remove(&key).is_some()
        } else {
            let same = set.get(&key).map(data) == Some(data(slice));
            set.insert(key, slice.clone());
            !same
        };
        if set.is_empty() {
            self.slices.remove(&service);
        }
        if changed {
            if let Some(t) = trigger_time(slice) {
                self.trigger_times.push(t);
            }
            self.pending.insert(service);
            self.endpoint_changes += 1;
        }
        changed
    }

    /// Folds the pending changes into [`Self::ports`] and [`Self::endpoints`].
    pub fn apply(&mut self) -> UpdateResult {
        let mut result = UpdateResult {
            trigger_times: std::mem::take(&mut self.trigger_times),
            service_changes: std::mem::take(&mut self.service_changes),
            endpoint_changes: std::mem::take(&mut self.endpoint_changes),
            ..UpdateResult::default()
        };
        for service in std::mem::take(&mut self.pending) {
            let old_ports = remove_service(&mut self.ports, &service);
            let old_endpoints = remove_service(&mut self.endpoints, &service);
            let new_endpoints = self
                .slices
                .get(&service)
                .map(|s| endpoints_from_slices(s.values(), self.family, &self.node_name))
                .unwrap_or_default();
            for p in self.services.get(&service).into_iter().flatten() {
                self.ports.insert(p.name.clone(), p.clone());
            }
            for (name, eps) in new_endpoints {
                self.endpoints.insert(name, eps);
            }
            stale_udp(
                &old_ports,
                &old_endpoints,
                &self.ports,
                &self.endpoints,
                &service,
                &mut result.stale_udp,
            );
            result.updated_services.insert(service);
        }
        result
    }

    /// The applied ports of one Service.
    pub fn ports_of<'a>(
        &'a self,
        service: &'a ServiceName,
    ) -> impl Iterator<Item = &'a ServicePortInfo> + 'a {
        self.ports
            .range(first_port_of(service)..)
            .take_while(move |(k, _)| &k.service == service)
            .map(|(_, v)| v)
    }

    /// Marks every known Service pending (for a full resync after a failure).
    pub fn mark_all_pending(&mut self) {
        let names = self.services.keys().chain(self.slices.keys()).cloned();
        self.pending.extend(names.collect::<Vec<_>>());
    }
}

fn trigger_time(slice: &EndpointSlice) -> Option<SystemTime> {
    let text = slice
        .metadata
        .annotations
        .as_ref()?
        .get(LAST_CHANGE_TRIGGER_TIME)?;
    let t = chrono::DateTime::parse_from_rfc3339(text).ok()?;
    Some(SystemTime::from(t))
}

fn first_port_of(service: &ServiceName) -> ServicePortName {
    ServicePortName {
        service: service.clone(),
        port: String::new(),
        protocol: Protocol::Tcp,
    }
}

/// Removes and returns every entry of `service` from a map keyed by service port.
fn remove_service<V>(
    map: &mut BTreeMap<ServicePortName, V>,
    service: &ServiceName,
) -> BTreeMap<ServicePortName, V> {
    let keys: Vec<ServicePortName> = map
        .range(first_port_of(service)..)
        .take_while(|(k, _)| &k.service == service)
        .map(|(k, _)| k.clone())
        .collect();
    keys.into_iter()
        .filter_map(|k| map.remove_entry(&k))
        .collect()
}

fn usable(eps: Option<&Vec<Endpoint>>) -> Vec<IpAddr> {
    eps.into_iter()
        .flatten()
        .filter(|e| e.ready || (e.serving && e.terminating))
        .map(Endpoint::ip)
        .collect()
}

/// UDP flows that must be forgotten after `service` changed from `old_*` to `new_*`.
fn stale_udp(
    old_ports: &BTreeMap<ServicePortName, ServicePortInfo>,
    old_endpoints: &BTreeMap<ServicePortName, Vec<Endpoint>>,
    new_ports: &BTreeMap<ServicePortName, ServicePortInfo>,
    new_endpoints: &BTreeMap<ServicePortName, Vec<Endpoint>>,
    service: &ServiceName,
    out: &mut Vec<StaleUdp>,
) {
    let names: BTreeSet<&ServicePortName> = old_ports
        .keys()
        .chain(
            new_ports
                .range(first_port_of(service)..)
                .take_while(|(k, _)| &k.service == service)
                .map(|(k, _)| k),
        )
        .filter(|k| k.protocol == Protocol::Udp)
        .collect();
    for name in names {
        let before = usable(old_endpoints.get(name));
        let after = usable(new_endpoints.get(name));
        if let Some(p) = old_ports.get(name) {
            let ips = std::iter::once(p.cluster_ip)
                .chain(p.external_ips.iter().copied())
                .chain(p.load_balancer_vips.iter().copied());
            for gone in before.iter().filter(|ip| !after.contains(ip)) {
                for service_ip in ips.clone() {
                    out.push(StaleUdp::Endpoint {
                        service_ip,
                        endpoint: *gone,
                    });
                }
                if p.node_port != 0 {
                    out.push(StaleUdp::NodePortEndpoint {
                        node_port: p.node_port,
                        endpoint: *gone,
                    });
                }
            }
        }
        if let (Some(p), true, false) = (new_ports.get(name), before.is_empty(), after.is_empty()) {
            let ips = std::iter::once(p.cluster_ip)
                .chain(p.external_ips.iter().copied())
                .chain(p.load_balancer_vips.iter().copied());
            for service_ip in ips {
                out.push(StaleUdp::Service {
                    service_ip,
                    port: p.port,
                });
            }
            if p.node_port != 0 {
                out.push(StaleUdp::NodePort {
                    node_port: p.node_port,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(proto: &str) -> Service {
        serde_json::from_value(json!({"metadata": {"namespace": "ns", "name": "dns"},
            "spec": {"clusterIP": "10.96.0.10", "ports": [{"name": "dns", "port": 53, "protocol": proto}]}}))
        .unwrap()
    }

    fn slice(ips: &[&str]) -> EndpointSlice {
        let eps: Vec<_> = ips.iter().map(|ip| json!({"addresses": [ip]})).collect();
        serde_json::from_value(json!({"metadata": {"namespace": "ns", "name": "dns-abc",
            "labels": {"kubernetes.io/service-name": "dns"},
            "annotations": {LAST_CHANGE_TRIGGER_TIME: "2026-11-24T15:00:00Z"}},
            "addressType": "IPv4", "endpoints": eps, "ports": [{"name": "dns", "port": 5353, "protocol": "UDP"}]}))
        .unwrap()
    }

    #[test]
    fn no_op_updates_are_not_pending() {
        let mut t = ChangeTracker::new(IpFamily::V4, "node");
        let name = ServiceName::new("ns", "dns");
        assert!(t.update_service(name.clone(), Some(&svc("UDP"))));
        assert!(!t.update_service(name.clone(), Some(&svc("UDP"))));
        assert!(t.update_slice(&slice(&["10.0.0.1"]), false));
        assert!(!t.update_slice(&slice(&["10.0.0.1"]), false));
        let r = t.apply();
        assert_eq!(
            r.updated_services.into_iter().collect::<Vec<_>>(),
            vec![name]
        );
        assert_eq!(r.trigger_times.len(), 1);
        assert_eq!((r.service_changes, r.endpoint_changes), (1, 1));
        assert!(!t.has_pending());
        assert_eq!(t.ports.len(), 1);
        assert_eq!(t.endpoints.values().next().unwrap().len(), 1);
        assert!(t.apply().updated_services.is_empty());
    }

    #[test]
    fn udp_endpoint_changes_produce_conntrack_work() {
        let mut t = ChangeTracker::new(IpFamily::V4, "node");
        let name = ServiceName::new("ns", "dns");
        t.update_service(name.clone(), Some(&svc("UDP")));
        t.update_slice(&slice(&["10.0.0.1"]), false);
        let first = t.apply();
        let cip: IpAddr = "10.96.0.10".parse().unwrap();
        assert_eq!(
            first.stale_udp,
            vec![StaleUdp::Service {
                service_ip: cip,
                port: 53
            }]
        );
        t.update_slice(&slice(&["10.0.0.2"]), false);
        let second = t.apply();
        assert_eq!(
            second.stale_udp,
            vec![StaleUdp::Endpoint {
                service_ip: cip,
                endpoint: "10.0.0.1".parse().unwrap()
            }]
        );
        t.update_service(name.clone(), None);
        t.update_slice(&slice(&[]), true);
        let gone = t.apply();
        assert!(gone.updated_services.contains(&name));
        assert!(t.ports.is_empty() && t.endpoints.is_empty());
    }

    #[test]
    fn tcp_changes_need_no_conntrack_work() {
        let mut t = ChangeTracker::new(IpFamily::V4, "node");
        t.update_service(ServiceName::new("ns", "dns"), Some(&svc("TCP")));
        assert!(t.apply().stale_udp.is_empty());
    }
}
