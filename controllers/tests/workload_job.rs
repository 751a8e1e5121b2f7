//! e2e: Jobs against a real apiserver, with the test playing the kubelet (it writes each
//! new pod's status — Running/Ready, Succeeded, or Failed with a container exit code —
//! through the status subresource):
//! - NonIndexed Jobs: one completes within its backoffLimit, one exceeds it and fails;
//! - an Indexed Job completes every index exactly once;
//! - podFailurePolicy: a FailJob rule on an exit code fails the Job at once, an Ignore rule
//!   does not count the failure;
//! - backoffLimitPerIndex/maxFailedIndexes with a FailIndex rule: status.failedIndexes;
//! - successPolicy: SuccessCriteriaMet then Complete, the remaining pods removed.
//!
//! Every Job runs concurrently; the longest path is one 10 s failure backoff. Finished
//! pods lose the job-tracking finalizer once counted, and no Job gets more pods than it
//! asked for (expectations hold while the cache lags).

#[path = "workload_support.rs"]
mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use support::{eventually, start_kcm};
use tokio_util::sync::CancellationToken;

const NS: &str = "default";
const JOB_NAME: &str = "batch.kubernetes.io/job-name";
const INDEX: &str = "batch.kubernetes.io/job-completion-index";
const TRACKING: &str = "batch.kubernetes.io/job-tracking";

/// What the fake kubelet does with a new pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// Running and Ready, forever.
    Run,
    /// Succeeded (exit code 0).
    Succeed,
    /// Failed with this container exit code.
    Exit(i32),
}

fn job(name: &str, spec: serde_json::Value) -> Job {
    let mut spec = spec;
    let obj = spec.as_object_mut().unwrap();
    obj.entry("parallelism").or_insert(json!(2));
    obj.insert(
        "template".into(),
        json!({"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}),
    );
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap()
}

/// The status a kubelet reports for `outcome`.
fn status_for(outcome: Outcome) -> serde_json::Value {
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let cond = |t: &str, s: &str| json!({"type": t, "status": s, "lastTransitionTime": now});
    let terminated = |code: i32| {
        json!([{"name": "c", "image": "busybox", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": code,
                "reason": if code == 0 { "Completed" } else { "Error" },
                "startedAt": now, "finishedAt": now}}}])
    };
    match outcome {
        Outcome::Run => json!({"status": {"phase": "Running", "startTime": now,
            "conditions": [cond("Ready", "True"), cond("ContainersReady", "True")],
            "containerStatuses": [{"name": "c", "image": "busybox", "imageID": "", "ready": true,
                "restartCount": 0, "started": true, "state": {"running": {"startedAt": now}}}]}}),
        Outcome::Succeed => json!({"status": {"phase": "Succeeded", "startTime": now,
            "conditions": [cond("Ready", "False")], "containerStatuses": terminated(0)}}),
        Outcome::Exit(code) => json!({"status": {"phase": "Failed", "startTime": now,
            "conditions": [cond("Ready", "False")], "containerStatuses": terminated(code)}}),
    }
}

/// Pods seen per (Job name, completion index).
type Attempts = Arc<Mutex<HashMap<(String, Option<i32>), usize>>>;

