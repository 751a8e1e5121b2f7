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

use crate::machinery::runner;
use crate::machinery::ControllerDescriptor;
use controller::{JobController, NAME};

/// Registry entry.
pub fn descriptor() -> ControllerDescriptor {
    ControllerDescriptor {
        name: "job",
        enabled_by_default: true,
        start: |ctx| {
            async move {
                let client = ctx.client_for(NAME).await?;
                let factory = ctx.informers();
                let (jobs, pods) = (factory.informer::<Job>(), factory.informer::<Pod>());
                let synced = async {
                    jobs.wait_synced().await;
                    pods.wait_synced().await;
                };
                let c = JobController::new(client, jobs.clone(), pods.clone());
                runner::run(&ctx, NAME, ctx.options.concurrency.job, synced, c).await
            }
            .boxed()
        },
    }
}

#[cfg(test)]
mod plan_tests;
