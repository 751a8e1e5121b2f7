//! Filling the store from the apiserver: kube-runtime watchers on Services and
//! EndpointSlices (all namespaces). Each event updates the one Service it concerns; a
//! (re-)list replaces everything once it is complete, and the first complete list of both
//! makes the server ready.

use crate::model::{self, ServiceKey};
use crate::store::Store;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher::{self, Event};
use kube::{Api, ResourceExt};
use std::sync::Arc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Starts both watches; they run until `shutdown`.
pub fn spawn(
    client: kube::Client,
    store: Arc<Store>,
    shutdown: CancellationToken,
) -> Vec<JoinHandle<()>> {
    vec![
        tokio::spawn(watch_services(
            Api::all(client.clone()),
            store.clone(),
            shutdown.clone(),
        )),
        tokio::spawn(watch_slices(Api::all(client), store, shutdown)),
    ]
}

async fn watch_services(api: Api<Service>, store: Arc<Store>, shutdown: CancellationToken) {
    let stream =
        component_base::watch_backoff::backoff(watcher::watcher(api, watcher::Config::default()))
            .take_until(shutdown.cancelled_owned());
    let mut stream = std::pin::pin!(stream);
    let mut listing = Vec::new();
    while let Some(event) = stream.next().await {
        match event {
            Ok(Event::Apply(svc)) => match model::service_info(&svc) {
                Some(info) => store.apply_service(info),
                None => store.delete_service(&ServiceKey::new(
                    &svc.namespace().unwrap_or_default(),
                    &svc.name_any(),
                )),
            },
            Ok(Event::Delete(svc)) => store.delete_service(&ServiceKey::new(
                &svc.namespace().unwrap_or_default(),
                &svc.name_any(),
            )),
            Ok(Event::Init) => listing.clear(),
            Ok(Event::InitApply(svc)) => listing.extend(model::service_info(&svc)),
            Ok(Event::InitDone) => {
                let n = listing.len();
                store.replace_services(std::mem::take(&mut listing));
                store.mark_services_synced();
                tracing::info!(services = n, "Services synced");
            }
            Err(e) => tracing::warn!(error = %e, "Service watch failed; retrying"),
        }
    }
}

async fn watch_slices(api: Api<EndpointSlice>, store: Arc<Store>, shutdown: CancellationToken) {
    let stream =
        component_base::watch_backoff::backoff(watcher::watcher(api, watcher::Config::default()))
            .take_until(shutdown.cancelled_owned());
    let mut stream = std::pin::pin!(stream);
    let mut listing = Vec::new();
    while let Some(event) = stream.next().await {
        match event {
            Ok(Event::Apply(slice)) => match model::slice_info(&slice) {
                Some(info) => store.apply_slice(info),
                None => {
                    store.delete_slice(&slice.namespace().unwrap_or_default(), &slice.name_any())
                }
            },
            Ok(Event::Delete(slice)) => {
                store.delete_slice(&slice.namespace().unwrap_or_default(), &slice.name_any())
            }
            Ok(Event::Init) => listing.clear(),
            Ok(Event::InitApply(slice)) => listing.extend(model::slice_info(&slice)),
            Ok(Event::InitDone) => {
                let n = listing.len();
                store.replace_slices(std::mem::take(&mut listing));
                store.mark_slices_synced();
                tracing::info!(endpointslices = n, "EndpointSlices synced");
            }
            Err(e) => tracing::warn!(error = %e, "EndpointSlice watch failed; retrying"),
        }
    }
}
