//! One sync of a Job as a pure function over observed state (upstream's syncJob,
//! manageJob and trackJobStatusAndRemoveFinalizers): what to delete and create, the status
//! to flush before finalizers are removed, which finalizers to remove, and the terminal
//! condition to enact once every finished pod is counted and none is terminating.
//!
//! Finished pods are counted through the job-tracking finalizer: a pod that still carries
//! it (and whose removal is not already expected) is new; it is first recorded in
//! `status.uncountedTerminatedPods`, then its finalizer is removed, then it moves into the
//! counters ([`clean_uncounted`]).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Duration;

use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::backoff::{self, Record};
use super::indexes;
use super::policy::{self, Action};
use crate::machinery::pods;

/// Finalizer that keeps a finished pod until the Job has counted it.
pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
pub use super::indexes::COMPLETION_INDEX;
/// Upstream's MaxUncountedPods: at most this many pods are recorded per status write.
pub const MAX_UNCOUNTED_PODS: usize = 500;
/// Upstream's MaxPodCreateDeletePerSync.
pub const MAX_POD_CREATE_DELETE_PER_SYNC: usize = 500;

/// Whether the pod still carries the job-tracking finalizer.
pub fn has_finalizer(p: &Pod) -> bool {
    p.metadata
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == TRACKING_FINALIZER)
}

/// The condition of `type_` if its status is True.
pub fn true_condition<'a>(j: &'a Job, type_: &str) -> Option<&'a JobCondition> {
    j.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
}

/// Complete or Failed.
pub fn is_finished(j: &Job) -> bool {
    true_condition(j, "Complete").is_some() || true_condition(j, "Failed").is_some()
}

/// A condition as upstream's newCondition writes it.
pub fn condition(type_: &str, reason: &str, message: &str, now: Timestamp) -> JobCondition {
    JobCondition {
        type_: type_.into(),
        status: "True".into(),
        reason: (!reason.is_empty()).then(|| reason.into()),
        message: (!message.is_empty()).then(|| message.into()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// Sets the condition `type_` to `status` (upstream's ensureJobConditionStatus): replaced
/// when anything differs, appended only when not False. Returns whether it changed.
pub fn ensure_condition(
    conds: &mut Vec<JobCondition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> bool {
    let mut new = condition(type_, reason, message, now);
    new.status = status.into();
    if let Some(c) = conds.iter_mut().find(|c| c.type_ == type_) {
        if c.status != status
            || c.reason.as_deref().unwrap_or("") != reason
            || c.message.as_deref().unwrap_or("") != message
        {
            *c = new;
            return true;
        }
        return false;
    }
    if status != "False" {
        conds.push(new);
        return true;
    }
    false
}

/// The Job spec with upstream's defaults.
#[derive(Debug, Clone)]
pub struct Spec<'a> {
    /// The Job.
    pub job: &'a Job,
    /// `parallelism` (1).
    pub parallelism: i32,
    /// `completions`.
    pub completions: Option<i32>,
    /// `backoffLimit` (6).
    pub backoff_limit: i32,
    /// `backoffLimitPerIndex`.
    pub backoff_limit_per_index: Option<i32>,
    /// `completionMode == Indexed`.
    pub indexed: bool,
    /// `suspend`.
    pub suspend: bool,
    /// `podReplacementPolicy == Failed` or a pod failure policy is set (upstream's
    /// onlyReplaceFailedPods).
    pub only_replace_failed: bool,
}

impl<'a> Spec<'a> {
    /// Reads `job.spec`.
    pub fn of(job: &'a Job) -> Spec<'a> {
        let s = job.spec.as_ref();
        let pfp = s.and_then(|s| s.pod_failure_policy.as_ref()).is_some();
        Spec {
            job,
            parallelism: s.and_then(|s| s.parallelism).unwrap_or(1),
            completions: s.and_then(|s| s.completions),
            backoff_limit: s.and_then(|s| s.backoff_limit).unwrap_or(6),
            backoff_limit_per_index: s
                .and_then(|s| s.backoff_limit_per_index)
                .filter(|_| s.and_then(|s| s.completion_mode.as_deref()) == Some("Indexed")),
            indexed: s.and_then(|s| s.completion_mode.as_deref()) == Some("Indexed"),
            suspend: s.and_then(|s| s.suspend).unwrap_or(false),
            only_replace_failed: pfp
                || s.and_then(|s| s.pod_replacement_policy.as_deref()) == Some("Failed"),
        }
    }

    fn pod_failure_policy(&self) -> Option<&'a k8s_openapi::api::batch::v1::PodFailurePolicy> {
        self.job.spec.as_ref()?.pod_failure_policy.as_ref()
    }

    fn completions_or_zero(&self) -> i32 {
        self.completions.unwrap_or(0)
    }

    /// Upstream's isPodFailed: Failed, or (unless only failed pods are replaced) deleted
    /// before it succeeded.
    pub fn is_pod_failed(&self, p: &Pod) -> bool {
        match pods::phase(p) {
            "Failed" => true,
            "Succeeded" => false,
            _ => !self.only_replace_failed && p.metadata.deletion_timestamp.is_some(),
        }
    }

    /// Whether the pod's failure exhausts its index (backoffLimitPerIndex).
    fn is_index_failed(&self, p: &Pod) -> bool {
        let Some(limit) = self.backoff_limit_per_index else {
            return false;
        };
        if !self.is_pod_failed(p) {
            return false;
        }
        let m = policy::match_pod_failure_policy(self.pod_failure_policy(), p);
        if m.action == Some(Action::FailIndex) {
            return true;
        }
        m.count_failed && indexes::failure_count(p) >= limit
    }
}

/// What the observer saw.
pub struct Observed<'a> {
    /// The Job (the freshest copy known).
    pub job: &'a Job,
    /// The pods it owns, terminated ones included.
    pub pods: Vec<&'a Pod>,
    /// Pods whose finalizer removal was issued and not yet observed.
    pub expected_rm_finalizers: &'a HashSet<String>,
    /// Whether the creations and deletions issued earlier were all observed.
    pub expectations_satisfied: bool,
    /// The Job's backoff record before this sync.
    pub backoff: Record,
    /// Now.
    pub now: Timestamp,
}

/// A pod to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPod {
    /// Its completion index (Indexed Jobs).
    pub index: Option<i32>,
    /// `(failure count, ignored failure count)` annotations (backoffLimitPerIndex).
    pub failure_counts: Option<(i32, i32)>,
}

/// How pods in [`Decision::delete`] are deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeleteMode {
    /// Keep the tracking finalizer (the Job is finishing: they are counted afterwards).
    #[default]
    KeepFinalizer,
    /// Remove the finalizer first (excess or suspended pods are not counted).
    RemoveFinalizer,
}

