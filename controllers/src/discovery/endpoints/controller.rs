//! The informers and workers around [`super::slices`] and [`super::legacy`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Endpoints, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{DeleteParams, PostParams};
use kube::Api;

use super::metrics::{self, SliceMetrics};
use super::{legacy, pods, slices};
use crate::machinery::context::ControllerContext;
use crate::machinery::informers::{self, Informer};
use crate::machinery::{informers::handlers as informer, queue::WorkQueue};
use api_helpers::errors;

/// Which of the two controllers runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// endpointslice-controller.
    Slices,
    /// endpoints-controller.
    Endpoints,
}

/// `(namespace, name)`.
type Key = (String, String);

/// Upstream's maxRetries: a Service key that failed this many times in a row is dropped
/// from the queue (it comes back with its next change).
const MAX_RETRIES: u32 = 15;
/// Upstream's longest per-key backoff of both controllers.
const MAX_BACKOFF: Duration = Duration::from_secs(1000);

struct State {
    client: kube::Client,
    services: Informer<Service>,
    pods: Informer<Pod>,
    /// Empty for the endpoints-controller.
    slices: Informer<EndpointSlice>,
    /// Empty for the endpointslice-controller.
    endpoints: Informer<Endpoints>,
    /// The endpointslice-controller's metrics (`None` for the endpoints-controller).
    metrics: Option<SliceMetrics>,
    /// Nodes, for endpoints' zones (empty for the endpoints-controller).
    nodes: Informer<Node>,
}

/// Each node's zone label, as endpoints carry it.
fn zones(nodes: &Informer<Node>) -> slices::Zones {
    nodes
        .list()
        .iter()
        .filter_map(|n| {
            let zone = n.metadata.labels.as_ref()?.get(slices::ZONE_LABEL)?;
            Some((n.metadata.name.clone()?, zone.clone()))
        })
        .collect()
}

fn key(ns: Option<&String>, name: Option<&String>) -> Option<(String, String)> {
    Some((ns?.clone(), name?.clone()))
}

/// Whether `s` is one of the endpointslice-controller's slices (the shared informer also
/// holds the mirroring controller's and users' slices).
fn managed_by_us(s: &EndpointSlice) -> bool {
    s.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(slices::MANAGED_BY_LABEL))
        .is_some_and(|v| v == slices::MANAGED_BY)
}

