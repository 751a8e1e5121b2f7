//! The start-up every workload controller shares, as upstream's controller Run methods:
//! wait for the informers' first lists (or shutdown), register the event handlers, then run
//! the workers over the controller's queue until shutdown.

use std::future::Future;

use crate::machinery::context::ControllerContext;
use crate::machinery::queue::WorkQueue;

/// A workload controller: a queue of `namespace/name` keys, handlers that fill it and a
/// sync per key.
pub trait WorkloadController: Clone + Send + Sync + 'static {
    /// The controller's work queue.
    fn work_queue(&self) -> &WorkQueue<String>;
    /// Registers the informer event handlers.
    fn register_handlers(&self);
    /// Reconciles one key.
    fn sync_key(&self, key: String) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// Implements [`WorkloadController`] with a controller's inherent `queue`, `watch` and `sync`.
macro_rules! workload_controller {
    ($ty:ty $(, $($generics:tt)+)?) => {
        impl$(<$($generics)+>)? $crate::machinery::runner::WorkloadController for $ty {
            fn work_queue(&self) -> &$crate::machinery::queue::WorkQueue<String> {
                self.queue()
            }
            fn register_handlers(&self) {
                self.watch()
            }
            fn sync_key(
                &self,
                key: String,
            ) -> impl std::future::Future<Output = anyhow::Result<()>> + Send {
                self.sync(key)
            }
        }
    };
}

/// Waits for `synced` (returning at once on shutdown), then registers `controller`'s
/// handlers and runs `workers` workers until shutdown.
pub async fn run<C: WorkloadController>(
    ctx: &ControllerContext,
    name: &'static str,
    workers: usize,
    synced: impl Future<Output = ()>,
    controller: C,
) -> anyhow::Result<()> {
    tokio::select! {
        _ = ctx.shutdown.cancelled() => return Ok(()),
        _ = synced => {}
    }
    controller
        .work_queue()
        .instrument(&ctx.metrics, queue_name(name));
    controller.register_handlers();
    tracing::info!(
        controller = name,
        workers,
        "caches synced, starting workers"
    );
    let this = controller.clone();
    controller
        .work_queue()
        .run(name, workers, ctx.shutdown.clone(), move |key| {
            let this = this.clone();
            async move { this.sync_key(key).await }
        })
        .await;
    Ok(())
}

/// Upstream's work queue name for the workload controller `controller` (its service account
/// name), as its `workqueue_*` metrics are labelled.
pub fn queue_name(controller: &str) -> &str {
    match controller {
        "deployment-controller" => "deployment",
        "replicaset-controller" => "replicaset",
        "replication-controller" => "replicationmanager",
        "daemon-set-controller" => "daemonset",
        "statefulset-controller" => "statefulset",
        "job-controller" => "job",
        "cronjob-controller" => "cronjob",
        other => other,
    }
}
