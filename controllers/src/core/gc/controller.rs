//! Watches, the graph's upkeep and the workers that act on [`super::graph::decide`].

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::StreamExt;
use kube::api::{
    DeleteParams, DynamicObject, Patch, PatchParams, Preconditions, PropagationPolicy,
};
use kube::core::PartialObjectMeta;
use kube::discovery::ApiResource;
use kube::runtime::watcher::{self, Event};
use kube::Api;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::graph::{self, Action, Graph, Location, Object, OwnerState, Propagation};
use super::metrics::GcMetrics;
use super::monitors::{self, Resync};
use crate::machinery::context::ControllerContext;
use crate::machinery::discovery::{self, Served};
use crate::machinery::queue::WorkQueue;
use api_helpers::errors;

/// How often discovery is re-run to pick up new resources (CRDs), as upstream's 30 s.
const RESYNC_DISCOVERY: Duration = Duration::from_secs(30);

struct Shared {
    client: kube::Client,
    graph: Mutex<Graph>,
    resources: RwLock<Vec<Served>>,
    /// How many monitors (metadata watches) have finished their first list.
    monitors_synced: tokio::sync::watch::Sender<usize>,
    queue: WorkQueue<String>,
}

/// Runs until shutdown.
pub async fn run(ctx: ControllerContext) -> anyhow::Result<()> {
    if !ctx.options.enable_garbage_collector {
        tracing::info!("--enable-garbage-collector=false: garbage collector disabled");
        ctx.shutdown.cancelled().await;
        return Ok(());
    }
    let shared = Arc::new(Shared {
        client: ctx.client_for(super::SERVICE_ACCOUNT).await?,
        graph: Mutex::default(),
        resources: RwLock::default(),
        monitors_synced: tokio::sync::watch::channel(0).0,
        // Our one queue does upstream's attemptToDelete work (orphaning included).
        queue: WorkQueue::new().with_metrics(&ctx.metrics, "garbage_collector_attempt_to_delete"),
    });
    let metrics = ctx.metrics.families(GcMetrics::register);
    let (watch_client, sd) = (ctx.client.clone(), ctx.shutdown.clone());
    let disc = shared.clone();
    // Workers start only once the first round of monitors has listed (upstream's Run waits
    // for the dependency graph to sync): before that, an owner being deleted with the
    // orphan policy would have no known dependents and lose its finalizer at once, leaving
    // its dependents with a dangling reference that gets them collected.
    sync_monitors(&disc, &watch_client, &sd, &metrics).await;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = sd.cancelled() => return,
                _ = tokio::time::sleep(RESYNC_DISCOVERY) => {}
            }
            sync_monitors(&disc, &watch_client, &sd, &metrics).await;
        }
    });
    let workers = shared.clone();
    shared
        .queue
        .run(
            "garbage-collector",
            ctx.options.concurrency.gc,
            ctx.shutdown.clone(),
            move |uid| {
                let s = workers.clone();
                async move { sync(&s, &uid).await }
            },
        )
        .await;
    Ok(())
}

/// One round of upstream's `GarbageCollector.Sync`: discovery, monitors for new deletable
/// resources, and a bounded wait for them to list. A round without resources, or whose new
/// monitors do not sync within the period, counts as a resources sync error.
async fn sync_monitors(
    shared: &Arc<Shared>,
    client: &kube::Client,
    sd: &CancellationToken,
    metrics: &GcMetrics,
) {
    let discovered = match discovery::served(client).await {
        Ok(all) => Some(all),
        Err(e) => {
            tracing::warn!(error = %e, "garbage collector discovery failed");
            None
        }
    };
    let plan = {
        let resources = shared.resources.read().unwrap_or_else(|e| e.into_inner());
        monitors::resync(&resources, discovered)
    };
    let new = match plan {
        Resync::NoResources => {
            tracing::info!("no resources reported by discovery, skipping garbage collector sync");
            metrics.resources_sync_error.inc();
            return;
        }
        Resync::Unchanged => return,
        Resync::Add(new) => new,
    };
    tracing::info!(
        added = %new.iter().map(Served::group_resource).collect::<Vec<_>>().join(","),
        "syncing garbage collector with updated resources from discovery"
    );
    let total = add_watches(shared, client, new, sd);
    let mut synced = shared.monitors_synced.subscribe();
    let all_synced = tokio::select! {
        _ = sd.cancelled() => return,
        r = tokio::time::timeout(RESYNC_DISCOVERY, synced.wait_for(|n| *n >= total)) => {
            matches!(r, Ok(Ok(_)))
        }
    };
    if all_synced {
        tracing::info!(monitors = total, "synced garbage collector");
    } else {
        tracing::warn!(
            monitors = total,
            "timed out waiting for dependency graph builder sync during GC sync"
        );
        metrics.resources_sync_error.inc();
    }
}

