//! From a `v1.Service` to the per-port entries one IP family's proxier programs, with
//! upstream's rules: headless and ExternalName services are skipped, addresses of the other
//! family are ignored, LoadBalancer ingress with `ipMode: Proxy` is not a VIP, and
//! ClientIP affinity defaults to 10800 s.

use super::{Cidr, IpFamily, Protocol, ServiceName, ServicePortName};
use k8s_openapi::api::core::v1::Service;
use std::net::IpAddr;

/// Upstream's default `sessionAffinityConfig.clientIP.timeoutSeconds`.
pub const DEFAULT_AFFINITY_TIMEOUT_SECONDS: u32 = 10800;

/// Everything the rules need about one service port in one IP family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePortInfo {
    /// Which port of which Service.
    pub name: ServicePortName,
    /// The ClusterIP of this family.
    pub cluster_ip: IpAddr,
    /// The service port.
    pub port: u16,
    /// The NodePort, 0 when none.
    pub node_port: u16,
    /// `spec.externalIPs` of this family.
    pub external_ips: Vec<IpAddr>,
    /// LoadBalancer ingress IPs of this family (not `ipMode: Proxy`).
    pub load_balancer_vips: Vec<IpAddr>,
    /// `spec.loadBalancerSourceRanges` of this family.
    pub load_balancer_source_ranges: Vec<Cidr>,
    /// ClientIP affinity timeout in seconds, `None` without affinity.
    pub affinity_timeout: Option<u32>,
    /// `internalTrafficPolicy: Local`.
    pub internal_policy_local: bool,
    /// `externalTrafficPolicy: Local` on an externally reachable service.
    pub external_policy_local: bool,
    /// `spec.healthCheckNodePort`, 0 when none.
    pub health_check_node_port: u16,
}

impl ServicePortInfo {
    /// Reachable from outside the cluster network: NodePort, LoadBalancer VIPs or externalIPs.
    pub fn externally_accessible(&self) -> bool {
        self.node_port != 0 || !self.load_balancer_vips.is_empty() || !self.external_ips.is_empty()
    }

    /// Whether some traffic goes to all (cluster-wide) endpoints.
    pub fn uses_cluster_endpoints(&self) -> bool {
        !self.internal_policy_local || self.externally_accessible()
    }

    /// Whether some traffic goes only to this node's endpoints.
    pub fn uses_local_endpoints(&self) -> bool {
        self.internal_policy_local || (self.external_policy_local && self.externally_accessible())
    }
}

fn family_ips<'a>(ips: impl IntoIterator<Item = &'a String>, family: IpFamily) -> Vec<IpAddr> {
    ips.into_iter()
        .filter_map(|s| s.trim().parse::<IpAddr>().ok())
        .filter(|ip| IpFamily::of(ip) == family)
        .collect()
}

