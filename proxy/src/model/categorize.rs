//! Which endpoints a service port's traffic may reach from this node: upstream's
//! `CategorizeEndpoints` — ready endpoints (falling back to serving-and-terminating ones),
//! topology hints (same node, then same zone) when every endpoint carries them, and
//! the node-local subset for `Local` traffic policies.

use super::{Endpoint, ServicePortInfo};
use std::collections::BTreeMap;

/// The zone label of the Node.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// The outcome of [`categorize`].
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Categorized<'a> {
    /// Endpoints for `Cluster` policy traffic (empty when the service uses none).
    pub cluster: Vec<&'a Endpoint>,
    /// Endpoints for `Local` policy traffic (empty when the service uses none).
    pub local: Vec<&'a Endpoint>,
    /// The union: every endpoint some traffic may reach (each needs an endpoint chain).
    pub all_reachable: Vec<&'a Endpoint>,
    /// Whether the service has any usable endpoint anywhere (else: reject).
    pub has_any: bool,
}

#[derive(Debug, PartialEq, Eq)]
enum Topology {
    None,
    SameNode,
    SameZone,
}

fn topology_mode(endpoints: &[Endpoint], node: &str, zone: &str) -> Topology {
    let ready = || endpoints.iter().filter(|e| e.ready);
    if ready().next().is_none() {
        return Topology::None;
    }
    if ready().all(|e| !e.node_hints.is_empty())
        && ready().any(|e| e.node_hints.iter().any(|n| n == node))
    {
        return Topology::SameNode;
    }
    if ready().all(|e| !e.zone_hints.is_empty())
        && ready().any(|e| e.zone_hints.iter().any(|z| z == zone))
    {
        return Topology::SameZone;
    }
    Topology::None
}

fn available(ep: &Endpoint, mode: &Topology, node: &str, zone: &str) -> bool {
    match mode {
        Topology::None => true,
        Topology::SameNode => ep.node_hints.iter().any(|n| n == node),
        Topology::SameZone => ep.zone_hints.iter().any(|z| z == zone),
    }
}

