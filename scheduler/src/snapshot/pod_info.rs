//! A pod plus what the scheduler pre-computes from it once: requests, host ports and
//! parsed affinity terms.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, PodAffinityTerm, WeightedPodAffinityTerm};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::resource::{pod_requests, RequestOptions, Resource};
use api_helpers::labels::{matches, Labels};

pub use component_base::host_ports::HostPort;

/// A parsed PodAffinityTerm: which pods it selects and over which topology key.
#[derive(Debug, Clone)]
pub struct AffinityTerm {
    /// Namespaces named explicitly (empty together with no namespace selector: the pod's own).
    pub namespaces: Vec<String>,
    /// Namespace label selector; `Some(empty)` selects every namespace.
    pub namespace_selector: Option<LabelSelector>,
    /// The pod label selector (None selects nothing, as upstream).
    pub selector: Option<LabelSelector>,
    /// The node label defining the topology domain.
    pub topology_key: String,
    /// Preference weight (required terms: 1).
    pub weight: i32,
}

impl AffinityTerm {
    fn parse(owner_ns: &str, owner_labels: &Labels, t: &PodAffinityTerm, weight: i32) -> Self {
        let mut namespaces = t.namespaces.clone().unwrap_or_default();
        if namespaces.is_empty() && t.namespace_selector.is_none() {
            namespaces.push(owner_ns.to_string());
        }
        // matchLabelKeys / mismatchLabelKeys merge the owner's label values into the selector.
        let mut selector = t.label_selector.clone();
        if let Some(sel) = selector.as_mut() {
            for (keys, op) in [
                (&t.match_label_keys, "In"),
                (&t.mismatch_label_keys, "NotIn"),
            ] {
                for k in keys.iter().flatten() {
                    if let Some(v) = owner_labels.get(k) {
                        sel.match_expressions.get_or_insert_with(Vec::new).push(
                            k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement {
                                key: k.clone(),
                                operator: op.into(),
                                values: Some(vec![v.clone()]),
                            },
                        );
                    }
                }
            }
        }
        AffinityTerm {
            namespaces,
            namespace_selector: t.namespace_selector.clone(),
            selector,
            topology_key: t.topology_key.clone(),
            weight,
        }
    }

    /// Whether the term selects `pod`, given the labels of the pod's namespace.
    pub fn matches(&self, pod: &PodInfo, ns_labels: Option<&Labels>) -> bool {
        let Some(sel) = &self.selector else {
            return false;
        };
        let ns_ok = self.namespaces.iter().any(|n| n == &pod.namespace)
            || self
                .namespace_selector
                .as_ref()
                .is_some_and(|s| matches(s, ns_labels));
        ns_ok && matches(sel, Some(&pod.labels))
    }
}

/// A pod with everything the scheduler derives from it.
#[derive(Debug, Clone)]
pub struct PodInfo {
    /// The API object.
    pub pod: Arc<Pod>,
    /// metadata.uid (or namespace/name when the object has none, in tests).
    pub uid: String,
    /// metadata.namespace.
    pub namespace: String,
    /// metadata.name.
    pub name: String,
    /// metadata.labels.
    pub labels: Labels,
    /// spec.priority (0 when unset).
    pub priority: i32,
    /// Effective requests, for filtering.
    pub requests: Resource,
    /// Requests with upstream's defaults for request-less containers, for scoring.
    pub non_zero_requests: Resource,
    /// Host ports of all containers (incl. init containers).
    pub host_ports: Vec<HostPort>,
    /// Images of the init containers then the app containers, as written (`""` when unset).
    pub images: Vec<String>,
    /// Required pod affinity terms.
    pub required_affinity: Vec<AffinityTerm>,
    /// Required pod anti-affinity terms.
    pub required_anti_affinity: Vec<AffinityTerm>,
    /// Preferred pod affinity terms.
    pub preferred_affinity: Vec<AffinityTerm>,
    /// Preferred pod anti-affinity terms.
    pub preferred_anti_affinity: Vec<AffinityTerm>,
}

impl PodInfo {
    /// The scheduler's view of a pod observed from the API: derives everything from the
    /// containers, then keeps only a slim copy of the object without them (see
    /// [`super::slim`]); nothing reads a cached pod's containers after this.
    pub fn from_api(pod: Pod) -> Arc<PodInfo> {
        let pod = super::slim::slim_pod(pod);
        let mut info = Self::derive(&pod);
        info.pod = Arc::new(super::slim::without_containers(pod));
        Arc::new(info)
    }

    /// Derives the scheduler's view of a pod.
    pub fn new(pod: Arc<Pod>) -> Arc<PodInfo> {
        let mut info = Self::derive(&pod);
        info.pod = pod;
        Arc::new(info)
    }

    /// Everything but `pod` (left empty).
    fn derive(pod: &Pod) -> PodInfo {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let uid = pod
            .metadata
            .uid
            .clone()
            .unwrap_or_else(|| format!("{namespace}/{name}"));
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        let spec = pod.spec.as_ref();
        let priority = spec.and_then(|s| s.priority).unwrap_or(0);
        let host_ports = component_base::host_ports::host_ports(pod);
        let images = spec
            .into_iter()
            .flat_map(|s| {
                s.init_containers
                    .iter()
                    .flatten()
                    .chain(s.containers.iter())
            })
            .map(|c| c.image.clone().unwrap_or_default())
            .collect();
        let aff = spec.and_then(|s| s.affinity.as_ref());
        let pa = aff.and_then(|a| a.pod_affinity.as_ref());
        let paa = aff.and_then(|a| a.pod_anti_affinity.as_ref());
        let req = |ts: Option<&Vec<PodAffinityTerm>>| -> Vec<AffinityTerm> {
            ts.into_iter()
                .flatten()
                .map(|t| AffinityTerm::parse(&namespace, &labels, t, 1))
                .collect()
        };
        let pref = |ts: Option<&Vec<WeightedPodAffinityTerm>>| -> Vec<AffinityTerm> {
            ts.into_iter()
                .flatten()
                .map(|t| AffinityTerm::parse(&namespace, &labels, &t.pod_affinity_term, t.weight))
                .collect()
        };
        let required_affinity = req(pa.and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        }));
        let required_anti_affinity = req(paa.and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        }));
        let preferred_affinity = pref(pa.and_then(|a| {
            a.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        }));
        let preferred_anti_affinity = pref(paa.and_then(|a| {
            a.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        }));
        PodInfo {
            requests: pod_requests(pod, RequestOptions::default()),
            non_zero_requests: pod_requests(
                pod,
                RequestOptions {
                    non_missing_defaults: true,
                },
            ),
            pod: Arc::default(),
            uid,
            namespace,
            name,
            labels,
            priority,
            host_ports,
            images,
            required_affinity,
            required_anti_affinity,
            preferred_affinity,
            preferred_anti_affinity,
        }
    }

    /// Whether the pod has any pod affinity or anti-affinity term.
    pub fn has_affinity(&self) -> bool {
        !(self.required_affinity.is_empty()
            && self.required_anti_affinity.is_empty()
            && self.preferred_affinity.is_empty()
            && self.preferred_anti_affinity.is_empty())
    }

    /// spec.nodeName, when set.
    pub fn node_name(&self) -> Option<&str> {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .filter(|n| !n.is_empty())
    }

    /// Whether the pod is being deleted.
    pub fn terminating(&self) -> bool {
        self.pod.metadata.deletion_timestamp.is_some()
    }

    /// `namespace/name`, for logs and events.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}
