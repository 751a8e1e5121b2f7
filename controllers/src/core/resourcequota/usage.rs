//! A quota's usage from observed objects, and the status to write (upstream's
//! `CalculateUsage` and `syncResourceQuota`), as pure functions.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, Pod, ResourceQuota, ResourceQuotaStatus,
    ScopedResourceSelectorRequirement, Service,
};

use super::pods::{self, Resources};
use api_helpers::quantity::Quantity;

/// Storage-class scoped resources: `<class>.storageclass.storage.k8s.io/<resource>`.
pub const STORAGE_CLASS_SUFFIX: &str = ".storageclass.storage.k8s.io/";

/// Count-only kinds with a legacy alias: (alias, `count/` name).
pub const LEGACY_COUNTS: &[(&str, &str)] = &[
    ("configmaps", "count/configmaps"),
    ("resourcequotas", "count/resourcequotas"),
    ("replicationcontrollers", "count/replicationcontrollers"),
    ("secrets", "count/secrets"),
];

const SERVICE_RESOURCES: &[&str] = &[
    "count/services",
    "services",
    "services.loadbalancers",
    "services.nodeports",
];

const PVC_RESOURCES: &[&str] = &[
    "persistentvolumeclaims",
    "count/persistentvolumeclaims",
    "requests.storage",
];

/// The objects of one namespace the quota is computed over.
#[derive(Debug, Default)]
pub struct Observed<'a> {
    /// Pods.
    pub pods: Vec<&'a Pod>,
    /// Services.
    pub services: Vec<&'a Service>,
    /// PersistentVolumeClaims.
    pub claims: Vec<&'a PersistentVolumeClaim>,
    /// Object counts by `count/<resource>[.<group>]` name for every other counted kind
    /// the controller could observe (a name missing here is not computed).
    pub counts: BTreeMap<String, i64>,
    /// The clock (stuck-terminating pods stop being charged after their grace period).
    pub now: jiff::Timestamp,
}

/// The evaluators (upstream's registry) that track quota resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Evaluator {
    Pods,
    Services,
    Claims,
    /// A count-only kind: its `count/` name.
    Count,
}

fn evaluator_for(name: &str, counts: &BTreeMap<String, i64>) -> Option<Evaluator> {
    if pods::matches_resource(name) {
        Some(Evaluator::Pods)
    } else if SERVICE_RESOURCES.contains(&name) {
        Some(Evaluator::Services)
    } else if PVC_RESOURCES.contains(&name)
        || (name.contains(STORAGE_CLASS_SUFFIX)
            && (name.ends_with("/persistentvolumeclaims") || name.ends_with("/requests.storage")))
    {
        Some(Evaluator::Claims)
    } else if counts.contains_key(count_name(name)) {
        Some(Evaluator::Count)
    } else {
        None
    }
}

/// The `count/` name of a count resource (legacy aliases resolved).
fn count_name(name: &str) -> &str {
    LEGACY_COUNTS
        .iter()
        .find(|(alias, _)| *alias == name)
        .map(|(_, c)| *c)
        .unwrap_or(name)
}

/// The scope requirements of a quota: each of `spec.scopes` as `Exists`, then the
/// scope selector's expressions.
pub fn scope_requirements(quota: &ResourceQuota) -> Vec<ScopedResourceSelectorRequirement> {
    let spec = quota.spec.as_ref();
    let mut out: Vec<_> = spec
        .and_then(|s| s.scopes.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|scope| ScopedResourceSelectorRequirement {
            scope_name: scope,
            operator: "Exists".into(),
            values: None,
        })
        .collect();
    out.extend(
        spec.and_then(|s| s.scope_selector.as_ref())
            .and_then(|s| s.match_expressions.clone())
            .unwrap_or_default(),
    );
    out
}

/// Whether the pod matches one scope requirement.
pub fn pod_matches_scope(pod: &Pod, req: &ScopedResourceSelectorRequirement) -> bool {
    match req.scope_name.as_str() {
        "Terminating" => pods::is_terminating(pod),
        "NotTerminating" => !pods::is_terminating(pod),
        "BestEffort" => pods::is_best_effort(pod),
        "NotBestEffort" => !pods::is_best_effort(pod),
        "CrossNamespacePodAffinity" => pods::uses_cross_namespace_affinity(pod),
        "PriorityClass" => {
            let class = pod
                .spec
                .as_ref()
                .and_then(|s| s.priority_class_name.as_deref())
                .filter(|c| !c.is_empty());
            let values = req.values.as_deref().unwrap_or_default();
            match req.operator.as_str() {
                "Exists" => class.is_some(),
                "DoesNotExist" => class.is_none(),
                "In" => class.is_some_and(|c| values.iter().any(|v| v == c)),
                "NotIn" => class.is_none_or(|c| !values.iter().any(|v| v == c)),
                _ => false,
            }
        }
        _ => false,
    }
}

