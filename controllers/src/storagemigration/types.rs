//! storagemigration.k8s.io/v1alpha1 StorageVersionMigration. k8s-openapi 0.29 has only the
//! released 1.35 shape (v1beta1: a GroupResource and metav1 Conditions); the v1.35-dev
//! apiserver here serves v1alpha1, which upstream's controller of this tree uses, so these are
//! its fields as upstream's `k8s.io/api/storagemigration/v1alpha1` declares them.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use serde::{Deserialize, Serialize};

/// A request to rewrite every object of one resource.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct StorageVersionMigration {
    /// Standard object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// What to migrate.
    #[serde(default)]
    pub spec: StorageVersionMigrationSpec,
    /// Progress.
    #[serde(default)]
    pub status: StorageVersionMigrationStatus,
}

/// `spec`: the resource (immutable).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StorageVersionMigrationSpec {
    /// The resource to migrate.
    #[serde(default)]
    pub resource: GroupVersionResource,
    /// Where a chunked migration resumes (unused by upstream's controller).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continue_token: Option<String>,
}

/// A group, version and resource; the core group is `""`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct GroupVersionResource {
    /// API group.
    #[serde(default)]
    pub group: String,
    /// API version.
    #[serde(default)]
    pub version: String,
    /// Resource (plural).
    #[serde(default)]
    pub resource: String,
}

impl GroupVersionResource {
    /// `group/version` (`version` for the core group), as an apiVersion.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

impl std::fmt::Display for GroupVersionResource {
    /// As upstream's `schema.GroupVersionResource.String()`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}, Resource={}",
            self.group, self.version, self.resource
        )
    }
}

/// `status`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StorageVersionMigrationStatus {
    /// Running, Succeeded, Failed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<MigrationCondition>,
    /// The resource's list resourceVersion when the migration started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
}

/// One condition.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MigrationCondition {
    /// `Running`, `Succeeded` or `Failed`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// When it was last set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update_time: Option<Time>,
    /// Machine-readable reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Human-readable message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl k8s_openapi::Resource for StorageVersionMigration {
    const API_VERSION: &'static str = "storagemigration.k8s.io/v1alpha1";
    const GROUP: &'static str = "storagemigration.k8s.io";
    const KIND: &'static str = "StorageVersionMigration";
    const VERSION: &'static str = "v1alpha1";
    const URL_PATH_SEGMENT: &'static str = "storageversionmigrations";
    type Scope = k8s_openapi::ClusterResourceScope;
}

impl k8s_openapi::Metadata for StorageVersionMigration {
    type Ty = ObjectMeta;
    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1alpha1_round_trip() {
        let v = serde_json::json!({
            "apiVersion": "storagemigration.k8s.io/v1alpha1", "kind": "StorageVersionMigration",
            "metadata": {"name": "m"},
            "spec": {"resource": {"version": "v1", "resource": "secrets"}},
            "status": {"resourceVersion": "42", "conditions": [{"type": "Running",
                "status": "True", "lastUpdateTime": "2025-06-01T00:00:00Z",
                "reason": "StorageVersionMigrationInProgress"}]}
        });
        let svm: StorageVersionMigration = serde_json::from_value(v).unwrap();
        assert_eq!(svm.spec.resource.api_version(), "v1");
        assert_eq!(svm.spec.resource.to_string(), "/v1, Resource=secrets");
        assert_eq!(svm.status.resource_version.as_deref(), Some("42"));
        let back = serde_json::to_value(&svm).unwrap();
        assert_eq!(back["status"]["conditions"][0]["type"], "Running");
        assert_eq!(back["spec"]["resource"]["group"], "");
    }
}
