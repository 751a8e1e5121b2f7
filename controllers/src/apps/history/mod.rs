//! ControllerRevisions as upstream's `pkg/controller/history`, shared by the StatefulSet and
//! DaemonSet controllers: a revision snapshots the pod template as a strategic-merge patch
//! (`{"spec":{"template":{…,"$patch":"replace"}}}`), is named `<owner>-<hash>`, and old
//! ones are truncated to `revisionHistoryLimit`.
//!
//! The decisions (hashing, ordering, equality, what to truncate) are pure functions; [`History`]
//! performs the API writes.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::collections::HashSet;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use kube::Api;

use crate::machinery::owner;

/// Label on a ControllerRevision carrying its hash (upstream's `ControllerRevisionHashLabel`).
pub const REVISION_HASH_LABEL: &str = "controller.kubernetes.io/hash";

/// Label on pods naming the revision they were made from (`apps.ControllerRevisionHashLabelKey`).
pub const POD_REVISION_LABEL: &str = "controller-revision-hash";

/// Longest owner-name prefix of a revision name (upstream's `ControllerRevisionName`).
const MAX_PREFIX: usize = 223;

/// 32-bit FNV-1a over `data` (and the collision count, if any), spelled with upstream's
/// safe alphabet. Values differ from upstream's (which hashes Go's encoding); revisions are
/// matched by content, never by hash.
pub fn hash(data: &serde_json::Value, collision_count: Option<i32>) -> String {
    let mut h: u32 = 0x811c_9dc5;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            h ^= u32::from(*b);
            h = h.wrapping_mul(0x0100_0193);
        }
    };
    feed(&serde_json::to_vec(data).unwrap_or_default());
    if let Some(c) = collision_count {
        feed(c.to_string().as_bytes());
    }
    safe_encode(&h.to_string())
}

/// Upstream's `rand.SafeEncodeString`: maps each byte onto consonants and digits that cannot
/// spell words.
pub fn safe_encode(s: &str) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    s.bytes()
        .map(|c| ALPHABET[usize::from(c) % ALPHABET.len()] as char)
        .collect()
}

/// `<owner>-<hash>`, the owner name cut to 223 characters.
pub fn revision_name(owner: &str, hash: &str) -> String {
    let prefix: String = owner.chars().take(MAX_PREFIX).collect();
    format!("{prefix}-{hash}")
}

/// The revision data of a template: a patch that replaces `spec.template`.
pub fn template_patch(template: &PodTemplateSpec) -> serde_json::Value {
    let mut t = serde_json::to_value(template).unwrap_or_else(|_| serde_json::json!({}));
    if let Some(m) = t.as_object_mut() {
        m.insert("$patch".into(), "replace".into());
    }
    serde_json::json!({"spec": {"template": t}})
}

/// The template a revision snapshots (upstream's `ApplyRevision` for the template field).
pub fn template_of(cr: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut t = cr.data.as_ref()?.0.get("spec")?.get("template")?.clone();
    if let Some(m) = t.as_object_mut() {
        m.remove("$patch");
    }
    serde_json::from_value(t).ok()
}

/// The revision's data, `null` when absent.
pub fn data_of(cr: &ControllerRevision) -> &serde_json::Value {
    static NULL: serde_json::Value = serde_json::Value::Null;
    cr.data.as_ref().map(|d| &d.0).unwrap_or(&NULL)
}

/// Upstream's revision order: by revision number, then creation time, then name.
pub fn compare(a: &ControllerRevision, b: &ControllerRevision) -> Ordering {
    a.revision
        .cmp(&b.revision)
        .then_with(|| {
            let t = |c: &ControllerRevision| c.metadata.creation_timestamp.as_ref().map(|t| t.0);
            t(a).cmp(&t(b))
        })
        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

/// Sorts revisions oldest first.
pub fn sort<T: Borrow<ControllerRevision>>(revisions: &mut [T]) {
    revisions.sort_by(|a, b| compare(a.borrow(), b.borrow()));
}

/// One more than the highest revision number (1 for none).
pub fn next_revision<T: Borrow<ControllerRevision>>(revisions: &[T]) -> i64 {
    revisions
        .iter()
        .map(|r| r.borrow().revision)
        .max()
        .unwrap_or(0)
        + 1
}

/// `v` without nulls and empty objects or arrays, recursively: Go's encoder writes
/// `"creationTimestamp": null` and `{}` for unset structs where serde omits the field, so a
/// revision written by upstream's controller compares equal to ours for the same template.
pub fn canonical(v: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    let empty = |v: &Value| match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    };
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), canonical(v)))
                .filter(|(_, v)| !empty(v))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