fn claim_matches_scope(
    pvc: &PersistentVolumeClaim,
    req: &ScopedResourceSelectorRequirement,
) -> bool {
    if req.scope_name != "VolumeAttributesClass" {
        return false;
    }
    let mut classes: Vec<&str> = Vec::new();
    if let Some(c) = pvc
        .spec
        .as_ref()
        .and_then(|s| s.volume_attributes_class_name.as_deref())
    {
        classes.push(c);
    }
    if let Some(st) = pvc.status.as_ref() {
        if let Some(c) = st.current_volume_attributes_class_name.as_deref() {
            classes.push(c);
        }
        if let Some(c) = st
            .modify_volume_status
            .as_ref()
            .and_then(|m| m.target_volume_attributes_class_name.as_deref())
        {
            classes.push(c);
        }
    }
    classes.retain(|c| !c.is_empty());
    let values = req.values.as_deref().unwrap_or_default();
    match req.operator.as_str() {
        "Exists" => !classes.is_empty(),
        "DoesNotExist" => classes.is_empty(),
        "In" => classes.iter().any(|c| values.iter().any(|v| v == c)),
        "NotIn" => classes.is_empty() || classes.iter().any(|c| !values.iter().any(|v| v == c)),
        _ => false,
    }
}

fn service_usage(svc: &Service) -> Resources {
    let spec = svc.spec.as_ref();
    let ports = spec.and_then(|s| s.ports.as_ref()).map_or(0, |p| p.len()) as i64;
    let mut out = Resources::new();
    out.insert("count/services".into(), Quantity::count(1));
    out.insert("services".into(), Quantity::count(1));
    out.insert("services.loadbalancers".into(), Quantity::ZERO);
    out.insert("services.nodeports".into(), Quantity::ZERO);
    match spec.and_then(|s| s.type_.as_deref()) {
        Some("NodePort") => {
            out.insert("services.nodeports".into(), Quantity::count(ports));
        }
        Some("LoadBalancer") => {
            let node_ports =
                if spec.and_then(|s| s.allocate_load_balancer_node_ports) == Some(false) {
                    spec.and_then(|s| s.ports.as_ref()).map_or(0, |p| {
                        p.iter().filter(|p| p.node_port.unwrap_or(0) != 0).count()
                    }) as i64
                } else {
                    ports
                };
            out.insert("services.nodeports".into(), Quantity::count(node_ports));
            out.insert("services.loadbalancers".into(), Quantity::count(1));
        }
        _ => {}
    }
    out
}

fn claim_usage(pvc: &PersistentVolumeClaim) -> Resources {
    let mut out = Resources::new();
    out.insert("persistentvolumeclaims".into(), Quantity::count(1));
    out.insert("count/persistentvolumeclaims".into(), Quantity::count(1));
    let spec = pvc.spec.as_ref();
    // The class: spec.storageClassName, else the beta annotation.
    let class = spec
        .and_then(|s| s.storage_class_name.clone())
        .or_else(|| {
            pvc.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("volume.beta.kubernetes.io/storage-class").cloned())
        })
        .filter(|c| !c.is_empty());
    if let Some(c) = &class {
        out.insert(
            format!("{c}{STORAGE_CLASS_SUFFIX}persistentvolumeclaims"),
            Quantity::count(1),
        );
    }
    let requested = spec
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .and_then(|q| Quantity::from_wire(q).ok())
        .map(Quantity::round_up_to_unit);
    if let Some(mut storage) = requested {
        // A larger allocation (RecoverVolumeExpansionFailure) is what is charged.
        if let Some(alloc) = pvc
            .status
            .as_ref()
            .and_then(|s| s.allocated_resources.as_ref())
            .and_then(|a| a.get("storage"))
            .and_then(|q| Quantity::from_wire(q).ok())
        {
            if alloc > storage {
                storage = alloc.round_up_to_unit();
            }
        }
        out.insert("requests.storage".into(), storage);
        if let Some(c) = &class {
            out.insert(
                format!("{c}{STORAGE_CLASS_SUFFIX}requests.storage"),
                storage,
            );
        }
    }
    out
}

fn add_into(acc: &mut Resources, usage: &Resources, tracked: &[String]) {
    for name in tracked {
        if let Some(q) = usage.get(name) {
            let cur = acc.get(name).copied().unwrap_or(Quantity::ZERO);
            acc.insert(name.clone(), cur.plus(*q));
        }
    }
}