/// Starts a metadata-only watch for each of `new`; returns how many monitors there are now.
fn add_watches(
    shared: &Arc<Shared>,
    client: &kube::Client,
    new: Vec<Served>,
    sd: &CancellationToken,
) -> usize {
    let mut resources = shared.resources.write().unwrap_or_else(|e| e.into_inner());
    for s in new {
        let index = resources.len();
        let api: Api<PartialObjectMeta<DynamicObject>> = Api::all_with(client.clone(), &s.resource);
        let (shared, sd) = (shared.clone(), sd.clone());
        tokio::spawn(async move {
            let stream = component_base::watch_backoff::backoff(watcher::watcher(
                api,
                watcher::Config::default(),
            ));
            let mut stream = std::pin::pin!(stream);
            let mut listed = false;
            loop {
                let event = tokio::select! {
                    _ = sd.cancelled() => return,
                    e = stream.next() => e,
                };
                match event {
                    None => return,
                    Some(Ok(Event::Apply(o) | Event::InitApply(o))) => {
                        observe(&shared, index, &o, false)
                    }
                    Some(Ok(Event::Delete(o))) => observe(&shared, index, &o, true),
                    Some(Ok(Event::InitDone)) if !listed => {
                        listed = true;
                        shared.monitors_synced.send_modify(|n| *n += 1);
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => tracing::debug!(error = %e, "garbage collector watch error"),
                }
            }
        });
        resources.push(s);
    }
    resources.len()
}

/// Updates the graph with one event and queues what it may affect.
fn observe(shared: &Shared, resource: usize, o: &PartialObjectMeta<DynamicObject>, deleted: bool) {
    let Some(uid) = o.metadata.uid.clone() else {
        return;
    };
    let mut g = shared.graph.lock().unwrap_or_else(|e| e.into_inner());
    if deleted {
        // Its dependents may now be dangling; owners in foreground deletion may be free.
        let owners: Vec<String> = g
            .get(&uid)
            .map(|o| o.owners.iter().map(|r| r.uid.clone()).collect())
            .unwrap_or_default();
        for d in g.remove(&uid).into_iter().chain(owners) {
            shared.queue.add(d);
        }
        return;
    }
    let obj = Object {
        location: Location {
            resource,
            namespace: o.metadata.namespace.clone(),
            name: o.metadata.name.clone().unwrap_or_default(),
        },
        owners: o.metadata.owner_references.clone().unwrap_or_default(),
        deleting: o.metadata.deletion_timestamp.is_some(),
        finalizers: o.metadata.finalizers.clone().unwrap_or_default(),
    };
    // Owners it names now and those it named before (a removed reference may free an owner
    // in foreground deletion, as upstream's referencesDiffs).
    let mut owners: Vec<String> = obj.owners.iter().map(|r| r.uid.clone()).collect();
    if let Some(before) = g.get(&uid) {
        for r in &before.owners {
            if !owners.contains(&r.uid) {
                owners.push(r.uid.clone());
            }
        }
    }
    let interesting = !obj.owners.is_empty()
        || (obj.deleting && (obj.has(graph::ORPHAN) || obj.has(graph::FOREGROUND)));
    g.upsert(&uid, obj);
    drop(g);
    if interesting {
        shared.queue.add(uid);
    }
    // An owner in foreground deletion re-checks when a dependent changes.
    for owner in owners {
        shared.queue.add(owner);
    }
}

fn api_for(shared: &Shared, loc: &Location) -> Option<Api<DynamicObject>> {
    let resources = shared.resources.read().unwrap_or_else(|e| e.into_inner());
    let ar = &resources.get(loc.resource)?.resource;
    Some(match &loc.namespace {
        Some(ns) => Api::namespaced_with(shared.client.clone(), ns, ar),
        None => Api::all_with(shared.client.clone(), ar),
    })
}

/// The resource an owner reference names (by group and kind), with its scope.
fn owner_resource(shared: &Shared, api_version: &str, kind: &str) -> Option<(ApiResource, bool)> {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let resources = shared.resources.read().unwrap_or_else(|e| e.into_inner());
    let s = resources
        .iter()
        .find(|s| s.resource.group == group && s.resource.kind == kind)?;
    let mut ar = s.resource.clone();
    ar.version = version.to_string();
    ar.api_version = api_version.to_string();
    Some((ar, s.namespaced()))
}

/// Classifies one owner reference, asking the apiserver when the graph does not know it.
async fn owner_state(
    shared: &Shared,
    dependent: &Object,
    r: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
) -> anyhow::Result<OwnerState> {
    let known = shared
        .graph
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&r.uid)
        .cloned();
    if let Some(owner) = known {
        let waiting =
            owner.deleting && owner.has(graph::FOREGROUND) && r.block_owner_deletion == Some(true);
        return Ok(if waiting {
            OwnerState::WaitingForDependents
        } else {
            OwnerState::Solid
        });
    }
    let Some((ar, namespaced)) = owner_resource(shared, &r.api_version, &r.kind) else {
        // Unknown kind (e.g. a CRD not yet discovered): never guess.
        anyhow::bail!("owner kind {}/{} not discovered yet", r.api_version, r.kind);
    };
    let api: Api<DynamicObject> = match (&dependent.location.namespace, namespaced) {
        (Some(ns), true) => Api::namespaced_with(shared.client.clone(), ns, &ar),
        (None, true) => return Ok(OwnerState::Dangling), // cluster-scoped dependent, namespaced owner: invalid
        (_, false) => Api::all_with(shared.client.clone(), &ar),
    };
    match api.get_metadata_opt(&r.name).await? {
        Some(o) if o.metadata.uid.as_deref() == Some(r.uid.as_str()) => Ok(OwnerState::Solid),
        _ => Ok(OwnerState::Dangling),
    }
}