/// Whether two revision payloads are equal up to [`canonical`] form.
pub fn same_data(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    a == b || canonical(a) == canonical(b)
}

/// Indices of the revisions whose data equals `data` (semantically), in input order.
pub fn find_equal<T: Borrow<ControllerRevision>>(
    revisions: &[T],
    data: &serde_json::Value,
) -> Vec<usize> {
    let want = canonical(data);
    revisions
        .iter()
        .enumerate()
        .filter(|(_, r)| canonical(data_of((*r).borrow())) == want)
        .map(|(i, _)| i)
        .collect()
}

/// Which revisions to delete: those not `live`, oldest first, beyond the newest `limit`
/// (a negative limit keeps everything). `revisions` must be sorted.
pub fn to_truncate<'a, T: Borrow<ControllerRevision>>(
    revisions: &'a [T],
    live: &HashSet<String>,
    limit: i32,
) -> Vec<&'a ControllerRevision> {
    let history: Vec<&ControllerRevision> = revisions
        .iter()
        .map(Borrow::borrow)
        .filter(|r| !live.contains(r.metadata.name.as_deref().unwrap_or_default()))
        .collect();
    if limit < 0 || history.len() <= limit as usize {
        return Vec::new();
    }
    let excess = history.len() - limit as usize;
    history.into_iter().take(excess).collect()
}

/// A revision (without a name yet) of `data` for the owner.
pub fn new_revision(
    owner_ref: OwnerReference,
    namespace: &str,
    template_labels: Option<&BTreeMap<String, String>>,
    annotations: Option<BTreeMap<String, String>>,
    data: serde_json::Value,
    revision: i64,
) -> ControllerRevision {
    ControllerRevision {
        metadata: ObjectMeta {
            namespace: Some(namespace.to_string()),
            labels: Some(template_labels.cloned().unwrap_or_default()),
            annotations,
            owner_references: Some(vec![owner_ref]),
            ..Default::default()
        },
        data: Some(RawExtension(data)),
        revision,
    }
}

/// Whether `cr` is controlled by `uid`, or an orphan (upstream lists both).
pub fn owned_or_orphan(cr: &ControllerRevision, uid: &str) -> bool {
    owner::controller_of(&cr.metadata).is_none_or(|r| r.uid == uid)
}

/// ControllerRevision writes.
#[derive(Clone)]
pub struct History {
    client: kube::Client,
}

impl History {
    /// Writes with `client`.
    pub fn new(client: kube::Client) -> Self {
        History { client }
    }

    fn api(&self, ns: &str) -> Api<ControllerRevision> {
        Api::namespaced(self.client.clone(), ns)
    }

    /// Creates `cr` named `<owner>-<hash>` with the hash also in label `hash_label`
    /// ([`REVISION_HASH_LABEL`] for StatefulSets, [`POD_REVISION_LABEL`] for DaemonSets); a
    /// name taken by different data bumps `collision_count` and retries, one taken by equal
    /// data returns that revision.
    pub async fn create(
        &self,
        owner_name: &str,
        hash_label: &str,
        mut cr: ControllerRevision,
        collision_count: &mut i32,
    ) -> Result<ControllerRevision, kube::Error> {
        let ns = cr.metadata.namespace.clone().unwrap_or_default();
        let data = data_of(&cr).clone();
        loop {
            let h = hash(&data, Some(*collision_count));
            cr.metadata.name = Some(revision_name(owner_name, &h));
            cr.metadata
                .labels
                .get_or_insert_with(BTreeMap::new)
                .insert(hash_label.into(), h);
            match self.api(&ns).create(&PostParams::default(), &cr).await {
                Err(e) if api_helpers::errors::is_conflict(&e) => {
                    let name = cr.metadata.name.clone().unwrap_or_default();
                    let existing = self.api(&ns).get(&name).await?;
                    if same_data(data_of(&existing), &data) {
                        return Ok(existing);
                    }
                    *collision_count += 1;
                }
                other => return other,
            }
        }
    }

