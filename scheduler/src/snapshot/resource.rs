//! Resource amounts as the scheduler accounts them, and a pod's effective requests
//! (containers, init containers, restartable sidecars, pod overhead, pod-level resources).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use api_helpers::quantity::{milli_value, value};

/// CPU assumed for a container without a CPU request when scoring (upstream: 100m).
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// Memory assumed for a container without a memory request when scoring (upstream: 200MB).
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// An amount of each resource the scheduler tracks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resource {
    /// CPU in millicores.
    pub milli_cpu: i64,
    /// Memory in bytes.
    pub memory: i64,
    /// Local ephemeral storage in bytes.
    pub ephemeral_storage: i64,
    /// Number of pods (only meaningful for allocatable).
    pub allowed_pod_number: i64,
    /// Extended and hugepages resources, by name.
    pub scalar: BTreeMap<String, i64>,
}

impl Resource {
    /// Builds a Resource from a v1.ResourceList.
    pub fn from_list(list: Option<&BTreeMap<String, Quantity>>) -> Resource {
        let mut r = Resource::default();
        for (name, q) in list.into_iter().flatten() {
            r.set(name, &q.0);
        }
        r
    }

    /// Sets one named resource from a quantity string; malformed quantities count as zero.
    pub fn set(&mut self, name: &str, q: &str) {
        match name {
            "cpu" => self.milli_cpu = milli_value(q).unwrap_or(0),
            "memory" => self.memory = value(q).unwrap_or(0),
            "ephemeral-storage" => self.ephemeral_storage = value(q).unwrap_or(0),
            "pods" => self.allowed_pod_number = value(q).unwrap_or(0),
            other if is_scalar(other) => {
                self.scalar.insert(other.to_string(), value(q).unwrap_or(0));
            }
            _ => {}
        }
    }

    /// Adds another amount to this one.
    pub fn add(&mut self, o: &Resource) {
        self.milli_cpu += o.milli_cpu;
        self.memory += o.memory;
        self.ephemeral_storage += o.ephemeral_storage;
        self.allowed_pod_number += o.allowed_pod_number;
        for (k, v) in &o.scalar {
            *self.scalar.entry(k.clone()).or_default() += v;
        }
    }

    /// Subtracts another amount from this one.
    pub fn sub(&mut self, o: &Resource) {
        self.milli_cpu -= o.milli_cpu;
        self.memory -= o.memory;
        self.ephemeral_storage -= o.ephemeral_storage;
        self.allowed_pod_number -= o.allowed_pod_number;
        for (k, v) in &o.scalar {
            *self.scalar.entry(k.clone()).or_default() -= v;
        }
    }

