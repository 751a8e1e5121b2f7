//! The resourceclaim-controller's sync loop: pod and claim keys in one queue
//! (`resource_claim`), [`super::decisions`] deciding, this module reading caches and writing.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use component_base::events::{reference_to, EventRecorder, EventSpec, EventType};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::resource::v1::{ResourceClaim, ResourceClaimTemplate};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::json;

use super::decisions::{self, Consumer, EntryAction, Features};
use super::metrics::ClaimMetrics;
use super::names::{claim_name, owning_pod, pod_claims, reserved_for};
use crate::machinery::context::ControllerContext;
use crate::machinery::informers::handlers::{self as handlers, Change};
use crate::machinery::informers::{self, Informer};
use crate::machinery::queue::WorkQueue;
use api_helpers::errors;

/// Upstream's worker count (`defaultResourceClaimControllerWorkers`).
const WORKERS: usize = 50;
/// How many deleted pods are remembered (upstream's `maxUIDCacheEntries`).
const MAX_DELETED: usize = 500;
/// The field manager of the pod status apply.
const FIELD_MANAGER: &str = "ResourceClaimController";
/// Pods by the `namespace/name` of each claim they use.
const POD_CLAIM_INDEX: &str = "pod-resource-claim-index";
/// Claims by the uid of the pod controlling them.
const CLAIM_OWNER_INDEX: &str = "claim-pod-owner-index";

/// A queue entry: a pod to create/reserve claims for, or a claim to clean up.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    /// `namespace/name` of a pod.
    Pod(String, String),
    /// `namespace/name` of a claim.
    Claim(String, String),
}

/// Uids of pods seen deleted, oldest forgotten first (upstream's `uidCache`).
#[derive(Default)]
struct DeletedPods {
    order: VecDeque<String>,
    set: HashSet<String>,
}

