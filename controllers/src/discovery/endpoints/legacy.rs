//! endpoints-controller's reconcile: the core/v1 Endpoints object of a Service, subsets
//! grouped by port set, ready and not-ready addresses, capped at [`MAX_ADDRESSES`].

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service,
};
use kube::api::ObjectMeta;

use super::pods;

/// Upstream truncates Endpoints beyond this many addresses.
pub const MAX_ADDRESSES: usize = 1000;
/// Annotation set when truncated.
pub const OVER_CAPACITY: &str = "endpoints.kubernetes.io/over-capacity";
/// Label telling the mirroring controller to leave these alone.
pub const SKIP_MIRROR: &str = "endpointslice.kubernetes.io/skip-mirror";

fn address(pod: &Pod, svc: &Service) -> Option<EndpointAddress> {
    Some(EndpointAddress {
        ip: pod.status.as_ref()?.pod_ip.clone()?,
        hostname: pods::hostname(pod, svc),
        node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
        target_ref: Some(ObjectReference {
            kind: Some("Pod".into()),
            namespace: pod.metadata.namespace.clone(),
            name: pod.metadata.name.clone(),
            uid: pod.metadata.uid.clone(),
            ..Default::default()
        }),
    })
}

/// The Endpoints `svc` should have given the pods its selector matches.
pub fn desired(svc: &Service, selected: &[&Pod]) -> Endpoints {
    let tolerate_unready = pods::publish_not_ready(svc);
    let mut subsets: BTreeMap<String, EndpointSubset> = BTreeMap::new();
    let mut total = 0;
    let mut truncated = false;
    for pod in selected
        .iter()
        .filter(|p| pods::eligible(p, tolerate_unready))
    {
        let Some(addr) = address(pod, svc) else {
            continue;
        };
        let ports: Vec<EndpointPort> = svc
            .spec
            .as_ref()
            .and_then(|s| s.ports.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|sp| {
                Some(EndpointPort {
                    name: sp.name.clone(),
                    port: pods::target_port(sp, pod)?,
                    protocol: Some(sp.protocol.clone().unwrap_or_else(|| "TCP".into())),
                    app_protocol: sp.app_protocol.clone(),
                })
            })
            .collect();
        if ports.is_empty()
            && svc
                .spec
                .as_ref()
                .and_then(|s| s.ports.as_ref())
                .is_some_and(|p| !p.is_empty())
        {
            continue;
        }
        if total >= MAX_ADDRESSES {
            truncated = true;
            continue;
        }
        total += 1;
        let mut key: Vec<String> = ports
            .iter()
            .map(|p| format!("{:?}/{}/{:?}", p.name, p.port, p.protocol))
            .collect();
        key.sort();
        let subset = subsets
            .entry(key.join(","))
            .or_insert_with(|| EndpointSubset {
                ports: Some(ports.clone()),
                ..Default::default()
            });
        let ready = tolerate_unready || (pods::is_ready(pod) && !pods::is_terminating(pod));
        let list = if ready {
            &mut subset.addresses
        } else {
            &mut subset.not_ready_addresses
        };
        list.get_or_insert_with(Vec::new).push(addr);
    }
    let subsets: Vec<EndpointSubset> = subsets
        .into_values()
        .map(|mut s| {
            for list in [&mut s.addresses, &mut s.not_ready_addresses]
                .into_iter()
                .flatten()
            {
                list.sort_by(|a, b| a.ip.cmp(&b.ip));
            }
            if let Some(p) = s.ports.as_mut() {
                p.sort_by(|a, b| (a.name.as_deref(), a.port).cmp(&(b.name.as_deref(), b.port)));
            }
            s
        })
        .collect();
    let mut labels = svc.metadata.labels.clone().unwrap_or_default();
    if pods::is_headless(svc) {
        labels.insert("service.kubernetes.io/headless".into(), String::new());
    }
    labels.insert(SKIP_MIRROR.into(), "true".into());
    let annotations =
        truncated.then(|| BTreeMap::from([(OVER_CAPACITY.to_string(), "truncated".to_string())]));
    Endpoints {
        metadata: ObjectMeta {
            name: svc.metadata.name.clone(),
            namespace: svc.metadata.namespace.clone(),
            labels: Some(labels),
            annotations,
            ..Default::default()
        },
        subsets: if subsets.is_empty() {
            None
        } else {
            Some(subsets)
        },
    }
}

