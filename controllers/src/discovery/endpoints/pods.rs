//! Which pods back a Service, and what they offer: shared by the endpointslice and
//! endpoints controllers.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, Service, ServicePort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// The label selector of a Service, if it selects pods (an empty selector selects none).
pub fn selector(svc: &Service) -> Option<&BTreeMap<String, String>> {
    svc.spec
        .as_ref()?
        .selector
        .as_ref()
        .filter(|s| !s.is_empty())
}

/// Whether `pod` carries every label of `selector`.
pub fn selects(selector: &BTreeMap<String, String>, pod: &Pod) -> bool {
    let labels = pod.metadata.labels.as_ref();
    selector
        .iter()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// Whether the pod belongs in endpoints at all: it has an IP and is not terminal.
/// Terminating pods stay (slices report them as terminating) unless `include_terminating`
/// is false.
pub fn eligible(pod: &Pod, include_terminating: bool) -> bool {
    let status = pod.status.as_ref();
    let has_ip = status
        .and_then(|s| s.pod_ip.as_deref())
        .is_some_and(|ip| !ip.is_empty());
    let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("");
    let terminal = phase == "Succeeded" || phase == "Failed";
    has_ip && !terminal && (include_terminating || !is_terminating(pod))
}

/// `deletionTimestamp` is set.
pub fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// The pod's Ready condition is True.
pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The container port a service port targets on `pod`: a number as is, a name looked up
/// among the pod's container ports of the same protocol; `None` when the name is unknown.
pub fn target_port(sp: &ServicePort, pod: &Pod) -> Option<i32> {
    match &sp.target_port {
        None => Some(sp.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => {
            if let Ok(n) = name.parse::<i32>() {
                return Some(n);
            }
            let protocol = sp.protocol.as_deref().unwrap_or("TCP");
            pod.spec
                .as_ref()?
                .containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| {
                    p.name.as_deref() == Some(name.as_str())
                        && p.protocol.as_deref().unwrap_or("TCP") == protocol
                })
                .map(|p| p.container_port)
        }
    }
}

/// `spec.publishNotReadyAddresses`: every endpoint counts as ready.
pub fn publish_not_ready(svc: &Service) -> bool {
    svc.spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false)
}

/// A headless Service (`clusterIP: None`).
pub fn is_headless(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

/// The DNS hostname of the pod within the service, when its `subdomain` names the service.
pub fn hostname(pod: &Pod, svc: &Service) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let host = spec.hostname.as_ref().filter(|h| !h.is_empty())?;
    (spec.subdomain.as_deref() == svc.metadata.name.as_deref()).then(|| host.clone())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    /// A pod from JSON, for the tests of both controllers.
    pub fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn selection_and_eligibility() {
        let sel = BTreeMap::from([("app".to_string(), "web".to_string())]);
        let p = pod(
            json!({"metadata": {"name": "a", "labels": {"app": "web", "x": "y"}}, "status": {"podIP": "10.0.0.1", "phase": "Running"}}),
        );
        assert!(selects(&sel, &p));
        assert!(eligible(&p, true));
        let done = pod(
            json!({"metadata": {"name": "b"}, "status": {"podIP": "10.0.0.2", "phase": "Succeeded"}}),
        );
        assert!(!eligible(&done, true));
        let no_ip = pod(json!({"metadata": {"name": "c"}, "status": {"phase": "Pending"}}));
        assert!(!eligible(&no_ip, true));
        let other = pod(json!({"metadata": {"name": "d", "labels": {"app": "db"}}}));
        assert!(!selects(&sel, &other));
    }

    #[test]
    fn named_target_ports_resolve_per_pod() {
        let sp: ServicePort =
            serde_json::from_value(json!({"port": 80, "targetPort": "http"})).unwrap();
        let p = pod(
            json!({"metadata": {"name": "a"}, "spec": {"containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}]}}),
        );
        assert_eq!(target_port(&sp, &p), Some(8080));
        let q = pod(json!({"metadata": {"name": "b"}, "spec": {"containers": [{"name": "c"}]}}));
        assert_eq!(target_port(&sp, &q), None);
        let num: ServicePort = serde_json::from_value(json!({"port": 80})).unwrap();
        assert_eq!(target_port(&num, &q), Some(80));
    }
}
