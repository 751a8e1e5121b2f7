//! persistentvolumeclaim-protection-controller and persistentvolume-protection-controller:
//! keep the `kubernetes.io/pvc-protection` / `kubernetes.io/pv-protection` finalizers on every
//! claim and volume, and release a deleting one only once nothing uses it (a claim: no
//! scheduled pod references it; a volume: it is not Bound).

use futures::future::FutureExt;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{ListParams, PostParams};
use kube::Api;

use crate::machinery::context::ControllerContext;
use crate::machinery::informers::handlers::{self as informer, Change};
use crate::machinery::informers::Informer;
use crate::machinery::queue::WorkQueue;
use crate::machinery::ControllerDescriptor;
use api_helpers::errors;
use api_helpers::volumes::{ephemeral_claim_name, pod_claims};

/// The finalizer that keeps a claim while pods use it.
pub const PVC_FINALIZER: &str = "kubernetes.io/pvc-protection";
/// The finalizer that keeps a volume while it is bound.
pub const PV_FINALIZER: &str = "kubernetes.io/pv-protection";
/// The identity of the claim controller with `--use-service-account-credentials`.
pub const PVC_SERVICE_ACCOUNT: &str = "pvc-protection-controller";
/// The identity of the volume controller with `--use-service-account-credentials`.
pub const PV_SERVICE_ACCOUNT: &str = "pv-protection-controller";

/// Registry entry of the claim controller.
pub fn pvc_descriptor() -> ControllerDescriptor {
    ControllerDescriptor {
        name: "persistentvolumeclaim-protection-controller",
        enabled_by_default: true,
        start: |ctx| run_pvc(ctx).boxed(),
    }
}

/// Registry entry of the volume controller.
pub fn pv_descriptor() -> ControllerDescriptor {
    ControllerDescriptor {
        name: "persistentvolume-protection-controller",
        enabled_by_default: true,
        start: |ctx| run_pv(ctx).boxed(),
    }
}

fn has_finalizer(meta: &ObjectMeta, finalizer: &str) -> bool {
    meta.finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|x| x == finalizer))
}

/// Whether a live (not deleting) object still lacks `finalizer`.
pub fn needs_finalizer(meta: &ObjectMeta, finalizer: &str) -> bool {
    meta.deletion_timestamp.is_none() && !has_finalizer(meta, finalizer)
}

/// Whether a deleting object still holds `finalizer` (so it waits for this controller).
pub fn is_deletion_candidate(meta: &ObjectMeta, finalizer: &str) -> bool {
    meta.deletion_timestamp.is_some() && has_finalizer(meta, finalizer)
}

/// `finalizers` with `finalizer` added or removed.
fn with_finalizer(meta: &ObjectMeta, finalizer: &str, present: bool) -> Vec<String> {
    let mut f: Vec<String> = meta
        .finalizers
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|x| x != finalizer)
        .collect();
    if present {
        f.push(finalizer.to_string());
    }
    f
}

/// The finalizers a protection controller writes for an object with `meta`, or `None` when
/// nothing changes: `finalizer` added to a live object that lacks it, removed from a deleting
/// one once `in_use()` says nothing uses it (asked only then).
pub fn protection_update(
    meta: &ObjectMeta,
    finalizer: &str,
    in_use: impl FnOnce() -> bool,
) -> Option<Vec<String>> {
    if is_deletion_candidate(meta, finalizer) {
        (!in_use()).then(|| with_finalizer(meta, finalizer, false))
    } else {
        needs_finalizer(meta, finalizer).then(|| with_finalizer(meta, finalizer, true))
    }
}

/// Writes `finalizers` onto a copy of `obj` named `name` (a replace, so a concurrent change
/// conflicts and is retried); an object gone meanwhile needs nothing.
pub async fn replace_finalizers<K>(
    api: &Api<K>,
    name: &str,
    obj: &K,
    finalizers: Vec<String>,
) -> Result<(), kube::Error>
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut updated = obj.clone();
    updated.meta_mut().finalizers = Some(finalizers);
    errors::ignore_not_found(api.replace(name, &PostParams::default(), &updated).await)
}

/// Kubelet is done with the pod, or it was force-deleted: deleting with a zero grace period.
pub fn pod_is_shut_down(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
        && pod.metadata.deletion_grace_period_seconds == Some(0)
}

