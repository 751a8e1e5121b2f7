//! storage-version-migrator-controller (upstream's `pkg/controller/storageversionmigrator`,
//! gate StorageVersionMigrator, alias `svm`): for each StorageVersionMigration of
//! storagemigration.k8s.io/v1alpha1, rewrites every object of the named resource so the
//! apiserver stores it again in its current storage version (and encryption).
//!
//! Two loops over the shared StorageVersionMigration informer, as upstream:
//! - [`resource_version`]: records in `status.resourceVersion` the resource's list
//!   resourceVersion when the migration starts (or fails it when discovery does not serve the
//!   resource with `list`, `patch` and `update`);
//! - [`migrator`]: once that is set, marks the migration `Running`, applies an empty
//!   server-side apply patch (apiVersion, kind, `metadata.uid` and `metadata.resourceVersion`
//!   as preconditions) to every object of a list at least that new, and ends in
//!   `Succeeded` or `Failed`.
//!
//! [`types`] holds the v1alpha1 types, [`conditions`] the condition rules.

pub mod conditions;
pub mod migrator;
pub mod resource_version;
pub mod types;

use std::future::Future;

use futures::future::FutureExt;

use crate::machinery::context::{ControllerContext, Rate};
use crate::machinery::informers::handlers::{self as informer, Change};
use crate::machinery::informers::Informer;
use crate::machinery::queue::WorkQueue;
use crate::machinery::ControllerDescriptor;
use types::StorageVersionMigration;

/// Upstream's controller name: the migrator's field manager, work queue name and identity.
pub const CONTROLLER_NAME: &str = "storage-version-migrator-controller";

/// Registry entry.
pub fn descriptor() -> ControllerDescriptor {
    ControllerDescriptor {
        name: CONTROLLER_NAME,
        enabled_by_default: true,
        start: |ctx| start(ctx).boxed(),
    }
}

async fn start(ctx: ControllerContext) -> anyhow::Result<()> {
    // Upstream reads the objects from the garbage collector's monitors and refuses to start
    // without it; ours lists them itself but keeps the same contract.
    if !ctx.options.enable_garbage_collector {
        anyhow::bail!("storage version migrator requires garbage collector");
    }
    // A migration rewrites every object of a resource, so upstream gives the migrator its
    // own client at QPS ×20 and burst ×100 (upstream's status writes keep the manager's
    // rate; ours share the fast client).
    let fast = Rate {
        qps_factor: 20.0,
        burst_factor: 100,
    };
    let client = ctx.client_for_rate(CONTROLLER_NAME, fast).await?;
    let (a, b) = tokio::join!(
        migrator::run(ctx.clone(), client.clone()),
        resource_version::run(ctx, client)
    );
    a.and(b)
}

/// Both loops' start-up: a queue of migration names filled from the shared informer, then
/// `workers` workers calling `sync(client, informer, name)` until shutdown.
async fn run_loop<F, Fut>(
    ctx: &ControllerContext,
    name: &'static str,
    workers: usize,
    client: kube::Client,
    sync: F,
) -> anyhow::Result<()>
where
    F: Fn(kube::Client, Informer<StorageVersionMigration>, String) -> Fut
        + Clone
        + Send
        + Sync
        + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let queue: WorkQueue<String> = WorkQueue::new().with_metrics(&ctx.metrics, name);
    let svms = ctx.informers().informer::<StorageVersionMigration>();
    let q = queue.clone();
    informer::on(&svms, move |svm: &StorageVersionMigration, change| {
        if let (Change::Applied, Some(name)) = (change, &svm.metadata.name) {
            q.add(name.clone());
        }
    });
    let s = svms.clone();
    informer::wait_synced(&ctx.shutdown, async move { s.wait_synced().await }).await?;
    tracing::info!(controller = name, "Starting");
    queue
        .run(name, workers, ctx.shutdown.clone(), move |key| {
            sync(client.clone(), svms.clone(), key)
        })
        .await;
    tracing::info!(controller = name, "Shutting down");
    Ok(())
}
