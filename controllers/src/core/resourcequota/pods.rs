//! What one pod charges against a quota (upstream's pod evaluator): its object count
//! always, and while it is not terminal its effective requests and limits.

use k8s_openapi::api::core::v1::{Pod, ResourceRequirements};

use api_helpers::quantity::Quantity;

pub use crate::machinery::pod_resources::{limits, requests, Resources};

/// Pod resources the pod evaluator tracks (besides `hugepages-*` and extended resources).
pub const POD_RESOURCES: &[&str] = &[
    "count/pods",
    "cpu",
    "memory",
    "ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "pods",
];

/// Whether the pod evaluator tracks quota resource `name`.
pub fn matches_resource(name: &str) -> bool {
    POD_RESOURCES.contains(&name)
        || name.starts_with("hugepages-")
        || name.starts_with("requests.hugepages-")
        || (name.starts_with("requests.") && !is_native(name))
}

/// Native resources have no domain or a `kubernetes.io` one.
fn is_native(name: &str) -> bool {
    !name.contains('/') || name.contains("kubernetes.io/")
}

/// Extended resources: fully qualified, not native, not `requests.*`.
fn is_extended(name: &str) -> bool {
    !is_native(name) && !name.starts_with("requests.")
}

/// Whether the pod is charged for compute at `now`: not terminal, and not stuck
/// terminating past its grace period.
pub fn charged(pod: &Pod, now: jiff::Timestamp) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if matches!(phase, Some("Failed" | "Succeeded")) {
        return false;
    }
    if let (Some(ts), Some(grace)) = (
        &pod.metadata.deletion_timestamp,
        pod.metadata.deletion_grace_period_seconds,
    ) {
        let until = ts.0 + jiff::SignedDuration::from_secs(grace);
        if now > until {
            return false;
        }
    }
    true
}

/// Everything the pod charges (`PodUsageFunc`).
pub fn usage(pod: &Pod, now: jiff::Timestamp) -> Resources {
    let mut out = Resources::new();
    out.insert("count/pods".into(), Quantity::count(1));
    if !charged(pod, now) {
        return out;
    }
    out.insert("pods".into(), Quantity::count(1));
    let req = requests(pod);
    let lim = limits(pod);
    for r in ["cpu", "memory", "ephemeral-storage"] {
        if let Some(q) = req.get(r) {
            out.insert(r.into(), *q);
            out.insert(format!("requests.{r}"), *q);
        }
        if let Some(q) = lim.get(r) {
            out.insert(format!("limits.{r}"), *q);
        }
    }
    for (name, q) in &req {
        if name.starts_with("hugepages-") {
            out.insert(name.clone(), *q);
            out.insert(format!("requests.{name}"), *q);
        } else if is_extended(name) {
            out.insert(format!("requests.{name}"), *q);
        }
    }
    out
}

/// BestEffort QoS: no container (nor the pod) requests or limits cpu or memory.
pub fn is_best_effort(pod: &Pod) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return true;
    };
    let names_compute = |r: Option<&ResourceRequirements>| {
        r.is_some_and(|r| {
            [r.requests.as_ref(), r.limits.as_ref()]
                .into_iter()
                .flatten()
                .any(|l| {
                    l.iter().any(|(k, v)| {
                        (k == "cpu" || k == "memory")
                            && Quantity::from_wire(v).is_ok_and(|q| q.nanos != 0)
                    })
                })
        })
    };
    !(spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .any(|c| names_compute(c.resources.as_ref()))
        || names_compute(spec.resources.as_ref()))
}

/// Terminating scope: the pod has `activeDeadlineSeconds >= 0`.
pub fn is_terminating(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.active_deadline_seconds)
        .is_some_and(|d| d >= 0)
}