    /// Gives `cr` a new revision number (an old template became current again).
    pub async fn set_revision(
        &self,
        cr: &ControllerRevision,
        revision: i64,
    ) -> Result<ControllerRevision, kube::Error> {
        let mut c = cr.clone();
        if c.revision == revision {
            return Ok(c);
        }
        c.revision = revision;
        let ns = c.metadata.namespace.clone().unwrap_or_default();
        let name = c.metadata.name.clone().unwrap_or_default();
        self.api(&ns)
            .replace(&name, &PostParams::default(), &c)
            .await
    }

    /// Adopts an orphan revision (adds the controller reference by update).
    pub async fn adopt(
        &self,
        cr: &ControllerRevision,
        owner_ref: OwnerReference,
    ) -> Result<ControllerRevision, kube::Error> {
        let mut c = cr.clone();
        c.metadata
            .owner_references
            .get_or_insert_with(Vec::new)
            .push(owner_ref);
        let ns = c.metadata.namespace.clone().unwrap_or_default();
        let name = c.metadata.name.clone().unwrap_or_default();
        self.api(&ns)
            .replace(&name, &PostParams::default(), &c)
            .await
    }

    /// Deletes `cr` (already gone is fine).
    pub async fn delete(&self, cr: &ControllerRevision) -> Result<(), kube::Error> {
        let ns = cr.metadata.namespace.clone().unwrap_or_default();
        let name = cr.metadata.name.clone().unwrap_or_default();
        match self.api(&ns).delete(&name, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(e) if api_helpers::errors::is_not_found(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec};

    fn template(image: &str) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some([("app".to_string(), "a".to_string())].into()),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    image: Some(image.into()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
        }
    }

    fn cr(name: &str, revision: i64, image: &str) -> ControllerRevision {
        ControllerRevision {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            data: Some(RawExtension(template_patch(&template(image)))),
            revision,
        }
    }

    #[test]
    fn patch_round_trips_the_template() {
        let t = template("busybox:1");
        let p = template_patch(&t);
        assert_eq!(p["spec"]["template"]["$patch"], "replace");
        let back = template_of(&cr("x", 1, "busybox:1")).unwrap();
        assert_eq!(back, t);
    }

    #[test]
    fn hash_depends_on_data_and_collisions() {
        let a = template_patch(&template("a"));
        let b = template_patch(&template("b"));
        assert_eq!(hash(&a, Some(0)), hash(&a, Some(0)));
        assert_ne!(hash(&a, Some(0)), hash(&b, Some(0)));
        assert_ne!(hash(&a, Some(0)), hash(&a, Some(1)));
        assert!(hash(&a, None)
            .chars()
            .all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)));
        assert_eq!(revision_name(&"x".repeat(300), "h").len(), 225);
    }

    #[test]
    fn ordering_equality_and_truncation() {
        let mut revs = vec![cr("c", 3, "c"), cr("a", 1, "a"), cr("b", 2, "b")];
        sort(&mut revs);
        let names: Vec<_> = revs
            .iter()
            .map(|r| r.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(next_revision(&revs), 4);
        assert_eq!(next_revision::<ControllerRevision>(&[]), 1);
        assert_eq!(find_equal(&revs, &template_patch(&template("b"))), vec![1]);
        let live: HashSet<String> = ["c".to_string()].into();
        let gone: Vec<_> = to_truncate(&revs, &live, 1)
            .iter()
            .map(|r| r.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(gone, ["a"]);
        assert!(to_truncate(&revs, &live, 2).is_empty());
        assert!(to_truncate(&revs, &live, -1).is_empty());
    }

    #[test]
    fn go_encoded_revision_equals_ours() {
        // What upstream's controller stores: nulls and empty structs spelled out.
        let go = serde_json::json!({"spec": {"template": {"$patch": "replace",
            "metadata": {"creationTimestamp": null, "labels": {"app": "a"}},
            "spec": {"containers": [{"name": "c", "image": "b", "resources": {}}],
                     "securityContext": {}}}}});
        let ours = serde_json::json!({"spec": {"template": {"$patch": "replace",
            "metadata": {"labels": {"app": "a"}},
            "spec": {"containers": [{"name": "c", "image": "b"}]}}}});
        assert!(same_data(&go, &ours));
        let revs = [ControllerRevision {
            data: Some(RawExtension(go)),
            ..Default::default()
        }];
        assert_eq!(find_equal(&revs, &ours), vec![0]);
        let other =
            serde_json::json!({"spec": {"template": {"metadata": {"labels": {"app": "b"}}}}});
        assert!(!same_data(&other, &ours));
    }
}