/// An event to record on the Job: `(warning, reason, message)`.
pub type JobEvent = (bool, &'static str, String);

/// The outcome of one sync.
#[derive(Debug)]
pub struct Decision<'a> {
    /// Active pods to delete.
    pub delete: Vec<&'a Pod>,
    /// How to delete them.
    pub delete_mode: DeleteMode,
    /// Pods to create.
    pub create: Vec<NewPod>,
    /// The status to flush before finalizers are removed.
    pub status: JobStatus,
    /// Whether `status` differs from the Job's and must be written first.
    pub needs_flush: bool,
    /// Pods whose finalizer to remove once `status` is written.
    pub remove_finalizers: Vec<&'a Pod>,
    /// UIDs of the pods that carry the finalizer (and whose removal is not expected).
    pub uids_with_finalizer: HashSet<String>,
    /// The terminal condition (Complete or Failed) to enact once everything is counted.
    pub finished: Option<JobCondition>,
    /// The record to store.
    pub backoff: Record,
    /// Sync again after this long.
    pub requeue: Option<Duration>,
    /// Events to record now.
    pub events: Vec<JobEvent>,
    /// Whether this sync hit MAX_UNCOUNTED_PODS (do not finish yet).
    pub reached_max_uncounted: bool,
}

fn uncounted_sets(s: &JobStatus) -> (HashSet<String>, HashSet<String>) {
    let u = s.uncounted_terminated_pods.clone().unwrap_or_default();
    (
        u.succeeded.unwrap_or_default().into_iter().collect(),
        u.failed.unwrap_or_default().into_iter().collect(),
    )
}

fn min_duration(a: Option<Duration>, b: Duration) -> Option<Duration> {
    Some(a.map_or(b, |a| a.min(b)))
}

