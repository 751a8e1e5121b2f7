//! ReplicaSet and ReplicationController seen through one interface, so both share a
//! controller as upstream's replication manager wraps ReplicaSet's.

use std::fmt::Debug;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{PodTemplateSpec, ReplicationController};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::Resource;
use serde::de::DeserializeOwned;

use super::status::ReplicaStatus;
use crate::workload::selector;

/// A kind whose objects keep `replicas` copies of a pod template.
pub trait ReplicatedKind:
    Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + serde::Serialize
    + Debug
    + Send
    + Sync
    + 'static
{
    /// `apiVersion` for owner references.
    const API_VERSION: &'static str;
    /// `kind` for owner references.
    const KIND: &'static str;
    /// Upstream's controller (and service account) name.
    const CONTROLLER: &'static str;
    /// Desired replicas (default 1).
    fn replicas(&self) -> i32;
    /// Seconds a ready pod must stay ready to be available.
    fn min_ready_seconds(&self) -> i32;
    /// The pod selector.
    fn selector(&self) -> LabelSelector;
    /// The pod template.
    fn template(&self) -> Option<&PodTemplateSpec>;
    /// The status as the object has it.
    fn current_status(&self) -> ReplicaStatus;
}

impl ReplicatedKind for ReplicaSet {
    const API_VERSION: &'static str = "apps/v1";
    const KIND: &'static str = "ReplicaSet";
    const CONTROLLER: &'static str = "replicaset-controller";

    fn replicas(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }
    fn min_ready_seconds(&self) -> i32 {
        self.spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0)
    }
    fn selector(&self) -> LabelSelector {
        self.spec
            .as_ref()
            .map(|s| s.selector.clone())
            .unwrap_or_default()
    }
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref()?.template.as_ref()
    }
    fn current_status(&self) -> ReplicaStatus {
        self.status
            .as_ref()
            .and_then(|s| serde_json::to_value(s).ok())
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default()
    }
}

impl ReplicatedKind for ReplicationController {
    const API_VERSION: &'static str = "v1";
    const KIND: &'static str = "ReplicationController";
    const CONTROLLER: &'static str = "replication-controller";

    fn replicas(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }
    fn min_ready_seconds(&self) -> i32 {
        self.spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0)
    }
    fn selector(&self) -> LabelSelector {
        // An RC without selector selects its template's labels (defaulted by the apiserver).
        let spec = self.spec.as_ref();
        let map = spec
            .and_then(|s| s.selector.clone())
            .or_else(|| spec?.template.as_ref()?.metadata.as_ref()?.labels.clone())
            .unwrap_or_default();
        selector::from_map(&map)
    }
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref()?.template.as_ref()
    }
    fn current_status(&self) -> ReplicaStatus {
        self.status
            .as_ref()
            .and_then(|s| serde_json::to_value(s).ok())
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default()
    }
}