impl DeletedPods {
    fn add(&mut self, uid: &str) {
        if self.set.insert(uid.to_string()) {
            self.order.push_back(uid.to_string());
            if self.order.len() > MAX_DELETED {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
    }
}

struct State {
    client: kube::Client,
    pods: Informer<Pod>,
    claims: Informer<ResourceClaim>,
    templates: Informer<ResourceClaimTemplate>,
    recorder: EventRecorder,
    metrics: ClaimMetrics,
    features: Features,
    deleted: Arc<Mutex<DeletedPods>>,
    /// Claims this controller created that the cache may not have yet, by owning pod uid
    /// (upstream's mutation cache): a retry must find them instead of creating more.
    created: Mutex<HashMap<String, Vec<ResourceClaim>>>,
}

fn pod_key(p: &Pod) -> Option<Key> {
    Some(Key::Pod(
        p.metadata.namespace.clone()?,
        p.metadata.name.clone()?,
    ))
}

/// Queues what a pod change calls for: its claims when it is done or gone, itself while
/// it lives.
fn enqueue_pod(q: &WorkQueue<Key>, deleted: &Mutex<DeletedPods>, pod: &Pod, removed: bool) {
    if !decisions::has_claims(pod) {
        return;
    }
    if removed {
        if let Some(uid) = &pod.metadata.uid {
            deleted.lock().unwrap_or_else(|e| e.into_inner()).add(uid);
        }
    }
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    for claim in decisions::claims_to_release(pod, removed) {
        q.add(Key::Claim(ns.clone(), claim));
    }
    // A pod that is done needs no claims: it is never given new ones nor reserved again
    // (kubernetes/kubernetes#141274: upstream re-reserved terminal pods).
    if !removed && pod.metadata.deletion_timestamp.is_none() && !decisions::is_pod_done(pod) {
        if let Some(k) = pod_key(pod) {
            q.add(k);
        }
    }
}

/// Runs the controller until shutdown.
pub async fn run(ctx: ControllerContext) -> anyhow::Result<()> {
    let sd = ctx.shutdown.clone();
    let queue: WorkQueue<Key> = WorkQueue::new().with_metrics(&ctx.metrics, "resource_claim");
    let gates = &ctx.options.feature_gates;
    let features = Features {
        admin_access: gates.enabled("DRAAdminAccess"),
        prioritized_list: gates.enabled("DRAPrioritizedList"),
    };
    let deleted = Arc::new(Mutex::new(DeletedPods::default()));
    let metrics = ctx.metrics.families(ClaimMetrics::register);

    let pods = ctx.informers().informer::<Pod>();
    pods.add_index(POD_CLAIM_INDEX, |p: &Pod| {
        let ns = p.metadata.namespace.clone().unwrap_or_default();
        pod_claims(p)
            .iter()
            .filter_map(|c| claim_name(p, c).name().map(|n| format!("{ns}/{n}")))
            .collect()
    });
    let (q, d) = (queue.clone(), deleted.clone());
    handlers::on(&pods, move |p: &Pod, change| {
        enqueue_pod(&q, &d, p, change == Change::Deleted)
    });

    let claims = ctx.informers().informer::<ResourceClaim>();
    claims.add_index(CLAIM_OWNER_INDEX, |c: &ResourceClaim| {
        owning_pod(c)
            .map(|(_, uid)| vec![uid.to_string()])
            .unwrap_or_default()
    });
    let (q, d, pod_cache, claim_cache, m) = (
        queue.clone(),
        deleted.clone(),
        pods.clone(),
        claims.clone(),
        metrics.clone(),
    );
    handlers::on(&claims, move |c: &ResourceClaim, change| {
        let (Some(ns), Some(name)) = (&c.metadata.namespace, &c.metadata.name) else {
            return;
        };
        if change == Change::Applied {
            q.add(Key::Claim(ns.clone(), name.clone()));
        }
        for p in pod_cache.by_index(POD_CLAIM_INDEX, &format!("{ns}/{name}")) {
            enqueue_pod(&q, &d, &p, false);
        }
        m.count(claim_cache.list().iter().map(|c| c.as_ref()));
    });
    let templates = ctx.informers().informer::<ResourceClaimTemplate>();

    informers::wait_synced(&sd, async {
        tokio::join!(
            pods.wait_synced(),
            claims.wait_synced(),
            templates.wait_synced()
        );
    })
    .await?;
    metrics.count(claims.list().iter().map(|c| c.as_ref()));
    let client = ctx.client_for(super::SERVICE_ACCOUNT).await?;
    let state = Arc::new(State {
        recorder: crate::machinery::context::event_recorder(client.clone(), "resource_claim"),
        client,
        pods,
        claims,
        templates,
        metrics,
        features,
        deleted,
        created: Mutex::default(),
    });
    tracing::info!("Starting resource claim controller");
    queue
        .run("resource_claim", WORKERS, sd, move |key| {
            let state = state.clone();
            async move {
                match key {
                    Key::Pod(ns, name) => sync_pod(&state, &ns, &name).await,
                    Key::Claim(ns, name) => sync_claim(&state, &ns, &name).await,
                }
            }
        })
        .await;
    Ok(())
}

impl State {
    fn claim(&self, ns: &str, name: &str) -> Option<ResourceClaim> {
        if let Some(c) = self.claims.get(ns, name) {
            return Some((*c).clone());
        }
        self.created
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .flatten()
            .find(|c| {
                c.metadata.namespace.as_deref() == Some(ns)
                    && c.metadata.name.as_deref() == Some(name)
            })
            .cloned()
    }

    /// Claims controlled by pod `uid`: cached, plus those created and not cached yet.
    fn owned(&self, uid: &str) -> Vec<ResourceClaim> {
        let mut owned: Vec<ResourceClaim> = self
            .claims
            .by_index(CLAIM_OWNER_INDEX, uid)
            .iter()
            .map(|c| (**c).clone())
            .collect();
        let mut created = self.created.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(list) = created.get_mut(uid) {
            list.retain(|c| {
                let ns = c.metadata.namespace.as_deref().unwrap_or_default();
                let name = c.metadata.name.as_deref().unwrap_or_default();
                self.claims.get(ns, name).is_none()
            });
            owned.extend(list.iter().cloned());
            if list.is_empty() {
                created.remove(uid);
            }
        }
        owned
    }

    fn warn_pod(&self, pod: &Pod, reason: &str, note: String) {
        let event = EventSpec {
            regarding: reference_to(pod),
            related: None,
            type_: EventType::Warning,
            reason: reason.into(),
            action: "Create".into(),
            note,
        };
        self.recorder.emit(event);
    }
}

async fn sync_pod(state: &State, ns: &str, name: &str) -> anyhow::Result<()> {
    let Some(pod) = state.pods.get(ns, name) else {
        return Ok(());
    };
    if pod.metadata.deletion_timestamp.is_some() || decisions::is_pod_done(&pod) {
        return Ok(());
    }
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let api: Api<ResourceClaim> = Api::namespaced(state.client.clone(), ns);
    let mut recorded: Vec<(String, String)> = Vec::new();
    for (i, pod_claim) in pod_claims(&pod).iter().enumerate() {
        let owned = state.owned(&uid);
        let action = decisions::entry_action(
            &pod,
            i,
            |n| state.claim(ns, n),
            &owned,
            |t| state.templates.get(ns, t).map(|t| (*t).clone()),
            state.features,
        );
        let fail = |msg: String| {
            state.warn_pod(
                &pod,
                "FailedResourceClaimCreation",
                format!("PodResourceClaim {}: {msg}", pod_claim.name),
            );
            anyhow::anyhow!(
                "pod {ns}/{name}, PodResourceClaim {}: {msg}",
                pod_claim.name
            )
        };
        match action {
            EntryAction::Nothing => {}
            EntryAction::Record(claim) => recorded.push((pod_claim.name.clone(), claim)),
            EntryAction::Fail(msg) => return Err(fail(msg)),
            EntryAction::Create(claim) => match api.create(&PostParams::default(), &claim).await {
                Ok(created) => {
                    state.metrics.created(&claim, true);
                    let created_name = created.metadata.name.clone().unwrap_or_default();
                    tracing::info!(pod = %format!("{ns}/{name}"), claim = %created_name, "Created ResourceClaim");
                    state
                        .created
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .entry(uid.clone())
                        .or_default()
                        .push(created);
                    recorded.push((pod_claim.name.clone(), created_name));
                }
                Err(e) => {
                    state.metrics.created(&claim, false);
                    return Err(fail(format!("create ResourceClaim: {e}")));
                }
            },
        }
    }
    if !recorded.is_empty() {
        apply_claim_statuses(state, &pod, &recorded).await?;
    }
    let reserve = decisions::claims_to_reserve(&pod, |n| state.claim(ns, n))
        .map_err(|e| anyhow::anyhow!(e))?;
    for claim in reserve {
        let updated = decisions::reserved_for_pod(&claim, &pod);
        let cname = claim.metadata.name.clone().unwrap_or_default();
        tracing::debug!(claim = %cname, pod = %format!("{ns}/{name}"), "reserve claim for pod");
        api.replace_status(&cname, &PostParams::default(), &updated)
            .await
            .map_err(|e| anyhow::anyhow!("reserve claim {ns}/{cname} for pod: {e}"))?;
    }
    Ok(())
}

/// Records the generated claims in the pod's `status.resourceClaimStatuses` with a
/// server-side apply (field manager `ResourceClaimController`, forced), as upstream. The
/// entries already recorded are applied again so that they stay owned by this manager.
async fn apply_claim_statuses(
    state: &State,
    pod: &Pod,
    recorded: &[(String, String)],
) -> anyhow::Result<()> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let mut entries: Vec<serde_json::Value> = pod
        .status
        .as_ref()
        .and_then(|s| s.resource_claim_statuses.as_ref())
        .into_iter()
        .flatten()
        .filter(|s| !recorded.iter().any(|(n, _)| n == &s.name))
        .filter_map(|s| {
            let claim = s.resource_claim_name.as_ref()?;
            Some(json!({"name": s.name, "resourceClaimName": claim}))
        })
        .collect();
    entries.extend(
        recorded
            .iter()
            .map(|(n, c)| json!({"name": n, "resourceClaimName": c})),
    );
    let apply = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns},
        "status": {"resourceClaimStatuses": entries},
    });
    let api: Api<Pod> = Api::namespaced(state.client.clone(), ns);
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&apply),
    )
    .await
    .map_err(|e| anyhow::anyhow!("update pod {ns}/{name} ResourceClaimStatuses: {e}"))?;
    Ok(())
}