/// The usage of every hard resource of `quota` that can be computed from `observed`
/// (upstream's `CalculateUsage`): each tracked resource starts at zero; objects count
/// only when they match every scope requirement.
pub fn calculate(quota: &ResourceQuota, observed: &Observed<'_>) -> Resources {
    let hard: Vec<String> = quota
        .spec
        .as_ref()
        .and_then(|s| s.hard.as_ref())
        .map(|h| h.keys().cloned().collect())
        .unwrap_or_default();
    let scopes = scope_requirements(quota);
    let tracked = |e: Evaluator| -> Vec<String> {
        hard.iter()
            .filter(|n| evaluator_for(n, &observed.counts) == Some(e))
            .cloned()
            .collect()
    };
    let mut used = Resources::new();
    for e in [
        Evaluator::Pods,
        Evaluator::Services,
        Evaluator::Claims,
        Evaluator::Count,
    ] {
        let names = tracked(e);
        if names.is_empty() {
            continue;
        }
        for n in &names {
            used.insert(n.clone(), Quantity::ZERO);
        }
        match e {
            Evaluator::Pods => {
                for pod in observed
                    .pods
                    .iter()
                    .filter(|p| scopes.iter().all(|s| pod_matches_scope(p, s)))
                {
                    add_into(&mut used, &pods::usage(pod, observed.now), &names);
                }
            }
            Evaluator::Services if scopes.is_empty() => {
                for svc in &observed.services {
                    add_into(&mut used, &service_usage(svc), &names);
                }
            }
            Evaluator::Claims => {
                for pvc in observed
                    .claims
                    .iter()
                    .filter(|p| scopes.iter().all(|s| claim_matches_scope(p, s)))
                {
                    add_into(&mut used, &claim_usage(pvc), &names);
                }
            }
            Evaluator::Count if scopes.is_empty() => {
                for n in &names {
                    let count = observed.counts.get(count_name(n)).copied().unwrap_or(0);
                    used.insert(n.clone(), Quantity::count(count));
                }
            }
            // Services and counts match no scope: a scoped quota counts none of them.
            _ => {}
        }
    }
    used
}

fn parse_list(
    list: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
) -> Resources {
    list.into_iter()
        .flatten()
        .filter_map(|(k, v)| Quantity::from_wire(v).ok().map(|q| (k.clone(), q)))
        .collect()
}

fn to_wire(
    r: &Resources,
) -> BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity> {
    r.iter().map(|(k, v)| (k.clone(), v.to_wire())).collect()
}

