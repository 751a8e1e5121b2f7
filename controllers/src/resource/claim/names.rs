//! Which ResourceClaim a pod's `spec.resourceClaims[]` entry refers to, and how a claim is
//! generated from a ResourceClaimTemplate (upstream's `resourceclaim.Name`, `IsForPod` and
//! the controller's claim construction).

use k8s_openapi::api::core::v1::{Pod, PodResourceClaim};
use k8s_openapi::api::resource::v1::{ResourceClaim, ResourceClaimSpec, ResourceClaimTemplate};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::machinery::owner::{controller_of, controller_ref};

/// The annotation a generated claim carries: the `spec.resourceClaims[].name` it was made for.
pub const POD_CLAIM_NAME_ANNOTATION: &str = "resource.kubernetes.io/pod-claim-name";

/// The finalizer the scheduler puts on claims it allocates; this controller removes it once
/// the claim is deallocated.
pub const DELETE_PROTECTION_FINALIZER: &str = "resource.kubernetes.io/delete-protection";

/// Generated names leave room for a hyphen and the apiserver's five random characters.
const MAX_GENERATE_NAME_BASE: usize = 57;

/// What a pod's claim entry resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimName {
    /// The claim of this name; when `check_owner`, it was generated for the pod and must be
    /// controlled by it ([`is_for_pod`]) to be used.
    Named {
        /// The ResourceClaim's name in the pod's namespace.
        name: String,
        /// Whether it must be controlled by the pod.
        check_owner: bool,
    },
    /// The pod's status records that no claim is needed for this entry.
    NotNeeded,
    /// From a template, and not created yet (no `status.resourceClaimStatuses` entry).
    NotCreated,
    /// Neither `resourceClaimName` nor `resourceClaimTemplateName` is set.
    Unsupported,
}

impl ClaimName {
    /// The claim's name, when there is one.
    pub fn name(&self) -> Option<&str> {
        match self {
            ClaimName::Named { name, .. } => Some(name),
            _ => None,
        }
    }
}

/// The pod's claim entries (`spec.resourceClaims`).
pub fn pod_claims(pod: &Pod) -> &[PodResourceClaim] {
    pod.spec
        .as_ref()
        .and_then(|s| s.resource_claims.as_deref())
        .unwrap_or_default()
}

/// Upstream's `resourceclaim.Name`: a direct `resourceClaimName`, or for a template the
/// name recorded in `status.resourceClaimStatuses`.
pub fn claim_name(pod: &Pod, pod_claim: &PodResourceClaim) -> ClaimName {
    if let Some(name) = &pod_claim.resource_claim_name {
        return ClaimName::Named {
            name: name.clone(),
            check_owner: false,
        };
    }
    if pod_claim.resource_claim_template_name.is_none() {
        return ClaimName::Unsupported;
    }
    let statuses = pod
        .status
        .as_ref()
        .and_then(|s| s.resource_claim_statuses.as_deref())
        .unwrap_or_default();
    match statuses.iter().find(|s| s.name == pod_claim.name) {
        Some(s) => match &s.resource_claim_name {
            Some(name) => ClaimName::Named {
                name: name.clone(),
                check_owner: true,
            },
            None => ClaimName::NotNeeded,
        },
        None => ClaimName::NotCreated,
    }
}

/// The error for an entry of `pod` that sets none of the supported fields.
pub fn unsupported_error(pod: &Pod, pod_claim: &PodResourceClaim) -> String {
    format!(
        "pod \"{}/{}\", spec.resourceClaim {:?}: none of the supported fields are set \
         (resourceClaimName, resourceClaimTemplateName)",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default(),
        pod_claim.name
    )
}

/// Upstream's `IsForPod`: the claim is in the pod's namespace and controlled by the pod.
pub fn is_for_pod(pod: &Pod, claim: &ResourceClaim) -> bool {
    claim.metadata.namespace == pod.metadata.namespace
        && pod.metadata.uid.is_some()
        && controller_of(&claim.metadata).map(|r| &r.uid) == pod.metadata.uid.as_ref()
}

/// Whether `status.reservedFor` of `claim` lists `pod` (by uid).
pub fn is_reserved_for_pod(pod: &Pod, claim: &ResourceClaim) -> bool {
    let Some(uid) = &pod.metadata.uid else {
        return false;
    };
    reserved_for(claim).iter().any(|r| &r.uid == uid)
}

/// `status.reservedFor` of `claim`.
pub fn reserved_for(
    claim: &ResourceClaim,
) -> &[k8s_openapi::api::resource::v1::ResourceClaimConsumerReference] {
    claim
        .status
        .as_ref()
        .and_then(|s| s.reserved_for.as_deref())
        .unwrap_or_default()
}