/// Runs one of the controllers until shutdown.
pub async fn run(ctx: ControllerContext, kind: Kind) -> anyhow::Result<()> {
    // Upstream's per-key backoff: 1s..1000s for endpointslice, 5ms..1000s for endpoints;
    // both drop a key after 15 failed retries.
    let backoff_base = match kind {
        Kind::Slices => Duration::from_secs(1),
        Kind::Endpoints => Duration::from_millis(5),
    };
    let queue: WorkQueue<(String, String)> = WorkQueue::with_backoff(backoff_base, MAX_BACKOFF)
        .with_max_retries(MAX_RETRIES)
        .with_metrics(
            &ctx.metrics,
            match kind {
                Kind::Slices => "endpoint_slice",
                Kind::Endpoints => "endpoint",
            },
        );
    let sd = ctx.shutdown.clone();
    let informers = ctx.informers();
    let services = informers.informer::<Service>();
    let q = queue.clone();
    informer::on(&services, move |s: &Service, _| {
        enqueue(
            &q,
            key(s.metadata.namespace.as_ref(), s.metadata.name.as_ref()),
        );
    });
    // Pods map to the services of their namespace whose selector matches them.
    let q = queue.clone();
    let svc_store = services.clone();
    // Remembers which services each pod matched, so a pod whose labels change also
    // updates the services it leaves.
    let matched: Mutex<HashMap<Key, Vec<Key>>> = Mutex::default();
    let pods = informers.informer::<Pod>();
    informer::on(&pods, move |p: &Pod, change| {
        let Some(pod_key) = key(p.metadata.namespace.as_ref(), p.metadata.name.as_ref()) else {
            return;
        };
        let now: Vec<(String, String)> = svc_store
            .list_namespace(p.metadata.namespace.as_deref().unwrap_or_default())
            .iter()
            .filter(|s| pods::selector(s).is_some_and(|sel| pods::selects(sel, p)))
            .filter_map(|s| key(s.metadata.namespace.as_ref(), s.metadata.name.as_ref()))
            .collect();
        let mut matched = matched.lock().unwrap_or_else(|e| e.into_inner());
        let before = match change {
            informer::Change::Deleted => matched.remove(&pod_key),
            informer::Change::Applied => matched.insert(pod_key, now.clone()),
        };
        for k in now.into_iter().chain(before.unwrap_or_default()) {
            q.add(k);
        }
    });
    let q = queue.clone();
    let (slice_store, endpoints_store) = match kind {
        Kind::Slices => {
            let store = informers.informer::<EndpointSlice>();
            informer::on(&store, move |s: &EndpointSlice, _| {
                if !managed_by_us(s) {
                    return;
                }
                let svc = s
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(slices::SERVICE_NAME_LABEL));
                enqueue(&q, key(s.metadata.namespace.as_ref(), svc));
            });
            (store, Informer::new())
        }
        Kind::Endpoints => {
            // As upstream's: only a deleted Endpoints is looked at again (its Service's may
            // need recreating); one created or changed by someone else is left alone, even
            // without a Service, except at start-up (checkLeftoverEndpoints below).
            let store = informers.informer::<Endpoints>();
            informer::on(&store, move |e: &Endpoints, change| {
                if matches!(change, informer::Change::Deleted) {
                    enqueue(
                        &q,
                        key(e.metadata.namespace.as_ref(), e.metadata.name.as_ref()),
                    );
                }
            });
            (Informer::new(), store)
        }
    };
    // Upstream reads a pod's zone from its node when the pod changes; a node that gains a
    // zone later is seen at the next sync of its services.
    let nodes = match kind {
        Kind::Slices => informers.informer::<Node>(),
        Kind::Endpoints => Informer::new(),
    };
    informers::wait_synced(&sd, async {
        services.wait_synced().await;
        pods.wait_synced().await;
        if matches!(kind, Kind::Slices) {
            nodes.wait_synced().await;
        }
        match kind {
            Kind::Endpoints => endpoints_store.wait_synced().await,
            Kind::Slices => slice_store.wait_synced().await,
        }
    })
    .await?;
    if matches!(kind, Kind::Endpoints) {
        // Upstream's checkLeftoverEndpoints: Endpoints whose Service went while no
        // controller ran are synced once (and so deleted); leader-election records stay.
        for e in endpoints_store.list() {
            if legacy::leftover_candidate(&e) {
                enqueue(
                    &queue,
                    key(e.metadata.namespace.as_ref(), e.metadata.name.as_ref()),
                );
            }
        }
    }
    let (name, sa, workers) = match kind {
        Kind::Slices => (
            "endpointslice",
            "endpointslice-controller",
            ctx.options.concurrency.service_endpoint,
        ),
        Kind::Endpoints => (
            "endpoint",
            "endpoint-controller",
            ctx.options.concurrency.endpoint,
        ),
    };
    let state = Arc::new(State {
        client: ctx.client_for(sa).await?,
        services,
        pods,
        slices: slice_store,
        endpoints: endpoints_store,
        nodes,
        metrics: matches!(kind, Kind::Slices).then(|| {
            ctx.metrics.families(|registry| {
                SliceMetrics::register(registry, slices::MAX_ENDPOINTS_PER_SLICE)
            })
        }),
    });
    queue
        .run(name, workers, sd, move |(ns, svc)| {
            let state = state.clone();
            async move {
                match kind {
                    Kind::Slices => {
                        let result = sync_slices(&state, &ns, &svc).await;
                        if let Some(m) = &state.metrics {
                            m.synced(result.is_ok());
                        }
                        result
                    }
                    Kind::Endpoints => sync_endpoints(&state, &ns, &svc).await,
                }
            }
        })
        .await;
    Ok(())
}

fn enqueue(queue: &WorkQueue<(String, String)>, key: Option<(String, String)>) {
    if let Some(k) = key {
        queue.add(k);
    }
}

/// The pods of `all` that `svc` selects.
fn selected<'a>(svc: &Service, all: &'a [Arc<Pod>]) -> Vec<&'a Pod> {
    let Some(sel) = pods::selector(svc) else {
        return Vec::new();
    };
    all.iter()
        .map(|p| p.as_ref())
        .filter(|p| p.metadata.namespace == svc.metadata.namespace && pods::selects(sel, p))
        .collect()
}