/// Succeeded or Failed.
pub fn pod_is_terminated(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

fn is_scheduled(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_some_and(|n| !n.is_empty())
}

/// Whether `claim` is owned (as controller) by `pod`: it was created for its ephemeral volume.
fn claim_is_for_pod(pod: &Pod, claim: &PersistentVolumeClaim) -> bool {
    claim.metadata.namespace == pod.metadata.namespace
        && pod.metadata.uid.is_some()
        && claim
            .metadata
            .owner_references
            .as_ref()
            .is_some_and(|refs| {
                refs.iter().any(|r| {
                    r.controller == Some(true) && Some(&r.uid) == pod.metadata.uid.as_ref()
                })
            })
}

/// Whether `pod` keeps `claim` in use, as upstream decides: only scheduled pods count
/// (kubelet refuses to start a pod on a deleting claim); a `persistentVolumeClaim` volume
/// counts in any phase, an ephemeral volume's claim until the pod is shut down.
pub fn pod_uses_claim(pod: &Pod, claim: &PersistentVolumeClaim) -> bool {
    if pod.metadata.namespace != claim.metadata.namespace || !is_scheduled(pod) {
        return false;
    }
    let claim_name = claim.metadata.name.as_deref().unwrap_or_default();
    let volumes = pod.spec.as_ref().and_then(|s| s.volumes.as_ref());
    volumes.into_iter().flatten().any(|v| {
        v.persistent_volume_claim
            .as_ref()
            .is_some_and(|c| c.claim_name == claim_name)
            || (v.ephemeral.is_some()
                && !pod_is_shut_down(pod)
                && ephemeral_claim_name(pod, &v.name) == claim_name
                && claim_is_for_pod(pod, claim))
    })
}

/// Whether the pvc-protection finalizer may go from `claim` given the namespace's `pods`.
pub fn can_remove_pvc_finalizer<'a>(
    claim: &PersistentVolumeClaim,
    pods: impl IntoIterator<Item = &'a Pod>,
) -> bool {
    !pods.into_iter().any(|p| pod_uses_claim(p, claim))
}

/// The shared pod cache's index of pods by the claims they reference (upstream's
/// `pod-pvc-index`), values `<namespace>/<claim>`.
pub const POD_PVC_INDEX: &str = "pod-pvc-index";

/// The [`POD_PVC_INDEX`] values of `pod`.
pub fn pod_pvc_keys(pod: &Pod) -> Vec<String> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    pod_claims(pod)
        .into_iter()
        .map(|c| format!("{ns}/{c}"))
        .collect()
}

/// Whether a pod event may release claims: the pod went away, finished, or is not scheduled.
pub fn pod_event_may_release(pod: &Pod, deleted: bool) -> bool {
    deleted || pod_is_terminated(pod) || !is_scheduled(pod)
}

/// Whether the volume is in use: upstream looks only at `status.phase == Bound`.
pub fn pv_in_use(pv: &PersistentVolume) -> bool {
    pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound")
}

/// Whether the pv-protection finalizer may go from `pv`.
pub fn can_remove_pv_finalizer(pv: &PersistentVolume) -> bool {
    !pv_in_use(pv)
}

type ClaimKey = (String, String);

async fn run_pvc(ctx: ControllerContext) -> anyhow::Result<()> {
    let sd = ctx.shutdown.clone();
    let queue: WorkQueue<ClaimKey> = WorkQueue::new().with_metrics(&ctx.metrics, "pvcprotection");
    let q = queue.clone();
    let claims = {
        let shared = ctx.informers().informer::<PersistentVolumeClaim>();
        informer::on(&shared, move |c: &PersistentVolumeClaim, change| {
            if change == Change::Applied {
                if let (Some(ns), Some(name)) = (&c.metadata.namespace, &c.metadata.name) {
                    q.add((ns.clone(), name.clone()));
                }
            }
        });
        shared
    };
    let q = queue.clone();
    let pods = {
        let shared = ctx.informers().informer::<Pod>();
        informer::on(&shared, move |p: &Pod, change| {
            if !pod_event_may_release(p, change == Change::Deleted) {
                return;
            }
            let Some(ns) = &p.metadata.namespace else {
                return;
            };
            for claim in pod_claims(p) {
                q.add((ns.clone(), claim));
            }
        });
        shared
    };
    pods.add_index(POD_PVC_INDEX, pod_pvc_keys);
    informer::wait_synced(&sd, async {
        let _ = tokio::join!(claims.wait_synced(), pods.wait_synced());
    })
    .await?;
    let client = ctx.client_for(PVC_SERVICE_ACCOUNT).await?;
    queue
        .run("pvc-protection", 5, sd, move |(ns, name)| {
            let (client, claims, pods) = (client.clone(), claims.clone(), pods.clone());
            async move { sync_claim(client, &claims, &pods, &ns, &name).await }
        })
        .await;
    Ok(())
}

