//! deployment-controller: rolls a pod template out through ReplicaSets (RollingUpdate or
//! Recreate), with revisions, rollback by template, pause, proportional scaling and the
//! Progressing/Available conditions.

pub mod controller;
pub mod plan;
pub mod replicasets;
pub mod status;
pub mod util;

use futures::future::FutureExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;

use crate::machinery::runner;
use crate::machinery::ControllerDescriptor;
use controller::{DeploymentController, NAME};

/// Registry entry.
pub fn descriptor() -> ControllerDescriptor {
    ControllerDescriptor {
        name: "deployment",
        enabled_by_default: true,
        start: |ctx| {
            async move {
                let client = ctx.client_for(NAME).await?;
                let factory = ctx.informers();
                let (d, rs, p) = (
                    factory.informer::<Deployment>(),
                    factory.informer::<ReplicaSet>(),
                    factory.informer::<Pod>(),
                );
                let synced = async {
                    d.wait_synced().await;
                    rs.wait_synced().await;
                    p.wait_synced().await;
                };
                let c = DeploymentController::new(client, d.clone(), rs.clone(), p.clone());
                runner::run(&ctx, NAME, ctx.options.concurrency.deployment, synced, c).await
            }
            .boxed()
        },
    }
}