/// Upstream's pastBackoffLimitOnFailure: container restarts of running pods (restartPolicy
/// OnFailure) reach backoffLimit.
fn past_backoff_limit_on_failure(spec: &Spec, pods: &[&Pod]) -> bool {
    let on_failure = spec
        .job
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.restart_policy.as_deref())
        == Some("OnFailure");
    if !on_failure {
        return false;
    }
    let restarts: i32 = pods
        .iter()
        .filter(|p| matches!(pods::phase(p), "Running" | "Pending"))
        .filter_map(|p| p.status.as_ref())
        .flat_map(|s| {
            s.init_container_statuses
                .iter()
                .flatten()
                .chain(s.container_statuses.iter().flatten())
        })
        .map(|c| c.restart_count)
        .sum();
    if spec.backoff_limit == 0 {
        restarts > 0
    } else {
        restarts >= spec.backoff_limit
    }
}

/// Active pods to remove: for Indexed Jobs duplicated and out-of-range indexes first, then
/// upstream's deletion order until `at_least`.
fn pods_for_removal<'a>(
    spec: &Spec,
    active: &[&'a Pod],
    at_least: usize,
    now: Timestamp,
) -> Vec<&'a Pod> {
    let mut rm: Vec<&Pod> = Vec::new();
    let mut left: Vec<&Pod> = Vec::new();
    if spec.indexed {
        let mut by_index: HashMap<i32, Vec<&Pod>> = HashMap::new();
        for p in active {
            match indexes::valid_index(p, spec.completions_or_zero()) {
                None => rm.push(p),
                Some(i) => by_index.entry(i).or_default().push(p),
            }
        }
        let mut keys: Vec<i32> = by_index.keys().copied().collect();
        keys.sort();
        for k in keys {
            let mut group = by_index.remove(&k).unwrap_or_default();
            // Keep the most advanced pod of the index, remove the others.
            group.sort_by(|a, b| pods::victim_order(a, 0, b, 0, now));
            let keep = group.pop();
            rm.extend(group);
            left.extend(keep);
        }
    } else {
        left = active.to_vec();
    }
    if rm.len() < at_least {
        let more = pods::pick_victims(&left, &left, at_least - rm.len(), now);
        rm.extend(more);
    }
    rm
}

