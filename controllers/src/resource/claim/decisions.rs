//! The resourceclaim-controller's decisions as pure functions over observed state: what to
//! do for each claim entry of a pod, which claims to reserve for it, which reservations are
//! stale, when a claim is deallocated, loses its finalizer, or is deleted.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::resource::v1::{
    ResourceClaim, ResourceClaimConsumerReference, ResourceClaimTemplate,
};

use super::names::{
    self, claim_from_template, claim_name, find_generated, is_allocated, is_for_pod,
    is_reserved_for_pod, pod_claims, reserved_for, ClaimName, DELETE_PROTECTION_FINALIZER,
};
use crate::machinery::pods::phase;

/// The feature gates that change what may be created (upstream's `Features`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Features {
    /// DRAAdminAccess: templates may request admin access.
    pub admin_access: bool,
    /// DRAPrioritizedList: templates may have `firstAvailable` lists.
    pub prioritized_list: bool,
}

/// Upstream's `isPodDone`: no container runs and none ever will (terminal phase, or deleted
/// before it was scheduled).
pub fn is_pod_done(pod: &Pod) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
        || (pod.metadata.deletion_timestamp.is_some() && node_name(pod).is_none())
}

fn node_name(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

/// Whether `pod` has any claim this controller cares about (spec entries, or the
/// scheduler's extended-resource claim in its status).
pub fn has_claims(pod: &Pod) -> bool {
    !pod_claims(pod).is_empty() || extended_claim(pod).is_some()
}

fn extended_claim(pod: &Pod) -> Option<&str> {
    pod.status
        .as_ref()
        .and_then(|s| s.extended_resource_claim_status.as_ref())
        .map(|s| s.resource_claim_name.as_str())
}

/// Upstream's `podNeedsClaims` negated: the claims of a pod that was removed (`deleted`),
/// has terminated, or was deleted before scheduling are to be checked for stale
/// reservations. Returns their names (empty while the pod might still run).
pub fn claims_to_release(pod: &Pod, deleted: bool) -> Vec<String> {
    if !deleted && !is_pod_done(pod) {
        return Vec::new();
    }
    pod_claims(pod)
        .iter()
        .filter_map(|c| claim_name(pod, c).name().map(str::to_string))
        .chain(extended_claim(pod).map(str::to_string))
        .collect()
}

/// What to do for one `spec.resourceClaims[]` entry of a live pod.
#[derive(Debug, Clone, PartialEq)]
pub enum EntryAction {
    /// Nothing: a direct claim, a claim not needed, or one created and recorded already.
    Nothing,
    /// A claim generated for the entry exists but the pod's status does not name it yet:
    /// record this name.
    Record(String),
    /// Create this claim (it has `generateName`), then record its name.
    Create(Box<ResourceClaim>),
    /// The entry cannot be handled (reported as a `FailedResourceClaimCreation` event).
    Fail(String),
}

/// Upstream's `handleClaim` for entry `index` of `pod`: `claim(name)` looks a claim up in
/// the pod's namespace, `owned` are the claims controlled by the pod (including ones just
/// created), `template(name)` looks a template up.
pub fn entry_action<'a>(
    pod: &Pod,
    index: usize,
    claim: impl Fn(&str) -> Option<ResourceClaim>,
    owned: impl IntoIterator<Item = &'a ResourceClaim>,
    template: impl Fn(&str) -> Option<ResourceClaimTemplate>,
    features: Features,
) -> EntryAction {
    let Some(pod_claim) = pod_claims(pod).get(index) else {
        return EntryAction::Nothing;
    };
    // A pod that is done gets no claims (its generated ones were deleted because it is
    // done; making them again would loop).
    if is_pod_done(pod) {
        return EntryAction::Nothing;
    }
    match claim_name(pod, pod_claim) {
        ClaimName::Unsupported => {
            return EntryAction::Fail(format!(
                "checking for claim before creating it: {}",
                names::unsupported_error(pod, pod_claim)
            ))
        }
        ClaimName::NotNeeded => return EntryAction::Nothing,
        ClaimName::NotCreated => {}
        ClaimName::Named { name, check_owner } => {
            // Recorded in the status: it should exist; one deleted (or replaced by a claim
            // the pod does not own) is created again.
            if let Some(existing) = claim(&name) {
                if !check_owner || is_for_pod(pod, &existing) {
                    return EntryAction::Nothing;
                }
                tracing::warn!(claim = %name, pod_claim = %pod_claim.name,
                    "claim that was created for the pod is no longer owned by the pod, creating a new one");
            }
        }
    }
    let Some(template_name) = &pod_claim.resource_claim_template_name else {
        return EntryAction::Nothing;
    };
    if let Some(orphan) = find_generated(owned, &pod_claim.name) {
        return EntryAction::Record(orphan.metadata.name.clone().unwrap_or_default());
    }
    let Some(template) = template(template_name) else {
        return EntryAction::Fail(format!(
            "resource claim template {template_name:?}: resourceclaimtemplate.resource.k8s.io {template_name:?} not found"
        ));
    };
    if !features.admin_access && names::needs_admin_access(&template.spec.spec) {
        return EntryAction::Fail("admin access is requested, but the feature is disabled".into());
    }
    if !features.prioritized_list && names::has_prioritized_list(&template.spec.spec) {
        return EntryAction::Fail(
            "template includes a prioritized list of subrequests, but the feature is disabled"
                .into(),
        );
    }
    EntryAction::Create(Box::new(claim_from_template(
        pod,
        &pod_claim.name,
        &template,
    )))
}

