//! Mirror pods: the API's read-only copies of static pods, so `kubectl get pods` shows
//! them. Each carries `kubernetes.io/config.mirror` = its static pod's hash and is owned
//! by the Node; one whose hash is stale or that is being deleted is replaced, and mirror
//! pods without a static pod are deleted, as upstream's pod manager does.

use super::source::{annotation, is_mirror, CONFIG_HASH, CONFIG_MIRROR};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, ListParams, PostParams, Preconditions};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// What to do with the API to match the static pods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Delete the mirror pod `namespace/name` with this UID.
    Delete {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// UID (a precondition).
        uid: String,
    },
    /// Create the mirror pod of the static pod at this index.
    Create(usize),
}

/// The actions that make `mirrors` (the API's pods on this node carrying the mirror
/// annotation) match `statics`.
pub fn plan(statics: &[Pod], mirrors: &[Pod]) -> Vec<Action> {
    let key = |p: &Pod| {
        (
            p.metadata.namespace.clone().unwrap_or_default(),
            p.metadata.name.clone().unwrap_or_default(),
        )
    };
    let mut existing: BTreeMap<(String, String), &Pod> = mirrors
        .iter()
        .filter(|p| is_mirror(p))
        .map(|p| (key(p), p))
        .collect();
    let mut actions = Vec::new();
    for (i, s) in statics.iter().enumerate() {
        let hash = annotation(s, CONFIG_HASH).unwrap_or_default();
        match existing.remove(&key(s)) {
            Some(m)
                if m.metadata.deletion_timestamp.is_none()
                    && annotation(m, CONFIG_MIRROR) == Some(hash) => {}
            // Stale, or deleted by someone (nothing but us finishes a mirror pod's graceful
            // deletion): delete it now (no grace) and create the current one.
            Some(m) => actions.extend([delete(m), Action::Create(i)]),
            None => actions.push(Action::Create(i)),
        }
    }
    // Orphans: mirror pods whose static pod is gone.
    actions.extend(existing.values().map(|m| delete(m)));
    actions
}

fn delete(m: &Pod) -> Action {
    Action::Delete {
        namespace: m.metadata.namespace.clone().unwrap_or_default(),
        name: m.metadata.name.clone().unwrap_or_default(),
        uid: m.metadata.uid.clone().unwrap_or_default(),
    }
}

/// The mirror pod of `static_pod`, owned by `node`.
pub fn mirror_of(static_pod: &Pod, node: &Node) -> Pod {
    let mut m = static_pod.clone();
    let hash = annotation(static_pod, CONFIG_HASH)
        .unwrap_or_default()
        .to_string();
    m.metadata.uid = None;
    m.metadata.resource_version = None;
    m.metadata.creation_timestamp = None;
    m.metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(CONFIG_MIRROR.into(), hash);
    m.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "v1".into(),
        kind: "Node".into(),
        name: node.metadata.name.clone().unwrap_or_default(),
        uid: node.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: None,
    }]);
    m.status = None;
    m
}

/// Keeps the mirror pods in line with the static pods until `stop`: on every change of
/// the static pods and every `period`. Nothing happens until the Node exists.
pub async fn run(
    client: kube::Client,
    node_name: String,
    mut statics: watch::Receiver<Vec<Pod>>,
    period: Duration,
    stop: CancellationToken,
) {
    loop {
        let current = statics.borrow_and_update().clone();
        if let Err(e) = sync(&client, &node_name, &current).await {
            tracing::warn!(error = %format!("{e:#}"), "Failed to sync mirror pods");
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            r = statics.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(period) => {},
        }
    }
}