/// Decides one sync of an unfinished Job.
pub fn decide<'a>(o: &Observed<'a>) -> Decision<'a> {
    let job = o.job;
    let spec = Spec::of(job);
    let now = o.now;
    let mut status = job.status.clone().unwrap_or_default();
    let (unc_ok, unc_fail) = uncounted_sets(&status);
    let fresh = |p: &&Pod, uncounted: &HashSet<String>| {
        let uid = p.metadata.uid.as_deref().unwrap_or_default();
        has_finalizer(p)
            && !uncounted.contains(uid)
            && !o.expected_rm_finalizers.contains(uid)
            && (!spec.indexed || indexes::valid_index(p, spec.completions_or_zero()).is_some())
    };
    let new_succeeded: Vec<&Pod> = o
        .pods
        .iter()
        .copied()
        .filter(|p| fresh(p, &unc_ok) && pods::phase(p) == "Succeeded")
        .collect();
    let new_failed: Vec<&Pod> = o
        .pods
        .iter()
        .copied()
        .filter(|p| fresh(p, &unc_fail) && spec.is_pod_failed(p))
        .collect();
    let pfp = spec.pod_failure_policy();
    let counted_new_failed = new_failed
        .iter()
        .filter(|p| policy::match_pod_failure_policy(pfp, p).count_failed)
        .count() as i32;
    let mut succeeded =
        status.succeeded.unwrap_or(0) + new_succeeded.len() as i32 + unc_ok.len() as i32;
    let failed = status.failed.unwrap_or(0) + counted_new_failed + unc_fail.len() as i32;
    let active_pods: Vec<&Pod> = o
        .pods
        .iter()
        .copied()
        .filter(|p| pods::is_active(p))
        .collect();
    let mut active = active_pods.len() as i32;
    let mut ready = active_pods.iter().filter(|p| pods::is_ready(p)).count() as i32;
    let mut terminating = o
        .pods
        .iter()
        .filter(|p| {
            p.metadata.deletion_timestamp.is_some()
                && !matches!(pods::phase(p), "Succeeded" | "Failed")
        })
        .count() as i32;
    if status.start_time.is_none() && !spec.suspend {
        status.start_time = Some(Time(now));
    }
    let backoff_record = backoff::next_record(o.backoff, &new_succeeded, &new_failed);
    let mut requeue: Option<Duration> = None;
    let mut events: Vec<JobEvent> = Vec::new();

    // 1. Pre-existing interim conditions, then the failure criteria, then success.
    let mut finished: Option<JobCondition> = true_condition(job, "SuccessCriteriaMet").cloned();
    if finished.is_none() {
        if let Some(ft) = true_condition(job, "FailureTarget") {
            finished = Some(condition(
                "Failed",
                ft.reason.as_deref().unwrap_or(""),
                ft.message.as_deref().unwrap_or(""),
                now,
            ));
        } else if let Some(msg) = o
            .pods
            .iter()
            .filter(|p| spec.is_pod_failed(p))
            .find_map(|p| policy::match_pod_failure_policy(pfp, p).fail_job)
        {
            finished = Some(condition("FailureTarget", "PodFailurePolicy", &msg, now));
        }
    }
    let active_deadline = job
        .spec
        .as_ref()
        .and_then(|s| s.active_deadline_seconds)
        .filter(|_| !spec.suspend);
    if finished.is_none() {
        let start = status.start_time.as_ref().map(|t| t.0);
        let elapsed = start.map(|s| now.duration_since(s).as_secs_f64());
        if failed > spec.backoff_limit || past_backoff_limit_on_failure(&spec, &o.pods) {
            finished = Some(condition(
                "FailureTarget",
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit",
                now,
            ));
        } else if let (Some(ads), Some(elapsed)) = (active_deadline, elapsed) {
            if elapsed >= ads as f64 {
                finished = Some(condition(
                    "FailureTarget",
                    "DeadlineExceeded",
                    "Job was active longer than specified deadline",
                    now,
                ));
            } else {
                requeue = Some(Duration::from_secs_f64(ads as f64 - elapsed));
            }
        }
    }
    let completions = spec.completions_or_zero();
    let mut prev_succeeded_idx = BTreeSet::new();
    let mut succeeded_idx = BTreeSet::new();
    let mut failed_idx: Option<BTreeSet<i32>> = None;
    let mut delayed: HashMap<i32, &Pod> = HashMap::new();
    if spec.indexed {
        prev_succeeded_idx = indexes::parse(
            status.completed_indexes.as_deref().unwrap_or(""),
            completions,
        );
        succeeded_idx = prev_succeeded_idx.clone();
        succeeded_idx.extend(
            o.pods
                .iter()
                .filter(|p| pods::phase(p) == "Succeeded" && has_finalizer(p))
                .filter_map(|p| indexes::valid_index(p, completions)),
        );
        succeeded = succeeded_idx.len() as i32;
        if spec.backoff_limit_per_index.is_some() {
            let mut f = indexes::parse(status.failed_indexes.as_deref().unwrap_or(""), completions);
            f.extend(
                o.pods
                    .iter()
                    .filter(|p| has_finalizer(p) && spec.is_index_failed(p))
                    .filter_map(|p| indexes::valid_index(p, completions)),
            );
            if finished.is_none() {
                let max_failed = job.spec.as_ref().and_then(|s| s.max_failed_indexes);
                if max_failed.is_some_and(|m| f.len() as i32 > m) {
                    finished = Some(condition(
                        "FailureTarget",
                        "MaxFailedIndexesExceeded",
                        "Job has exceeded the specified maximal number of failed indexes",
                        now,
                    ));
                } else if !f.is_empty() && (f.len() + succeeded_idx.len()) as i32 >= completions {
                    finished = Some(condition(
                        "FailureTarget",
                        "FailedIndexes",
                        "Job has failed indexes",
                        now,
                    ));
                }
            }
            // Failed pods of indexes still to retry keep their finalizer until the
            // replacement (carrying the failure count) exists.
            let active_idx: HashSet<i32> = active_pods
                .iter()
                .filter_map(|p| indexes::index_of(p))
                .collect();
            for p in o
                .pods
                .iter()
                .copied()
                .filter(|p| fresh(p, &HashSet::new()) && spec.is_pod_failed(p))
            {
                let Some(ix) = indexes::valid_index(p, completions) else {
                    continue;
                };
                if succeeded_idx.contains(&ix) || f.contains(&ix) || active_idx.contains(&ix) {
                    continue;
                }
                match delayed.get(&ix) {
                    Some(prev)
                        if !(indexes::absolute_failure_count(prev)
                            <= indexes::absolute_failure_count(p)
                            && backoff::finished_time(p) >= backoff::finished_time(prev)) => {}
                    _ => {
                        delayed.insert(ix, p);
                    }
                }
            }
            failed_idx = Some(f);
        }
        if finished.is_none() {
            let sp = job.spec.as_ref().and_then(|s| s.success_policy.as_ref());
            if let Some(msg) = policy::match_success_policy(sp, completions, &succeeded_idx) {
                finished = Some(condition("SuccessCriteriaMet", "SuccessPolicy", &msg, now));
            }
        }
    }

    // 2. Finishing: remove the active pods. Otherwise create or delete pods.
    let mut delete: Vec<&Pod> = Vec::new();
    let mut delete_mode = DeleteMode::KeepFinalizer;
    let mut create: Vec<NewPod> = Vec::new();
    if finished.is_some() {
        delete = active_pods.clone();
        if !o.expectations_satisfied {
            finished = None;
        }
        active = 0;
        terminating += delete.len() as i32;
        ready = 0;
    } else {
        let mut manage_called = false;
        if o.expectations_satisfied && job.metadata.deletion_timestamp.is_none() {
            manage_called = true;
            if spec.suspend {
                delete = active_pods.clone();
                delete_mode = DeleteMode::RemoveFinalizer;
                active = 0;
                terminating += delete.len() as i32;
                ready = 0;
            } else {
                let want = match spec.completions {
                    None if succeeded > 0 => active,
                    None => spec.parallelism,
                    Some(c) => (c - succeeded).clamp(0, spec.parallelism.max(0)),
                };
                let rm = (active - want).max(0) as usize;
                let mut victims = pods_for_removal(&spec, &active_pods, rm, now);
                victims.truncate(MAX_POD_CREATE_DELETE_PER_SYNC);
                if !victims.is_empty() {
                    active -= victims.len() as i32;
                    terminating += victims.len() as i32;
                    ready -= victims.iter().filter(|p| pods::is_ready(p)).count() as i32;
                    delete = victims;
                    delete_mode = DeleteMode::RemoveFinalizer;
                } else {
                    let waiting = if spec.only_replace_failed {
                        terminating
                    } else {
                        0
                    };
                    let diff = (want - waiting - active).max(0) as usize;
                    if diff > 0 {
                        let global_wait = if spec.backoff_limit_per_index.is_none() {
                            backoff::remaining(
                                backoff_record.failures_after_last_success,
                                backoff_record.last_failure,
                                now,
                            )
                        } else {
                            Duration::ZERO
                        };
                        if !global_wait.is_zero() {
                            requeue = min_duration(requeue, global_wait);
                        } else {
                            let diff = diff.min(MAX_POD_CREATE_DELETE_PER_SYNC);
                            if spec.indexed {
                                let mut taken = succeeded_idx.clone();
                                taken.extend(
                                    active_pods.iter().filter_map(|p| indexes::index_of(p)),
                                );
                                if spec.only_replace_failed {
                                    taken.extend(
                                        o.pods
                                            .iter()
                                            .filter(|p| {
                                                p.metadata.deletion_timestamp.is_some()
                                                    && !matches!(
                                                        pods::phase(p),
                                                        "Succeeded" | "Failed"
                                                    )
                                            })
                                            .filter_map(|p| indexes::index_of(p)),
                                    );
                                }
                                if let Some(f) = &failed_idx {
                                    taken.extend(f.iter().copied());
                                }
                                let mut todo = indexes::first_pending(&taken, diff, completions);
                                if spec.backoff_limit_per_index.is_some() {
                                    let mut min_wait: Option<Duration> = None;
                                    let (ready_now, waiting): (Vec<i32>, Vec<i32>) =
                                        todo.iter().partition(|ix| {
                                            backoff::remaining_for_index(
                                                delayed.get(ix).copied(),
                                                now,
                                            )
                                            .is_zero()
                                        });
                                    for ix in &waiting {
                                        let w = backoff::remaining_for_index(
                                            delayed.get(ix).copied(),
                                            now,
                                        );
                                        min_wait = min_duration(min_wait, w);
                                    }
                                    if ready_now.is_empty() {
                                        if let Some(w) = min_wait {
                                            requeue = min_duration(requeue, w);
                                        }
                                    }
                                    todo = ready_now;
                                }
                                create = todo
                                    .into_iter()
                                    .map(|ix| NewPod {
                                        index: Some(ix),
                                        failure_counts: spec.backoff_limit_per_index.map(|_| {
                                            new_failure_counts(&spec, delayed.get(&ix).copied())
                                        }),
                                    })
                                    .collect();
                            } else {
                                create = vec![
                                    NewPod {
                                        index: None,
                                        failure_counts: None
                                    };
                                    diff
                                ];
                            }
                            active += create.len() as i32;
                        }
                    }
                }
            }
        }
        let complete = match spec.completions {
            None => succeeded > 0 && active == 0,
            Some(c) => succeeded >= c && active == 0,
        };
        if complete {
            finished = Some(condition(
                "SuccessCriteriaMet",
                "CompletionsReached",
                "Reached expected number of succeeded pods",
                now,
            ));
        } else if manage_called {
            let conds = status.conditions.get_or_insert_with(Vec::new);
            if spec.suspend {
                if ensure_condition(
                    conds,
                    "Suspended",
                    "True",
                    "JobSuspended",
                    "Job suspended",
                    now,
                ) {
                    events.push((false, "Suspended", "Job suspended".into()));
                }
            } else if ensure_condition(
                conds,
                "Suspended",
                "False",
                "JobResumed",
                "Job resumed",
                now,
            ) {
                events.push((false, "Resumed", "Job resumed".into()));
                status.start_time = Some(Time(now));
            }
        }
    }
    status.active = Some(active);
    status.ready = Some(ready);
    status.terminating = Some(terminating);

    // 3. Record newly finished pods as uncounted; pick the finalizers to remove.
    let mut needs_flush = job.status.as_ref() != Some(&status);
    let mut pods_sorted = o.pods.clone();
    if spec.indexed {
        pods_sorted.sort_by_key(|p| indexes::index_of(p).unwrap_or(i32::MAX));
    }
    let uids_with_finalizer: HashSet<String> = o
        .pods
        .iter()
        .filter(|p| has_finalizer(p))
        .filter_map(|p| p.metadata.uid.clone())
        .filter(|u| !o.expected_rm_finalizers.contains(u))
        .collect();
    if clean_uncounted(&mut status, &uids_with_finalizer) {
        needs_flush = true;
    }
    let mut unc = status.uncounted_terminated_pods.clone().unwrap_or_default();
    let (mut unc_s, mut unc_f) = (
        unc.succeeded.take().unwrap_or_default(),
        unc.failed.take().unwrap_or_default(),
    );
    let mut new_succeeded_idx: Vec<i32> = Vec::new();
    let mut remove_finalizers: Vec<&Pod> = Vec::new();
    let mut reached_max_uncounted = false;
    let finishing_failed = finished
        .as_ref()
        .is_some_and(|c| c.type_ != "SuccessCriteriaMet");
    for p in pods_sorted {
        let uid = p.metadata.uid.clone().unwrap_or_default();
        if !has_finalizer(p) || o.expected_rm_finalizers.contains(&uid) {
            continue;
        }
        let considered_failed = spec.is_pod_failed(p);
        let can_remove = job.metadata.deletion_timestamp.is_some()
            || finished.is_some()
            || pods::phase(p) == "Succeeded"
            || (considered_failed
                && indexes::valid_index(p, completions)
                    .and_then(|ix| delayed.get(&ix))
                    .is_none_or(|d| d.metadata.uid != p.metadata.uid));
        if !can_remove {
            continue;
        }
        remove_finalizers.push(p);
        if pods::phase(p) == "Succeeded" && !unc_fail.contains(&uid) {
            if spec.indexed {
                if let Some(ix) = indexes::valid_index(p, completions) {
                    if !prev_succeeded_idx.contains(&ix) {
                        new_succeeded_idx.push(ix);
                        needs_flush = true;
                    }
                }
            } else if !unc_ok.contains(&uid) {
                needs_flush = true;
                unc_s.push(uid);
            }
        } else if (considered_failed || finishing_failed)
            && !unc_fail.contains(&uid)
            && (!spec.indexed || indexes::valid_index(p, completions).is_some())
            && policy::match_pod_failure_policy(pfp, p).count_failed
        {
            needs_flush = true;
            unc_f.push(uid);
        }
        if new_succeeded_idx.len() + unc_s.len() + unc_f.len() >= MAX_UNCOUNTED_PODS {
            reached_max_uncounted = true;
            break;
        }
    }
    unc.succeeded = Some(unc_s);
    unc.failed = Some(unc_f);
    status.uncounted_terminated_pods = Some(unc);
    if spec.indexed {
        let mut all = prev_succeeded_idx.clone();
        all.extend(new_succeeded_idx);
        let s = indexes::format(&all);
        if status.completed_indexes.as_deref().unwrap_or("") != s {
            needs_flush = true;
        }
        status.succeeded = Some(all.len() as i32);
        status.completed_indexes = Some(s);
        let f = failed_idx.as_ref().map(indexes::format);
        if status.failed_indexes != f {
            status.failed_indexes = f;
            needs_flush = true;
        }
    }
    // 4. Interim conditions go out with the first write; the terminal one waits.
    if let Some(c) = finished.take() {
        let conds = status.conditions.get_or_insert_with(Vec::new);
        finished = Some(match c.type_.as_str() {
            "FailureTarget" => {
                conds.push(c.clone());
                needs_flush = true;
                condition(
                    "Failed",
                    c.reason.as_deref().unwrap_or(""),
                    c.message.as_deref().unwrap_or(""),
                    now,
                )
            }
            "SuccessCriteriaMet" => {
                if !conds
                    .iter()
                    .any(|x| x.type_ == "SuccessCriteriaMet" && x.status == "True")
                {
                    conds.push(c.clone());
                    needs_flush = true;
                }
                condition(
                    "Complete",
                    c.reason.as_deref().unwrap_or(""),
                    c.message.as_deref().unwrap_or(""),
                    now,
                )
            }
            _ => c,
        });
    }
    Decision {
        delete,
        delete_mode,
        create,
        status,
        needs_flush,
        remove_finalizers,
        uids_with_finalizer,
        finished,
        backoff: backoff_record,
        requeue,
        events,
        reached_max_uncounted,
    }
}

