//! The informers, queue and writes around [`super::desired`] and [`super::plan`]: the
//! process's shared Endpoints, Services and EndpointSlices informers (the latter filtered to
//! this controller's slices in the handler and the lister, as upstream's); each key is an
//! Endpoints `(namespace, name)`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use component_base::events::{reference_to, EventRecorder, EventSpec, EventType};
use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{DeleteParams, PostParams};
use kube::Api;

use super::desired::{desired, should_mirror, Desired};
use super::metrics::{group_sizes, totals, MirroringMetrics};
use super::plan::plan;
use super::tracker::{Key, Tracker};
use super::{COMPONENT, MANAGED_BY, SERVICE_ACCOUNT};
use crate::discovery::endpoints::slices::{MANAGED_BY_LABEL, SERVICE_NAME_LABEL};
use crate::machinery::context::ControllerContext;
use crate::machinery::informers::{self, Informer};
use crate::machinery::{informers::handlers as informer, queue::WorkQueue};
use api_helpers::errors;

/// Upstream's per-key retry backoff (1s doubling to 100s).
const BACKOFF: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(100));

/// Upstream's maxRetries: an Endpoints key that failed this many times in a row is dropped
/// from the queue (it comes back with its next change).
const MAX_RETRIES: u32 = 15;

struct State {
    client: kube::Client,
    endpoints: Informer<Endpoints>,
    services: Informer<Service>,
    slices: Informer<EndpointSlice>,
    tracker: Arc<Tracker>,
    recorder: EventRecorder,
    max_per_subset: usize,
    metrics: MirroringMetrics,
}

fn key(ns: Option<&String>, name: Option<&String>) -> Option<Key> {
    Some((ns?.clone(), name?.clone()))
}

/// Whether `svc` has no selector (its Endpoints are written by hand and mirrored).
pub fn selectorless(svc: &Service) -> bool {
    svc.spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .is_none_or(|s| s.is_empty())
}

/// Whether `s` was written by this controller (the shared informer also holds the
/// endpointslice controller's and others' slices).
pub fn mirrored_by_us(s: &EndpointSlice) -> bool {
    s.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(MANAGED_BY_LABEL))
        .is_some_and(|m| m == MANAGED_BY)
}

/// The Endpoints key of one of this controller's slices (`None` for anybody else's).
fn slice_key(s: &EndpointSlice) -> Option<Key> {
    if !mirrored_by_us(s) {
        return None;
    }
    let svc = s.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?;
    key(s.metadata.namespace.as_ref(), Some(svc))
}

