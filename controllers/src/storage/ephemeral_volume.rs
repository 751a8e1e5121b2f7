//! ephemeral-volume-controller: for every live pod with generic ephemeral volumes
//! (`spec.volumes[].ephemeral.volumeClaimTemplate`), create the claim `<pod>-<volume>` from
//! the template, owned by the pod. A claim of that name not owned by the pod is left alone
//! (kubelet reports the conflict); this controller only logs it.

use futures::future::FutureExt;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::PostParams;
use kube::Api;

use crate::machinery::context::ControllerContext;
use crate::machinery::informers::handlers::{self as informer, Change};
use crate::machinery::informers::Informer;
use crate::machinery::queue::WorkQueue;
use crate::machinery::ControllerDescriptor;
use api_helpers::errors;

/// The identity of the controller with `--use-service-account-credentials`.
pub const SERVICE_ACCOUNT: &str = "ephemeral-volume-controller";

/// Registry entry.
pub fn descriptor() -> ControllerDescriptor {
    ControllerDescriptor {
        name: "ephemeral-volume-controller",
        enabled_by_default: true,
        start: |ctx| run(ctx).boxed(),
    }
}

/// What to do for one generic ephemeral volume of a pod.
#[derive(Debug, Clone, PartialEq)]
pub enum ClaimAction {
    /// Create this claim (named `<pod>-<volume>`).
    Create(Box<PersistentVolumeClaim>),
    /// The claim exists and belongs to the pod: nothing to do.
    Exists(String),
    /// A claim of that name exists but was not created for the pod: leave it alone.
    Conflict(String),
}

/// Whether `claim` is controlled by `pod` (same namespace, controller ownerReference to its uid).
pub fn claim_is_for_pod(pod: &Pod, claim: &PersistentVolumeClaim) -> bool {
    claim.metadata.namespace == pod.metadata.namespace
        && pod.metadata.uid.is_some()
        && claim
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|r| r.controller == Some(true) && Some(&r.uid) == pod.metadata.uid.as_ref())
}

/// The claim upstream creates for ephemeral volume `volume` of `pod`, from its template.
fn claim_from_template(
    pod: &Pod,
    name: String,
    template: &k8s_openapi::api::core::v1::PersistentVolumeClaimTemplate,
) -> PersistentVolumeClaim {
    let tm = template.metadata.as_ref();
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: pod.metadata.namespace.clone(),
            labels: tm.and_then(|m| m.labels.clone()),
            annotations: tm.and_then(|m| m.annotations.clone()),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".into(),
                kind: "Pod".into(),
                name: pod.metadata.name.clone().unwrap_or_default(),
                uid: pod.metadata.uid.clone().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..Default::default()
        },
        spec: Some(template.spec.clone()),
        status: None,
    }
}

/// For each generic ephemeral volume of `pod`, what to do given `existing` (claim lookup by
/// name in the pod's namespace). A pod being deleted needs nothing.
pub fn claim_actions<F>(pod: &Pod, existing: F) -> Vec<ClaimAction>
where
    F: Fn(&str) -> Option<PersistentVolumeClaim>,
{
    if pod.metadata.deletion_timestamp.is_some() {
        return Vec::new();
    }
    let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
    let volumes = pod.spec.as_ref().and_then(|s| s.volumes.as_ref());
    volumes
        .into_iter()
        .flatten()
        .filter_map(|v| {
            let template = v.ephemeral.as_ref()?.volume_claim_template.as_ref()?;
            let name = format!("{pod_name}-{}", v.name);
            Some(match existing(&name) {
                Some(c) if claim_is_for_pod(pod, &c) => ClaimAction::Exists(name),
                Some(_) => ClaimAction::Conflict(name),
                None => ClaimAction::Create(Box::new(claim_from_template(pod, name, template))),
            })
        })
        .collect()
}

/// Whether `pod` has any generic ephemeral volume (only those pods are queued).
pub fn has_ephemeral_volumes(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .is_some_and(|v| v.iter().any(|v| v.ephemeral.is_some()))
}

/// The pod controlling `claim`, if any: deleting such a claim re-queues its pod.
pub fn owning_pod(claim: &PersistentVolumeClaim) -> Option<String> {
    claim
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true) && r.kind == "Pod" && r.api_version == "v1")
        .map(|r| r.name.clone())
}

type PodKey = (String, String);

async fn run(ctx: ControllerContext) -> anyhow::Result<()> {
    let sd = ctx.shutdown.clone();
    let queue: WorkQueue<PodKey> = WorkQueue::new().with_metrics(&ctx.metrics, "ephemeral_volume");
    let q = queue.clone();
    let pods = {
        let shared = ctx.informers().informer::<Pod>();
        informer::on(&shared, move |p: &Pod, change| {
            if change != Change::Applied
                || p.metadata.deletion_timestamp.is_some()
                || !has_ephemeral_volumes(p)
            {
                return;
            }
            if let (Some(ns), Some(name)) = (&p.metadata.namespace, &p.metadata.name) {
                q.add((ns.clone(), name.clone()));
            }
        });
        shared
    };
    let q = queue.clone();
    let claims = {
        let shared = ctx.informers().informer::<PersistentVolumeClaim>();
        informer::on(&shared, move |c: &PersistentVolumeClaim, change| {
            if change != Change::Deleted {
                return;
            }
            if let (Some(ns), Some(pod)) = (&c.metadata.namespace, owning_pod(c)) {
                q.add((ns.clone(), pod));
            }
        });
        shared
    };
    informer::wait_synced(&sd, async {
        let _ = tokio::join!(pods.wait_synced(), claims.wait_synced());
    })
    .await?;
    let client = ctx.client_for(SERVICE_ACCOUNT).await?;
    queue
        .run("ephemeral_volume", 5, sd, move |(ns, name)| {
            let (client, pods, claims) = (client.clone(), pods.clone(), claims.clone());
            async move { sync_pod(client, &pods, &claims, &ns, &name).await }
        })
        .await;
    Ok(())
}

