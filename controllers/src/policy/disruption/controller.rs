//! The disruption controller's informers, queues, scale lookups and status writes.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{DynamicObject, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use super::status;
use crate::machinery::context::ControllerContext;
use crate::machinery::discovery;
use crate::machinery::informers::handlers::{self as informer, Change};
use crate::machinery::informers::Informer;
use crate::machinery::queue::WorkQueue;
use api_helpers::errors;
use api_helpers::labels;

type Key = (String, String);

struct State {
    client: kube::Client,
    pdbs: Informer<PodDisruptionBudget>,
    pods: Informer<Pod>,
    queue: WorkQueue<Key>,
}

fn key_of<K: kube::Resource>(o: &K) -> Option<Key> {
    Some((o.meta().namespace.clone()?, o.meta().name.clone()?))
}

/// Queues every budget whose selector picks `pod`.
fn enqueue_budgets_of(queue: &WorkQueue<Key>, pdbs: &Informer<PodDisruptionBudget>, pod: &Pod) {
    for pdb in pdbs.list() {
        if pdb.metadata.namespace != pod.metadata.namespace {
            continue;
        }
        let Some(sel) = pdb.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
            continue;
        };
        if labels::matches(sel, pod.metadata.labels.as_ref()) {
            if let Some(k) = key_of(pdb.as_ref()) {
                queue.add(k);
            }
        }
    }
}

/// Runs the controller until shutdown.
pub async fn run(ctx: ControllerContext) -> anyhow::Result<()> {
    let sd = ctx.shutdown.clone();
    let queue: WorkQueue<Key> = WorkQueue::new().with_metrics(&ctx.metrics, "disruption");
    let stale: WorkQueue<Key> = WorkQueue::new().with_metrics(&ctx.metrics, "stale_pod_disruption");
    let q = queue.clone();
    let pdbs = {
        let shared = ctx.informers().informer::<PodDisruptionBudget>();
        informer::on(&shared, move |b: &PodDisruptionBudget, change| {
            if let (Change::Applied, Some(k)) = (change, key_of(b)) {
                q.add(k);
            }
        });
        shared
    };
    let (q, sq, budgets) = (queue.clone(), stale.clone(), pdbs.clone());
    let pods = {
        let shared = ctx.informers().informer::<Pod>();
        informer::on(&shared, move |p: &Pod, change| {
            enqueue_budgets_of(&q, &budgets, p);
            if change == Change::Applied {
                if let (Some(after), Some(k)) = (
                    status::stale_disruption_in(p, jiff::Timestamp::now()),
                    key_of(p),
                ) {
                    sq.add_after(k, after);
                }
            }
        });
        shared
    };
    informer::wait_synced(&sd, async {
        pdbs.wait_synced().await;
        pods.wait_synced().await;
    })
    .await?;
    let state = Arc::new(State {
        client: ctx.client_for(super::SERVICE_ACCOUNT).await?,
        pdbs,
        pods,
        queue: queue.clone(),
    });
    let st = state.clone();
    let stale_workers = stale.run("disruption-stale-pod", 1, sd.clone(), move |key| {
        let st = st.clone();
        async move { reset_stale_condition(&st, &key).await }
    });
    let workers = queue.run("disruption", 1, sd, move |key| {
        let st = state.clone();
        async move { sync(&st, &key).await }
    });
    futures::join!(stale_workers, workers);
    Ok(())
}

/// The pod's managing controller and its scale, found as upstream's finders do:
/// ReplicaSets owned by a Deployment count as the Deployment; anything else through its
/// `scale` subresource. `Ok(None)` when the owner is gone or is not that object.
async fn controller_scale(
    client: &kube::Client,
    ns: &str,
    owner: &OwnerReference,
    served: &mut Option<Vec<discovery::Served>>,
) -> Result<Option<(String, i32)>, kube::Error> {
    if owner.kind == "ReplicaSet" && owner.api_version == "apps/v1" {
        let Some(rs) = Api::<ReplicaSet>::namespaced(client.clone(), ns)
            .get_opt(&owner.name)
            .await?
        else {
            return Ok(None);
        };
        if rs.metadata.uid.as_deref() != Some(&owner.uid) {
            return Ok(None);
        }
        let deployment = rs
            .owner_references()
            .iter()
            .find(|o| o.controller == Some(true) && o.kind == "Deployment")
            .cloned();
        if let Some(d) = deployment {
            let Some(dep) = Api::<Deployment>::namespaced(client.clone(), ns)
                .get_opt(&d.name)
                .await?
            else {
                return Ok(None);
            };
            if dep.metadata.uid.as_deref() != Some(&d.uid) {
                return Ok(None);
            }
            let replicas = dep.spec.and_then(|s| s.replicas).unwrap_or(1);
            return Ok(Some((d.uid, replicas)));
        }
        let replicas = rs.spec.and_then(|s| s.replicas).unwrap_or(1);
        return Ok(Some((owner.uid.clone(), replicas)));
    }
    if served.is_none() {
        *served = Some(discovery::served(client).await?);
    }
    let (group, version) = owner
        .api_version
        .split_once('/')
        .unwrap_or(("", owner.api_version.as_str()));
    let Some(s) = served.iter().flatten().find(|s| {
        s.resource.group == group
            && s.resource.kind == owner.kind
            && s.caps.subresources.iter().any(|(r, _)| r.plural == "scale")
    }) else {
        return Ok(None);
    };
    let mut resource = s.resource.clone();
    resource.version = version.to_string();
    resource.api_version = owner.api_version.clone();
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &resource);
    let scale = match api.get_scale(&owner.name).await {
        Ok(s) => s,
        Err(e) if errors::is_not_found(&e) => return Ok(None),
        Err(e) => return Err(e),
    };
    if scale.metadata.uid.as_deref() != Some(&owner.uid) {
        return Ok(None);
    }
    Ok(Some((
        owner.uid.clone(),
        scale.spec.and_then(|s| s.replicas).unwrap_or(0),
    )))
}