/// Runs endpointslice-mirroring-controller until shutdown.
pub async fn run(ctx: ControllerContext) -> anyhow::Result<()> {
    let opts = &ctx.options;
    let batch = opts.mirroring_endpointslice_updates_batch_period;
    let queue: WorkQueue<Key> = WorkQueue::with_backoff(BACKOFF.0, BACKOFF.1)
        .with_max_retries(MAX_RETRIES)
        .with_metrics(&ctx.metrics, "endpoint_slice_mirroring");
    let tracker = Arc::new(Tracker::default());
    let sd = ctx.shutdown.clone();

    let shared = ctx.informers();
    let (q, t) = (queue.clone(), tracker.clone());
    let slices = shared.informer::<EndpointSlice>();
    informer::on(&slices, move |s: &EndpointSlice, change| {
        let Some(k) = slice_key(s) else { return };
        let sync = match change {
            informer::Change::Applied => t.should_sync(s),
            // A slice of ours deleted by someone else is recreated.
            informer::Change::Deleted => t.has(s) && !t.handle_deletion(s),
        };
        if sync {
            q.add_after(k, batch);
        }
    });
    let (q, t) = (queue.clone(), tracker.clone());
    let endpoints = shared.informer::<Endpoints>();
    informer::on(&endpoints, move |e: &Endpoints, _| {
        let Some(k) = key(e.metadata.namespace.as_ref(), e.metadata.name.as_ref()) else {
            return;
        };
        // Skipped Endpoints only matter when they were mirrored before.
        if should_mirror(e) || t.tracks(&k) {
            q.add(k);
        }
    });
    let (q, t) = (queue.clone(), tracker.clone());
    let services = shared.informer::<Service>();
    informer::on(&services, move |s: &Service, _| {
        let Some(k) = key(s.metadata.namespace.as_ref(), s.metadata.name.as_ref()) else {
            return;
        };
        // A Service that gained a selector has its mirrored slices removed.
        if selectorless(s) || t.tracks(&k) {
            q.add(k);
        }
    });
    informers::wait_synced(&sd, async {
        endpoints.wait_synced().await;
        services.wait_synced().await;
        slices.wait_synced().await;
    })
    .await?;
    let client = ctx.client_for(SERVICE_ACCOUNT).await?;
    let state = Arc::new(State {
        recorder: crate::machinery::context::event_recorder(client.clone(), COMPONENT),
        client,
        endpoints,
        services,
        slices,
        tracker,
        max_per_subset: opts.mirroring_max_endpoints_per_subset,
        metrics: ctx.metrics.families(|registry| {
            MirroringMetrics::register(registry, opts.mirroring_max_endpoints_per_subset)
        }),
    });
    tracing::info!(
        workers = opts.concurrency.mirroring_service_endpoint,
        max_endpoints_per_subset = state.max_per_subset,
        "Starting EndpointSliceMirroring controller"
    );
    queue
        .run(
            "endpointslice-mirroring",
            opts.concurrency.mirroring_service_endpoint,
            sd,
            move |(ns, name)| {
                let state = state.clone();
                async move {
                    let started = Instant::now();
                    let result = sync(&state, &ns, &name).await;
                    state.metrics.synced_in(started.elapsed());
                    result
                }
            },
        )
        .await;
    Ok(())
}

/// This controller's slices of the Endpoints `ns/name`, from the cache (upstream's lister
/// with the `service-name` and `managed-by` selector).
fn mirrored(state: &State, ns: &str, name: &str) -> Vec<EndpointSlice> {
    state
        .slices
        .list_namespace(ns)
        .iter()
        .filter(|s| slice_key(s).is_some_and(|(_, svc)| svc == name))
        .map(|s| s.as_ref().clone())
        .collect()
}

async fn delete_all(state: &State, ns: &str, name: &str) -> anyhow::Result<()> {
    let k = (ns.to_string(), name.to_string());
    state.tracker.delete_endpoints(&k);
    state.metrics.deleted(&k);
    let api: Api<EndpointSlice> = Api::namespaced(state.client.clone(), ns);
    for s in mirrored(state, ns, name) {
        if let Some(n) = &s.metadata.name {
            errors::ignore_not_found(api.delete(n, &DeleteParams::default()).await)?;
            state.metrics.changed("delete");
        }
    }
    Ok(())
}

async fn sync(state: &State, ns: &str, name: &str) -> anyhow::Result<()> {
    let k = (ns.to_string(), name.to_string());
    let Some(endpoints) = state.endpoints.get(ns, name) else {
        return delete_all(state, ns, name).await;
    };
    if !should_mirror(&endpoints) {
        return delete_all(state, ns, name).await;
    }
    let svc = state.services.get(ns, name);
    if !svc.is_some_and(|s| selectorless(&s)) {
        return delete_all(state, ns, name).await;
    }
    let existing = mirrored(state, ns, name);
    if state.tracker.stale(&k, &existing) {
        anyhow::bail!("EndpointSlice informer cache is out of date");
    }
    let want = desired(&endpoints, state.max_per_subset);
    record_events(state, &endpoints, &want);
    let plan = plan(&endpoints, &want, &existing, state.max_per_subset);
    state.metrics.reconciled(
        k.clone(),
        totals(&want, &existing, state.max_per_subset),
        want.skipped,
        group_sizes(&want, state.max_per_subset),
    );
    let api: Api<EndpointSlice> = Api::namespaced(state.client.clone(), ns);
    if endpoints.metadata.deletion_timestamp.is_none() {
        for s in &plan.create {
            match api.create(&PostParams::default(), s).await {
                Ok(created) => {
                    state.metrics.changed("create");
                    state.tracker.update(&created);
                }
                Err(e) if errors::is_namespace_terminating(&e) => return Ok(()),
                Err(e) => {
                    return Err(anyhow::Error::new(e)
                        .context(format!("creating EndpointSlice for Endpoints {ns}/{name}")))
                }
            }
        }
    }
    for s in &plan.update {
        let slice_name = s.metadata.name.as_deref().unwrap_or_default();
        let updated = api
            .replace(slice_name, &PostParams::default(), s)
            .await
            .map_err(|e| {
                anyhow::Error::new(e).context(format!(
                    "updating EndpointSlice {slice_name} for Endpoints {ns}/{name}"
                ))
            })?;
        state.metrics.changed("update");
        state.tracker.update(&updated);
    }
    for n in &plan.delete {
        errors::ignore_not_found(api.delete(n, &DeleteParams::default()).await).map_err(|e| {
            anyhow::Error::new(e).context(format!(
                "deleting EndpointSlice {n} for Endpoints {ns}/{name}"
            ))
        })?;
        state.metrics.changed("delete");
        if let Some(s) = existing
            .iter()
            .find(|s| s.metadata.name.as_ref() == Some(n))
        {
            state.tracker.expect_deletion(s);
        }
    }
    Ok(())
}

