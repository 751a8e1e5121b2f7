//! replicaset-controller and replicationcontroller-controller: keep `spec.replicas` pods of
//! the template running, one generic controller for both kinds.

pub mod controller;
pub mod kind;
pub mod manage;
pub mod status;

use futures::future::{BoxFuture, FutureExt};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, ReplicationController};

use crate::machinery::context::ControllerContext;
use crate::machinery::runner;
use crate::machinery::ControllerDescriptor;
use controller::ReplicaController;
use kind::ReplicatedKind;

/// Registry entry of the ReplicaSet controller.
pub fn replicaset_descriptor() -> ControllerDescriptor {
    ControllerDescriptor {
        name: "replicaset",
        enabled_by_default: true,
        start: |ctx| {
            let workers = ctx.options.concurrency.replicaset;
            run::<ReplicaSet>(ctx, workers).boxed()
        },
    }
}

/// Registry entry of the ReplicationController controller.
pub fn replicationcontroller_descriptor() -> ControllerDescriptor {
    ControllerDescriptor {
        name: "replicationcontroller",
        enabled_by_default: true,
        start: |ctx| {
            let workers = ctx.options.concurrency.rc;
            run::<ReplicationController>(ctx, workers).boxed()
        },
    }
}

/// Runs the controller for kind `K` with `workers` until shutdown.
pub fn run<K: ReplicatedKind>(
    ctx: ControllerContext,
    workers: usize,
) -> BoxFuture<'static, anyhow::Result<()>> {
    async move {
        let client = ctx.client_for(K::CONTROLLER).await?;
        let factory = ctx.informers();
        let owners = factory.informer::<K>();
        let pods = factory.informer::<Pod>();
        let synced = async {
            owners.wait_synced().await;
            pods.wait_synced().await;
        };
        let c = ReplicaController::new(client, owners.clone(), pods.clone());
        runner::run(&ctx, K::CONTROLLER, workers, synced, c).await
    }
    .boxed()
}
