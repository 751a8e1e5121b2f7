//! endpointslice-controller's reconcile: the EndpointSlices a Service should have, at most
//! [`MAX_ENDPOINTS_PER_SLICE`] endpoints each, grouped by port set.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::{
    Endpoint, EndpointConditions, EndpointHints, EndpointPort, EndpointSlice, ForNode, ForZone,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::ObjectMeta;

use super::pods;

/// Upstream's `--max-endpoints-per-slice` default.
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;
/// `endpointslice.kubernetes.io/managed-by` value of this controller.
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
/// Label naming the managing controller.
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// Label naming the Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Label marking headless Services' slices.
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";
/// The node label an endpoint's `zone` comes from.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// Node name to zone (the nodes' [`ZONE_LABEL`]), for endpoints' `zone`.
pub type Zones = BTreeMap<String, String>;

/// What to write to reach the desired slices.
#[derive(Debug, Default)]
pub struct Plan {
    /// New slices (with `generateName`).
    pub create: Vec<EndpointSlice>,
    /// Existing slices with new content (name and resourceVersion kept).
    pub update: Vec<EndpointSlice>,
    /// Names of slices to delete.
    pub delete: Vec<String>,
}

impl Plan {
    /// Nothing to write.
    pub fn is_empty(&self) -> bool {
        self.create.is_empty() && self.update.is_empty() && self.delete.is_empty()
    }
}

