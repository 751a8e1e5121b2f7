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

use futures::future::FutureExt;

use crate::machinery::context::{ControllerContext, Rate};
use crate::machinery::ControllerDescriptor;

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