/// What is known of the pod `entry` names: seen deleted, cached, or (not cached, so
/// perhaps too new for the cache) asked of the apiserver.
async fn consumer(
    state: &State,
    ns: &str,
    entry: &k8s_openapi::api::resource::v1::ResourceClaimConsumerReference,
) -> anyhow::Result<Consumer> {
    let seen_deleted = state
        .deleted
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .set
        .contains(&entry.uid);
    if seen_deleted {
        return Ok(Consumer::SeenDeleted);
    }
    if let Some(p) = state.pods.get(ns, &entry.name) {
        return Ok(Consumer::Present(Box::new((*p).clone())));
    }
    let api: Api<Pod> = Api::namespaced(state.client.clone(), ns);
    Ok(match api.get_opt(&entry.name).await? {
        Some(p) => Consumer::Present(Box::new(p)),
        None => Consumer::Gone,
    })
}

async fn sync_claim(state: &State, ns: &str, name: &str) -> anyhow::Result<()> {
    let Some(claim) = state.claims.get(ns, name) else {
        return Ok(());
    };
    let mut valid = Vec::new();
    for entry in reserved_for(&claim) {
        if !decisions::is_pod_entry(entry) {
            anyhow::bail!(
                "claim {ns}/{name}: unsupported status.reservedFor entry {}/{} {:?}",
                entry.api_group.as_deref().unwrap_or_default(),
                entry.resource,
                entry.name
            );
        }
        if decisions::keep_reservation(entry, &consumer(state, ns, entry).await?) {
            valid.push(entry.clone());
        }
    }
    let api: Api<ResourceClaim> = Api::namespaced(state.client.clone(), ns);
    let plan = decisions::plan_claim(&claim, &valid);
    let mut current = (*claim).clone();
    if let Some(change) = &plan.status {
        let updated = decisions::with_status(&current, change);
        current = api
            .replace_status(name, &PostParams::default(), &updated)
            .await?;
        tracing::info!(claim = %format!("{ns}/{name}"), reserved = change.reserved_for.len(),
            deallocated = change.deallocate, "Removed stale reservations");
    }
    if plan.remove_finalizer {
        api.replace(
            name,
            &PostParams::default(),
            &decisions::without_finalizer(&current),
        )
        .await?;
    }
    if valid.is_empty() {
        if let Some((pod_name, pod_uid)) = owning_pod(&claim) {
            let owner = state.pods.get(ns, pod_name);
            if decisions::delete_generated(pod_uid, owner.as_deref()) {
                tracing::info!(claim = %format!("{ns}/{name}"), pod = %pod_name, "Deleting unused generated claim");
                errors::ignore_not_found(api.delete(name, &DeleteParams::default()).await)
                    .map_err(|e| anyhow::anyhow!("delete claim {ns}/{name}: {e}"))?;
            }
        }
    }
    Ok(())
}
