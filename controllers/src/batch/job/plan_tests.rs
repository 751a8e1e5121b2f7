//! Unit tests of [`super::plan`]: one sync decided over hand-built Jobs and pods.

use std::collections::HashSet;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;

use super::backoff::Record;
use super::plan::*;

const NOW: i64 = 100_000;

fn now() -> Timestamp {
    Timestamp::from_second(NOW).unwrap()
}

fn ts(secs: i64) -> String {
    Timestamp::from_second(secs).unwrap().to_string()
}

fn job(spec: serde_json::Value, status: serde_json::Value) -> Job {
    let mut s = serde_json::json!({
        "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}}
    });
    s.as_object_mut()
        .unwrap()
        .extend(spec.as_object().unwrap().clone());
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "j", "namespace": "ns", "uid": "job-uid", "resourceVersion": "5"},
        "spec": s,
        "status": status,
    }))
    .unwrap()
}

/// A pod `name` in `phase` (with exit code `exit` when terminated), index `ix`, tracking
/// finalizer when `fin`.
fn pod(name: &str, phase: &str, ix: Option<i32>, fin: bool) -> Pod {
    pod_with(name, phase, ix, fin, 1, serde_json::json!({}))
}

fn pod_with(
    name: &str,
    phase: &str,
    ix: Option<i32>,
    fin: bool,
    exit: i32,
    annotations: serde_json::Value,
) -> Pod {
    let mut ann = annotations.as_object().unwrap().clone();
    if let Some(i) = ix {
        ann.insert(COMPLETION_INDEX.into(), i.to_string().into());
    }
    let terminated = matches!(phase, "Succeeded" | "Failed");
    let code = if phase == "Succeeded" { 0 } else { exit };
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}"),
            "creationTimestamp": ts(NOW - 100),
            "annotations": ann,
            "finalizers": if fin { vec![TRACKING_FINALIZER] } else { vec![] }},
        "spec": {"containers": [{"name": "c", "image": "i"}]},
        "status": {"phase": phase, "containerStatuses": if terminated { serde_json::json!([{"name": "c", "image": "i",
            "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": code, "finishedAt": ts(NOW - 5)}}}]) } else { serde_json::json!([]) }}
    }))
    .unwrap()
}

fn deleting(mut p: Pod) -> Pod {
    p.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now()));
    p
}

fn decide_with<'a>(
    j: &'a Job,
    pods: &'a [Pod],
    expected_rm: &'a HashSet<String>,
    satisfied: bool,
    backoff: Record,
) -> Decision<'a> {
    decide(&Observed {
        job: j,
        pods: pods.iter().collect(),
        expected_rm_finalizers: expected_rm,
        expectations_satisfied: satisfied,
        backoff,
        now: now(),
    })
}

fn run<'a>(j: &'a Job, pods: &'a [Pod], none: &'a HashSet<String>) -> Decision<'a> {
    decide_with(j, pods, none, true, Record::default())
}

fn names(ps: &[&Pod]) -> Vec<String> {
    ps.iter()
        .map(|p| p.metadata.name.clone().unwrap())
        .collect()
}

#[test]
fn creates_up_to_parallelism_only_when_expectations_are_met() {
    let none = HashSet::new();
    let j = job(
        serde_json::json!({"parallelism": 3, "completions": 5}),
        serde_json::json!({"succeeded": 4}),
    );
    let d = run(&j, &[], &none);
    assert_eq!(d.create.len(), 1);
    assert_eq!(d.status.active, Some(1));
    let d = decide_with(&j, &[], &none, false, Record::default());
    assert!(d.create.is_empty());
}

#[test]
fn a_finished_pod_is_recorded_uncounted_then_counted_once_its_finalizer_is_gone() {
    let none = HashSet::new();
    let j = job(
        serde_json::json!({"parallelism": 2, "completions": 3}),
        serde_json::json!({}),
    );
    let pods = [
        pod("a", "Succeeded", None, true),
        pod("b", "Running", None, true),
    ];
    let d = run(&j, &pods, &none);
    let unc = d.status.uncounted_terminated_pods.clone().unwrap();
    assert_eq!(unc.succeeded, Some(vec!["uid-a".to_string()]));
    assert_eq!(names(&d.remove_finalizers), ["a"]);
    assert!(d.needs_flush);
    // Succeeded counts as 1 already: only one more pod is needed next to b.
    assert_eq!(d.create.len(), 1);
    let mut status = d.status.clone();
    let mut with_fin = d.uids_with_finalizer.clone();
    with_fin.remove("uid-a");
    assert!(clean_uncounted(&mut status, &with_fin));
    assert_eq!(status.succeeded, Some(1));
    assert_eq!(
        status.uncounted_terminated_pods.unwrap().succeeded,
        Some(vec![])
    );
}

