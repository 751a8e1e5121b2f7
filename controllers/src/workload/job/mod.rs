//! job-controller: runs pods to completion (NonIndexed and Indexed), with parallelism,
//! backoffLimit and failure backoff, backoffLimitPerIndex/maxFailedIndexes,
//! podFailurePolicy, successPolicy, podReplacementPolicy, activeDeadlineSeconds, suspend,
//! finalizer-based tracking, the FailureTarget/Failed and SuccessCriteriaMet/Complete
//! conditions and upstream's events.

pub mod backoff;
pub mod controller;
pub mod indexes;
pub mod plan;
pub mod policy;

use futures::future::FutureExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;

use crate::registry::ControllerDescriptor;
use crate::workload::factory::InformerFactory;
use controller::{JobController, NAME};

/// Registry entry.
pub fn descriptor() -> ControllerDescriptor {
    ControllerDescriptor {
        name: "job",
        enabled_by_default: true,
        start: |ctx| {
            async move {
                let client = ctx.client_for(NAME).await?;
                let factory = InformerFactory::shared(&ctx.client, &ctx.shutdown);
                let (jobs, pods) = (factory.informer::<Job>(), factory.informer::<Pod>());
                tokio::select! {
                    _ = ctx.shutdown.cancelled() => return Ok(()),
                    _ = async { jobs.wait_synced().await; pods.wait_synced().await } => {}
                }
                let c = JobController::new(client, jobs, pods);
                c.watch();
                let workers = ctx.options.concurrency.job;
                tracing::info!(
                    controller = NAME,
                    workers,
                    "caches synced, starting workers"
                );
                let this = c.clone();
                c.queue()
                    .run(NAME, workers, ctx.shutdown.clone(), move |key| {
                        let this = this.clone();
                        async move { this.sync(key).await }
                    })
                    .await;
                Ok(())
            }
            .boxed()
        },
    }
}

#[cfg(test)]
mod plan_tests;