/// The allocated claims of a scheduled `pod` to reserve for it (allocated, not yet
/// reserved for it; never for a pod that is done, unlike upstream, which re-reserved
/// terminal pods, kubernetes/kubernetes#141274): upstream stops at the first claim that does not exist yet, and fails
/// on a generated claim the pod does not own.
pub fn claims_to_reserve(
    pod: &Pod,
    claim: impl Fn(&str) -> Option<ResourceClaim>,
) -> Result<Vec<ResourceClaim>, String> {
    if node_name(pod).is_none() || pod.metadata.deletion_timestamp.is_some() || is_pod_done(pod) {
        return Ok(Vec::new());
    }
    let mut reserve = Vec::new();
    for pod_claim in pod_claims(pod) {
        let (name, check_owner) = match claim_name(pod, pod_claim) {
            ClaimName::Named { name, check_owner } => (name, check_owner),
            ClaimName::Unsupported => return Err(names::unsupported_error(pod, pod_claim)),
            // Created later; the status update brings the pod back.
            ClaimName::NotCreated | ClaimName::NotNeeded => continue,
        };
        let Some(c) = claim(&name) else {
            break;
        };
        if check_owner && !is_for_pod(pod, &c) {
            return Err(format!(
                "ResourceClaim {}/{name} was not created for pod {}/{} (pod is not owner)",
                c.metadata.namespace.as_deref().unwrap_or_default(),
                pod.metadata.namespace.as_deref().unwrap_or_default(),
                pod.metadata.name.as_deref().unwrap_or_default(),
            ));
        }
        if is_allocated(&c) && !is_reserved_for_pod(pod, &c) {
            reserve.push(c);
        }
    }
    Ok(reserve)
}

/// `claim` with `pod` appended to `status.reservedFor`.
pub fn reserved_for_pod(claim: &ResourceClaim, pod: &Pod) -> ResourceClaim {
    let mut c = claim.clone();
    let status = c.status.get_or_insert_with(Default::default);
    status
        .reserved_for
        .get_or_insert_with(Vec::new)
        .push(ResourceClaimConsumerReference {
            api_group: None,
            resource: "pods".into(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
        });
    c
}

/// What is known of the pod a `status.reservedFor` entry names.
#[derive(Debug, Clone, PartialEq)]
pub enum Consumer {
    /// This controller saw the pod (that uid) being deleted.
    SeenDeleted,
    /// Neither the cache nor the apiserver has it.
    Gone,
    /// The pod of that name, from the cache or the apiserver.
    Present(Box<Pod>),
}

/// Whether the reservation `entry` is still valid given what is known of its pod: kept
/// unless the pod was deleted, is gone, was replaced (another uid), or is done.
pub fn keep_reservation(entry: &ResourceClaimConsumerReference, consumer: &Consumer) -> bool {
    match consumer {
        Consumer::SeenDeleted | Consumer::Gone => false,
        Consumer::Present(pod) => {
            pod.metadata.uid.as_deref() == Some(entry.uid.as_str()) && !is_pod_done(pod)
        }
    }
}

/// Whether `entry` names a pod (the only consumers upstream supports).
pub fn is_pod_entry(entry: &ResourceClaimConsumerReference) -> bool {
    entry.api_group.as_deref().unwrap_or_default().is_empty() && entry.resource == "pods"
}

/// The writes one claim needs after its stale reservations were dropped.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ClaimPlan {
    /// Update the status: `reservedFor` becomes this list, and `allocation` is cleared
    /// when `deallocate`.
    pub status: Option<StatusChange>,
    /// Then remove [`DELETE_PROTECTION_FINALIZER`].
    pub remove_finalizer: bool,
}