/// Upstream's warnings on the Endpoints: invalid IPs, and addresses beyond the maximum.
fn record_events(state: &State, endpoints: &Endpoints, want: &Desired) {
    let mut events = Vec::new();
    if want.invalid > 0 {
        events.push((
            "InvalidIPAddress",
            format!(
                "Skipped {} invalid IP addresses when mirroring to EndpointSlices",
                want.invalid
            ),
        ));
    }
    if want.over_capacity() > 0 {
        tracing::info!(endpoints = %format!("{}/{}", endpoints.metadata.namespace.as_deref().unwrap_or_default(), endpoints.metadata.name.as_deref().unwrap_or_default()), skipped = want.skipped, "Addresses in Endpoints were skipped due to exceeding MaxEndpointsPerSubset");
        events.push((
            "TooManyAddressesToMirror",
            format!(
                "A max of {} addresses can be mirrored to EndpointSlices per Endpoints subset. {} addresses were skipped",
                state.max_per_subset, want.skipped
            ),
        ));
    }
    for (reason, note) in events {
        let spec = EventSpec {
            regarding: reference_to(endpoints),
            related: None,
            type_: EventType::Warning,
            reason: reason.into(),
            action: "Mirroring".into(),
            note,
        };
        state.recorder.emit(spec);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_services_without_a_selector_are_mirrored() {
        let svc = |spec: serde_json::Value| -> Service {
            serde_json::from_value(json!({"metadata": {"name": "s"}, "spec": spec})).unwrap()
        };
        assert!(selectorless(&svc(json!({"ports": [{"port": 80}]}))));
        assert!(selectorless(&svc(json!({"selector": {}}))));
        assert!(!selectorless(&svc(json!({"selector": {"app": "web"}}))));
    }

    #[test]
    fn only_our_slices_map_to_their_endpoints_by_service_name_label() {
        let s: EndpointSlice = serde_json::from_value(json!({
            "metadata": {"name": "ext-abc", "namespace": "ns", "labels": {
                SERVICE_NAME_LABEL: "ext",
                MANAGED_BY_LABEL: MANAGED_BY,
            }},
            "addressType": "IPv4", "endpoints": []
        }))
        .unwrap();
        assert!(mirrored_by_us(&s));
        assert_eq!(slice_key(&s), Some(("ns".into(), "ext".into())));
        // The shared informer also holds the endpointslice controller's slices of the
        // same Service name: they are never ours to sync or delete.
        let mut theirs = s.clone();
        theirs.metadata.labels.as_mut().unwrap().insert(
            MANAGED_BY_LABEL.into(),
            "endpointslice-controller.k8s.io".into(),
        );
        assert!(!mirrored_by_us(&theirs));
        assert_eq!(slice_key(&theirs), None);
        let mut unlabelled = s.clone();
        unlabelled.metadata.labels = None;
        assert_eq!(slice_key(&unlabelled), None);
    }
}