async fn sync_claim(
    client: kube::Client,
    claims: &Informer<PersistentVolumeClaim>,
    pods: &Informer<Pod>,
    ns: &str,
    name: &str,
) -> anyhow::Result<()> {
    let Some(claim) = claims.get(ns, name) else {
        return Ok(());
    };
    let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let meta = &claim.metadata;
    if is_deletion_candidate(meta, PVC_FINALIZER) {
        let cached = pods.by_index(POD_PVC_INDEX, &format!("{ns}/{name}"));
        // The cache may lag behind a new pod: confirm with a live list before releasing, as
        // upstream's askAPIServer (only when the cache saw no user).
        let unused = can_remove_pvc_finalizer(&claim, cached.iter().map(|p| p.as_ref())) && {
            let live = Api::<Pod>::namespaced(client, ns)
                .list(&ListParams::default())
                .await?;
            can_remove_pvc_finalizer(&claim, &live.items)
        };
        if unused {
            let finalizers = with_finalizer(meta, PVC_FINALIZER, false);
            replace_finalizers(&api, name, claim.as_ref(), finalizers).await?;
            tracing::info!(claim = %format!("{ns}/{name}"), "removed protection finalizer from unused PVC");
        } else {
            tracing::debug!(claim = %format!("{ns}/{name}"), "keeping PVC: a pod uses it");
        }
        return Ok(());
    }
    if needs_finalizer(meta, PVC_FINALIZER) {
        let finalizers = with_finalizer(meta, PVC_FINALIZER, true);
        replace_finalizers(&api, name, claim.as_ref(), finalizers).await?;
        tracing::debug!(claim = %format!("{ns}/{name}"), "added protection finalizer to PVC");
    }
    Ok(())
}

