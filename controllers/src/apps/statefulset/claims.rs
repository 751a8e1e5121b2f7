//! `persistentVolumeClaimRetentionPolicy` through owner references on the claims (upstream's
//! `isClaimOwnerUpToDate` / `updateClaimOwnerRefForSetAndPod`): `whenDeleted: Delete` makes
//! the set an owner of every claim, `whenScaled: Delete` makes a condemned pod the owner of
//! its claims, so the garbage collector removes them with their owner.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use crate::machinery::owner::controller_ref;

/// The two halves of the policy: `(when_deleted_delete, when_scaled_delete)`.
pub fn policy(set: &StatefulSet) -> (bool, bool) {
    let p = set
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_claim_retention_policy.as_ref());
    let del = |v: Option<&String>| v.is_some_and(|v| v == "Delete");
    match p {
        None => (false, false),
        Some(p) => (del(p.when_deleted.as_ref()), del(p.when_scaled.as_ref())),
    }
}

fn same_object(r: &OwnerReference, api_version: &str, kind: &str, name: &str) -> bool {
    r.api_version == api_version && r.kind == kind && r.name == name
}

/// The owner references `claim` should have, or `None` when they are already right (or the
/// claim is another controller's and we leave it alone). `scaled_down` says whether the
/// pod's ordinal is outside the set's range.
pub fn desired_refs(
    claim: &PersistentVolumeClaim,
    set: &StatefulSet,
    pod: &Pod,
    scaled_down: bool,
) -> Option<Vec<OwnerReference>> {
    let (when_deleted, when_scaled) = policy(set);
    let refs = claim.metadata.owner_references.clone().unwrap_or_default();
    let set_name = set.metadata.name.clone().unwrap_or_default();
    let pod_name = pod.metadata.name.clone().unwrap_or_default();
    let is_set = |r: &OwnerReference| same_object(r, "apps/v1", "StatefulSet", &set_name);
    let is_pod = |r: &OwnerReference| same_object(r, "v1", "Pod", &pod_name);
    let set_uid = set.metadata.uid.clone().unwrap_or_default();
    let pod_uid = pod.metadata.uid.clone().unwrap_or_default();
    // References to an earlier incarnation of the set or pod: leave the claim alone.
    if refs
        .iter()
        .any(|r| (is_set(r) && r.uid != set_uid) || (is_pod(r) && r.uid != pod_uid))
    {
        return None;
    }
    // Another controller owns the claim: only strip our own references.
    let foreign = refs
        .iter()
        .any(|r| !is_set(r) && !is_pod(r) && r.controller == Some(true));
    let mut want: Vec<OwnerReference> = refs
        .iter()
        .filter(|r| !is_set(r) && !is_pod(r))
        .cloned()
        .collect();
    if !foreign {
        if when_deleted && !(when_scaled && scaled_down) {
            want.push(controller_ref("apps/v1", "StatefulSet", &set.metadata));
        }
        if when_scaled && scaled_down && !pod_uid.is_empty() {
            want.push(controller_ref("v1", "Pod", &pod.metadata));
        }
    }
    let key = |r: &OwnerReference| (r.uid.clone(), r.controller);
    let mut have_keys: Vec<_> = refs.iter().map(key).collect();
    let mut want_keys: Vec<_> = want.iter().map(key).collect();
    have_keys.sort();
    want_keys.sort();
    (have_keys != want_keys).then_some(want)
}

/// `meta` with `refs` as its owner references (`None` when empty).
pub fn with_refs(meta: &ObjectMeta, refs: Vec<OwnerReference>) -> ObjectMeta {
    let mut m = meta.clone();
    m.owner_references = (!refs.is_empty()).then_some(refs);
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(when_deleted: &str, when_scaled: &str) -> StatefulSet {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "set-uid"},
            "spec": {"selector": {"matchLabels": {"a": "b"}}, "serviceName": "s",
                "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": []}},
                "persistentVolumeClaimRetentionPolicy": {"whenDeleted": when_deleted, "whenScaled": when_scaled}}
        }))
        .unwrap()
    }

    fn pod() -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-1", "namespace": "ns", "uid": "pod-uid"}
        }))
        .unwrap()
    }

    fn claim(owners: &[(&str, &str, &str)]) -> PersistentVolumeClaim {
        let refs: Vec<serde_json::Value> = owners
            .iter()
            .map(|(kind, name, uid)| {
                serde_json::json!({"apiVersion": if *kind == "Pod" {"v1"} else {"apps/v1"},
                    "kind": kind, "name": name, "uid": uid, "controller": true})
            })
            .collect();
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "data-web-1", "ownerReferences": refs}
        }))
        .unwrap()
    }

    fn uids(v: Option<Vec<OwnerReference>>) -> Option<Vec<String>> {
        v.map(|v| v.into_iter().map(|r| r.uid).collect())
    }

    #[test]
    fn retain_retain_strips_our_refs() {
        let s = set("Retain", "Retain");
        assert_eq!(uids(desired_refs(&claim(&[]), &s, &pod(), false)), None);
        assert_eq!(
            uids(desired_refs(
                &claim(&[("StatefulSet", "web", "set-uid")]),
                &s,
                &pod(),
                false
            )),
            Some(vec![])
        );
    }

    #[test]
    fn when_deleted_owns_by_set_when_scaled_by_pod() {
        let s = set("Delete", "Retain");
        assert_eq!(
            uids(desired_refs(&claim(&[]), &s, &pod(), false)),
            Some(vec!["set-uid".into()])
        );
        let s = set("Retain", "Delete");
        assert_eq!(uids(desired_refs(&claim(&[]), &s, &pod(), false)), None);
        assert_eq!(
            uids(desired_refs(&claim(&[]), &s, &pod(), true)),
            Some(vec!["pod-uid".into()])
        );
        let s = set("Delete", "Delete");
        assert_eq!(
            uids(desired_refs(
                &claim(&[("StatefulSet", "web", "set-uid")]),
                &s,
                &pod(),
                true
            )),
            Some(vec!["pod-uid".into()])
        );
        assert_eq!(
            uids(desired_refs(
                &claim(&[("StatefulSet", "web", "set-uid")]),
                &s,
                &pod(),
                false
            )),
            None
        );
    }

    #[test]
    fn foreign_controller_and_stale_refs_are_left_alone() {
        let s = set("Delete", "Delete");
        assert_eq!(
            uids(desired_refs(
                &claim(&[("Other", "x", "x-uid")]),
                &s,
                &pod(),
                false
            )),
            None
        );
        assert_eq!(
            uids(desired_refs(
                &claim(&[("StatefulSet", "web", "old-uid")]),
                &s,
                &pod(),
                false
            )),
            None
        );
    }
}