/// The service ports `svc` contributes to the proxier of `family` (empty when the service
/// is headless, ExternalName, or has no ClusterIP of that family).
pub fn service_ports(svc: &Service, family: IpFamily) -> Vec<ServicePortInfo> {
    let Some(spec) = &svc.spec else {
        return Vec::new();
    };
    if spec.type_.as_deref() == Some("ExternalName") {
        return Vec::new();
    }
    let mut cluster_ips: Vec<&String> = spec.cluster_ips.iter().flatten().collect();
    if cluster_ips.is_empty() {
        cluster_ips.extend(spec.cluster_ip.iter());
    }
    if cluster_ips.iter().any(|ip| ip.as_str() == "None") {
        return Vec::new();
    }
    let Some(cluster_ip) = family_ips(cluster_ips, family).into_iter().next() else {
        return Vec::new();
    };
    let name = ServiceName::new(
        svc.metadata.namespace.as_deref().unwrap_or("default"),
        svc.metadata.name.as_deref().unwrap_or_default(),
    );
    let type_ = spec.type_.as_deref().unwrap_or("ClusterIP");
    let external_ips = family_ips(spec.external_ips.iter().flatten(), family);
    let load_balancer_vips: Vec<IpAddr> = if type_ == "LoadBalancer" {
        let ingress = svc
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref());
        let ips = ingress
            .into_iter()
            .flatten()
            .filter(|i| i.ip_mode.as_deref() != Some("Proxy"))
            .filter_map(|i| i.ip.as_ref());
        family_ips(ips, family)
    } else {
        Vec::new()
    };
    let load_balancer_source_ranges: Vec<Cidr> = spec
        .load_balancer_source_ranges
        .iter()
        .flatten()
        .filter_map(|r| r.parse::<Cidr>().ok())
        .filter(|c| IpFamily::of(&c.addr) == family)
        .collect();
    let affinity_timeout = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
        spec.session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .and_then(|t| u32::try_from(t).ok())
            .unwrap_or(DEFAULT_AFFINITY_TIMEOUT_SECONDS)
    });
    let externally_typed =
        type_ == "NodePort" || type_ == "LoadBalancer" || !external_ips.is_empty();
    let external_policy_local =
        externally_typed && spec.external_traffic_policy.as_deref() == Some("Local");
    let internal_policy_local = spec.internal_traffic_policy.as_deref() == Some("Local");
    // As upstream's NeedsHealthCheck: only LoadBalancers with the Local policy get one.
    let health_check_node_port = if type_ == "LoadBalancer" && external_policy_local {
        spec.health_check_node_port
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or(0)
    } else {
        0
    };
    spec.ports
        .iter()
        .flatten()
        .filter_map(|p| {
            let protocol = Protocol::parse(p.protocol.as_deref())?;
            Some(ServicePortInfo {
                name: ServicePortName {
                    service: name.clone(),
                    port: p.name.clone().unwrap_or_default(),
                    protocol,
                },
                cluster_ip,
                port: u16::try_from(p.port).ok()?,
                node_port: p.node_port.and_then(|n| u16::try_from(n).ok()).unwrap_or(0),
                external_ips: external_ips.clone(),
                load_balancer_vips: load_balancer_vips.clone(),
                load_balancer_source_ranges: load_balancer_source_ranges.clone(),
                affinity_timeout,
                internal_policy_local,
                external_policy_local,
                health_check_node_port,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(v: serde_json::Value) -> Service {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn cluster_ip_service_one_entry_per_port_and_family() {
        let s = svc(json!({
            "metadata": {"namespace": "ns1", "name": "svc1"},
            "spec": {"clusterIP": "172.30.0.41", "clusterIPs": ["172.30.0.41", "fd00::41"],
                     "ports": [{"name": "p80", "port": 80}, {"name": "dns", "port": 53, "protocol": "UDP"}]}
        }));
        let v4 = service_ports(&s, IpFamily::V4);
        assert_eq!(v4.len(), 2);
        assert_eq!(v4[0].name.to_string(), "ns1/svc1:p80");
        assert_eq!(v4[0].name.protocol, Protocol::Tcp);
        assert_eq!(v4[1].name.protocol, Protocol::Udp);
        assert_eq!(v4[0].cluster_ip.to_string(), "172.30.0.41");
        let v6 = service_ports(&s, IpFamily::V6);
        assert_eq!(v6[0].cluster_ip.to_string(), "fd00::41");
        assert!(!v4[0].externally_accessible());
        assert!(v4[0].uses_cluster_endpoints() && !v4[0].uses_local_endpoints());
    }

    #[test]
    fn headless_externalname_and_other_family_are_skipped() {
        let headless = svc(
            json!({"metadata": {"name": "h"}, "spec": {"clusterIP": "None", "ports": [{"port": 80}]}}),
        );
        assert!(service_ports(&headless, IpFamily::V4).is_empty());
        let ext = svc(
            json!({"metadata": {"name": "e"}, "spec": {"type": "ExternalName", "externalName": "x.example"}}),
        );
        assert!(service_ports(&ext, IpFamily::V4).is_empty());
        let v4only = svc(
            json!({"metadata": {"name": "a"}, "spec": {"clusterIP": "10.0.0.1", "ports": [{"port": 80}]}}),
        );
        assert!(service_ports(&v4only, IpFamily::V6).is_empty());
    }

    #[test]
    fn load_balancer_local_policy_affinity_and_ranges() {
        let s = svc(json!({
            "metadata": {"namespace": "ns5", "name": "svc5"},
            "spec": {"type": "LoadBalancer", "clusterIP": "172.30.0.45", "externalTrafficPolicy": "Local",
                     "healthCheckNodePort": 30000, "externalIPs": ["192.168.99.22", "fd00::1"],
                     "loadBalancerSourceRanges": [" 203.0.113.0/25", "bogus"],
                     "sessionAffinity": "ClientIP",
                     "ports": [{"name": "p80", "port": 80, "nodePort": 3001}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "5.6.7.8"}, {"ip": "5.6.7.9", "ipMode": "Proxy"}]}}
        }));
        let p = &service_ports(&s, IpFamily::V4)[0];
        assert_eq!(p.node_port, 3001);
        assert_eq!(
            p.external_ips,
            vec!["192.168.99.22".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(
            p.load_balancer_vips,
            vec!["5.6.7.8".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(p.load_balancer_source_ranges.len(), 1);
        assert_eq!(p.affinity_timeout, Some(DEFAULT_AFFINITY_TIMEOUT_SECONDS));
        assert!(p.external_policy_local && !p.internal_policy_local);
        assert_eq!(p.health_check_node_port, 30000);
        assert!(p.uses_cluster_endpoints() && p.uses_local_endpoints());
    }

    #[test]
    fn internal_local_without_external_access_uses_only_local() {
        let s = svc(
            json!({"metadata": {"name": "i"}, "spec": {"clusterIP": "10.0.0.2",
            "internalTrafficPolicy": "Local", "sessionAffinity": "ClientIP",
            "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}, "ports": [{"port": 80}]}}),
        );
        let p = &service_ports(&s, IpFamily::V4)[0];
        assert!(!p.uses_cluster_endpoints() && p.uses_local_endpoints());
        assert_eq!(p.affinity_timeout, Some(60));
        assert_eq!(p.name.to_string(), "default/i");
    }
}