/// Whether `current` already says what `want` says (labels, annotation, subsets).
pub fn up_to_date(current: &Endpoints, want: &Endpoints) -> bool {
    let over = |e: &Endpoints| {
        e.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(OVER_CAPACITY))
            .cloned()
    };
    current.subsets.clone().unwrap_or_default() == want.subsets.clone().unwrap_or_default()
        && current.metadata.labels == want.metadata.labels
        && over(current) == over(want)
}

/// The annotation of Endpoints objects used as leader-election records (before Leases);
/// the controller never treats those as leftovers.
pub const LEADER_ANNOTATION: &str = "control-plane.alpha.kubernetes.io/leader";

/// Whether `e` is checked at start-up as a possible leftover of a Service deleted while no
/// controller ran (upstream's checkLeftoverEndpoints): every Endpoints but leader records.
pub fn leftover_candidate(e: &Endpoints) -> bool {
    !e.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(LEADER_ANNOTATION))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::endpoints::pods::tests::pod;
    use serde_json::json;

    #[test]
    fn ready_and_not_ready_addresses_share_a_subset() {
        let svc: Service = serde_json::from_value(json!({"metadata": {"name": "web", "namespace": "ns"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}})).unwrap();
        let mk = |ip: &str, ready: &str| {
            pod(
                json!({"metadata": {"name": ip, "namespace": "ns"}, "status": {"phase": "Running", "podIP": ip, "conditions": [{"type": "Ready", "status": ready}]}}),
            )
        };
        let (a, b) = (mk("10.0.0.2", "True"), mk("10.0.0.1", "False"));
        let ep = desired(&svc, &[&a, &b]);
        let subsets = ep.subsets.as_ref().unwrap();
        assert_eq!(subsets.len(), 1);
        assert_eq!(subsets[0].addresses.as_ref().unwrap()[0].ip, "10.0.0.2");
        assert_eq!(
            subsets[0].not_ready_addresses.as_ref().unwrap()[0].ip,
            "10.0.0.1"
        );
        assert_eq!(subsets[0].ports.as_ref().unwrap()[0].port, 8080);
        assert_eq!(ep.metadata.labels.as_ref().unwrap()[SKIP_MIRROR], "true");
        assert!(up_to_date(&ep, &desired(&svc, &[&b, &a])));
        assert!(!up_to_date(&ep, &desired(&svc, &[&a])));
    }

    #[test]
    fn truncates_beyond_capacity() {
        let svc: Service = serde_json::from_value(json!({"metadata": {"name": "web"}, "spec": {"selector": {"a": "b"}, "ports": [{"port": 80}]}})).unwrap();
        let all: Vec<Pod> = (0..1005).map(|i| pod(json!({"metadata": {"name": format!("p{i}")}, "status": {"phase": "Running", "podIP": format!("10.1.{}.{}", i / 250, i % 250), "conditions": [{"type": "Ready", "status": "True"}]}}))).collect();
        let refs: Vec<&Pod> = all.iter().collect();
        let ep = desired(&svc, &refs);
        assert_eq!(
            ep.subsets.unwrap()[0].addresses.as_ref().unwrap().len(),
            MAX_ADDRESSES
        );
        assert_eq!(ep.metadata.annotations.unwrap()[OVER_CAPACITY], "truncated");
    }

    #[test]
    fn leader_records_are_never_leftovers() {
        let mut e = Endpoints::default();
        assert!(leftover_candidate(&e));
        e.metadata.annotations = Some(
            [(LEADER_ANNOTATION.to_string(), "{}".to_string())]
                .into_iter()
                .collect(),
        );
        assert!(!leftover_candidate(&e));
    }
}
