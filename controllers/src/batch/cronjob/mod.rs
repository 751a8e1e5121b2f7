//! cronjob-controller: starts Jobs on a cron schedule (upstream's CronJobControllerV2) —
//! five-field cron syntax and macros in `spec.timeZone`, concurrencyPolicy
//! Allow/Forbid/Replace, startingDeadlineSeconds and the missed-start warning, suspend,
//! successful/failed history limits, and `status.active`, `lastScheduleTime`,
//! `lastSuccessfulTime`. Time comes from an injectable [`clock::Clock`].

pub mod clock;
pub mod controller;
pub mod plan;
pub mod schedule;

use std::sync::Arc;

use futures::future::FutureExt;
use k8s_openapi::api::batch::v1::{CronJob, Job};

use crate::machinery::runner;
use crate::machinery::ControllerDescriptor;
use clock::SystemClock;
use controller::{CronJobController, NAME};

/// Registry entry.
pub fn descriptor() -> ControllerDescriptor {
    ControllerDescriptor {
        name: "cronjob",
        enabled_by_default: true,
        start: |ctx| {
            async move {
                let client = ctx.client_for(NAME).await?;
                let factory = ctx.informers();
                let (cronjobs, jobs) = (factory.informer::<CronJob>(), factory.informer::<Job>());
                let synced = async {
                    cronjobs.wait_synced().await;
                    jobs.wait_synced().await;
                };
                let c = CronJobController::new(
                    client,
                    cronjobs.clone(),
                    jobs.clone(),
                    Arc::new(SystemClock),
                );
                runner::run(&ctx, NAME, ctx.options.concurrency.cron_job, synced, c).await
            }
            .boxed()
        },
    }
}