/// Splits `endpoints` of `svc` as upstream does; `node_labels` are this Node's labels
/// (only the zone label matters).
pub fn categorize<'a>(
    endpoints: &'a [Endpoint],
    svc: &ServicePortInfo,
    node_name: &str,
    node_labels: &BTreeMap<String, String>,
) -> Categorized<'a> {
    let mut out = Categorized::default();
    if endpoints.is_empty() {
        return out;
    }
    let zone = node_labels
        .get(ZONE_LABEL)
        .map(String::as_str)
        .unwrap_or("");
    let mut mode = Topology::None;
    if svc.uses_cluster_endpoints() {
        mode = topology_mode(endpoints, node_name, zone);
        out.cluster = endpoints
            .iter()
            .filter(|e| e.ready && available(e, &mode, node_name, zone))
            .collect();
        if out.cluster.is_empty() {
            out.cluster = endpoints
                .iter()
                .filter(|e| e.serving && e.terminating)
                .collect();
        }
        out.has_any = !out.cluster.is_empty();
    }
    if !svc.uses_local_endpoints() {
        out.all_reachable = out.cluster.clone();
        return out;
    }
    let usable = |e: &&Endpoint| e.ready || (e.serving && e.terminating);
    out.has_any |= endpoints.iter().any(|e| usable(&e));
    let local_ready = endpoints.iter().any(|e| e.local && e.ready);
    let mut serving_terminating_fallback = false;
    if local_ready {
        out.local = endpoints.iter().filter(|e| e.local && e.ready).collect();
    } else if endpoints
        .iter()
        .any(|e| e.local && e.serving && e.terminating)
    {
        serving_terminating_fallback = true;
        out.local = endpoints
            .iter()
            .filter(|e| e.local && e.serving && e.terminating)
            .collect();
    }
    if !svc.uses_cluster_endpoints() {
        out.all_reachable = out.local.clone();
        return out;
    }
    if mode == Topology::None && !serving_terminating_fallback {
        // Local endpoints are a subset of the cluster ones.
        out.all_reachable = out.cluster.clone();
        return out;
    }
    let mut union: BTreeMap<String, &Endpoint> = BTreeMap::new();
    for e in out.cluster.iter().chain(out.local.iter()) {
        union.insert(e.to_string(), e);
    }
    out.all_reachable = union.into_values().collect();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Protocol, ServiceName, ServicePortName};

    fn svc(internal_local: bool, external_local: bool, node_port: u16) -> ServicePortInfo {
        ServicePortInfo {
            name: ServicePortName {
                service: ServiceName::new("ns", "svc"),
                port: "p".into(),
                protocol: Protocol::Tcp,
            },
            cluster_ip: "10.96.0.1".parse().unwrap(),
            port: 80,
            node_port,
            external_ips: vec![],
            load_balancer_vips: vec![],
            load_balancer_source_ranges: vec![],
            affinity_timeout: None,
            internal_policy_local: internal_local,
            external_policy_local: external_local,
            health_check_node_port: 0,
        }
    }

    fn ep(ip: &str, ready: bool, serving: bool, terminating: bool, local: bool) -> Endpoint {
        Endpoint {
            ready,
            serving,
            terminating,
            ..Endpoint::ready(format!("{ip}:80").parse().unwrap(), local)
        }
    }

    fn ips(v: &[&Endpoint]) -> Vec<String> {
        v.iter().map(|e| e.ip().to_string()).collect()
    }

    #[test]
    fn ready_only_then_terminating_fallback() {
        let labels = BTreeMap::new();
        let eps = vec![
            ep("10.0.0.1", true, true, false, false),
            ep("10.0.0.2", false, true, true, false),
        ];
        let c = categorize(&eps, &svc(false, false, 0), "n", &labels);
        assert_eq!(ips(&c.cluster), vec!["10.0.0.1"]);
        assert!(c.has_any && c.local.is_empty());
        let eps = vec![
            ep("10.0.0.2", false, true, true, false),
            ep("10.0.0.3", false, false, true, false),
        ];
        let c = categorize(&eps, &svc(false, false, 0), "n", &labels);
        assert_eq!(ips(&c.cluster), vec!["10.0.0.2"]);
        let eps = vec![ep("10.0.0.3", false, false, false, false)];
        let c = categorize(&eps, &svc(false, false, 0), "n", &labels);
        assert!(!c.has_any && c.all_reachable.is_empty());
    }

    #[test]
    fn internal_local_uses_only_local_endpoints() {
        let labels = BTreeMap::new();
        let eps = vec![
            ep("10.0.0.1", true, true, false, false),
            ep("10.0.0.2", true, true, false, true),
        ];
        let c = categorize(&eps, &svc(true, false, 0), "n", &labels);
        assert!(c.cluster.is_empty());
        assert_eq!(ips(&c.local), vec!["10.0.0.2"]);
        assert_eq!(ips(&c.all_reachable), vec!["10.0.0.2"]);
        let remote_only = vec![ep("10.0.0.1", true, true, false, false)];
        let c = categorize(&remote_only, &svc(true, false, 0), "n", &labels);
        assert!(
            c.has_any && c.local.is_empty(),
            "endpoints exist elsewhere: drop, not reject"
        );
    }

    #[test]
    fn external_local_with_local_terminating_fallback_unions() {
        let labels = BTreeMap::new();
        let eps = vec![
            ep("10.0.0.1", true, true, false, false),
            ep("10.0.0.2", false, true, true, true),
        ];
        let c = categorize(&eps, &svc(false, true, 30000), "n", &labels);
        assert_eq!(ips(&c.cluster), vec!["10.0.0.1"]);
        assert_eq!(ips(&c.local), vec!["10.0.0.2"]);
        assert_eq!(ips(&c.all_reachable), vec!["10.0.0.1", "10.0.0.2"]);
    }

    #[test]
    fn zone_hints_apply_only_when_every_endpoint_has_them() {
        let labels = BTreeMap::from([(ZONE_LABEL.to_string(), "z1".to_string())]);
        let mut a = ep("10.0.0.1", true, true, false, false);
        a.zone_hints = vec!["z1".into()];
        let mut b = ep("10.0.0.2", true, true, false, false);
        b.zone_hints = vec!["z2".into()];
        let eps = vec![a.clone(), b.clone()];
        let c = categorize(&eps, &svc(false, false, 0), "n", &labels);
        assert_eq!(ips(&c.cluster), vec!["10.0.0.1"]);
        let mut unhinted = b.clone();
        unhinted.zone_hints.clear();
        let eps = vec![a.clone(), unhinted];
        let c = categorize(&eps, &svc(false, false, 0), "n", &labels);
        assert_eq!(c.cluster.len(), 2);
        let mut n = b;
        n.node_hints = vec!["n".into()];
        let mut a2 = a;
        a2.node_hints = vec!["other".into()];
        let eps = vec![a2, n];
        let c = categorize(&eps, &svc(false, false, 0), "n", &labels);
        assert_eq!(
            ips(&c.cluster),
            vec!["10.0.0.2"],
            "same-node hints win over zone"
        );
    }
}