/// CrossNamespacePodAffinity scope: some (anti-)affinity term names other namespaces.
pub fn uses_cross_namespace_affinity(pod: &Pod) -> bool {
    let Some(aff) = pod.spec.as_ref().and_then(|s| s.affinity.as_ref()) else {
        return false;
    };
    let cross = |t: &k8s_openapi::api::core::v1::PodAffinityTerm| {
        t.namespaces.as_ref().is_some_and(|n| !n.is_empty()) || t.namespace_selector.is_some()
    };
    let a = aff.pod_affinity.as_ref().is_some_and(|a| {
        a.required_during_scheduling_ignored_during_execution
            .iter()
            .flatten()
            .any(cross)
            || a.preferred_during_scheduling_ignored_during_execution
                .iter()
                .flatten()
                .any(|w| cross(&w.pod_affinity_term))
    });
    let anti = aff.pod_anti_affinity.as_ref().is_some_and(|a| {
        a.required_during_scheduling_ignored_during_execution
            .iter()
            .flatten()
            .any(cross)
            || a.preferred_during_scheduling_ignored_during_execution
                .iter()
                .flatten()
                .any(|w| cross(&w.pod_affinity_term))
    });
    a || anti
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    fn now() -> jiff::Timestamp {
        jiff::Timestamp::now()
    }

    #[test]
    fn sums_containers_and_takes_max_with_init() {
        let p = pod(json!({"spec": {
        "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "2", "memory": "64Mi"}}}],
        "containers": [
            {"name": "a", "resources": {"requests": {"cpu": "500m", "memory": "128Mi"}, "limits": {"cpu": "1"}}},
            {"name": "b", "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}}}
        ]}}));
        let u = usage(&p, now());
        assert_eq!(u["pods"].to_string(), "1");
        assert_eq!(u["count/pods"].to_string(), "1");
        assert_eq!(u["requests.cpu"].to_string(), "2");
        assert_eq!(u["cpu"].to_string(), "2");
        assert_eq!(u["requests.memory"].to_string(), "192Mi");
        assert_eq!(u["limits.cpu"].to_string(), "1");
        assert!(!u.contains_key("limits.memory"));
    }

    #[test]
    fn sidecars_add_to_the_total_and_to_later_init_steps() {
        let p = pod(json!({"spec": {
            "initContainers": [
                {"name": "side", "restartPolicy": "Always", "resources": {"requests": {"cpu": "100m"}}},
                {"name": "setup", "resources": {"requests": {"cpu": "1"}}}
            ],
            "containers": [{"name": "a", "resources": {"requests": {"cpu": "200m"}}}]}}));
        // app 200m + sidecar 100m = 300m; init step = 1 + 100m = 1100m
        assert_eq!(requests(&p)["cpu"].to_string(), "1100m");
    }

    #[test]
    fn overhead_and_pod_level_resources() {
        let p = pod(json!({"spec": {
            "overhead": {"cpu": "10m", "memory": "1Mi"},
            "containers": [{"name": "a", "resources": {"requests": {"cpu": "100m"}, "limits": {"cpu": "200m"}}}]}}));
        assert_eq!(requests(&p)["cpu"].to_string(), "110m");
        assert_eq!(requests(&p)["memory"].to_string(), "1Mi");
        assert_eq!(limits(&p)["cpu"].to_string(), "210m");
        assert!(!limits(&p).contains_key("memory"));
        let p = pod(json!({"spec": {"resources": {"requests": {"cpu": "3"}},
            "containers": [{"name": "a", "resources": {"requests": {"cpu": "100m"}}}]}}));
        assert_eq!(requests(&p)["cpu"].to_string(), "3");
    }

    #[test]
    fn terminal_pods_only_count_as_objects() {
        let p = pod(
            json!({"spec": {"containers": [{"name": "a", "resources": {"requests": {"cpu": "1"}}}]},
            "status": {"phase": "Succeeded"}}),
        );
        let u = usage(&p, now());
        assert_eq!(u.len(), 1);
        assert_eq!(u["count/pods"].to_string(), "1");
    }

    #[test]
    fn stuck_terminating_past_grace_is_not_charged() {
        let past = (now() - jiff::SignedDuration::from_secs(120)).to_string();
        let p = pod(
            json!({"metadata": {"deletionTimestamp": past, "deletionGracePeriodSeconds": 30},
            "spec": {"containers": [{"name": "a"}]}}),
        );
        assert!(!charged(&p, now()));
        let future = (now() + jiff::SignedDuration::from_secs(120)).to_string();
        let p = pod(
            json!({"metadata": {"deletionTimestamp": future, "deletionGracePeriodSeconds": 30},
            "spec": {"containers": [{"name": "a"}]}}),
        );
        assert!(charged(&p, now()));
    }

    #[test]
    fn hugepages_and_extended_resources() {
        let p = pod(
            json!({"spec": {"containers": [{"name": "a", "resources": {"requests": {
            "hugepages-2Mi": "4Mi", "example.com/gpu": "2"}}}]}}),
        );
        let u = usage(&p, now());
        assert_eq!(u["hugepages-2Mi"].to_string(), "4Mi");
        assert_eq!(u["requests.hugepages-2Mi"].to_string(), "4Mi");
        assert_eq!(u["requests.example.com/gpu"].to_string(), "2");
        assert!(matches_resource("requests.example.com/gpu"));
        assert!(!matches_resource("requests.storage"));
    }

    #[test]
    fn qos_and_scopes() {
        let be = pod(json!({"spec": {"containers": [{"name": "a"}]}}));
        assert!(is_best_effort(&be));
        let burst = pod(
            json!({"spec": {"containers": [{"name": "a", "resources": {"limits": {"memory": "1Gi"}}}]}}),
        );
        assert!(!is_best_effort(&burst));
        let t = pod(json!({"spec": {"activeDeadlineSeconds": 10, "containers": [{"name": "a"}]}}));
        assert!(is_terminating(&t));
        assert!(!is_terminating(&be));
        let x = pod(
            json!({"spec": {"containers": [{"name": "a"}], "affinity": {"podAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [{"topologyKey": "k", "namespaces": ["other"]}]}}}}),
        );
        assert!(uses_cross_namespace_affinity(&x));
        assert!(!uses_cross_namespace_affinity(&be));
    }
}