async fn sync(shared: &Shared, uid: &str) -> anyhow::Result<()> {
    let Some(obj) = shared
        .graph
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(uid)
        .cloned()
    else {
        return Ok(());
    };
    let Some(api) = api_for(shared, &obj.location) else {
        return Ok(());
    };
    let name = obj.location.name.clone();
    if obj.deleting && obj.has(graph::ORPHAN) {
        return orphan_dependents(shared, uid, &obj, &api).await;
    }
    if obj.deleting && obj.has(graph::FOREGROUND) {
        return foreground(shared, uid, &obj, &api).await;
    }
    // Decide on the object as the apiserver has it now, not as the graph last saw it (as
    // upstream's attemptToDeleteItem): a reference removed a moment ago, e.g. by orphaning,
    // must not make a released object look dangling.
    let Some(latest) = api.get_metadata_opt(&name).await? else {
        return Ok(());
    };
    if latest.metadata.uid.as_deref() != Some(uid) {
        return Ok(()); // replaced by a namesake; its own events will bring it here
    }
    let resource_version = latest.metadata.resource_version.clone();
    let mut obj = obj;
    obj.owners = latest.metadata.owner_references.unwrap_or_default();
    obj.deleting = latest.metadata.deletion_timestamp.is_some();
    obj.finalizers = latest.metadata.finalizers.unwrap_or_default();
    let mut states = Vec::with_capacity(obj.owners.len());
    for r in &obj.owners {
        states.push(owner_state(shared, &obj, r).await?);
    }
    let has_dependents = !shared
        .graph
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .dependents_of(uid)
        .is_empty();
    match graph::decide(&obj, &states, has_dependents) {
        Action::Nothing => Ok(()),
        Action::RemoveReferences(drop) => {
            let keep: Vec<_> = obj
                .owners
                .iter()
                .filter(|r| !drop.contains(&r.uid))
                .collect();
            let patch = json!({"metadata": {"ownerReferences": keep, "uid": uid}});
            errors::ignore_not_found(
                api.patch_metadata(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await,
            )?;
            Ok(())
        }
        Action::Delete(policy) => {
            tracing::info!(object = %format!("{}/{}", obj.location.namespace.as_deref().unwrap_or(""), name), ?policy, "Deleting object whose owners are gone");
            let mut resource_version = resource_version;
            let circle = policy == Propagation::Foreground
                && has_dependents
                && shared
                    .graph
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .may_close_foreground_circle(uid);
            if circle {
                // A dependent of ours already waits on its dependents: our references stop
                // blocking first, so a circle of foreground deletions drains.
                match unblock_owner_references(&api, &name, uid, &obj.owners).await {
                    Ok(()) => resource_version = None,
                    Err(e) if errors::is_not_found(&e) || errors::is_conflict(&e) => return Ok(()),
                    Err(e) => return Err(e.into()),
                }
            }
            let dp = DeleteParams {
                propagation_policy: Some(match policy {
                    Propagation::Background => PropagationPolicy::Background,
                    Propagation::Foreground => PropagationPolicy::Foreground,
                    Propagation::Orphan => PropagationPolicy::Orphan,
                }),
                // Only the version decided on: a changed object is decided again.
                preconditions: Some(Preconditions {
                    uid: Some(uid.to_string()),
                    resource_version,
                }),
                ..Default::default()
            };
            match api.delete(&name, &dp).await {
                Ok(_) => Ok(()),
                Err(e) if errors::is_not_found(&e) || errors::is_conflict(&e) => Ok(()),
                Err(e) => Err(e.into()),
            }
        }
    }
}

/// Orphan propagation: remove the owner's reference from every dependent, then the
/// `orphan` finalizer from the owner.
async fn orphan_dependents(
    shared: &Shared,
    uid: &str,
    obj: &Object,
    api: &Api<DynamicObject>,
) -> anyhow::Result<()> {
    let dependents: Vec<Object> = {
        let g = shared.graph.lock().unwrap_or_else(|e| e.into_inner());
        g.dependents_of(uid)
            .iter()
            .filter_map(|d| g.get(d).cloned())
            .collect()
    };
    for d in dependents {
        let Some(dapi) = api_for(shared, &d.location) else {
            continue;
        };
        let keep: Vec<_> = d.owners.iter().filter(|r| r.uid != uid).collect();
        let patch = json!({"metadata": {"ownerReferences": keep}});
        errors::ignore_not_found(
            dapi.patch_metadata(
                &d.location.name,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await,
        )?;
    }
    remove_finalizer(api, obj, graph::ORPHAN).await
}

/// Foreground propagation: each blocking dependent is decided as upstream's
/// attemptToDeleteItem decides it (so one with another solid owner loses only this reference,
/// and the rest are deleted in the foreground, circle-safe: see [`sync`]); the owner is
/// released once none is left.
async fn foreground(
    shared: &Shared,
    uid: &str,
    obj: &Object,
    api: &Api<DynamicObject>,
) -> anyhow::Result<()> {
    let blocking: Vec<(String, bool)> = {
        let g = shared.graph.lock().unwrap_or_else(|e| e.into_inner());
        g.blocking_dependents(uid)
            .into_iter()
            .filter_map(|d| g.get(&d).map(|o| o.deleting).map(|deleting| (d, deleting)))
            .collect()
    };
    if blocking.is_empty() {
        return remove_finalizer(api, obj, graph::FOREGROUND).await;
    }
    for (duid, _) in blocking.into_iter().filter(|(_, deleting)| !deleting) {
        shared.queue.add(duid);
    }
    Ok(())
}

/// Makes every owner reference of `name` non-blocking (upstream's
/// unblockOwnerReferencesStrategicMergePatch), guarded by its `uid`.
async fn unblock_owner_references(
    api: &Api<DynamicObject>,
    name: &str,
    uid: &str,
    owners: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference],
) -> Result<(), kube::Error> {
    let unblocked: Vec<_> = owners
        .iter()
        .cloned()
        .map(|mut r| {
            r.block_owner_deletion = Some(false);
            r
        })
        .collect();
    let patch = json!({"metadata": {"ownerReferences": unblocked, "uid": uid}});
    api.patch_metadata(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(|_| ())
}

async fn remove_finalizer(
    api: &Api<DynamicObject>,
    obj: &Object,
    finalizer: &str,
) -> anyhow::Result<()> {
    let Some(current) = api.get_metadata_opt(&obj.location.name).await? else {
        return Ok(());
    };
    let finalizers: Vec<String> = current
        .metadata
        .finalizers
        .unwrap_or_default()
        .into_iter()
        .filter(|f| f != finalizer)
        .collect();
    let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": current.metadata.resource_version}});
    match api
        .patch_metadata(
            &obj.location.name,
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if errors::is_not_found(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
