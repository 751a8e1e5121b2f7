//! A pod's effective resource requests and limits (component-helpers'
//! `resourcehelper.PodRequests/PodLimits`), as resource quota and the HPA read them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as Wire;

use api_helpers::quantity::Quantity;

/// A resource list with exact quantities.
pub type Resources = BTreeMap<String, Quantity>;

fn parse_list(list: Option<&BTreeMap<String, Wire>>) -> Resources {
    list.into_iter()
        .flatten()
        .filter_map(|(k, v)| Quantity::from_wire(v).ok().map(|q| (k.clone(), q)))
        .collect()
}

fn add_into(acc: &mut Resources, other: &Resources) {
    for (k, v) in other {
        let cur = acc.get(k).copied().unwrap_or(Quantity::ZERO);
        acc.insert(k.clone(), cur.plus(*v));
    }
}

fn max_into(acc: &mut Resources, other: &Resources) {
    for (k, v) in other {
        let cur = acc.get(k).copied().unwrap_or(Quantity::ZERO);
        acc.insert(k.clone(), cur.max(*v));
    }
}

fn container_list(
    c: &Container,
    pick: fn(&ResourceRequirements) -> Option<&BTreeMap<String, Wire>>,
) -> Resources {
    parse_list(c.resources.as_ref().and_then(pick))
}

/// Effective pod requests or limits (`resourcehelper.PodRequests/PodLimits`): the sum of the
/// app containers and sidecars against the largest init container step, pod-level values
/// where set, plus overhead (for limits only on resources that have a limit).
fn effective(
    pod: &Pod,
    pick: fn(&ResourceRequirements) -> Option<&BTreeMap<String, Wire>>,
    limits: bool,
) -> Resources {
    let Some(spec) = pod.spec.as_ref() else {
        return Resources::new();
    };
    let mut total = Resources::new();
    for c in &spec.containers {
        add_into(&mut total, &container_list(c, pick));
    }
    let mut sidecars = Resources::new();
    let mut init_max = Resources::new();
    for ic in spec.init_containers.iter().flatten() {
        let own = container_list(ic, pick);
        let step = if ic.restart_policy.as_deref() == Some("Always") {
            add_into(&mut total, &own);
            add_into(&mut sidecars, &own);
            sidecars.clone()
        } else {
            let mut s = own;
            add_into(&mut s, &sidecars);
            s
        };
        max_into(&mut init_max, &step);
    }
    max_into(&mut total, &init_max);
    // Pod-level resources win for the resources they name (cpu, memory, hugepages).
    let pod_level = parse_list(spec.resources.as_ref().and_then(pick));
    for (k, v) in pod_level {
        if k == "cpu" || k == "memory" || k.starts_with("hugepages-") {
            total.insert(k, v);
        }
    }
    let overhead = parse_list(spec.overhead.as_ref());
    for (k, v) in overhead {
        if limits && !total.contains_key(&k) {
            continue;
        }
        let cur = total.get(&k).copied().unwrap_or(Quantity::ZERO);
        total.insert(k, cur.plus(v));
    }
    total
}

/// Effective requests of the pod.
pub fn requests(pod: &Pod) -> Resources {
    effective(pod, |r| r.requests.as_ref(), false)
}

/// Effective limits of the pod.
pub fn limits(pod: &Pod) -> Resources {
    effective(pod, |r| r.limits.as_ref(), true)
}