/// A status update of a claim.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusChange {
    /// The valid reservations.
    pub reserved_for: Vec<ResourceClaimConsumerReference>,
    /// Clear `status.allocation`.
    pub deallocate: bool,
}

/// Whether `claim` carries the scheduler's finalizer (it was allocated by the scheduler
/// with structured parameters, so this controller deallocates it).
pub fn has_finalizer(claim: &ResourceClaim) -> bool {
    claim
        .metadata
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == DELETE_PROTECTION_FINALIZER)
}

/// Upstream's rules once the `valid` reservations of `claim` are known: stale entries are
/// removed, and a claim that goes from used to unused is deallocated (when it carries the
/// finalizer, i.e. the scheduler allocated it) and loses the finalizer; a claim being
/// deleted that nothing reserves is deallocated and loses the finalizer too.
pub fn plan_claim(claim: &ResourceClaim, valid: &[ResourceClaimConsumerReference]) -> ClaimPlan {
    let current = reserved_for(claim).len();
    let finalizer = has_finalizer(claim);
    if valid.len() < current {
        let deallocate = valid.is_empty() && finalizer && is_allocated(claim);
        return ClaimPlan {
            status: Some(StatusChange {
                reserved_for: valid.to_vec(),
                deallocate,
            }),
            remove_finalizer: finalizer && (deallocate || !is_allocated(claim)),
        };
    }
    if finalizer && claim.metadata.deletion_timestamp.is_some() && valid.is_empty() {
        return ClaimPlan {
            status: is_allocated(claim).then(|| StatusChange {
                reserved_for: Vec::new(),
                deallocate: true,
            }),
            remove_finalizer: true,
        };
    }
    ClaimPlan::default()
}

/// `claim` with `change` applied to its status.
pub fn with_status(claim: &ResourceClaim, change: &StatusChange) -> ResourceClaim {
    let mut c = claim.clone();
    let status = c.status.get_or_insert_with(Default::default);
    status.reserved_for = (!change.reserved_for.is_empty()).then(|| change.reserved_for.clone());
    if change.deallocate {
        status.allocation = None;
    }
    c
}

/// `claim` without [`DELETE_PROTECTION_FINALIZER`].
pub fn without_finalizer(claim: &ResourceClaim) -> ResourceClaim {
    let mut c = claim.clone();
    if let Some(f) = c.metadata.finalizers.as_mut() {
        f.retain(|f| f != DELETE_PROTECTION_FINALIZER);
    }
    c
}