/// Sum of the scales of the selected pods' controllers (upstream's `getExpectedScale`);
/// pods without a controller are left out (and reported), a controller that cannot be
/// found is an error.
async fn expected_scale(client: &kube::Client, ns: &str, pods: &[&Pod]) -> Result<i32, String> {
    let mut scales: HashMap<String, i32> = HashMap::new();
    let mut served = None;
    for pod in pods {
        let Some(owner) = pod
            .owner_references()
            .iter()
            .find(|o| o.controller == Some(true))
        else {
            continue;
        };
        if scales.contains_key(&owner.uid) {
            continue;
        }
        match controller_scale(client, ns, owner, &mut served).await {
            Ok(Some((uid, n))) => {
                scales.insert(uid, n);
            }
            Ok(None) => return Err(format!("found no controllers for pod {:?}", pod.name_any())),
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(scales.values().sum())
}

async fn sync(state: &State, (ns, name): &Key) -> anyhow::Result<()> {
    let Some(pdb) = state.pdbs.get(ns, name) else {
        return Ok(());
    };
    let all: Vec<Arc<Pod>> = state
        .pods
        .list()
        .into_iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(ns))
        .collect();
    let refs: Vec<&Pod> = all.iter().map(|p| p.as_ref()).collect();
    let pods = status::selected(&pdb, &refs);
    let now = jiff::Timestamp::now();
    let scale = if status::needs_scale(&pdb) {
        match expected_scale(&state.client, ns, &pods).await {
            Ok(n) => Some(n),
            Err(e) => return write_status(state, &pdb, status::failed_status(&pdb, &e, now)).await,
        }
    } else {
        None
    };
    let (expected, desired) = match status::expected_and_desired(&pdb, pods.len(), scale) {
        Ok(v) => v,
        Err(e) => return write_status(state, &pdb, status::failed_status(&pdb, &e, now)).await,
    };
    let (pending, recheck) = status::pending_disruptions(&pdb, &pods, now);
    let healthy = status::current_healthy(&pods, &pending);
    if let Some(after) = recheck {
        state.queue.add_after((ns.clone(), name.clone()), after);
    }
    match status::desired_status(&pdb, healthy, desired, expected, pending, now) {
        Some(s) => write_status(state, &pdb, s).await,
        None => Ok(()),
    }
}

async fn write_status(
    state: &State,
    pdb: &PodDisruptionBudget,
    s: k8s_openapi::api::policy::v1::PodDisruptionBudgetStatus,
) -> anyhow::Result<()> {
    if pdb.status.as_ref() == Some(&s) {
        return Ok(());
    }
    let mut updated = pdb.clone();
    updated.status = Some(s);
    let ns = pdb.metadata.namespace.clone().unwrap_or_default();
    let api: Api<PodDisruptionBudget> = Api::namespaced(state.client.clone(), &ns);
    // A stale resourceVersion (the eviction API charged meanwhile) conflicts; retried.
    errors::ignore_not_found(
        api.replace_status(&pdb.name_any(), &PostParams::default(), &updated)
            .await,
    )?;
    Ok(())
}

/// Resets a stale `DisruptionTarget=True` condition of a pod that is not being deleted.
async fn reset_stale_condition(state: &State, (ns, name): &Key) -> anyhow::Result<()> {
    let Some(pod) = state.pods.get(ns, name) else {
        return Ok(());
    };
    match status::stale_disruption_in(&pod, jiff::Timestamp::now()) {
        None => return Ok(()),
        Some(d) if !d.is_zero() => {
            // Not stale yet; the pod handler queued it for later.
            return Ok(());
        }
        Some(_) => {}
    }
    let api: Api<Pod> = Api::namespaced(state.client.clone(), ns);
    let patch = json!({"metadata": {"uid": pod.metadata.uid}, "status": {"conditions": [{
        "type": "DisruptionTarget", "status": "False", "reason": null, "message": null,
        "lastTransitionTime": jiff::Timestamp::now().to_string()}]}});
    errors::ignore_not_found(
        api.patch_status(name, &PatchParams::default(), &Patch::Strategic(&patch))
            .await,
    )?;
    tracing::info!(pod = %format!("{ns}/{name}"), "Reset stale DisruptionTarget condition to False");
    Ok(())
}