/// One pass: list this node's mirror pods and apply [`plan`].
pub async fn sync(client: &kube::Client, node_name: &str, statics: &[Pod]) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let Some(node) = nodes.get_opt(node_name).await? else {
        return Ok(());
    };
    let all: Api<Pod> = Api::all(client.clone());
    let on_node = all
        .list(&ListParams::default().fields(&format!("spec.nodeName={node_name}")))
        .await?
        .items;
    for action in plan(statics, &on_node) {
        match action {
            Action::Create(i) => {
                let s = &statics[i];
                let ns = s.metadata.namespace.clone().unwrap_or_default();
                let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
                match api
                    .create(&PostParams::default(), &mirror_of(s, &node))
                    .await
                {
                    Ok(_) => {
                        tracing::info!(pod = %format!("{ns}/{}", s.metadata.name.as_deref().unwrap_or("")), "Created mirror pod")
                    }
                    Err(e) if api_helpers::errors::is_conflict(&e) => {}
                    Err(e) => {
                        tracing::warn!(pod = ?s.metadata.name, error = %e, "Failed creating a mirror pod")
                    }
                }
            }
            Action::Delete {
                namespace,
                name,
                uid,
            } => {
                let api: Api<Pod> = Api::namespaced(client.clone(), &namespace);
                let dp = DeleteParams {
                    grace_period_seconds: Some(0),
                    preconditions: Some(Preconditions {
                        uid: Some(uid),
                        resource_version: None,
                    }),
                    ..Default::default()
                };
                match api.delete(&name, &dp).await {
                    Ok(_) => {
                        tracing::info!(pod = %format!("{namespace}/{name}"), "Deleted mirror pod")
                    }
                    Err(e)
                        if api_helpers::errors::is_not_found(&e)
                            || api_helpers::errors::is_conflict(&e) => {}
                    Err(e) => {
                        tracing::warn!(pod = %name, error = %e, "Failed deleting a mirror pod")
                    }
                }
            }
        }
    }
    Ok(())
}

/// The mirror pods of this node as the pod manager's watch last saw them, by
/// namespace/name: where static pods' statuses go, read without a GET per status write.
#[derive(Debug, Default)]
pub struct MirrorCache {
    pods: Mutex<HashMap<(String, String), Pod>>,
}

fn key(p: &Pod) -> (String, String) {
    (
        p.metadata.namespace.clone().unwrap_or_default(),
        p.metadata.name.clone().unwrap_or_default(),
    )
}

impl MirrorCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Pod>> {
        self.pods.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A mirror pod was added or changed.
    pub fn apply(&self, mirror: &Pod) {
        self.lock().insert(key(mirror), mirror.clone());
    }

    /// A mirror pod was deleted (a newer one of the same name is kept).
    pub fn delete(&self, mirror: &Pod) {
        let mut pods = self.lock();
        let k = key(mirror);
        if pods.get(&k).map(|p| &p.metadata.uid) == Some(&mirror.metadata.uid) {
            pods.remove(&k);
        }
    }

    /// The UID whose status the pod worker writes for `pod` (see [`status_uid`]).
    pub fn status_uid(&self, pod: &Pod) -> Option<String> {
        status_uid(pod, self.lock().get(&key(pod)))
    }
}