#[test]
fn a_pod_whose_finalizer_removal_is_pending_is_not_counted_again() {
    // The Job status already counted a; the pod cache still shows its finalizer.
    let j = job(
        serde_json::json!({"parallelism": 2, "completions": 3}),
        serde_json::json!({"succeeded": 1}),
    );
    let pods = [
        pod("a", "Succeeded", None, true),
        pod("b", "Running", None, true),
    ];
    let expected: HashSet<String> = ["uid-a".to_string()].into();
    let d = decide_with(&j, &pods, &expected, true, Record::default());
    assert!(d.remove_finalizers.is_empty());
    assert_eq!(d.status.succeeded, Some(1));
    assert_eq!(d.create.len(), 1, "2 still to go, b is running");
    assert!(d
        .status
        .uncounted_terminated_pods
        .unwrap()
        .succeeded
        .unwrap()
        .is_empty());
}

#[test]
fn completion_goes_through_success_criteria_met() {
    let none = HashSet::new();
    let j = job(
        serde_json::json!({"completions": 2}),
        serde_json::json!({"succeeded": 1}),
    );
    let pods = [pod("a", "Succeeded", None, true)];
    let d = run(&j, &pods, &none);
    let conds = d.status.conditions.clone().unwrap();
    assert_eq!(conds[0].type_, "SuccessCriteriaMet");
    assert_eq!(conds[0].reason.as_deref(), Some("CompletionsReached"));
    let fin = d.finished.clone().unwrap();
    assert_eq!(fin.type_, "Complete");
    let mut status = d.status.clone();
    // Not before the pod is counted.
    assert!(!enact_finished(&mut status, &fin, now()));
    clean_uncounted(&mut status, &HashSet::new());
    assert!(enact_finished(&mut status, &fin, now()));
    assert!(status.completion_time.is_some());
}

#[test]
fn pods_removed_after_success_criteria_are_not_failures() {
    let none = HashSet::new();
    let j = job(
        serde_json::json!({"completions": 1, "parallelism": 2, "backoffLimit": 0}),
        serde_json::json!({"succeeded": 1, "conditions": [{"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached"}]}),
    );
    let pods = [deleting(pod("extra", "Running", None, true))];
    let d = run(&j, &pods, &none);
    // Counted as a failure (it was deleted before succeeding), yet the Job completes:
    // the criteria were met in an earlier sync.
    assert_eq!(d.finished.unwrap().type_, "Complete");
    assert_eq!(names(&d.remove_finalizers), ["extra"]);
    assert_eq!(d.status.terminating, Some(1));
    assert!(!d
        .status
        .conditions
        .unwrap()
        .iter()
        .any(|c| c.type_ == "FailureTarget"));
}

#[test]
fn backoff_limit_exceeded_fails_through_failure_target() {
    let none = HashSet::new();
    let j = job(
        serde_json::json!({"completions": 3, "parallelism": 2, "backoffLimit": 1}),
        serde_json::json!({"failed": 1}),
    );
    let pods = [
        pod("f", "Failed", None, true),
        pod("r", "Running", None, true),
    ];
    let d = run(&j, &pods, &none);
    let conds = d.status.conditions.clone().unwrap();
    assert_eq!(
        (conds[0].type_.as_str(), conds[0].reason.as_deref()),
        ("FailureTarget", Some("BackoffLimitExceeded"))
    );
    assert_eq!(d.finished.clone().unwrap().type_, "Failed");
    assert_eq!(names(&d.delete), ["r"]);
    assert_eq!(d.delete_mode, DeleteMode::KeepFinalizer);
    // The running pod is counted as failed too, as the Job is failing.
    let mut unc = d.status.uncounted_terminated_pods.unwrap().failed.unwrap();
    unc.sort();
    assert_eq!(unc, ["uid-f", "uid-r"]);
}

#[test]
fn failure_backoff_delays_replacements() {
    let none = HashSet::new();
    let j = job(
        serde_json::json!({"completions": 2, "backoffLimit": 5}),
        serde_json::json!({}),
    );
    let pods = [pod("f", "Failed", None, true)];
    let d = run(&j, &pods, &none);
    assert!(d.create.is_empty());
    assert_eq!(d.backoff.failures_after_last_success, 1);
    assert_eq!(d.requeue, Some(Duration::from_secs(5)));
}