/// Whether `claim` is allocated (`status.allocation` set).
pub fn is_allocated(claim: &ResourceClaim) -> bool {
    claim
        .status
        .as_ref()
        .is_some_and(|s| s.allocation.is_some())
}

/// The pod (name, uid) controlling `claim`, when it was generated for one.
pub fn owning_pod(claim: &ResourceClaim) -> Option<(&str, &str)> {
    controller_of(&claim.metadata)
        .filter(|r| r.api_version == "v1" && r.kind == "Pod")
        .map(|r| (r.name.as_str(), r.uid.as_str()))
}

/// `metadata.generateName` of the claim generated for `pod_claim` of pod `pod_name`:
/// `<pod>-<claim>-`, or both parts shortened in proportion to their lengths when that would
/// exceed 57 characters (so that the end of neither is lost).
pub fn generate_name(pod_name: &str, pod_claim: &str) -> String {
    let full = format!("{pod_name}-{pod_claim}-");
    if full.len() <= MAX_GENERATE_NAME_BASE {
        return full;
    }
    let cut = |s: &str| -> String {
        let keep = s.len() * MAX_GENERATE_NAME_BASE / full.len();
        s.chars().take(keep).collect()
    };
    format!("{}-{}", cut(pod_name), cut(pod_claim))
}

/// The claim created for entry `pod_claim` of `pod` from `template`: the template's labels
/// and annotations plus [`POD_CLAIM_NAME_ANNOTATION`], its spec, a generated name, and the
/// pod as controlling owner.
pub fn claim_from_template(
    pod: &Pod,
    pod_claim: &str,
    template: &ResourceClaimTemplate,
) -> ResourceClaim {
    let tm = template.spec.metadata.as_ref();
    let mut annotations = tm.and_then(|m| m.annotations.clone()).unwrap_or_default();
    annotations.insert(POD_CLAIM_NAME_ANNOTATION.into(), pod_claim.into());
    ResourceClaim {
        metadata: ObjectMeta {
            generate_name: Some(generate_name(
                pod.metadata.name.as_deref().unwrap_or_default(),
                pod_claim,
            )),
            namespace: pod.metadata.namespace.clone(),
            owner_references: Some(vec![controller_ref("v1", "Pod", &pod.metadata)]),
            annotations: Some(annotations),
            labels: tm.and_then(|m| m.labels.clone()),
            ..Default::default()
        },
        spec: template.spec.spec.clone(),
        status: None,
    }
}

/// Among `owned` (claims controlled by the pod), the one generated for entry `pod_claim`:
/// created before the pod's status could record it.
pub fn find_generated<'a>(
    owned: impl IntoIterator<Item = &'a ResourceClaim>,
    pod_claim: &str,
) -> Option<&'a ResourceClaim> {
    owned.into_iter().find(|c| {
        c.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(POD_CLAIM_NAME_ANNOTATION))
            .is_some_and(|n| n == pod_claim)
    })
}

fn requests(spec: &ResourceClaimSpec) -> &[k8s_openapi::api::resource::v1::DeviceRequest] {
    spec.devices
        .as_ref()
        .and_then(|d| d.requests.as_deref())
        .unwrap_or_default()
}

/// Whether a request of `spec` asks for admin access (`exactly.adminAccess`).
pub fn needs_admin_access(spec: &ResourceClaimSpec) -> bool {
    requests(spec).iter().any(|r| {
        r.exactly
            .as_ref()
            .is_some_and(|e| e.admin_access == Some(true))
    })
}