/// The endpoint of `pod` for `svc`, with its conditions, its node's zone and the hints the
/// Service's `trafficDistribution` asks for.
pub fn endpoint(pod: &Pod, svc: &Service, zones: &Zones) -> Option<Endpoint> {
    let ip = pod.status.as_ref()?.pod_ip.clone()?;
    let ready = pods::is_ready(pod);
    let terminating = pods::is_terminating(pod);
    let node_name = pod.spec.as_ref().and_then(|s| s.node_name.clone());
    let zone = node_name.as_ref().and_then(|n| zones.get(n)).cloned();
    let ready = pods::publish_not_ready(svc) || (ready && !terminating);
    Some(Endpoint {
        addresses: vec![ip],
        hints: ready
            .then(|| hints(svc, zone.as_deref(), node_name.as_deref()))
            .flatten(),
        conditions: Some(EndpointConditions {
            ready: Some(ready),
            serving: Some(pods::is_ready(pod)),
            terminating: Some(terminating),
        }),
        hostname: pods::hostname(pod, svc),
        zone,
        node_name,
        target_ref: Some(ObjectReference {
            kind: Some("Pod".into()),
            namespace: pod.metadata.namespace.clone(),
            name: pod.metadata.name.clone(),
            uid: pod.metadata.uid.clone(),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// Hints of a ready endpoint, as upstream's trafficdist heuristic: with `PreferClose` or
/// `PreferSameZone` its own zone, with `PreferSameNode` also its own node; none otherwise
/// (and none when the legacy topology-aware-hints annotation takes over, which ferrokube
/// does not implement).
fn hints(svc: &Service, zone: Option<&str>, node: Option<&str>) -> Option<EndpointHints> {
    let traffic = super::metrics::traffic_distribution(svc)?;
    let for_zones = zone.map(|z| vec![ForZone { name: z.into() }]);
    let for_nodes = node
        .filter(|_| traffic == "PreferSameNode")
        .map(|n| vec![ForNode { name: n.into() }]);
    (for_zones.is_some() || for_nodes.is_some()).then_some(EndpointHints {
        for_zones,
        for_nodes,
    })
}

/// The ports `pod` offers for `svc` (service ports whose target resolves on it).
pub fn ports(pod: &Pod, svc: &Service) -> Vec<EndpointPort> {
    let spec_ports = svc.spec.as_ref().and_then(|s| s.ports.as_ref());
    spec_ports
        .into_iter()
        .flatten()
        .filter_map(|sp| {
            Some(EndpointPort {
                name: Some(sp.name.clone().unwrap_or_default()),
                port: Some(pods::target_port(sp, pod)?),
                protocol: Some(sp.protocol.clone().unwrap_or_else(|| "TCP".into())),
                app_protocol: sp.app_protocol.clone(),
            })
        })
        .collect()
}

/// Identifies a port set (order-insensitive): `name/protocol/port` of each port, sorted.
pub fn port_key(ports: &[EndpointPort]) -> String {
    let mut keys: Vec<String> = ports
        .iter()
        .map(|p| {
            format!(
                "{}/{}/{}",
                p.name.as_deref().unwrap_or(""),
                p.protocol.as_deref().unwrap_or(""),
                p.port.unwrap_or(0)
            )
        })
        .collect();
    keys.sort();
    keys.join(",")
}

/// The desired content: (ports, endpoints) groups, each endpoint list sorted by address and
/// cut into chunks of at most `max_per_slice`. A Service with no endpoints gets one empty
/// placeholder slice, as upstream.
pub fn desired(
    svc: &Service,
    selected: &[&Pod],
    zones: &Zones,
    max_per_slice: usize,
) -> Vec<(Vec<EndpointPort>, Vec<Endpoint>)> {
    let mut groups: BTreeMap<String, (Vec<EndpointPort>, Vec<Endpoint>)> = BTreeMap::new();
    for pod in selected.iter().filter(|p| pods::eligible(p, true)) {
        let Some(ep) = endpoint(pod, svc, zones) else {
            continue;
        };
        let ports = ports(pod, svc);
        groups
            .entry(port_key(&ports))
            .or_insert_with(|| (ports, Vec::new()))
            .1
            .push(ep);
    }
    let mut out = Vec::new();
    for (_, (ports, mut eps)) in groups {
        eps.sort_by(|a, b| a.addresses.cmp(&b.addresses));
        for chunk in eps.chunks(max_per_slice.max(1)) {
            out.push((ports.clone(), chunk.to_vec()));
        }
    }
    if out.is_empty() {
        out.push((Vec::new(), Vec::new()));
    }
    out
}

fn labels(svc: &Service) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = svc.metadata.labels.clone().unwrap_or_default();
    labels.insert(
        SERVICE_NAME_LABEL.into(),
        svc.metadata.name.clone().unwrap_or_default(),
    );
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
    if pods::is_headless(svc) {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    } else {
        labels.remove(HEADLESS_LABEL);
    }
    labels
}

fn owner(svc: &Service) -> OwnerReference {
    OwnerReference {
        api_version: "v1".into(),
        kind: "Service".into(),
        name: svc.metadata.name.clone().unwrap_or_default(),
        uid: svc.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

fn same_content(
    slice: &EndpointSlice,
    ports: &[EndpointPort],
    eps: &[Endpoint],
    labels: &BTreeMap<String, String>,
) -> bool {
    let mut have = slice.endpoints.clone();
    have.sort_by(|a, b| a.addresses.cmp(&b.addresses));
    have == eps
        && port_key(slice.ports.as_deref().unwrap_or(&[])) == port_key(ports)
        && slice.metadata.labels.as_ref() == Some(labels)
}

/// The plan from `existing` (this controller's slices of `svc`) to `desired`: slices with the
/// same port set are reused in name order, extras deleted, missing ones created.
pub fn plan(
    svc: &Service,
    desired: Vec<(Vec<EndpointPort>, Vec<Endpoint>)>,
    existing: &[EndpointSlice],
) -> Plan {
    let labels = labels(svc);
    let mut existing: Vec<&EndpointSlice> = existing
        .iter()
        .filter(|s| s.address_type == "IPv4")
        .collect();
    existing.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut used = vec![false; existing.len()];
    let mut plan = Plan::default();
    for (ports, eps) in desired {
        let key = port_key(&ports);
        let reuse = existing
            .iter()
            .enumerate()
            .find(|(i, s)| !used[*i] && port_key(s.ports.as_deref().unwrap_or(&[])) == key)
            .map(|(i, _)| i);
        let reuse = reuse.or_else(|| used.iter().position(|u| !u));
        match reuse {
            Some(i) => {
                used[i] = true;
                if !same_content(existing[i], &ports, &eps, &labels) {
                    let mut s = existing[i].clone();
                    s.endpoints = eps;
                    s.ports = Some(ports);
                    s.metadata.labels = Some(labels.clone());
                    plan.update.push(s);
                }
            }
            None => plan.create.push(EndpointSlice {
                metadata: ObjectMeta {
                    generate_name: Some(format!(
                        "{}-",
                        svc.metadata.name.as_deref().unwrap_or_default()
                    )),
                    namespace: svc.metadata.namespace.clone(),
                    labels: Some(labels.clone()),
                    owner_references: Some(vec![owner(svc)]),
                    ..Default::default()
                },
                address_type: "IPv4".into(),
                endpoints: eps,
                ports: Some(ports),
            }),
        }
    }
    for (i, s) in existing.iter().enumerate() {
        if !used[i] {
            plan.delete.extend(s.metadata.name.clone());
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::endpoints::pods::tests::pod;
    use serde_json::json;

    fn svc() -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "svc-uid", "labels": {"team": "a"}},
            "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}
        }))
        .unwrap()
    }

    fn web_pod(i: usize, ready: bool, terminating: bool) -> Pod {
        let mut v = json!({
            "metadata": {"name": format!("p{i}"), "namespace": "ns", "uid": format!("u{i}"), "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}]},
            "status": {"phase": "Running", "podIP": format!("10.0.{}.{}", i / 250, i % 250 + 1),
                "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}
        });
        if terminating {
            v["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
        pod(v)
    }

    #[test]
    fn zone_from_the_node_and_hints_from_traffic_distribution() {
        let zones = Zones::from([("n1".to_string(), "zone-a".to_string())]);
        let with = |traffic: Option<&str>| {
            let mut s = svc();
            s.spec.as_mut().unwrap().traffic_distribution = traffic.map(str::to_string);
            s
        };
        let ready = web_pod(1, true, false);
        let plain = endpoint(&ready, &with(None), &zones).unwrap();
        assert_eq!(plain.zone.as_deref(), Some("zone-a"));
        assert_eq!(plain.node_name.as_deref(), Some("n1"));
        assert_eq!(plain.hints, None);

        let close = endpoint(&ready, &with(Some("PreferClose")), &zones).unwrap();
        let hints = close.hints.unwrap();
        assert_eq!(hints.for_zones.unwrap()[0].name, "zone-a");
        assert_eq!(hints.for_nodes, None);

        let node = endpoint(&ready, &with(Some("PreferSameNode")), &zones).unwrap();
        let hints = node.hints.unwrap();
        assert_eq!(hints.for_zones.unwrap()[0].name, "zone-a");
        assert_eq!(hints.for_nodes.unwrap()[0].name, "n1");

        // Not ready: no hints. No zone known: PreferClose has nothing to say.
        let unready = endpoint(
            &web_pod(2, false, false),
            &with(Some("PreferClose")),
            &zones,
        );
        assert_eq!(unready.unwrap().hints, None);
        let unknown = endpoint(&ready, &with(Some("PreferClose")), &Zones::new()).unwrap();
        assert_eq!((unknown.zone, unknown.hints), (None, None));
    }

    #[test]
    fn conditions_follow_readiness_and_termination() {
        let s = svc();
        let ready = endpoint(&web_pod(1, true, false), &s, &Default::default())
            .unwrap()
            .conditions
            .unwrap();
        assert_eq!(
            (ready.ready, ready.serving, ready.terminating),
            (Some(true), Some(true), Some(false))
        );
        let unready = endpoint(&web_pod(2, false, false), &s, &Default::default())
            .unwrap()
            .conditions
            .unwrap();
        assert_eq!(
            (unready.ready, unready.serving, unready.terminating),
            (Some(false), Some(false), Some(false))
        );
        let going = endpoint(&web_pod(3, true, true), &s, &Default::default())
            .unwrap()
            .conditions
            .unwrap();
        assert_eq!(
            (going.ready, going.serving, going.terminating),
            (Some(false), Some(true), Some(true))
        );
    }

    #[test]
    fn at_most_100_endpoints_per_slice() {
        let s = svc();
        let all: Vec<Pod> = (0..250).map(|i| web_pod(i, true, false)).collect();
        let refs: Vec<&Pod> = all.iter().collect();
        let d = desired(&s, &refs, &Default::default(), MAX_ENDPOINTS_PER_SLICE);
        assert_eq!(
            d.iter().map(|(_, e)| e.len()).collect::<Vec<_>>(),
            vec![100, 100, 50]
        );
        assert_eq!(d[0].0[0].port, Some(8080));
        let p = plan(&s, d, &[]);
        assert_eq!(p.create.len(), 3);
        let first = &p.create[0];
        assert_eq!(first.metadata.generate_name.as_deref(), Some("web-"));
        let labels = first.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[SERVICE_NAME_LABEL], "web");
        assert_eq!(labels[MANAGED_BY_LABEL], MANAGED_BY);
        assert_eq!(labels["team"], "a");
        let owner = &first.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("Service", "svc-uid", Some(true))
        );
    }

    #[test]
    fn unchanged_slices_are_left_alone_and_extras_deleted() {
        let s = svc();
        let all: Vec<Pod> = (0..3).map(|i| web_pod(i, true, false)).collect();
        let refs: Vec<&Pod> = all.iter().collect();
        let mut created = plan(&s, desired(&s, &refs, &Default::default(), 100), &[]).create;
        created[0].metadata.name = Some("web-abc".into());
        let mut extra = created[0].clone();
        extra.metadata.name = Some("web-zzz".into());
        let again = plan(
            &s,
            desired(&s, &refs, &Default::default(), 100),
            &[created[0].clone(), extra],
        );
        assert!(
            again.create.is_empty() && again.update.is_empty(),
            "{again:?}"
        );
        assert_eq!(again.delete, vec!["web-zzz"]);
        // A pod going unready updates the existing slice in place.
        let changed: Vec<Pod> = vec![
            web_pod(0, false, false),
            web_pod(1, true, false),
            web_pod(2, true, false),
        ];
        let refs: Vec<&Pod> = changed.iter().collect();
        let upd = plan(&s, desired(&s, &refs, &Default::default(), 100), &created);
        assert_eq!(upd.update.len(), 1);
        assert_eq!(upd.update[0].metadata.name.as_deref(), Some("web-abc"));
        assert_eq!(
            upd.update[0].endpoints[0]
                .conditions
                .as_ref()
                .unwrap()
                .ready,
            Some(false)
        );
    }

    #[test]
    fn no_endpoints_gives_one_placeholder() {
        let s = svc();
        let d = desired(&s, &[], &Default::default(), 100);
        assert_eq!(d.len(), 1);
        assert!(d[0].0.is_empty() && d[0].1.is_empty());
    }
}