#[test]
fn pod_failure_policy_fail_job_and_ignore() {
    let none = HashSet::new();
    let pfp = serde_json::json!({"rules": [
        {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}},
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]});
    let j = job(
        serde_json::json!({"completions": 2, "backoffLimit": 6, "podFailurePolicy": pfp}),
        serde_json::json!({}),
    );
    let pods = [pod_with(
        "x",
        "Failed",
        None,
        true,
        42,
        serde_json::json!({}),
    )];
    let d = run(&j, &pods, &none);
    let c = &d.status.conditions.clone().unwrap()[0];
    assert_eq!(
        (c.type_.as_str(), c.reason.as_deref()),
        ("FailureTarget", Some("PodFailurePolicy"))
    );
    assert!(c.message.as_deref().unwrap().contains("exit code 42"));
    assert_eq!(
        d.finished.unwrap().reason.as_deref(),
        Some("PodFailurePolicy")
    );

    let mut disrupted = pod_with("y", "Failed", None, true, 137, serde_json::json!({}));
    disrupted.status.as_mut().unwrap().conditions = Some(vec![serde_json::from_value(
        serde_json::json!({"type": "DisruptionTarget", "status": "True"}),
    )
    .unwrap()]);
    let pods = [disrupted];
    let d = run(&j, &pods, &none);
    assert!(d.finished.is_none());
    assert_eq!(names(&d.remove_finalizers), ["y"]);
    assert!(d
        .status
        .uncounted_terminated_pods
        .unwrap()
        .failed
        .unwrap()
        .is_empty());
    // Ignored failures still back off the replacement, as upstream's backoff record.
    assert!(d.create.is_empty());
    assert_eq!(d.requeue, Some(Duration::from_secs(5)));
}

#[test]
fn replacement_policy_failed_waits_for_terminating_pods() {
    let none = HashSet::new();
    let j = job(
        serde_json::json!({"completions": 1, "podReplacementPolicy": "Failed"}),
        serde_json::json!({}),
    );
    let pods = [deleting(pod("t", "Running", None, true))];
    let d = run(&j, &pods, &none);
    assert!(d.create.is_empty());
    assert_eq!(d.status.terminating, Some(1));
    // TerminatingOrFailed (the default) replaces at once, counting the pod as failed.
    let j = job(serde_json::json!({"completions": 1}), serde_json::json!({}));
    let d = run(&j, &pods, &none);
    assert_eq!(
        d.status.uncounted_terminated_pods.unwrap().failed.unwrap(),
        ["uid-t"]
    );
}

#[test]
fn backoff_limit_per_index_retries_then_fails_the_index() {
    let none = HashSet::new();
    let j = job(
        serde_json::json!({"completions": 2, "parallelism": 2, "completionMode": "Indexed", "backoffLimitPerIndex": 1}),
        serde_json::json!({}),
    );
    // First failure of index 0: its finalizer stays until a replacement exists; the
    // replacement waits for the 10s per-index backoff (5s have passed).
    let pods = [
        pod("i0", "Failed", Some(0), true),
        pod("i1", "Running", Some(1), true),
    ];
    let d = run(&j, &pods, &none);
    assert!(d.remove_finalizers.is_empty());
    assert!(d.create.is_empty());
    assert_eq!(d.requeue, Some(Duration::from_secs(5)));
    assert_eq!(d.status.failed_indexes.as_deref(), Some(""));
    // After the backoff, the replacement carries failure count 1.
    let old = [
        pod_with("i0", "Failed", Some(0), true, 1, serde_json::json!({})),
        pod("i1", "Running", Some(1), true),
    ];
    let mut o = decide_with(&j, &old, &none, true, Record::default());
    o.create.clear();
    let later = decide(&Observed {
        job: &j,
        pods: old.iter().collect(),
        expected_rm_finalizers: &none,
        expectations_satisfied: true,
        backoff: Record::default(),
        now: Timestamp::from_second(NOW + 10).unwrap(),
    });
    assert_eq!(
        later.create,
        vec![NewPod {
            index: Some(0),
            failure_counts: Some((1, 0))
        }]
    );
    // The replacement fails as well: the index has failed; the other index still runs.
    let pods = [
        pod_with(
            "i0b",
            "Failed",
            Some(0),
            true,
            1,
            serde_json::json!({super::indexes::INDEX_FAILURE_COUNT: "1"}),
        ),
        pod("i1", "Running", Some(1), true),
    ];
    let d = run(&j, &pods, &none);
    assert_eq!(d.status.failed_indexes.as_deref(), Some("0"));
    assert!(d.finished.is_none());
    assert_eq!(names(&d.remove_finalizers), ["i0b"]);
    assert_eq!(
        d.status.uncounted_terminated_pods.unwrap().failed.unwrap(),
        ["uid-i0b"]
    );
    // Once index 1 succeeds every index is finished, one of them failed: the Job fails.
    let pods = [
        pod_with("i0b", "Failed", Some(0), false, 1, serde_json::json!({})),
        pod("i1", "Succeeded", Some(1), true),
    ];
    let j2 = job(
        serde_json::json!({"completions": 2, "parallelism": 2, "completionMode": "Indexed", "backoffLimitPerIndex": 1}),
        serde_json::json!({"failed": 2, "failedIndexes": "0"}),
    );
    let d = run(&j2, &pods, &none);
    let fin = d.finished.unwrap();
    assert_eq!(
        (fin.type_.as_str(), fin.reason.as_deref()),
        ("Failed", Some("FailedIndexes"))
    );
}