async fn sync_pod(
    client: kube::Client,
    pods: &Informer<Pod>,
    claims: &Informer<PersistentVolumeClaim>,
    ns: &str,
    name: &str,
) -> anyhow::Result<()> {
    let Some(pod) = pods.get(ns, name) else {
        return Ok(());
    };
    let api: Api<PersistentVolumeClaim> = Api::namespaced(client, ns);
    let actions = claim_actions(&pod, |claim| claims.get(ns, claim).map(|c| (*c).clone()));
    for action in actions {
        match action {
            ClaimAction::Exists(_) => {}
            ClaimAction::Conflict(claim) => {
                tracing::warn!(pod = %format!("{ns}/{name}"), claim = %claim,
                    "ephemeral volume: PVC was not created for the pod");
            }
            ClaimAction::Create(claim) => match api.create(&PostParams::default(), &claim).await {
                Ok(_) => {
                    tracing::info!(pod = %format!("{ns}/{name}"),
                        claim = claim.metadata.name.as_deref().unwrap_or_default(),
                        "created PVC for ephemeral volume");
                }
                // The cache lagged behind: the claim is there already; its owner is checked
                // again when the pod next changes.
                Err(e) if errors::is_conflict(&e) => {}
                Err(e) => return Err(e.into()),
            },
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(volumes: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "uid-web"},
            "spec": {"containers": [], "volumes": volumes}
        }))
        .unwrap()
    }

    fn scratch() -> serde_json::Value {
        json!([
            {"name": "cfg", "configMap": {"name": "c"}},
            {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {
                "metadata": {"labels": {"app": "web"}, "annotations": {"a": "b"}},
                "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "fast",
                         "resources": {"requests": {"storage": "1Gi"}}}
            }}}
        ])
    }

    #[test]
    fn missing_claim_is_created_from_the_template() {
        let p = pod(scratch());
        let actions = claim_actions(&p, |_| None);
        let [ClaimAction::Create(c)] = actions.as_slice() else {
            panic!("{actions:?}");
        };
        assert_eq!(c.metadata.name.as_deref(), Some("web-scratch"));
        assert_eq!(c.metadata.namespace.as_deref(), Some("ns"));
        assert_eq!(c.metadata.labels.as_ref().unwrap()["app"], "web");
        assert_eq!(c.metadata.annotations.as_ref().unwrap()["a"], "b");
        let spec = c.spec.as_ref().unwrap();
        assert_eq!(spec.storage_class_name.as_deref(), Some("fast"));
        let owner = &c.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (
                owner.api_version.as_str(),
                owner.kind.as_str(),
                owner.name.as_str()
            ),
            ("v1", "Pod", "web")
        );
        assert_eq!(owner.uid, "uid-web");
        assert_eq!(owner.controller, Some(true));
        assert_eq!(owner.block_owner_deletion, Some(true));
        assert_eq!(owning_pod(c).as_deref(), Some("web"));
        assert!(claim_is_for_pod(&p, c));
    }

    #[test]
    fn existing_claims_owned_or_foreign() {
        let p = pod(scratch());
        let ClaimAction::Create(owned) = claim_actions(&p, |_| None).remove(0) else {
            unreachable!()
        };
        let actions = claim_actions(&p, |n| (n == "web-scratch").then(|| (*owned).clone()));
        assert_eq!(actions, [ClaimAction::Exists("web-scratch".into())]);
        let mut foreign = (*owned).clone();
        foreign.metadata.owner_references = None;
        let actions = claim_actions(&p, |_| Some(foreign.clone()));
        assert_eq!(actions, [ClaimAction::Conflict("web-scratch".into())]);
        // Owned by another pod of the same name (a previous incarnation).
        let mut older = p.clone();
        older.metadata.uid = Some("uid-old".into());
        let actions = claim_actions(&older, |_| Some((*owned).clone()));
        assert_eq!(actions, [ClaimAction::Conflict("web-scratch".into())]);
    }

    #[test]
    fn deleting_pods_and_pods_without_ephemeral_volumes_need_nothing() {
        let mut p = pod(scratch());
        assert!(has_ephemeral_volumes(&p));
        p.metadata.deletion_timestamp =
            Some(serde_json::from_value(json!("2026-01-01T00:00:00Z")).unwrap());
        assert!(claim_actions(&p, |_| None).is_empty());
        let plain = pod(json!([{"name": "cfg", "configMap": {"name": "c"}}]));
        assert!(!has_ephemeral_volumes(&plain));
        assert!(claim_actions(&plain, |_| None).is_empty());
    }
}