/// Whether a request of `spec` has a prioritized list (`firstAvailable`).
pub fn has_prioritized_list(spec: &ResourceClaimSpec) -> bool {
    requests(spec)
        .iter()
        .any(|r| r.first_available.as_ref().is_some_and(|f| !f.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn pod(claims: serde_json::Value, statuses: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "uid-web"},
            "spec": {"containers": [], "resourceClaims": claims},
            "status": {"resourceClaimStatuses": statuses}
        }))
        .unwrap()
    }

    fn template() -> ResourceClaimTemplate {
        serde_json::from_value(json!({
            "metadata": {"name": "gpu-template", "namespace": "ns"},
            "spec": {
                "metadata": {"labels": {"app": "web"}, "annotations": {"a": "b"}},
                "spec": {"devices": {"requests": [{"name": "gpu",
                    "exactly": {"deviceClassName": "gpu.example.com"}}]}}
            }
        }))
        .unwrap()
    }

    #[test]
    fn names_come_from_the_spec_or_the_status() {
        let p = pod(
            json!([
                {"name": "direct", "resourceClaimName": "shared"},
                {"name": "gen", "resourceClaimTemplateName": "t"},
                {"name": "skipped", "resourceClaimTemplateName": "t"},
                {"name": "pending", "resourceClaimTemplateName": "t"},
                {"name": "odd"}
            ]),
            json!([
                {"name": "gen", "resourceClaimName": "web-gen-abcde"},
                {"name": "skipped"}
            ]),
        );
        let names: Vec<ClaimName> = pod_claims(&p).iter().map(|c| claim_name(&p, c)).collect();
        assert_eq!(
            names,
            [
                ClaimName::Named {
                    name: "shared".into(),
                    check_owner: false
                },
                ClaimName::Named {
                    name: "web-gen-abcde".into(),
                    check_owner: true
                },
                ClaimName::NotNeeded,
                ClaimName::NotCreated,
                ClaimName::Unsupported,
            ]
        );
        let err = unsupported_error(&p, &pod_claims(&p)[4]);
        assert!(
            err.contains("\"odd\"") && err.contains("resourceClaimName"),
            "{err}"
        );
    }

    #[test]
    fn generated_claim_follows_the_template_and_is_owned_by_the_pod() {
        let p = pod(
            json!([{"name": "gpu", "resourceClaimTemplateName": "gpu-template"}]),
            json!([]),
        );
        let c = claim_from_template(&p, "gpu", &template());
        assert_eq!(c.metadata.generate_name.as_deref(), Some("web-gpu-"));
        assert_eq!(c.metadata.name, None);
        assert_eq!(c.metadata.namespace.as_deref(), Some("ns"));
        let ann = c.metadata.annotations.as_ref().unwrap();
        assert_eq!(ann[POD_CLAIM_NAME_ANNOTATION], "gpu");
        assert_eq!(ann["a"], "b");
        assert_eq!(c.metadata.labels.as_ref().unwrap()["app"], "web");
        assert_eq!(c.spec, template().spec.spec);
        let o = &c.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (
                o.api_version.as_str(),
                o.kind.as_str(),
                o.name.as_str(),
                o.uid.as_str()
            ),
            ("v1", "Pod", "web", "uid-web")
        );
        assert_eq!(
            (o.controller, o.block_owner_deletion),
            (Some(true), Some(true))
        );
        assert!(is_for_pod(&p, &c));
        assert_eq!(owning_pod(&c), Some(("web", "uid-web")));
        assert_eq!(
            find_generated([&c], "gpu").map(|c| c.metadata.generate_name.clone()),
            Some(Some("web-gpu-".into()))
        );
        assert!(find_generated([&c], "other").is_none());
        // Another incarnation of the pod does not own it.
        let mut newer = p.clone();
        newer.metadata.uid = Some("uid-2".into());
        assert!(!is_for_pod(&newer, &c));
    }

    #[test]
    fn long_names_are_shortened_in_proportion() {
        let pod_name = "p".repeat(60);
        let claim = "c".repeat(20);
        let g = generate_name(&pod_name, &claim);
        // 60 * 57 / 82 = 41 and 20 * 57 / 82 = 13, as upstream (no trailing hyphen).
        assert_eq!(g, format!("{}-{}", "p".repeat(41), "c".repeat(13)));
        assert!(g.len() <= MAX_GENERATE_NAME_BASE);
        assert_eq!(generate_name("a", "b"), "a-b-");
        // Exactly 57 characters stay as they are.
        let exact = generate_name(&"p".repeat(51), "cccc");
        assert_eq!(exact.len(), 57);
        assert!(exact.ends_with("-cccc-"));
    }

    #[test]
    fn reservations_and_allocation() {
        let p = pod(json!([]), json!([]));
        let mut c = claim_from_template(&p, "gpu", &template());
        assert!(!is_reserved_for_pod(&p, &c));
        assert!(!is_allocated(&c));
        c.status = serde_json::from_value(json!({
            "allocation": {"devices": {"results": []}},
            "reservedFor": [{"resource": "pods", "name": "web", "uid": "uid-web"}]
        }))
        .unwrap();
        assert!(is_reserved_for_pod(&p, &c));
        assert!(is_allocated(&c));
    }

    #[test]
    fn admin_access_and_prioritized_lists_are_recognised() {
        let mut spec = template().spec.spec;
        assert!(!needs_admin_access(&spec) && !has_prioritized_list(&spec));
        spec = serde_json::from_value(json!({"devices": {"requests": [
            {"name": "a", "exactly": {"deviceClassName": "c", "adminAccess": true}},
            {"name": "b", "firstAvailable": [{"name": "x", "deviceClassName": "c"}]}
        ]}}))
        .unwrap();
        assert!(needs_admin_access(&spec) && has_prioritized_list(&spec));
    }
}
