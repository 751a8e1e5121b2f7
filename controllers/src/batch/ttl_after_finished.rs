//! ttl-after-finished-controller: deletes Jobs `spec.ttlSecondsAfterFinished` seconds after
//! they finished (Complete or Failed condition), with foreground propagation so their pods
//! go first.

use std::sync::Arc;
use std::time::Duration;

use futures::future::FutureExt;
use k8s_openapi::api::batch::v1::Job;
use kube::api::{DeleteParams, Preconditions, PropagationPolicy};
use kube::Api;

use crate::machinery::context::ControllerContext;
use crate::machinery::informers::handlers::{self as informer, Change};
use crate::machinery::queue::WorkQueue;
use crate::machinery::ControllerDescriptor;
use api_helpers::errors;

/// The identity it acts as with `--use-service-account-credentials`.
pub const SERVICE_ACCOUNT: &str = "ttl-after-finished-controller";

/// Registry entry.
pub fn descriptor() -> ControllerDescriptor {
    ControllerDescriptor {
        name: "ttl-after-finished-controller",
        enabled_by_default: true,
        start: |ctx| run(ctx).boxed(),
    }
}

/// What to do with a Job now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// No TTL, not finished, or already being deleted.
    Ignore,
    /// Look again after this long.
    Wait(Duration),
    /// The TTL has passed: delete it.
    Delete,
}

/// When the Job finished: the lastTransitionTime of its true Complete or Failed condition.
pub fn finished_at(job: &Job) -> Option<jiff::Timestamp> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .and_then(|c| c.last_transition_time.as_ref())
        .map(|t| t.0)
}

/// Upstream's `needsCleanup` + `processTTL`, at `now`.
pub fn decide(job: &Job, now: jiff::Timestamp) -> Decision {
    if job.metadata.deletion_timestamp.is_some() {
        return Decision::Ignore;
    }
    let Some(ttl) = job.spec.as_ref().and_then(|s| s.ttl_seconds_after_finished) else {
        return Decision::Ignore;
    };
    let Some(finished) = finished_at(job) else {
        return Decision::Ignore;
    };
    let expire = finished + jiff::SignedDuration::from_secs(ttl.max(0) as i64);
    if now >= expire {
        Decision::Delete
    } else {
        Decision::Wait(Duration::try_from(expire.duration_since(now)).unwrap_or_default())
    }
}

async fn run(ctx: ControllerContext) -> anyhow::Result<()> {
    let sd = ctx.shutdown.clone();
    let queue: WorkQueue<(String, String)> =
        WorkQueue::new().with_metrics(&ctx.metrics, "ttl_jobs_to_delete");
    let q = queue.clone();
    let jobs = {
        let shared = ctx.informers().informer::<Job>();
        informer::on(&shared, move |j: &Job, change| {
            if change == Change::Applied && decide(j, jiff::Timestamp::now()) != Decision::Ignore {
                if let (Some(ns), Some(n)) = (&j.metadata.namespace, &j.metadata.name) {
                    q.add((ns.clone(), n.clone()));
                }
            }
        });
        shared
    };
    informer::wait_synced(&sd, async {
        jobs.wait_synced().await;
    })
    .await?;
    let client = Arc::new(ctx.client_for(SERVICE_ACCOUNT).await?);
    let q = queue.clone();
    let workers = ctx.options.concurrency.ttl_after_finished.max(1);
    queue
        .run("ttl-after-finished", workers, sd, move |key| {
            let (client, q) = (client.clone(), q.clone());
            async move {
                if let Some(after) = sync(&client, &key).await? {
                    q.add_after(key, after);
                }
                Ok(())
            }
        })
        .await;
    Ok(())
}

/// Decides on a fresh copy (the TTL may have changed since the cache saw it) and deletes
/// with the uid and resourceVersion it decided on as preconditions.
async fn sync(
    client: &kube::Client,
    (ns, name): &(String, String),
) -> anyhow::Result<Option<Duration>> {
    let api: Api<Job> = Api::namespaced(client.clone(), ns);
    let Some(job) = api.get_opt(name).await? else {
        return Ok(None);
    };
    match decide(&job, jiff::Timestamp::now()) {
        Decision::Ignore => Ok(None),
        Decision::Wait(d) => Ok(Some(d)),
        Decision::Delete => {
            let dp = DeleteParams {
                propagation_policy: Some(PropagationPolicy::Foreground),
                preconditions: Some(Preconditions {
                    uid: job.metadata.uid.clone(),
                    resource_version: job.metadata.resource_version.clone(),
                }),
                ..Default::default()
            };
            match api.delete(name, &dp).await {
                Ok(_) => {
                    tracing::info!(job = %format!("{ns}/{name}"), "Cleaning up Job");
                    Ok(None)
                }
                Err(e) if errors::is_not_found(&e) => Ok(None),
                // Changed since: decide again.
                Err(e) if errors::is_conflict(&e) => Ok(Some(Duration::ZERO)),
                Err(e) => Err(e.into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(ttl: Option<i32>, cond: Option<(&str, &str)>) -> Job {
        let mut v = json!({"metadata": {"name": "j"}, "spec": {"template": {}}});
        if let Some(t) = ttl {
            v["spec"]["ttlSecondsAfterFinished"] = json!(t);
        }
        if let Some((t, s)) = cond {
            v["status"] = json!({"conditions": [{"type": t, "status": s,
                "lastTransitionTime": "2026-01-01T00:00:00Z"}]});
        }
        serde_json::from_value(v).unwrap()
    }

    fn at(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn waits_then_deletes_finished_jobs() {
        let j = job(Some(60), Some(("Complete", "True")));
        assert_eq!(
            decide(&j, at("2026-01-01T00:00:20Z")),
            Decision::Wait(Duration::from_secs(40))
        );
        assert_eq!(decide(&j, at("2026-01-01T00:01:00Z")), Decision::Delete);
        let f = job(Some(0), Some(("Failed", "True")));
        assert_eq!(decide(&f, at("2026-01-01T00:00:00Z")), Decision::Delete);
    }

    #[test]
    fn ignores_unfinished_untimed_and_deleting() {
        let now = at("2027-01-01T00:00:00Z");
        assert_eq!(
            decide(&job(None, Some(("Complete", "True"))), now),
            Decision::Ignore
        );
        assert_eq!(decide(&job(Some(1), None), now), Decision::Ignore);
        assert_eq!(
            decide(&job(Some(1), Some(("Complete", "False"))), now),
            Decision::Ignore
        );
        assert_eq!(
            decide(&job(Some(1), Some(("Suspended", "True"))), now),
            Decision::Ignore
        );
        let mut d = job(Some(1), Some(("Complete", "True")));
        d.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now));
        assert_eq!(decide(&d, now), Decision::Ignore);
    }
}