async fn run_pv(ctx: ControllerContext) -> anyhow::Result<()> {
    let sd = ctx.shutdown.clone();
    let queue: WorkQueue<String> = WorkQueue::new().with_metrics(&ctx.metrics, "pvprotection");
    let q = queue.clone();
    let volumes = {
        let shared = ctx.informers().informer::<PersistentVolume>();
        informer::on(&shared, move |pv: &PersistentVolume, change| {
            if change == Change::Applied {
                if let Some(name) = &pv.metadata.name {
                    q.add(name.clone());
                }
            }
        });
        shared
    };
    informer::wait_synced(&sd, async {
        volumes.wait_synced().await;
    })
    .await?;
    let client = ctx.client_for(PV_SERVICE_ACCOUNT).await?;
    queue
        .run("pv-protection", 5, sd, move |name| {
            let (client, volumes) = (client.clone(), volumes.clone());
            async move {
                let Some(pv) = volumes.get("", &name) else {
                    return Ok(());
                };
                let Some(finalizers) =
                    protection_update(&pv.metadata, PV_FINALIZER, || !can_remove_pv_finalizer(&pv))
                else {
                    return Ok(());
                };
                replace_finalizers(&Api::all(client), &name, pv.as_ref(), finalizers).await?;
                Ok(())
            }
        })
        .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claim(name: &str, finalizers: &[&str], deleting: bool) -> PersistentVolumeClaim {
        let mut meta = json!({"name": name, "namespace": "ns", "finalizers": finalizers});
        if deleting {
            meta["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
        serde_json::from_value(json!({"metadata": meta})).unwrap()
    }

    fn pod(name: &str, node: Option<&str>, volumes: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}")},
            "spec": {"nodeName": node, "containers": [], "volumes": volumes}
        }))
        .unwrap()
    }

    #[test]
    fn finalizer_needed_only_on_live_objects_without_it() {
        let c = claim("c", &[], false);
        assert!(needs_finalizer(&c.metadata, PVC_FINALIZER));
        assert!(!is_deletion_candidate(&c.metadata, PVC_FINALIZER));
        let c = claim("c", &[PVC_FINALIZER], false);
        assert!(!needs_finalizer(&c.metadata, PVC_FINALIZER));
        let c = claim("c", &[], true);
        assert!(!needs_finalizer(&c.metadata, PVC_FINALIZER));
        assert!(!is_deletion_candidate(&c.metadata, PVC_FINALIZER));
        let c = claim("c", &["other", PVC_FINALIZER], true);
        assert!(is_deletion_candidate(&c.metadata, PVC_FINALIZER));
        assert_eq!(with_finalizer(&c.metadata, PVC_FINALIZER, false), ["other"]);
    }

    #[test]
    fn scheduled_pod_with_claim_volume_blocks_removal() {
        let c = claim("data", &[PVC_FINALIZER], true);
        let vols = json!([{"name": "v", "persistentVolumeClaim": {"claimName": "data"}}]);
        let user = pod("p", Some("node"), vols.clone());
        assert!(!can_remove_pvc_finalizer(&c, [&user]));
        // Unscheduled pods never started: kubelet won't start them on a deleting claim.
        let pending = pod("p", None, vols.clone());
        assert!(can_remove_pvc_finalizer(&c, [&pending]));
        // Another claim or another namespace does not count.
        let other = pod(
            "q",
            Some("node"),
            json!([{"name": "v", "persistentVolumeClaim": {"claimName": "x"}}]),
        );
        let mut elsewhere = user.clone();
        elsewhere.metadata.namespace = Some("other".into());
        assert!(can_remove_pvc_finalizer(&c, [&other, &elsewhere]));
        assert!(can_remove_pvc_finalizer(&c, []));
    }

    #[test]
    fn ephemeral_claims_count_until_the_pod_is_shut_down() {
        let vols = json!([{"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}}]);
        let p = pod("web", Some("node"), vols);
        let mut c = claim("web-scratch", &[PVC_FINALIZER], true);
        // Not owned by the pod: some other claim that happens to have the name.
        assert!(can_remove_pvc_finalizer(&c, [&p]));
        c.metadata.owner_references = Some(vec![serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod", "name": "web", "uid": "uid-web", "controller": true
        }))
        .unwrap()]);
        assert!(!can_remove_pvc_finalizer(&c, [&p]));
        let mut gone = p.clone();
        gone.metadata.deletion_timestamp = c.metadata.deletion_timestamp.clone();
        gone.metadata.deletion_grace_period_seconds = Some(0);
        assert!(can_remove_pvc_finalizer(&c, [&gone]));
        assert_eq!(pod_claims(&p), ["web-scratch"]);
    }

    #[test]
    fn pod_events_that_may_release_claims() {
        let mut p = pod("p", Some("n"), json!([]));
        assert!(!pod_event_may_release(&p, false));
        assert!(pod_event_may_release(&p, true));
        p.status = Some(serde_json::from_value(json!({"phase": "Succeeded"})).unwrap());
        assert!(pod_event_may_release(&p, false));
        assert!(pod_event_may_release(&pod("p", None, json!([])), false));
    }

    #[test]
    fn bound_volumes_keep_their_finalizer() {
        let pv = |phase: &str| -> PersistentVolume {
            serde_json::from_value(json!({"metadata": {"name": "pv"}, "status": {"phase": phase}}))
                .unwrap()
        };
        assert!(!can_remove_pv_finalizer(&pv("Bound")));
        for phase in ["Available", "Released", "Failed", "Pending"] {
            assert!(can_remove_pv_finalizer(&pv(phase)), "{phase}");
        }
        let no_status: PersistentVolume =
            serde_json::from_value(json!({"metadata": {"name": "pv"}})).unwrap();
        assert!(can_remove_pv_finalizer(&no_status));
    }

    #[test]
    fn protection_update_adds_to_live_and_releases_unused_deleting_objects() {
        let live = ObjectMeta::default();
        assert_eq!(
            protection_update(&live, PV_FINALIZER, || unreachable!()),
            Some(vec![PV_FINALIZER.to_string()])
        );
        let mut deleting = ObjectMeta {
            finalizers: Some(vec!["other".into(), PV_FINALIZER.into()]),
            ..Default::default()
        };
        deleting.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::now(),
        ));
        assert_eq!(protection_update(&deleting, PV_FINALIZER, || true), None);
        assert_eq!(
            protection_update(&deleting, PV_FINALIZER, || false),
            Some(vec!["other".to_string()])
        );
        let protected = ObjectMeta {
            finalizers: Some(vec![PV_FINALIZER.into()]),
            ..Default::default()
        };
        assert_eq!(protection_update(&protected, PV_FINALIZER, || true), None);
    }
}