    /// Raises each resource to at least the other's amount.
    pub fn max_with(&mut self, o: &Resource) {
        self.milli_cpu = self.milli_cpu.max(o.milli_cpu);
        self.memory = self.memory.max(o.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(o.ephemeral_storage);
        for (k, v) in &o.scalar {
            let e = self.scalar.entry(k.clone()).or_default();
            *e = (*e).max(*v);
        }
    }

    /// Whether nothing at all is requested.
    pub fn is_zero(&self) -> bool {
        self.milli_cpu == 0
            && self.memory == 0
            && self.ephemeral_storage == 0
            && self.scalar.values().all(|v| *v == 0)
    }

    /// The amount of a resource by its API name.
    pub fn get(&self, name: &str) -> i64 {
        match name {
            "cpu" => self.milli_cpu,
            "memory" => self.memory,
            "ephemeral-storage" => self.ephemeral_storage,
            "pods" => self.allowed_pod_number,
            other => self.scalar.get(other).copied().unwrap_or(0),
        }
    }
}

/// Extended resources (`domain/name`, not kubernetes.io) and hugepages are "scalar".
pub fn is_scalar(name: &str) -> bool {
    name.starts_with("hugepages-")
        || name.starts_with("attachable-volumes-")
        || (name.contains('/') && !name.starts_with("kubernetes.io/"))
        || name.starts_with("requests.")
}

/// Options of [`pod_requests`].
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestOptions {
    /// Substitute upstream's defaults for containers that set no CPU / memory request
    /// (used for scoring so that request-less pods still spread).
    pub non_missing_defaults: bool,
}

fn container_requests(c: &Container, opts: RequestOptions) -> Resource {
    let reqs = c.resources.as_ref().and_then(|r| r.requests.as_ref());
    let mut r = Resource::from_list(reqs);
    if opts.non_missing_defaults {
        if !reqs.is_some_and(|m| m.contains_key("cpu")) {
            r.milli_cpu = DEFAULT_MILLI_CPU_REQUEST;
        }
        if !reqs.is_some_and(|m| m.contains_key("memory")) {
            r.memory = DEFAULT_MEMORY_REQUEST;
        }
    }
    r
}

fn is_restartable(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

/// The pod's effective resource requests, as upstream's `resourcehelper.PodRequests`:
/// sum of app containers plus restartable (sidecar) init containers, raised to the peak
/// of any regular init container running alongside the sidecars started before it,
/// pod-level requests (when set) replacing the container aggregate for cpu/memory,
/// then pod overhead added.
pub fn pod_requests(pod: &Pod, opts: RequestOptions) -> Resource {
    let Some(spec) = pod.spec.as_ref() else {
        return Resource::default();
    };
    let mut reqs = Resource::default();
    for c in &spec.containers {
        reqs.add(&container_requests(c, opts));
    }
    let mut sidecars = Resource::default();
    let mut init_peak = Resource::default();
    for c in spec.init_containers.iter().flatten() {
        let r = container_requests(c, opts);
        let running = if is_restartable(c) {
            sidecars.add(&r);
            sidecars.clone()
        } else {
            let mut t = r;
            t.add(&sidecars);
            t
        };
        init_peak.max_with(&running);
    }
    reqs.add(&sidecars);
    reqs.max_with(&init_peak);

    if let Some(pod_level) = spec.resources.as_ref().and_then(|r| r.requests.as_ref()) {
        let pl = Resource::from_list(Some(pod_level));
        if pod_level.contains_key("cpu") {
            reqs.milli_cpu = pl.milli_cpu;
        }
        if pod_level.contains_key("memory") {
            reqs.memory = pl.memory;
        }
    }
    if let Some(overhead) = spec.overhead.as_ref() {
        reqs.add(&Resource::from_list(Some(overhead)));
    }
    reqs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": spec})).unwrap()
    }

    #[test]
    fn containers_sum_and_init_peak() {
        let p = pod(json!({
            "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "2", "memory": "1Gi"}}}],
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "500m", "memory": "256Mi"}}},
                {"name": "b", "resources": {"requests": {"cpu": "500m"}}}
            ]
        }));
        let r = pod_requests(&p, RequestOptions::default());
        assert_eq!(r.milli_cpu, 2000);
        assert_eq!(r.memory, 1 << 30);
    }

    #[test]
    fn sidecars_add_to_containers_and_init_peak() {
        // sidecar 1 cpu, then a regular init of 1 cpu (runs with sidecar: 2), app 500m.
        let p = pod(json!({
            "initContainers": [
                {"name": "s", "restartPolicy": "Always", "resources": {"requests": {"cpu": "1"}}},
                {"name": "i", "resources": {"requests": {"cpu": "1"}}}
            ],
            "containers": [{"name": "a", "resources": {"requests": {"cpu": "500m"}}}],
            "overhead": {"cpu": "100m"}
        }));
        let r = pod_requests(&p, RequestOptions::default());
        // max(500m + 1 sidecar, 2 init peak) + 100m overhead
        assert_eq!(r.milli_cpu, 2100);
    }

    #[test]
    fn non_missing_defaults_only_for_absent_keys() {
        let p = pod(json!({"containers": [
            {"name": "a"},
            {"name": "b", "resources": {"requests": {"cpu": "0"}}}
        ]}));
        let r = pod_requests(
            &p,
            RequestOptions {
                non_missing_defaults: true,
            },
        );
        assert_eq!(r.milli_cpu, 100);
        assert_eq!(r.memory, 2 * DEFAULT_MEMORY_REQUEST);
        assert!(pod_requests(&p, RequestOptions::default()).is_zero());
    }

    #[test]
    fn pod_level_requests_replace_aggregate() {
        let p = pod(json!({
            "resources": {"requests": {"cpu": "3"}},
            "containers": [{"name": "a", "resources": {"requests": {"cpu": "1", "memory": "1Mi"}}}]
        }));
        let r = pod_requests(&p, RequestOptions::default());
        assert_eq!(r.milli_cpu, 3000);
        assert_eq!(r.memory, 1 << 20);
    }
}