/// Pretends to be every node's kubelet in `NS` until `stop`: each pod without a phase gets
/// `decide(job name, completion index, attempt)` written to its status, where `attempt`
/// counts the pods seen so far for that (job, index). Returns the number of pods seen per
/// (job, index), to check that nothing was over-created.
fn fake_kubelet(
    client: kube::Client,
    stop: CancellationToken,
    decide: impl Fn(&str, Option<i32>, usize) -> Outcome + Send + 'static,
) -> Attempts {
    let seen: Attempts = Arc::default();
    let attempts = seen.clone();
    let api: Api<Pod> = Api::namespaced(client, NS);
    tokio::spawn(async move {
        let mut handled: std::collections::HashSet<String> = Default::default();
        while !stop.is_cancelled() {
            if let Ok(list) = api.list(&ListParams::default()).await {
                for p in list.items {
                    let uid = p.uid().unwrap_or_default();
                    let phase = p.status.as_ref().and_then(|s| s.phase.clone());
                    if p.metadata.deletion_timestamp.is_some()
                        || matches!(phase.as_deref(), Some("Running" | "Succeeded" | "Failed"))
                        || handled.contains(&uid)
                    {
                        continue;
                    }
                    let Some(job) = p.labels().get(JOB_NAME).cloned() else {
                        continue;
                    };
                    let index = p.annotations().get(INDEX).and_then(|i| i.parse().ok());
                    let attempt = {
                        let mut seen = attempts.lock().unwrap();
                        let n = seen.entry((job.clone(), index)).or_default();
                        *n += 1;
                        *n
                    };
                    let outcome = decide(&job, index, attempt);
                    let r = api
                        .patch_status(
                            &p.name_any(),
                            &PatchParams::default(),
                            &Patch::Merge(status_for(outcome)),
                        )
                        .await;
                    if r.is_ok() {
                        handled.insert(uid);
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    seen
}

/// Runs the kube-controller-manager cargo built for this test target, rather than letting
/// the harness rebuild it with `cargo build --bin` (which, on a busy shared target
/// directory, waits for the build lock and can take minutes before the manager starts).
fn use_binary_built_for_this_test() {
    if std::env::var_os(e2e::binaries::BIN_DIR_ENV).is_none() {
        let exe = std::path::Path::new(env!("CARGO_BIN_EXE_kube-controller-manager"));
        if let Some(dir) = exe.parent() {
            std::env::set_var(e2e::binaries::BIN_DIR_ENV, dir);
        }
    }
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
    let t0 = Instant::now();
    let cluster = e2e::cluster_or_skip!();
    eprintln!("[{:?}] cluster up", t0.elapsed());
    use_binary_built_for_this_test();
    let mut kcm = start_kcm(&cluster, "job");
    let client = cluster.client();
    let stop = CancellationToken::new();
    let _guard = stop.clone().drop_guard();
    let attempts = fake_kubelet(client.clone(), stop.clone(), |job, index, attempt| {
        match (job, index) {
            // The first pod fails, the rest succeed.
            ("flaky", _) if attempt == 1 => Outcome::Exit(1),
            ("doomed", _) => Outcome::Exit(1),
            // Exit code 42 fails the Job through its pod failure policy.
            ("fatal", _) => Outcome::Exit(42),
            // Exit code 3 is ignored: not counted against backoffLimit 0.
            ("ignored", _) if attempt == 1 => Outcome::Exit(3),
            // Index 1 always fails (retried once), index 2 hits a FailIndex rule.
            ("per-index", Some(1)) => Outcome::Exit(1),
            ("per-index", Some(2)) => Outcome::Exit(7),
            // Only index 0 finishes; the success policy needs nothing more.
            ("success-policy", Some(i)) if i != 0 => Outcome::Run,
            _ => Outcome::Succeed,
        }
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
    eprintln!("[{:?}] serviceaccount ready", t0.elapsed());
    let jobs: Api<Job> = Api::namespaced(client.clone(), NS);
    let fail_job_policy = json!({"rules": [
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
        {"action": "FailJob", "onExitCodes": {"containerName": "c", "operator": "In", "values": [42]}},
        {"action": "Ignore", "onExitCodes": {"operator": "In", "values": [3]}}
    ]});
    // FailIndex is only valid with backoffLimitPerIndex.
    let per_index_policy = json!({"rules": [
        {"action": "FailIndex", "onExitCodes": {"operator": "In", "values": [7]}},
        {"action": "Count", "onExitCodes": {"operator": "NotIn", "values": [0, 7]}}
    ]});
    for j in [
        job("flaky", json!({"completions": 3, "backoffLimit": 2})),
        job("doomed", json!({"completions": 1, "backoffLimit": 1})),
        job(
            "indexed",
            json!({"completions": 3, "backoffLimit": 0, "completionMode": "Indexed"}),
        ),
        job(
            "fatal",
            json!({"completions": 2, "backoffLimit": 6, "podFailurePolicy": fail_job_policy}),
        ),
        job(
            "ignored",
            json!({"completions": 1, "parallelism": 1, "backoffLimit": 0,
                "podFailurePolicy": fail_job_policy}),
        ),
        job(
            "per-index",
            json!({"completions": 4, "parallelism": 4, "completionMode": "Indexed",
                "backoffLimitPerIndex": 1, "maxFailedIndexes": 2,
                "podFailurePolicy": per_index_policy}),
        ),
        job(
            "success-policy",
            json!({"completions": 3, "parallelism": 3, "completionMode": "Indexed",
                "successPolicy": {"rules": [{"succeededIndexes": "0"}]}}),
        ),
    ] {
        jobs.create(&PostParams::default(), &j).await.unwrap();
    }
    let finished = |name: &'static str, type_: &'static str| {
        let jobs = jobs.clone();
        move || {
            let jobs = jobs.clone();
            async move {
                let j = jobs.get(name).await?;
                Ok(condition(&j, type_).map(|_| j))
            }
        }
    };
    let wait = Duration::from_secs(60);

    let fatal = eventually("fatal fails", wait, &mut kcm, finished("fatal", "Failed")).await;
    eprintln!("[{:?}] fatal failed", t0.elapsed());
    assert_eq!(
        condition(&fatal, "FailureTarget").as_deref(),
        Some("PodFailurePolicy")
    );
    assert_eq!(
        condition(&fatal, "Failed").as_deref(),
        Some("PodFailurePolicy")
    );
    let msg = fatal.status.as_ref().unwrap().conditions.as_ref().unwrap();
    assert!(
        msg.iter()
            .any(|c| c.type_ == "Failed" && c.message.as_deref().unwrap_or("").contains("42")),
        "the Failed condition names the exit code: {msg:?}"
    );

    let ignored = eventually(
        "ignored completes",
        wait,
        &mut kcm,
        finished("ignored", "Complete"),
    )
    .await;
    let s = ignored.status.unwrap();
    assert_eq!((s.succeeded, s.failed.unwrap_or(0)), (Some(1), 0));

    let flaky = eventually(
        "flaky completes",
        wait,
        &mut kcm,
        finished("flaky", "Complete"),
    )
    .await;
    eprintln!("[{:?}] flaky complete", t0.elapsed());
    assert_eq!(
        condition(&flaky, "SuccessCriteriaMet").as_deref(),
        Some("CompletionsReached")
    );
    let s = flaky.status.unwrap();
    // `active: 0` is omitted on the wire, as upstream's omitempty does.
    assert_eq!(
        (s.succeeded, s.failed, s.active.unwrap_or(0)),
        (Some(3), Some(1), 0)
    );
    assert!(s.completion_time.is_some() && s.start_time.is_some());

    let doomed = eventually("doomed fails", wait, &mut kcm, finished("doomed", "Failed")).await;
    eprintln!("[{:?}] doomed failed", t0.elapsed());
    assert_eq!(
        condition(&doomed, "Failed").as_deref(),
        Some("BackoffLimitExceeded")
    );
    assert_eq!(doomed.status.unwrap().failed, Some(2));

    let indexed = eventually(
        "indexed completes",
        wait,
        &mut kcm,
        finished("indexed", "Complete"),
    )
    .await;
    assert_eq!(
        indexed.status.unwrap().completed_indexes.as_deref(),
        Some("0-2")
    );

    let per_index = eventually(
        "per-index fails",
        wait,
        &mut kcm,
        finished("per-index", "Failed"),
    )
    .await;
    eprintln!("[{:?}] per-index failed", t0.elapsed());
    assert_eq!(
        condition(&per_index, "Failed").as_deref(),
        Some("FailedIndexes")
    );
    let s = per_index.status.unwrap();
    assert_eq!(s.failed_indexes.as_deref(), Some("1,2"));
    assert_eq!(s.completed_indexes.as_deref(), Some("0,3"));
    // Index 1: two counted failures (backoffLimitPerIndex 1); index 2: one (FailIndex).
    assert_eq!(s.failed, Some(3));

    let sp = eventually(
        "success-policy completes",
        wait,
        &mut kcm,
        finished("success-policy", "Complete"),
    )
    .await;
    assert_eq!(
        condition(&sp, "SuccessCriteriaMet").as_deref(),
        Some("SuccessPolicy")
    );
    assert_eq!(condition(&sp, "Complete").as_deref(), Some("SuccessPolicy"));
    assert_eq!(sp.status.unwrap().completed_indexes.as_deref(), Some("0"));

    // Every pod of a finished Job loses the tracking finalizer; the running pods of
    // "success-policy" are deleted.
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    eventually(
        "finalizers removed and leftover pods deleted",
        Duration::from_secs(30),
        &mut kcm,
        || async {
            let list = pods.list(&ListParams::default()).await?;
            let tracked = list
                .items
                .iter()
                .filter(|p| p.finalizers().iter().any(|f| f == TRACKING))
                .count();
            let leftovers = list
                .items
                .iter()
                .filter(|p| p.labels().get(JOB_NAME).map(String::as_str) == Some("success-policy"))
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
                .count();
            Ok((tracked == 0 && leftovers == 0).then_some(()))
        },
    )
    .await;
    eprintln!("[{:?}] finalizers gone", t0.elapsed());

    // No over-creation: exactly the pods each Job needed.
    let seen = attempts.lock().unwrap().clone();
    let count = |job: &str| -> usize {
        seen.iter()
            .filter(|((j, _), _)| j == job)
            .map(|(_, n)| *n)
            .sum()
    };
    assert_eq!(
        count("flaky"),
        4,
        "flaky: 1 failure + 3 successes; {seen:?}"
    );
    assert_eq!(count("doomed"), 2, "doomed: 2 failures; {seen:?}");
    assert_eq!(count("indexed"), 3, "indexed: one pod per index; {seen:?}");
    assert_eq!(
        count("ignored"),
        2,
        "ignored: 1 ignored failure + 1 success; {seen:?}"
    );
    assert_eq!(
        seen.get(&("per-index".to_string(), Some(1))),
        Some(&2),
        "index 1 retried once: {seen:?}"
    );
    assert_eq!(
        seen.get(&("per-index".to_string(), Some(2))),
        Some(&1),
        "index 2 failed at once: {seen:?}"
    );
    let all = pods.list(&ListParams::default()).await.unwrap();
    let mut indexes: Vec<String> = all
        .items
        .iter()
        .filter(|p| p.labels().get(JOB_NAME).map(String::as_str) == Some("indexed"))
        .filter_map(|p| p.annotations().get(INDEX).cloned())
        .collect();
    indexes.sort();
    assert_eq!(indexes, ["0", "1", "2"]);
    let retried = all
        .items
        .iter()
        .find(|p| {
            p.labels().get(JOB_NAME).map(String::as_str) == Some("per-index")
                && p.annotations()
                    .get("batch.kubernetes.io/job-index-failure-count")
                    .map(String::as_str)
                    == Some("1")
        })
        .map(|p| p.annotations().get(INDEX).cloned());
    assert_eq!(
        retried,
        Some(Some("1".into())),
        "the replacement of index 1 carries its failure count"
    );
}

/// Upstream's claim rule for Jobs (conformance: "should adopt matching orphans and release
/// non-matching pods"): a pod orphaned from its Job is adopted back (controller reference and
/// tracking finalizer restored) and one relabelled out of the selector is released.
#[tokio::test]
async fn job_adopts_matching_orphans_and_releases_non_matching_pods() {
    let cluster = e2e::cluster_or_skip!();
    use_binary_built_for_this_test();
    let mut kcm = start_kcm(&cluster, "job");
    let client = cluster.client();
    eventually(
        "default ServiceAccount",
        Duration::from_secs(30),
        &mut kcm,
        || async {
            Ok(Api::<ServiceAccount>::namespaced(client.clone(), NS)
                .get_opt("default")
                .await?
                .map(|_| ()))
        },
    )
    .await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), NS);
    let created = jobs
        .create(&PostParams::default(), &job("adopt-release", json!({})))
        .await
        .unwrap();
    let job_uid = created.metadata.uid.clone().unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let lp = ListParams::default().labels(&format!("{JOB_NAME}=adopt-release"));
    let first = eventually(
        "the Job's 2 pods",
        Duration::from_secs(30),
        &mut kcm,
        || async {
            let items = pods.list(&lp).await?.items;
            Ok((items.len() == 2).then(|| items[0].name_any()))
        },
    )
    .await;
    let controller_uid = |p: &Pod| {
        p.metadata
            .owner_references
            .iter()
            .flatten()
            .find(|r| r.controller == Some(true))
            .map(|r| r.uid.clone())
    };
    let tracked = |p: &Pod| p.finalizers().iter().any(|f| f == TRACKING);

    // Orphaned (its references and finalizers removed): adopted again.
    pods.patch(
        &first,
        &PatchParams::default(),
        &Patch::Merge(&json!({"metadata": {"ownerReferences": null, "finalizers": null}})),
    )
    .await
    .unwrap();
    let adopted = eventually(
        "the orphan adopted",
        Duration::from_secs(30),
        &mut kcm,
        || async {
            let p = pods.get(&first).await?;
            Ok((controller_uid(&p).as_deref() == Some(job_uid.as_str())).then_some(p))
        },
    )
    .await;
    assert!(
        tracked(&adopted),
        "adoption puts the tracking finalizer back"
    );

    // Relabelled out of the selector: released, and no longer tracked.
    pods.patch(
        &first,
        &PatchParams::default(),
        &Patch::Merge(&json!({"metadata": {"labels": {"batch.kubernetes.io/controller-uid": null, "controller-uid": null}}})),
    )
    .await
    .unwrap();
    let released = eventually(
        "the pod released",
        Duration::from_secs(30),
        &mut kcm,
        || async {
            let p = pods.get(&first).await?;
            Ok(controller_uid(&p).is_none().then_some(p))
        },
    )
    .await;
    assert!(
        !tracked(&released),
        "release removes the tracking finalizer"
    );
    kcm.terminate(Duration::from_secs(10)).unwrap();
}
