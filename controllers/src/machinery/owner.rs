//! Controller references and upstream's claim rules (`ControllerRefManager.ClaimObject`):
//! adopt matching orphans, release owned objects that no longer match, ignore the rest.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};

use api_helpers::labels;

/// The owner reference with `controller: true`, if any.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
}

/// Whether `meta` is controlled by the object with `uid`.
pub fn is_controlled_by(meta: &ObjectMeta, uid: &str) -> bool {
    controller_of(meta).is_some_and(|r| r.uid == uid)
}

/// A `controller: true, blockOwnerDeletion: true` reference to an owner.
pub fn controller_ref(api_version: &str, kind: &str, owner: &ObjectMeta) -> OwnerReference {
    OwnerReference {
        api_version: api_version.into(),
        kind: kind.into(),
        name: owner.name.clone().unwrap_or_default(),
        uid: owner.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// What a controller does with a candidate object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Already ours and matching: manage it.
    Owned,
    /// An orphan that matches: take it (patch in our controller reference), then manage it.
    Adopt,
    /// Ours but no longer matching: remove our reference.
    Release,
    /// Someone else's, or not ours to take.
    Ignore,
}

/// The owner side of a claim.
pub struct Claimant<'a> {
    /// Owner metadata (uid, namespace, deletionTimestamp).
    pub meta: &'a ObjectMeta,
    /// The owner's selector.
    pub selector: &'a LabelSelector,
}

/// Upstream's claim decision for one candidate `obj` of `owner`.
pub fn claim(owner: &Claimant<'_>, obj: &ObjectMeta) -> Claim {
    let owner_uid = owner.meta.uid.as_deref().unwrap_or_default();
    let owner_deleting = owner.meta.deletion_timestamp.is_some();
    let labels: Option<&BTreeMap<String, String>> = obj.labels.as_ref();
    let matches = !labels::is_empty(owner.selector) && labels::matches(owner.selector, labels);
    match controller_of(obj) {
        Some(r) if r.uid != owner_uid => Claim::Ignore,
        Some(_) if matches => Claim::Owned,
        // Ours but not matching: a deleting owner keeps it (it is going away anyway).
        Some(_) if owner_deleting => Claim::Owned,
        Some(_) => Claim::Release,
        None if owner_deleting || !matches || obj.deletion_timestamp.is_some() => Claim::Ignore,
        None if obj.namespace != owner.meta.namespace => Claim::Ignore,
        None => Claim::Adopt,
    }
}

/// A strategic-merge patch that adds `r` as the object's controller (`uid` guarded).
pub fn adopt_patch(r: &OwnerReference, obj_uid: &str) -> serde_json::Value {
    serde_json::json!({
        "metadata": {
            "ownerReferences": [r],
            "uid": obj_uid,
        }
    })
}

/// A strategic-merge patch that deletes the owner reference with `owner_uid`.
pub fn release_patch(owner_uid: &str, obj_uid: &str) -> serde_json::Value {
    serde_json::json!({
        "metadata": {
            "ownerReferences": [{"$patch": "delete", "uid": owner_uid}],
            "uid": obj_uid,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(ns: &str, uid: &str, labels: &[(&str, &str)], owner: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            namespace: Some(ns.into()),
            uid: Some(uid.into()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            owner_references: owner.map(|o| {
                vec![OwnerReference {
                    uid: o.into(),
                    controller: Some(true),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        }
    }

    #[test]
    fn claim_rules() {
        let owner_meta = meta("ns", "rs", &[], None);
        let sel = labels::from_map(&[("app".to_string(), "a".to_string())].into());
        let c = Claimant {
            meta: &owner_meta,
            selector: &sel,
        };
        assert_eq!(
            claim(&c, &meta("ns", "p", &[("app", "a")], Some("rs"))),
            Claim::Owned
        );
        assert_eq!(
            claim(&c, &meta("ns", "p", &[("app", "b")], Some("rs"))),
            Claim::Release
        );
        assert_eq!(
            claim(&c, &meta("ns", "p", &[("app", "a")], None)),
            Claim::Adopt
        );
        assert_eq!(
            claim(&c, &meta("other", "p", &[("app", "a")], None)),
            Claim::Ignore
        );
        assert_eq!(
            claim(&c, &meta("ns", "p", &[("app", "a")], Some("x"))),
            Claim::Ignore
        );
        let mut deleting = owner_meta.clone();
        deleting.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
        ));
        let c = Claimant {
            meta: &deleting,
            selector: &sel,
        };
        assert_eq!(
            claim(&c, &meta("ns", "p", &[("app", "a")], None)),
            Claim::Ignore
        );
        assert_eq!(
            claim(&c, &meta("ns", "p", &[("app", "b")], Some("rs"))),
            Claim::Owned
        );
    }
}
