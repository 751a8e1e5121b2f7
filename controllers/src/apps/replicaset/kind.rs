//! ReplicaSet and ReplicationController seen through one interface, so both share a
//! controller as upstream's replication manager wraps ReplicaSet's.

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{PodTemplateSpec, ReplicationController};

use super::status::ReplicaStatus;
use crate::machinery::pod_events::PodOwner;

/// A kind whose objects keep `replicas` copies of a pod template.
pub trait ReplicatedKind: PodOwner {
    /// `apiVersion` for owner references.
    const API_VERSION: &'static str;
    /// Upstream's controller (and service account) name.
    const CONTROLLER: &'static str;
    /// Desired replicas (default 1).
    fn replicas(&self) -> i32;
    /// The pod template.
    fn template(&self) -> Option<&PodTemplateSpec>;
    /// The status as the object has it.
    fn current_status(&self) -> ReplicaStatus;
}

impl ReplicatedKind for ReplicaSet {
    const API_VERSION: &'static str = "apps/v1";
    const CONTROLLER: &'static str = "replicaset-controller";

    fn replicas(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
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
    const CONTROLLER: &'static str = "replication-controller";

    fn replicas(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
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
