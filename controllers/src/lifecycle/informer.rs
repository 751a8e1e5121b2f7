//! Event handlers over the process's shared informers ([`crate::informers`]) in the shape
//! the lifecycle controllers use (object + applied/deleted), and private reflectors for the
//! few watches that cannot be shared (filtered by a selector).

use std::fmt::Debug;
use std::hash::Hash;

use futures::StreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::informers::{self, Informer};

/// What changed, as the handler sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Added or modified (also every object of a (re)list).
    Applied,
    /// Deleted.
    Deleted,
}

/// Registers `handler` on the shared `informer`: adds and updates are
/// [`Change::Applied`] (with the new object), deletes [`Change::Deleted`] (with the final
/// state). A late registrant is first told every cached object as applied.
pub fn on<K>(informer: &Informer<K>, handler: impl Fn(&K, Change) + Send + Sync + 'static)
where
    K: Resource + Clone + Send + Sync + 'static,
{
    informer.add_handler(move |c| match c {
        informers::Change::Added(o) | informers::Change::Updated { new: o, .. } => {
            handler(o, Change::Applied)
        }
        informers::Change::Deleted(o) => handler(o, Change::Deleted),
    });
}

/// Starts a private reflector over `api` that calls `handler` for every object it sees, until
/// `shutdown`. Returns the store; await [`Store::wait_until_ready`] before trusting it.
pub fn spawn<K, H>(
    api: Api<K>,
    config: watcher::Config,
    shutdown: CancellationToken,
    handler: H,
) -> Store<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone + Send + Sync,
    H: Fn(&K, Change) + Send + 'static,
{
    let (store, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher::watcher(api, config).default_backoff());
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        loop {
            let event = tokio::select! {
                _ = shutdown.cancelled() => return,
                e = stream.next() => e,
            };
            match event {
                None => return,
                Some(Ok(Event::Apply(o) | Event::InitApply(o))) => handler(&o, Change::Applied),
                Some(Ok(Event::Delete(o))) => handler(&o, Change::Deleted),
                Some(Ok(Event::Init | Event::InitDone)) => {}
                Some(Err(e)) => {
                    tracing::warn!(error = %e, kind = %K::kind(&Default::default()), "watch failed, retrying")
                }
            }
        }
    });
    store
}

/// Waits for every store, or returns an error when `shutdown` comes first.
pub async fn wait_synced(
    shutdown: &CancellationToken,
    ready: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    tokio::select! {
        _ = shutdown.cancelled() => anyhow::bail!("shut down before caches synced"),
        _ = ready => Ok(()),
    }
}