/// The failure-count annotations of the pod replacing `replaced` in its index.
fn new_failure_counts(spec: &Spec, replaced: Option<&Pod>) -> (i32, i32) {
    let Some(p) = replaced else {
        return (0, 0);
    };
    let (mut counted, mut ignored) = (indexes::failure_count(p), indexes::ignored_failure_count(p));
    if policy::match_pod_failure_policy(spec.pod_failure_policy(), p).count_failed {
        counted += 1;
    } else {
        ignored += 1;
    }
    (counted, ignored)
}

/// Moves the uncounted pods whose finalizer is gone into the counters (upstream's
/// cleanUncountedPodsWithoutFinalizers). Returns whether anything moved.
pub fn clean_uncounted(status: &mut JobStatus, uids_with_finalizer: &HashSet<String>) -> bool {
    let unc = status
        .uncounted_terminated_pods
        .get_or_insert_with(UncountedTerminatedPods::default);
    let mut changed = false;
    let keep = |list: &mut Option<Vec<String>>| -> i32 {
        let v = list.take().unwrap_or_default();
        let before = v.len();
        let kept: Vec<String> = v
            .into_iter()
            .filter(|u| uids_with_finalizer.contains(u))
            .collect();
        let moved = (before - kept.len()) as i32;
        *list = Some(kept);
        moved
    };
    let (ok, fail) = (keep(&mut unc.succeeded), keep(&mut unc.failed));
    if ok > 0 {
        status.succeeded = Some(status.succeeded.unwrap_or(0) + ok);
        changed = true;
    }
    if fail > 0 {
        status.failed = Some(status.failed.unwrap_or(0) + fail);
        changed = true;
    }
    changed
}

/// Sets the terminal condition when every finished pod is counted and none is terminating
/// (upstream's enactJobFinished). Returns whether the Job is now finished.
pub fn enact_finished(status: &mut JobStatus, finished: &JobCondition, now: Timestamp) -> bool {
    let unc = status.uncounted_terminated_pods.clone().unwrap_or_default();
    if !unc.succeeded.unwrap_or_default().is_empty() || !unc.failed.unwrap_or_default().is_empty() {
        return false;
    }
    if status.terminating.unwrap_or(0) > 0 {
        return false;
    }
    let conds = status.conditions.get_or_insert_with(Vec::new);
    ensure_condition(
        conds,
        &finished.type_,
        "True",
        finished.reason.as_deref().unwrap_or(""),
        finished.message.as_deref().unwrap_or(""),
        now,
    );
    if finished.type_ == "Complete" {
        status.completion_time = Some(Time(now));
    }
    true
}