#[test]
fn max_failed_indexes_fails_early() {
    let none = HashSet::new();
    let j = job(
        serde_json::json!({"completions": 4, "parallelism": 4, "completionMode": "Indexed",
            "backoffLimitPerIndex": 0, "maxFailedIndexes": 0}),
        serde_json::json!({}),
    );
    let pods = [
        pod("i0", "Failed", Some(0), true),
        pod("i1", "Running", Some(1), true),
    ];
    let d = run(&j, &pods, &none);
    assert_eq!(
        d.finished.unwrap().reason.as_deref(),
        Some("MaxFailedIndexesExceeded")
    );
    assert_eq!(names(&d.delete), ["i1"]);
}

#[test]
fn success_policy_meets_criteria_and_removes_the_rest() {
    let none = HashSet::new();
    let j = job(
        serde_json::json!({"completions": 3, "parallelism": 3, "completionMode": "Indexed",
            "successPolicy": {"rules": [{"succeededIndexes": "0"}]}}),
        serde_json::json!({}),
    );
    let pods = [
        pod("i0", "Succeeded", Some(0), true),
        pod("i1", "Running", Some(1), true),
    ];
    let d = run(&j, &pods, &none);
    let c = &d.status.conditions.clone().unwrap()[0];
    assert_eq!(
        (c.type_.as_str(), c.reason.as_deref(), c.message.as_deref()),
        (
            "SuccessCriteriaMet",
            Some("SuccessPolicy"),
            Some("Matched rules at index 0")
        )
    );
    assert_eq!(names(&d.delete), ["i1"]);
    assert_eq!(d.status.completed_indexes.as_deref(), Some("0"));
    assert_eq!(d.finished.unwrap().type_, "Complete");
}

#[test]
fn indexed_jobs_fill_missing_indexes_and_drop_duplicates() {
    let none = HashSet::new();
    let j = job(
        serde_json::json!({"completions": 4, "parallelism": 2, "completionMode": "Indexed"}),
        serde_json::json!({"completedIndexes": "0", "succeeded": 1}),
    );
    let d = run(&j, &[], &none);
    assert_eq!(
        d.create.iter().map(|n| n.index).collect::<Vec<_>>(),
        [Some(1), Some(2)]
    );
    let pods = [
        pod("a", "Running", Some(1), true),
        pod("b", "Pending", Some(1), true),
    ];
    let d = run(&j, &pods, &none);
    assert_eq!(names(&d.delete), ["b"]);
    assert_eq!(d.delete_mode, DeleteMode::RemoveFinalizer);
    assert!(
        d.create.is_empty(),
        "deletions and creations never share a sync"
    );
}

#[test]
fn suspended_jobs_delete_active_pods_and_say_so() {
    let none = HashSet::new();
    let j = job(
        serde_json::json!({"completions": 2, "suspend": true}),
        serde_json::json!({}),
    );
    let pods = [pod("a", "Running", None, true)];
    let d = run(&j, &pods, &none);
    assert_eq!(names(&d.delete), ["a"]);
    assert_eq!(
        d.events,
        vec![(false, "Suspended", "Job suspended".to_string())]
    );
    assert!(d.status.start_time.is_none());
}
