//! The process's shared informers (upstream's SharedInformerFactory): one watch and one
//! indexed cache per resource type, handed to every controller through
//! [`crate::machinery::context::ControllerContext::informers`].

pub mod factory;
pub mod handlers;
pub mod informer;

pub use factory::InformerFactory;
pub use informer::{Change, Informer, Key};

/// Waits until every informer's first list is cached, or fails when `shutdown` comes first
/// (upstream's `WaitForNamedCacheSync`).
pub async fn wait_synced(
    shutdown: &tokio_util::sync::CancellationToken,
    synced: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    tokio::select! {
        _ = shutdown.cancelled() => anyhow::bail!("shut down before caches synced"),
        _ = synced => Ok(()),
    }
}
