//! A Deployment's ReplicaSets: building the new one, syncing its revision annotations, and
//! the history cleanup (`revisionHistoryLimit`).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, ReplicaSetSpec};
use kube::api::ObjectMeta;

use super::util::{self, annotation};
use crate::machinery::owner;

/// The ReplicaSet whose template equals the Deployment's (the oldest such, as upstream), and
/// the others.
pub fn split_new_old<'a>(
    d: &Deployment,
    rss: &'a [ReplicaSet],
) -> (Option<&'a ReplicaSet>, Vec<&'a ReplicaSet>) {
    let template = d
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let mut sorted: Vec<&ReplicaSet> = rss.iter().collect();
    sorted.sort_by(|a, b| {
        a.metadata
            .creation_timestamp
            .cmp(&b.metadata.creation_timestamp)
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
    let new = sorted.iter().copied().find(|rs| {
        rs.spec
            .as_ref()
            .and_then(|s| s.template.as_ref())
            .is_some_and(|t| util::equal_ignore_hash(t, &template))
    });
    let old = sorted.into_iter().filter(|rs| Some(*rs) != new).collect();
    (new, old)
}

/// The revision the new ReplicaSet should carry: one more than every old one.
pub fn next_revision(old: &[&ReplicaSet]) -> i64 {
    old.iter().map(|rs| util::revision(rs)).max().unwrap_or(0) + 1
}

/// Annotations the new ReplicaSet should have (upstream's `SetNewReplicaSetAnnotations`):
/// the Deployment's own (minus the controller's), the revision — keeping the one it
/// replaces in revision-history on a rollback — and desired/max replicas when missing.
pub fn new_rs_annotations(
    d: &Deployment,
    current: &BTreeMap<String, String>,
    new_revision: i64,
) -> BTreeMap<String, String> {
    let mut a = current.clone();
    for (k, v) in d.metadata.annotations.iter().flatten() {
        if !util::skip_copy(k) {
            a.insert(k.clone(), v.clone());
        }
    }
    let old_rev: i64 = current
        .get(util::REVISION)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if old_rev < new_revision {
        if old_rev > 0 {
            let history = match current.get(util::REVISION_HISTORY) {
                Some(h) if !h.is_empty() => format!("{h},{old_rev}"),
                _ => old_rev.to_string(),
            };
            a.insert(util::REVISION_HISTORY.into(), history);
        }
        a.insert(util::REVISION.into(), new_revision.to_string());
    }
    let (surge, _) = util::fenceposts(d);
    a.entry(util::DESIRED_REPLICAS.into())
        .or_insert_with(|| util::replicas(d).to_string());
    a.entry(util::MAX_REPLICAS.into())
        .or_insert_with(|| (util::replicas(d) + surge).to_string());
    a
}

/// A new ReplicaSet `<deployment>-<hash>` for the Deployment's template.
pub fn build_new(d: &Deployment, replicas: i32, revision: i64) -> ReplicaSet {
    let spec = d.spec.clone().unwrap_or_default();
    let collision = d.status.as_ref().and_then(|s| s.collision_count);
    let hash = util::template_hash(&spec.template, collision);
    let mut template = spec.template.clone();
    let tmeta = template.metadata.get_or_insert_with(Default::default);
    tmeta
        .labels
        .get_or_insert_with(Default::default)
        .insert(util::POD_TEMPLATE_HASH.into(), hash.clone());
    let mut selector = spec.selector.clone();
    selector
        .match_labels
        .get_or_insert_with(Default::default)
        .insert(util::POD_TEMPLATE_HASH.into(), hash.clone());
    let name = format!("{}-{hash}", d.metadata.name.as_deref().unwrap_or_default());
    ReplicaSet {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: d.metadata.namespace.clone(),
            labels: tmeta.labels.clone(),
            annotations: Some(new_rs_annotations(d, &BTreeMap::new(), revision)),
            owner_references: Some(vec![owner::controller_ref(
                "apps/v1",
                "Deployment",
                &d.metadata,
            )]),
            ..Default::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(replicas),
            min_ready_seconds: spec.min_ready_seconds,
            selector,
            template: Some(template),
        }),
        status: None,
    }
}

