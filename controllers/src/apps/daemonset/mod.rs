//! daemonset-controller: one pod per eligible node (nodeSelector, required node affinity,
//! taints and tolerations including the automatic daemon tolerations), pinned to its node by
//! a `metadata.name` node affinity for the scheduler to bind; RollingUpdate with
//! maxSurge/maxUnavailable or OnDelete; ControllerRevisions; status; failed pods replaced
//! with per-node backoff.

pub mod backoff;
pub mod controller;
pub mod eligibility;
pub mod plan;
pub mod status;

use futures::future::FutureExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Node, Pod};

use crate::machinery::runner;
use crate::machinery::ControllerDescriptor;
use controller::{DaemonSetController, NAME};

/// Registry entry.
pub fn descriptor() -> ControllerDescriptor {
    ControllerDescriptor {
        name: "daemonset",
        enabled_by_default: true,
        start: |ctx| {
            async move {
                let client = ctx.client_for(NAME).await?;
                let factory = ctx.informers();
                let (d, p, n, r) = (
                    factory.informer::<DaemonSet>(),
                    factory.informer::<Pod>(),
                    factory.informer::<Node>(),
                    factory.informer::<ControllerRevision>(),
                );
                let synced = async {
                    d.wait_synced().await;
                    p.wait_synced().await;
                    n.wait_synced().await;
                    r.wait_synced().await;
                };
                let c =
                    DaemonSetController::new(client, d.clone(), p.clone(), n.clone(), r.clone());
                runner::run(&ctx, NAME, ctx.options.concurrency.daemonset, synced, c).await
            }
            .boxed()
        },
    }
}