/// The UID whose status the pod worker writes for `pod`: its own for an API pod; for a
/// static pod that of `mirror` (its namespace/name's mirror pod) when it is current —
/// same hash, not being deleted — else None (skip this write), as upstream's status
/// manager translates static pods to their mirrors.
pub fn status_uid(pod: &Pod, mirror: Option<&Pod>) -> Option<String> {
    if !super::source::is_static(pod) {
        return pod.metadata.uid.clone();
    }
    let mirror = mirror?;
    (annotation(mirror, CONFIG_MIRROR) == annotation(pod, CONFIG_HASH)
        && mirror.metadata.deletion_timestamp.is_none())
    .then(|| mirror.metadata.uid.clone())
    .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::static_pods::source::parse_manifest;
    use std::path::Path;

    fn static_pod(name: &str, image: &str) -> Pod {
        let m = format!("kind: Pod\nmetadata: {{name: {name}}}\nspec: {{containers: [{{name: c, image: {image}}}]}}\n");
        parse_manifest(m.as_bytes(), Path::new(&format!("/m/{name}")), "n").unwrap()
    }

    fn node() -> Node {
        serde_json::from_value(serde_json::json!({"metadata": {"name": "n", "uid": "node-uid"}}))
            .unwrap()
    }

    fn api_copy(p: &Pod, uid: &str) -> Pod {
        let mut m = mirror_of(p, &node());
        m.metadata.uid = Some(uid.into());
        m
    }

    #[test]
    fn mirror_pods_carry_the_hash_and_the_node_owner() {
        let s = static_pod("web", "busybox:1");
        let m = mirror_of(&s, &node());
        assert_eq!(annotation(&m, CONFIG_MIRROR), annotation(&s, CONFIG_HASH));
        assert!(m.metadata.uid.is_none());
        let owner = &m.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("Node", "node-uid", Some(true))
        );
    }

    #[test]
    fn plan_creates_replaces_and_removes() {
        let web = static_pod("web", "busybox:1");
        let db = static_pod("db", "busybox:1");
        let plain: Pod = serde_json::from_value(serde_json::json!({"metadata": {"name": "api-pod", "namespace": "default", "uid": "u0"}})).unwrap();
        // Nothing in the API: both created; an ordinary pod is never touched.
        assert_eq!(
            plan(&[web.clone(), db.clone()], std::slice::from_ref(&plain)),
            vec![Action::Create(0), Action::Create(1)]
        );
        // Up to date: nothing to do.
        assert!(plan(std::slice::from_ref(&web), &[api_copy(&web, "u1")]).is_empty());
        // The file changed: the stale mirror is replaced.
        let web2 = static_pod("web", "busybox:2");
        let stale = api_copy(&web, "u1");
        assert_eq!(
            plan(std::slice::from_ref(&web2), std::slice::from_ref(&stale)),
            vec![
                Action::Delete {
                    namespace: "default".into(),
                    name: "web-n".into(),
                    uid: "u1".into()
                },
                Action::Create(0)
            ]
        );
        assert_eq!(plan(&[web2], &[]), vec![Action::Create(0)]);
        // The file is gone: the orphaned mirror pod is deleted.
        assert_eq!(plan(&[], &[stale]).len(), 1);
        // Deleted by a user (graceful): finished at once and recreated.
        let mut terminating = api_copy(&web, "u2");
        terminating.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::now(),
            ));
        assert_eq!(
            plan(&[web], &[terminating]),
            vec![
                Action::Delete {
                    namespace: "default".into(),
                    name: "web-n".into(),
                    uid: "u2".into()
                },
                Action::Create(0)
            ]
        );
    }

    #[test]
    fn a_static_pods_status_goes_to_its_current_cached_mirror() {
        let s = static_pod("web", "busybox:1.35");
        let cache = MirrorCache::default();
        assert_eq!(cache.status_uid(&s), None, "no mirror yet");
        let m1 = api_copy(&s, "m1");
        cache.apply(&m1);
        assert_eq!(cache.status_uid(&s).as_deref(), Some("m1"));
        // A stale mirror (other hash) or one being deleted gets no status.
        let edited = static_pod("web", "busybox:1.36");
        assert_eq!(cache.status_uid(&edited), None);
        let mut deleting = m1.clone();
        deleting.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::now(),
            ));
        cache.apply(&deleting);
        assert_eq!(cache.status_uid(&s), None);
        // Replaced by a new mirror: the old one's delete event does not drop the new one.
        let m2 = api_copy(&s, "m2");
        cache.apply(&m2);
        cache.delete(&m1);
        assert_eq!(cache.status_uid(&s).as_deref(), Some("m2"));
        cache.delete(&m2);
        assert_eq!(cache.status_uid(&s), None);
        // An API pod's status is its own.
        let api: Pod =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "a", "uid": "a1"}}))
                .unwrap();
        assert_eq!(cache.status_uid(&api).as_deref(), Some("a1"));
    }
}