/// Whether a claim that nothing reserves and that was generated for a pod is deleted:
/// `owner` is the cached pod of the owner reference's name (`None`: not known, left to the
/// garbage collector); deleted when that pod was replaced (another uid) or is done.
pub fn delete_generated(owner_uid: &str, owner: Option<&Pod>) -> bool {
    owner.is_some_and(|p| p.metadata.uid.as_deref() != Some(owner_uid) || is_pod_done(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const FEATURES: Features = Features {
        admin_access: true,
        prioritized_list: true,
    };

    fn pod(v: serde_json::Value) -> Pod {
        let mut base = json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "uid-web"},
            "spec": {"containers": [], "resourceClaims": [
                {"name": "gpu", "resourceClaimTemplateName": "gpu-template"}
            ]}
        });
        merge(&mut base, v);
        serde_json::from_value(base).unwrap()
    }

    fn merge(a: &mut serde_json::Value, b: serde_json::Value) {
        match (a, b) {
            (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
                for (k, v) in b {
                    merge(a.entry(k).or_insert(serde_json::Value::Null), v);
                }
            }
            (a, b) => *a = b,
        }
    }

    fn template(spec: serde_json::Value) -> ResourceClaimTemplate {
        serde_json::from_value(json!({
            "metadata": {"name": "gpu-template", "namespace": "ns"},
            "spec": {"spec": spec}
        }))
        .unwrap()
    }

    fn gpu_template() -> ResourceClaimTemplate {
        template(json!({"devices": {"requests": [{"name": "gpu",
            "exactly": {"deviceClassName": "gpu.example.com"}}]}}))
    }

    fn claim(v: serde_json::Value) -> ResourceClaim {
        let mut base = json!({"metadata": {"name": "web-gpu-x", "namespace": "ns"}, "spec": {}});
        merge(&mut base, v);
        serde_json::from_value(base).unwrap()
    }

    fn owned_by_web() -> serde_json::Value {
        json!({"metadata": {
            "annotations": {names::POD_CLAIM_NAME_ANNOTATION: "gpu"},
            "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": "web",
                "uid": "uid-web", "controller": true}]
        }})
    }

    fn reservation(name: &str, uid: &str) -> serde_json::Value {
        json!({"resource": "pods", "name": name, "uid": uid})
    }

    #[test]
    fn missing_claim_is_created_from_its_template() {
        let p = pod(json!({}));
        let a = entry_action(
            &p,
            0,
            |_| None,
            [],
            |n| (n == "gpu-template").then(gpu_template),
            FEATURES,
        );
        let EntryAction::Create(c) = a else {
            panic!("{a:?}")
        };
        assert_eq!(c.metadata.generate_name.as_deref(), Some("web-gpu-"));
        assert!(is_for_pod(&p, &c));
    }

    #[test]
    fn recorded_owned_claim_needs_nothing_and_a_lost_one_is_recreated() {
        let p = pod(json!({"status": {"resourceClaimStatuses": [
            {"name": "gpu", "resourceClaimName": "web-gpu-x"}]}}));
        let owned = claim(owned_by_web());
        let a = entry_action(
            &p,
            0,
            |_| Some(owned.clone()),
            [],
            |_| Some(gpu_template()),
            FEATURES,
        );
        assert_eq!(a, EntryAction::Nothing);
        // Deleted by accident: created again.
        let a = entry_action(&p, 0, |_| None, [], |_| Some(gpu_template()), FEATURES);
        assert!(matches!(a, EntryAction::Create(_)), "{a:?}");
        // Not for a pod that is done: its claim was deleted because it is done.
        let mut done = p.clone();
        done.status.as_mut().unwrap().phase = Some("Succeeded".into());
        assert_eq!(
            entry_action(&done, 0, |_| None, [], |_| Some(gpu_template()), FEATURES),
            EntryAction::Nothing
        );
        // Replaced by a claim of another owner: a new one is made.
        let foreign = claim(json!({}));
        let a = entry_action(
            &p,
            0,
            |_| Some(foreign.clone()),
            [],
            |_| Some(gpu_template()),
            FEATURES,
        );
        assert!(matches!(a, EntryAction::Create(_)), "{a:?}");
    }

    #[test]
    fn claim_created_before_the_status_update_is_recorded_not_created_again() {
        let p = pod(json!({}));
        let owned = claim(owned_by_web());
        let a = entry_action(
            &p,
            0,
            |_| None,
            [&owned],
            |_| Some(gpu_template()),
            FEATURES,
        );
        assert_eq!(a, EntryAction::Record("web-gpu-x".into()));
    }

    #[test]
    fn direct_and_unneeded_claims_need_nothing_and_bad_entries_fail() {
        let p = pod(json!({"spec": {"resourceClaims": [
            {"name": "shared", "resourceClaimName": "shared"},
            {"name": "gpu", "resourceClaimTemplateName": "gpu-template"},
            {"name": "odd"}
        ]}, "status": {"resourceClaimStatuses": [{"name": "gpu"}]}}));
        let act = |i| entry_action(&p, i, |_| None, [], |_| Some(gpu_template()), FEATURES);
        assert_eq!(act(0), EntryAction::Nothing);
        assert_eq!(act(1), EntryAction::Nothing);
        let EntryAction::Fail(msg) = act(2) else {
            panic!()
        };
        assert!(msg.contains("\"odd\""), "{msg}");
    }

    #[test]
    fn missing_template_and_disabled_features_fail_with_upstreams_messages() {
        let p = pod(json!({}));
        let a = entry_action(&p, 0, |_| None, [], |_| None, FEATURES);
        assert!(
            matches!(&a, EntryAction::Fail(m) if m.contains("\"gpu-template\" not found")),
            "{a:?}"
        );
        let admin = template(json!({"devices": {"requests": [{"name": "gpu",
            "exactly": {"deviceClassName": "c", "adminAccess": true}}]}}));
        let off = Features {
            admin_access: false,
            prioritized_list: false,
        };
        let a = entry_action(&p, 0, |_| None, [], |_| Some(admin.clone()), off);
        assert_eq!(
            a,
            EntryAction::Fail("admin access is requested, but the feature is disabled".into())
        );
        assert!(matches!(
            entry_action(&p, 0, |_| None, [], |_| Some(admin.clone()), FEATURES),
            EntryAction::Create(_)
        ));
        let listed = template(json!({"devices": {"requests": [{"name": "gpu",
            "firstAvailable": [{"name": "a", "deviceClassName": "c"}]}]}}));
        let a = entry_action(&p, 0, |_| None, [], |_| Some(listed.clone()), off);
        assert!(
            matches!(&a, EntryAction::Fail(m) if m.contains("prioritized list")),
            "{a:?}"
        );
    }

    #[test]
    fn scheduled_pods_reserve_their_allocated_claims() {
        let statuses = json!({"status": {"resourceClaimStatuses": [
            {"name": "gpu", "resourceClaimName": "web-gpu-x"}]}});
        let mut allocated = claim(owned_by_web());
        allocated.status = serde_json::from_value(json!({"allocation": {}})).unwrap();
        let unscheduled = pod(statuses.clone());
        assert_eq!(
            claims_to_reserve(&unscheduled, |_| Some(allocated.clone())),
            Ok(vec![])
        );
        let mut scheduled_v = statuses.clone();
        merge(&mut scheduled_v, json!({"spec": {"nodeName": "n1"}}));
        let scheduled = pod(scheduled_v);
        let got = claims_to_reserve(&scheduled, |_| Some(allocated.clone())).unwrap();
        assert_eq!(got.len(), 1);
        let reserved = reserved_for_pod(&got[0], &scheduled);
        assert_eq!(names::reserved_for(&reserved).len(), 1);
        assert_eq!(names::reserved_for(&reserved)[0].resource, "pods");
        assert!(is_reserved_for_pod(&scheduled, &reserved));
        // Already reserved, or not allocated: nothing.
        assert_eq!(
            claims_to_reserve(&scheduled, |_| Some(reserved.clone())),
            Ok(vec![])
        );
        assert_eq!(
            claims_to_reserve(&scheduled, |_| Some(claim(owned_by_web()))),
            Ok(vec![])
        );
        // A pod that is done is never reserved again.
        let mut done = scheduled.clone();
        done.status.get_or_insert_with(Default::default).phase = Some("Succeeded".into());
        assert_eq!(
            claims_to_reserve(&done, |_| Some(allocated.clone())),
            Ok(vec![])
        );
        // A generated claim the pod does not own is an error.
        let mut foreign = allocated.clone();
        foreign.metadata.owner_references = None;
        let err = claims_to_reserve(&scheduled, |_| Some(foreign.clone())).unwrap_err();
        assert!(err.contains("pod is not owner"), "{err}");
    }

    #[test]
    fn reservations_of_done_gone_or_replaced_pods_are_stale() {
        let entry: ResourceClaimConsumerReference =
            serde_json::from_value(reservation("web", "uid-web")).unwrap();
        let running = pod(json!({"spec": {"nodeName": "n1"}, "status": {"phase": "Running"}}));
        assert!(keep_reservation(
            &entry,
            &Consumer::Present(Box::new(running.clone()))
        ));
        // Scheduled, being deleted, containers may still run: kept.
        let mut deleting = running.clone();
        deleting.metadata.deletion_timestamp =
            Some(serde_json::from_value(json!("2026-01-01T00:00:00Z")).unwrap());
        assert!(keep_reservation(
            &entry,
            &Consumer::Present(Box::new(deleting))
        ));
        for phase in ["Succeeded", "Failed"] {
            let done = pod(json!({"status": {"phase": phase}}));
            assert!(is_pod_done(&done));
            assert!(!keep_reservation(
                &entry,
                &Consumer::Present(Box::new(done))
            ));
        }
        let mut replaced = running;
        replaced.metadata.uid = Some("uid-2".into());
        assert!(!keep_reservation(
            &entry,
            &Consumer::Present(Box::new(replaced))
        ));
        assert!(!keep_reservation(&entry, &Consumer::Gone));
        assert!(!keep_reservation(&entry, &Consumer::SeenDeleted));
        // Deleted before it was scheduled: done.
        let mut unscheduled = pod(json!({}));
        unscheduled.metadata.deletion_timestamp =
            Some(serde_json::from_value(json!("2026-01-01T00:00:00Z")).unwrap());
        assert!(is_pod_done(&unscheduled));
        let other: ResourceClaimConsumerReference = serde_json::from_value(
            json!({"apiGroup": "apps", "resource": "deployments", "name": "d", "uid": "u"}),
        )
        .unwrap();
        assert!(is_pod_entry(&entry) && !is_pod_entry(&other));
    }

    fn allocated_claim(finalizer: bool, reserved: serde_json::Value) -> ResourceClaim {
        let mut c = claim(json!({"status": {"allocation": {}, "reservedFor": reserved}}));
        if finalizer {
            c.metadata.finalizers = Some(vec![DELETE_PROTECTION_FINALIZER.into()]);
        }
        c
    }

    #[test]
    fn last_consumer_gone_deallocates_and_drops_the_finalizer() {
        let c = allocated_claim(
            true,
            json!([reservation("a", "ua"), reservation("b", "ub")]),
        );
        let keep_b: Vec<ResourceClaimConsumerReference> =
            vec![serde_json::from_value(reservation("b", "ub")).unwrap()];
        // One of two consumers gone: only reservedFor shrinks.
        let plan = plan_claim(&c, &keep_b);
        assert_eq!(
            plan,
            ClaimPlan {
                status: Some(StatusChange {
                    reserved_for: keep_b.clone(),
                    deallocate: false
                }),
                remove_finalizer: false,
            }
        );
        // Both gone: deallocated, finalizer removed.
        let plan = plan_claim(&c, &[]);
        assert_eq!(
            plan,
            ClaimPlan {
                status: Some(StatusChange {
                    reserved_for: vec![],
                    deallocate: true
                }),
                remove_finalizer: true,
            }
        );
        let updated = with_status(&c, plan.status.as_ref().unwrap());
        assert!(!is_allocated(&updated));
        assert!(names::reserved_for(&updated).is_empty());
        assert!(!has_finalizer(&without_finalizer(&updated)));
        // Nothing stale: nothing to do (an allocated, unreserved claim stays allocated).
        assert_eq!(
            plan_claim(&c, names::reserved_for(&c)),
            ClaimPlan::default()
        );
        assert_eq!(
            plan_claim(&allocated_claim(true, json!([])), &[]),
            ClaimPlan::default()
        );
    }

    #[test]
    fn claims_without_the_finalizer_are_not_deallocated() {
        let c = allocated_claim(false, json!([reservation("a", "ua")]));
        let plan = plan_claim(&c, &[]);
        assert_eq!(
            plan,
            ClaimPlan {
                status: Some(StatusChange {
                    reserved_for: vec![],
                    deallocate: false
                }),
                remove_finalizer: false,
            }
        );
    }

    #[test]
    fn deleted_unused_claim_is_deallocated_and_released() {
        let mut c = allocated_claim(true, json!([]));
        c.metadata.deletion_timestamp =
            Some(serde_json::from_value(json!("2026-01-01T00:00:00Z")).unwrap());
        assert_eq!(
            plan_claim(&c, &[]),
            ClaimPlan {
                status: Some(StatusChange {
                    reserved_for: vec![],
                    deallocate: true
                }),
                remove_finalizer: true,
            }
        );
        c.status = None;
        assert_eq!(
            plan_claim(&c, &[]),
            ClaimPlan {
                status: None,
                remove_finalizer: true
            }
        );
    }

    #[test]
    fn generated_claims_of_done_or_replaced_pods_are_deleted() {
        let running = pod(json!({"status": {"phase": "Running"}}));
        assert!(!delete_generated("uid-web", Some(&running)));
        assert!(delete_generated("uid-old", Some(&running)));
        assert!(delete_generated(
            "uid-web",
            Some(&pod(json!({"status": {"phase": "Succeeded"}})))
        ));
        // Pod unknown to the cache: left to the garbage collector.
        assert!(!delete_generated("uid-web", None));
    }

    #[test]
    fn claims_of_finished_or_removed_pods_are_checked() {
        let recorded = json!({"spec": {"resourceClaims": [
            {"name": "gpu", "resourceClaimTemplateName": "t"},
            {"name": "shared", "resourceClaimName": "shared"}
        ]}, "status": {"resourceClaimStatuses": [{"name": "gpu", "resourceClaimName": "web-gpu-x"}]}});
        let p = pod(recorded.clone());
        assert!(has_claims(&p));
        assert!(claims_to_release(&p, false).is_empty());
        assert_eq!(claims_to_release(&p, true), ["web-gpu-x", "shared"]);
        let mut done = recorded;
        merge(
            &mut done,
            json!({"status": {"phase": "Failed",
            "extendedResourceClaimStatus": {"resourceClaimName": "ext", "requestMappings": []}}}),
        );
        assert_eq!(
            claims_to_release(&pod(done), false),
            ["web-gpu-x", "shared", "ext"]
        );
    }
}