async fn sync_slices(state: &State, ns: &str, name: &str) -> anyhow::Result<()> {
    let api: Api<EndpointSlice> = Api::namespaced(state.client.clone(), ns);
    let existing: Vec<EndpointSlice> = state
        .slices
        .list_namespace(ns)
        .iter()
        .filter(|s| {
            managed_by_us(s)
                && s.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(slices::SERVICE_NAME_LABEL))
                    .map(String::as_str)
                    == Some(name)
        })
        .map(|s| s.as_ref().clone())
        .collect();
    let svc = state.services.get(ns, name);
    let Some(svc) =
        svc.filter(|s| pods::selector(s).is_some() && s.metadata.deletion_timestamp.is_none())
    else {
        // Service gone or selector-less: garbage collection removes owned slices; a
        // selector removed from a live Service leaves slices for us to delete.
        if let Some(m) = &state.metrics {
            m.deleted(&(ns.to_string(), name.to_string()));
        }
        for s in existing {
            if let Some(n) = &s.metadata.name {
                errors::ignore_not_found(api.delete(n, &DeleteParams::default()).await)?;
                if let Some(m) = &state.metrics {
                    m.changed("delete");
                }
            }
        }
        return Ok(());
    };
    let all = state.pods.list_namespace(ns);
    let pods = selected(&svc, &all);
    let desired = slices::desired(
        &svc,
        &pods,
        &zones(&state.nodes),
        slices::MAX_ENDPOINTS_PER_SLICE,
    );
    let traffic = metrics::traffic_distribution(&svc);
    if let Some(m) = &state.metrics {
        m.reconciled(
            (ns.to_string(), name.to_string()),
            metrics::totals(&desired, &existing),
            metrics::group_sizes(&desired),
            traffic.clone(),
        );
    }
    let plan = slices::plan(&svc, desired, &existing);
    let count = |operation| {
        if let Some(m) = &state.metrics {
            m.changed(operation);
        }
    };
    for s in &plan.update {
        api.replace(
            s.metadata.name.as_deref().unwrap_or_default(),
            &PostParams::default(),
            s,
        )
        .await?;
        count("update");
    }
    for s in &plan.create {
        match api.create(&PostParams::default(), s).await {
            Err(e) if errors::is_namespace_terminating(&e) => return Ok(()),
            r => drop(r?),
        }
        count("create");
    }
    for n in &plan.delete {
        errors::ignore_not_found(api.delete(n, &DeleteParams::default()).await)?;
        count("delete");
    }
    if let Some(m) = &state.metrics {
        let changed = plan.create.len() + plan.update.len() + plan.delete.len();
        m.slices_changed(traffic.as_deref(), changed);
    }
    Ok(())
}

async fn sync_endpoints(state: &State, ns: &str, name: &str) -> anyhow::Result<()> {
    let api: Api<Endpoints> = Api::namespaced(state.client.clone(), ns);
    let current = state.endpoints.get(ns, name);
    let Some(svc) = state.services.get(ns, name) else {
        // Service deleted: its Endpoints go too (same name, no owner reference upstream).
        if current.is_some() {
            errors::ignore_not_found(api.delete(name, &DeleteParams::default()).await)?;
        }
        return Ok(());
    };
    if pods::selector(&svc).is_none() {
        return Ok(()); // user-managed Endpoints
    }
    let all = state.pods.list_namespace(ns);
    let want = legacy::desired(&svc, &selected(&svc, &all));
    match current {
        Some(cur) if legacy::up_to_date(&cur, &want) => Ok(()),
        Some(cur) => {
            let mut next = cur.as_ref().clone();
            next.subsets = want.subsets;
            next.metadata.labels = want.metadata.labels;
            let mut ann = next.metadata.annotations.take().unwrap_or_default();
            ann.remove(legacy::OVER_CAPACITY);
            ann.extend(want.metadata.annotations.unwrap_or_default());
            next.metadata.annotations = (!ann.is_empty()).then_some(ann);
            api.replace(name, &PostParams::default(), &next).await?;
            Ok(())
        }
        None => match api.create(&PostParams::default(), &want).await {
            Ok(_) => Ok(()),
            Err(e) if errors::is_namespace_terminating(&e) || errors::is_conflict(&e) => Ok(()),
            Err(e) => Err(e.into()),
        },
    }
}
