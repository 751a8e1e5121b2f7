//! e2e: Jobs whose pods fail: one completes within its backoffLimit, one exceeds it and
//! fails; an Indexed Job completes every index. Finished pods lose the job-tracking
//! finalizer once counted.

#[path = "workload_support.rs"]
mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::api::{ListParams, PostParams};
use kube::{Api, ResourceExt};
use support::{eventually, fake_kubelet, start_kcm, Outcome};
use tokio_util::sync::CancellationToken;

const NS: &str = "default";

fn job(name: &str, completions: i32, backoff_limit: i32, indexed: bool) -> Job {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {
            "completions": completions,
            "parallelism": 2,
            "backoffLimit": backoff_limit,
            "completionMode": if indexed { "Indexed" } else { "NonIndexed" },
            "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}
        }
    }))
    .unwrap()
}

fn condition(j: &Job, type_: &str) -> Option<String> {
    j.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
        .and_then(|c| c.reason.clone())
}

#[tokio::test]
async fn jobs_complete_or_fail_as_specified() {
    let cluster = e2e::cluster_or_skip!();
    let mut kcm = start_kcm(&cluster, "job");
    let client = cluster.client();
    let stop = CancellationToken::new();
    let _guard = stop.clone().drop_guard();
    // "flaky" pods: the first fails, the rest succeed; "doomed" pods always fail.
    let flaky_failures = Arc::new(AtomicUsize::new(0));
    let f = flaky_failures.clone();
    fake_kubelet(client.clone(), NS, stop.clone(), move |p| {
        let job = p
            .labels()
            .get("batch.kubernetes.io/job-name")
            .cloned()
            .unwrap_or_default();
        Some(match job.as_str() {
            "doomed" => Outcome::Fail,
            "flaky" if f.fetch_add(1, Ordering::SeqCst) == 0 => Outcome::Fail,
            _ => Outcome::Succeed,
        })
    });
    eventually(
        "default ServiceAccount",
        Duration::from_secs(30),
        &mut kcm,
        || async {
            Ok(Api::<ServiceAccount>::namespaced(cluster.client(), NS)
                .get_opt("default")
                .await?
                .map(|_| ()))
        },
    )
    .await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), NS);
    for j in [
        job("flaky", 3, 2, false),
        job("doomed", 1, 1, false),
        job("indexed", 3, 0, true),
    ] {
        jobs.create(&PostParams::default(), &j).await.unwrap();
    }
    // Failure backoff is 10s, then 20s: allow for it.
    let flaky = eventually(
        "flaky completes",
        Duration::from_secs(90),
        &mut kcm,
        || async {
            let j = jobs.get("flaky").await?;
            Ok(condition(&j, "Complete").map(|_| j))
        },
    )
    .await;
    let s = flaky.status.unwrap();
    // `active: 0` is omitted on the wire, as upstream's omitempty does.
    assert_eq!(
        (s.succeeded, s.failed, s.active.unwrap_or(0)),
        (Some(3), Some(1), 0)
    );
    assert!(s.completion_time.is_some() && s.start_time.is_some());
    assert_eq!(
        condition(&jobs.get("flaky").await.unwrap(), "SuccessCriteriaMet").as_deref(),
        Some("CompletionsReached")
    );

    let doomed = eventually(
        "doomed fails",
        Duration::from_secs(90),
        &mut kcm,
        || async {
            let j = jobs.get("doomed").await?;
            Ok(condition(&j, "Failed").map(|_| j))
        },
    )
    .await;
    assert_eq!(
        condition(&doomed, "Failed").as_deref(),
        Some("BackoffLimitExceeded")
    );
    assert_eq!(doomed.status.unwrap().failed, Some(2));

    let indexed = eventually(
        "indexed completes",
        Duration::from_secs(60),
        &mut kcm,
        || async {
            let j = jobs.get("indexed").await?;
            Ok(condition(&j, "Complete").map(|_| j))
        },
    )
    .await;
    assert_eq!(
        indexed.status.unwrap().completed_indexes.as_deref(),
        Some("0-2")
    );
    let pods = Api::<Pod>::namespaced(client.clone(), NS)
        .list(&ListParams::default())
        .await
        .unwrap();
    let mut indexes: Vec<String> = pods
        .items
        .iter()
        .filter(|p| {
            p.labels()
                .get("batch.kubernetes.io/job-name")
                .map(String::as_str)
                == Some("indexed")
        })
        .filter_map(|p| {
            p.annotations()
                .get("batch.kubernetes.io/job-completion-index")
                .cloned()
        })
        .collect();
    indexes.sort();
    assert_eq!(indexes, ["0", "1", "2"]);
    assert!(
        pods.items.iter().all(|p| !p
            .finalizers()
            .iter()
            .any(|f| f == "batch.kubernetes.io/job-tracking")),
        "every counted pod lost the tracking finalizer"
    );
}
