//! Shared informer helpers on kube-runtime: a reflector-backed store per resource that
//! several consumers read, and a way to wait until it has synced.

use futures::StreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::hash::Hash;
use tokio_util::sync::CancellationToken;

/// Starts a reflector for `api` filtered by `config`; the returned store fills as the watch
/// runs (until `shutdown`). Watch errors are retried with [`crate::watch_backoff`].
pub fn start_reflector<K>(
    api: Api<K>,
    config: watcher::Config,
    shutdown: CancellationToken,
) -> Store<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(writer, crate::watch_backoff::backoff(watcher(api, config)));
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream.take_until(shutdown.cancelled_owned()));
        while let Some(event) = stream.next().await {
            if let Err(e) = event {
                tracing::warn!(error = %e, kind = %K::kind(&Default::default()), "Watch failed; retrying");
            }
        }
    });
    reader
}

/// Waits until `store` has its first full list, or `shutdown`. Returns whether it synced.
pub async fn wait_for_sync<K>(store: &Store<K>, shutdown: &CancellationToken) -> bool
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    tokio::select! {
        r = store.wait_until_ready() => r.is_ok(),
        _ = shutdown.cancelled() => false,
    }
}