/// Old ReplicaSets to delete beyond `revisionHistoryLimit` (default 10): empty, settled,
/// not being deleted, lowest revisions first.
pub fn history_to_delete<'a>(d: &Deployment, old: &[&'a ReplicaSet]) -> Vec<&'a ReplicaSet> {
    let limit = d
        .spec
        .as_ref()
        .and_then(|s| s.revision_history_limit)
        .unwrap_or(10)
        .max(0) as usize;
    let mut cleanable: Vec<&ReplicaSet> = old
        .iter()
        .copied()
        .filter(|rs| {
            let st = rs.status.clone().unwrap_or_default();
            util::rs_replicas(rs) == 0
                && st.replicas == 0
                && st.observed_generation >= rs.metadata.generation
                && rs.metadata.deletion_timestamp.is_none()
        })
        .collect();
    if cleanable.len() <= limit {
        return Vec::new();
    }
    cleanable.sort_by_key(|rs| (util::revision(rs), rs.metadata.creation_timestamp.clone()));
    let n = cleanable.len() - limit;
    cleanable.into_iter().take(n).collect()
}

/// Whether the Deployment's replicas changed since its active ReplicaSets were last scaled.
pub fn is_scaling_event(d: &Deployment, rss: &[&ReplicaSet]) -> bool {
    rss.iter()
        .filter(|rs| util::rs_replicas(rs) > 0)
        .filter_map(|rs| {
            annotation(&rs.metadata.annotations, util::DESIRED_REPLICAS)?
                .parse::<i32>()
                .ok()
        })
        .any(|desired| desired != util::replicas(d))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DeploymentSpec, ReplicaSetStatus};
    use k8s_openapi::api::core::v1::PodTemplateSpec;

    fn deploy(image_label: &str) -> Deployment {
        Deployment {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("ns".into()),
                uid: Some("d-uid".into()),
                annotations: Some([("team".to_string(), "a".to_string())].into()),
                ..Default::default()
            },
            spec: Some(DeploymentSpec {
                replicas: Some(4),
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some([("app".to_string(), image_label.to_string())].into()),
                        ..Default::default()
                    }),
                    spec: None,
                },
                ..Default::default()
            }),
            status: None,
        }
    }

    #[test]
    fn new_rs_carries_hash_revision_and_owner() {
        let d = deploy("v1");
        let rs = build_new(&d, 1, 3);
        let hash = rs.metadata.labels.as_ref().unwrap()[util::POD_TEMPLATE_HASH].clone();
        assert_eq!(
            rs.metadata.name.as_deref(),
            Some(format!("web-{hash}").as_str())
        );
        let a = rs.metadata.annotations.as_ref().unwrap();
        assert_eq!(a[util::REVISION], "3");
        assert_eq!(a[util::DESIRED_REPLICAS], "4");
        assert_eq!(a[util::MAX_REPLICAS], "5");
        assert_eq!(a["team"], "a");
        assert!(owner::is_controlled_by(&rs.metadata, "d-uid"));
        let spec = rs.spec.as_ref().unwrap();
        assert_eq!(
            spec.selector.match_labels.as_ref().unwrap()[util::POD_TEMPLATE_HASH],
            hash
        );
        // The same template is "new" again whatever its hash label.
        let rss = vec![rs.clone()];
        assert!(split_new_old(&d, &rss).0.is_some());
        assert!(split_new_old(&deploy("v2"), &rss).0.is_none());
    }

    #[test]
    fn rollback_moves_revision_into_history() {
        let d = deploy("v1");
        let current: BTreeMap<String, String> =
            [(util::REVISION.to_string(), "1".to_string())].into();
        let a = new_rs_annotations(&d, &current, 3);
        assert_eq!(a[util::REVISION], "3");
        assert_eq!(a[util::REVISION_HISTORY], "1");
    }

    #[test]
    fn history_limit_deletes_oldest_revisions() {
        let mut d = deploy("v1");
        d.spec.as_mut().unwrap().revision_history_limit = Some(1);
        let mk = |rev: i64, replicas: i32| {
            let mut rs = build_new(&d, replicas, rev);
            rs.metadata.name = Some(format!("rs{rev}"));
            rs.status = Some(ReplicaSetStatus {
                replicas,
                ..Default::default()
            });
            rs
        };
        let (a, b, c) = (mk(1, 0), mk(2, 0), mk(3, 2));
        let got: Vec<_> = history_to_delete(&d, &[&b, &a, &c])
            .iter()
            .map(|r| r.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(got, ["rs1"]);
        assert!(!is_scaling_event(&deploy("v1"), &[&c]));
        let mut d5 = deploy("v1");
        d5.spec.as_mut().unwrap().replicas = Some(5);
        assert!(is_scaling_event(&d5, &[&c]));
    }
}