/// The status to write, or `None` when the current one is already right
/// (`syncResourceQuota`): hard mirrors spec.hard; used keeps earlier observations for
/// resources not computed now, takes `computed` for the rest, and is masked to hard.
pub fn desired_status(quota: &ResourceQuota, computed: &Resources) -> Option<ResourceQuotaStatus> {
    let spec_hard = parse_list(quota.spec.as_ref().and_then(|s| s.hard.as_ref()));
    let status = quota.status.as_ref();
    let status_hard = status.and_then(|s| s.hard.as_ref());
    let status_used = status.and_then(|s| s.used.as_ref());
    let old_used = parse_list(status_used);
    let mut used = old_used.clone();
    used.extend(computed.iter().map(|(k, v)| (k.clone(), *v)));
    used.retain(|k, _| spec_hard.contains_key(k));
    let dirty = status_hard.is_none()
        || status_used.is_none()
        || parse_list(status_hard) != spec_hard
        || used != old_used;
    dirty.then(|| ResourceQuotaStatus {
        hard: Some(to_wire(&spec_hard)),
        used: Some(to_wire(&used)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn quota(v: serde_json::Value) -> ResourceQuota {
        serde_json::from_value(v).unwrap()
    }

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    fn s(r: &Resources, k: &str) -> String {
        r[k].to_string()
    }

    #[test]
    fn counts_compute_services_claims_and_objects() {
        let q = quota(json!({"spec": {"hard": {
            "pods": "10", "requests.cpu": "4", "limits.memory": "8Gi", "services": "5",
            "services.nodeports": "4", "services.loadbalancers": "1", "persistentvolumeclaims": "3",
            "requests.storage": "10Gi", "gold.storageclass.storage.k8s.io/requests.storage": "5Gi",
            "configmaps": "9", "count/deployments.apps": "2", "count/widgets.example.com": "1"}}}));
        let p1 = pod(
            json!({"spec": {"containers": [{"name": "a", "resources": {"requests": {"cpu": "250m"}, "limits": {"memory": "1Gi"}}}]}}),
        );
        let p2 =
            pod(json!({"spec": {"containers": [{"name": "a"}]}, "status": {"phase": "Failed"}}));
        let svc1: Service = serde_json::from_value(
            json!({"spec": {"type": "NodePort", "ports": [{"port": 80}, {"port": 443}]}}),
        )
        .unwrap();
        let svc2: Service = serde_json::from_value(
            json!({"spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}}),
        )
        .unwrap();
        let pvc: PersistentVolumeClaim =
            serde_json::from_value(json!({"spec": {"storageClassName": "gold",
            "resources": {"requests": {"storage": "1Gi"}}}}))
            .unwrap();
        let obs = Observed {
            pods: vec![&p1, &p2],
            services: vec![&svc1, &svc2],
            claims: vec![&pvc],
            counts: [
                ("count/configmaps".to_string(), 3),
                ("count/deployments.apps".to_string(), 1),
            ]
            .into(),
            now: jiff::Timestamp::now(),
        };
        let u = calculate(&q, &obs);
        assert_eq!(s(&u, "pods"), "1");
        assert_eq!(s(&u, "requests.cpu"), "250m");
        assert_eq!(s(&u, "limits.memory"), "1Gi");
        assert_eq!(s(&u, "services"), "2");
        assert_eq!(s(&u, "services.nodeports"), "3");
        assert_eq!(s(&u, "services.loadbalancers"), "1");
        assert_eq!(s(&u, "persistentvolumeclaims"), "1");
        assert_eq!(s(&u, "requests.storage"), "1Gi");
        assert_eq!(
            s(&u, "gold.storageclass.storage.k8s.io/requests.storage"),
            "1Gi"
        );
        assert_eq!(s(&u, "configmaps"), "3");
        assert_eq!(s(&u, "count/deployments.apps"), "1");
        // A kind the controller cannot observe is not computed.
        assert!(!u.contains_key("count/widgets.example.com"));
    }

    #[test]
    fn scopes_select_pods() {
        let be = pod(json!({"spec": {"containers": [{"name": "a"}]}}));
        let burst = pod(
            json!({"spec": {"priorityClassName": "high", "activeDeadlineSeconds": 5,
            "containers": [{"name": "a", "resources": {"requests": {"cpu": "1"}}}]}}),
        );
        let obs = Observed {
            pods: vec![&be, &burst],
            now: jiff::Timestamp::now(),
            ..Default::default()
        };
        let count = |v: serde_json::Value| s(&calculate(&quota(v), &obs), "pods");
        assert_eq!(
            count(json!({"spec": {"hard": {"pods": "9"}, "scopes": ["BestEffort"]}})),
            "1"
        );
        assert_eq!(
            count(
                json!({"spec": {"hard": {"pods": "9"}, "scopes": ["NotBestEffort", "Terminating"]}})
            ),
            "1"
        );
        assert_eq!(
            count(
                json!({"spec": {"hard": {"pods": "9"}, "scopes": ["NotTerminating", "NotBestEffort"]}})
            ),
            "0"
        );
        let sel = |op: &str, values: serde_json::Value| {
            count(
                json!({"spec": {"hard": {"pods": "9"}, "scopeSelector": {"matchExpressions": [
                {"scopeName": "PriorityClass", "operator": op, "values": values}]}}}),
            )
        };
        assert_eq!(sel("In", json!(["high"])), "1");
        assert_eq!(sel("NotIn", json!(["high"])), "1");
        assert_eq!(sel("Exists", json!(null)), "1");
        assert_eq!(sel("DoesNotExist", json!(null)), "1");
        assert_eq!(sel("In", json!(["low"])), "0");
        // Services match no scope.
        let svc: Service = serde_json::from_value(json!({"spec": {}})).unwrap();
        let obs = Observed {
            services: vec![&svc],
            ..Default::default()
        };
        let q = quota(json!({"spec": {"hard": {"services": "9"}, "scopes": ["BestEffort"]}}));
        assert_eq!(s(&calculate(&q, &obs), "services"), "0");
    }

    #[test]
    fn status_is_written_only_when_it_changes() {
        let q = quota(json!({"spec": {"hard": {"pods": "2", "secrets": "5"}}}));
        let used: Resources = [("pods".to_string(), Quantity::count(1))].into();
        let st = desired_status(&q, &used).expect("first sync writes");
        assert_eq!(st.hard.as_ref().unwrap()["pods"].0, "2");
        assert_eq!(st.used.as_ref().unwrap()["pods"].0, "1");
        // secrets was not computed and never observed: absent.
        assert!(!st.used.as_ref().unwrap().contains_key("secrets"));
        let mut q2 = q.clone();
        q2.status = Some(st);
        assert!(desired_status(&q2, &used).is_none());
        // A resource dropped from spec.hard leaves used; a changed hard is dirty.
        let mut q3 = q2.clone();
        q3.spec
            .as_mut()
            .unwrap()
            .hard
            .as_mut()
            .unwrap()
            .remove("pods");
        let st = desired_status(&q3, &Resources::new()).unwrap();
        assert!(st.used.unwrap().is_empty());
        // Earlier observations of uncomputed resources are kept.
        let mut q4 = q2.clone();
        q4.status
            .as_mut()
            .unwrap()
            .used
            .as_mut()
            .unwrap()
            .insert("secrets".into(), Quantity::count(4).to_wire());
        let st = desired_status(&q4, &used);
        assert!(st.is_none());
    }
}
