//! The Job's reconcile decision as a pure function: how many pods (and which indexes) to
//! create, which to delete, the counts, and whether the Job has met its success or failure
//! criteria. Pod-failure and success policies are not interpreted yet.

use std::collections::BTreeSet;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;

use crate::workload::pods;

/// Finalizer that keeps a finished pod until the Job has counted it.
pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
/// Label and annotation carrying an Indexed Job pod's completion index.
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";
/// Upstream's DefaultJobPodFailureBackOff and MaxJobPodFailureBackOff.
pub const BACKOFF_BASE_SECS: i64 = 10;
/// The cap of the pod re-creation backoff.
pub const BACKOFF_MAX_SECS: i64 = 360;

/// The terminal condition the Job has reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Still running.
    Running,
    /// Success criteria met (reason `CompletionsReached`).
    Succeeded,
    /// Failure criteria met: `(reason, message)`.
    Failed(&'static str, &'static str),
}

/// What one sync should do.
#[derive(Debug, Default)]
pub struct Plan<'a> {
    /// Pods to create: their completion index (None for NonIndexed).
    pub create: Vec<Option<i32>>,
    /// Active pods to delete.
    pub delete: Vec<&'a Pod>,
    /// Seconds to wait before creating replacements (failure backoff).
    pub backoff: Option<i64>,
}

/// The Job's spec numbers with upstream's defaults.
pub struct Spec {
    /// `parallelism` (1).
    pub parallelism: i32,
    /// `completions` (None: any success completes a NonIndexed Job).
    pub completions: Option<i32>,
    /// `backoffLimit` (6).
    pub backoff_limit: i32,
    /// `completionMode == Indexed`.
    pub indexed: bool,
    /// `suspend`.
    pub suspend: bool,
    /// `activeDeadlineSeconds`.
    pub active_deadline: Option<i64>,
}

impl Spec {
    /// Reads `job.spec`.
    pub fn of(job: &Job) -> Spec {
        let s = job.spec.clone().unwrap_or_default();
        Spec {
            parallelism: s.parallelism.unwrap_or(1),
            completions: s.completions,
            backoff_limit: s.backoff_limit.unwrap_or(6),
            indexed: s.completion_mode.as_deref() == Some("Indexed"),
            suspend: s.suspend.unwrap_or(false),
            active_deadline: s.active_deadline_seconds,
        }
    }
}

/// A pod's completion index, if valid.
pub fn index_of(pod: &Pod) -> Option<i32> {
    pod.metadata
        .annotations
        .as_ref()?
        .get(COMPLETION_INDEX)?
        .parse()
        .ok()
}

/// Parses `status.completedIndexes` ("1,3-5").
pub fn parse_indexes(s: &str) -> BTreeSet<i32> {
    let mut out = BTreeSet::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<i32>(), b.parse::<i32>()) {
                    out.extend(a..=b);
                }
            }
            None => {
                if let Ok(i) = part.parse() {
                    out.insert(i);
                }
            }
        }
    }
    out
}

/// Formats indexes as upstream's `completedIndexes` (ranges of 3+ collapsed, `1,3-5`).
pub fn format_indexes(set: &BTreeSet<i32>) -> String {
    let v: Vec<i32> = set.iter().copied().collect();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < v.len() {
        let mut j = i;
        while j + 1 < v.len() && v[j + 1] == v[j] + 1 {
            j += 1;
        }
        parts.push(match j - i {
            0 => v[i].to_string(),
            1 => format!("{},{}", v[i], v[j]),
            _ => format!("{}-{}", v[i], v[j]),
        });
        i = j + 1;
    }
    parts.join(",")
}

/// Whether the Job has met its success or failure criteria given the totals.
pub fn verdict(
    spec: &Spec,
    succeeded: i32,
    failed: i32,
    completed: &BTreeSet<i32>,
    active: usize,
    start: Option<Timestamp>,
    now: Timestamp,
) -> Verdict {
    if failed > spec.backoff_limit {
        return Verdict::Failed(
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit",
        );
    }
    if let (Some(ads), Some(start)) = (spec.active_deadline, start) {
        if !spec.suspend && now.as_second() - start.as_second() >= ads {
            return Verdict::Failed(
                "DeadlineExceeded",
                "Job was active longer than specified deadline",
            );
        }
    }
    let done = match (spec.indexed, spec.completions) {
        (true, Some(c)) => completed.iter().filter(|i| **i < c).count() as i32 >= c,
        (_, Some(c)) => succeeded >= c,
        (_, None) => succeeded > 0 && active == 0,
    };
    if done {
        Verdict::Succeeded
    } else {
        Verdict::Running
    }
}

/// Pods to create or delete for a running Job. `active` are the owned active pods;
/// `last_failure` is when the newest failed pod finished.
pub fn plan<'a>(
    spec: &Spec,
    active: &[&'a Pod],
    succeeded: i32,
    failed: i32,
    completed: &BTreeSet<i32>,
    last_failure: Option<Timestamp>,
    now: Timestamp,
) -> Plan<'a> {
    let mut out = Plan::default();
    if spec.suspend {
        out.delete = active.to_vec();
        return out;
    }
    let want = match spec.completions {
        Some(c) if spec.indexed => spec.parallelism.min(c - completed.len() as i32),
        Some(c) => spec.parallelism.min(c - succeeded),
        None if succeeded > 0 => active.len() as i32,
        None => spec.parallelism,
    }
    .max(0) as usize;
    if active.len() > want {
        out.delete = pods::pick_victims(active, active, active.len() - want, now);
        return out;
    }
    let missing = want - active.len();
    if missing == 0 {
        return out;
    }
    if failed > 0 {
        if let Some(t) = last_failure {
            let delay = (BACKOFF_BASE_SECS << (failed - 1).clamp(0, 10)).min(BACKOFF_MAX_SECS);
            let left = t.as_second() + delay - now.as_second();
            if left > 0 {
                out.backoff = Some(left);
                return out;
            }
        }
    }
    if spec.indexed {
        let running: BTreeSet<i32> = active.iter().filter_map(|p| index_of(p)).collect();
        let total = spec.completions.unwrap_or(0);
        out.create = (0..total)
            .filter(|i| !completed.contains(i) && !running.contains(i))
            .take(missing)
            .map(Some)
            .collect();
    } else {
        out.create = vec![None; missing];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::pods::testing::pod;

    fn spec(parallelism: i32, completions: Option<i32>, indexed: bool) -> Spec {
        Spec {
            parallelism,
            completions,
            backoff_limit: 1,
            indexed,
            suspend: false,
            active_deadline: None,
        }
    }

    fn now() -> Timestamp {
        Timestamp::from_second(10_000).unwrap()
    }

    #[test]
    fn indexes_round_trip() {
        let s = parse_indexes("0,2-4,7");
        assert_eq!(s.iter().copied().collect::<Vec<_>>(), vec![0, 2, 3, 4, 7]);
        assert_eq!(format_indexes(&s), "0,2-4,7");
        assert_eq!(format_indexes(&[1, 2].into()), "1,2");
    }

    #[test]
    fn creates_up_to_parallelism_and_remaining_completions() {
        let none = BTreeSet::new();
        assert_eq!(
            plan(&spec(3, Some(5), false), &[], 0, 0, &none, None, now())
                .create
                .len(),
            3
        );
        assert_eq!(
            plan(&spec(3, Some(5), false), &[], 4, 0, &none, None, now())
                .create
                .len(),
            1
        );
        let a = pod("a", "Running", None);
        assert_eq!(
            plan(&spec(2, None, false), &[&a], 1, 0, &none, None, now())
                .create
                .len(),
            0
        );
        let idx = plan(&spec(2, Some(4), true), &[], 0, 0, &[0].into(), None, now());
        assert_eq!(idx.create, vec![Some(1), Some(2)]);
    }

    #[test]
    fn failures_back_off_then_fail_the_job() {
        let none = BTreeSet::new();
        let just_failed = Some(Timestamp::from_second(9_995).unwrap());
        let p = plan(
            &spec(1, Some(1), false),
            &[],
            0,
            1,
            &none,
            just_failed,
            now(),
        );
        assert_eq!((p.create.len(), p.backoff), (0, Some(5)));
        let v = verdict(&spec(1, Some(1), false), 0, 2, &none, 0, None, now());
        assert_eq!(
            v,
            Verdict::Failed(
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit"
            )
        );
    }

    #[test]
    fn success_and_deadline() {
        let s = spec(1, Some(2), false);
        assert_eq!(
            verdict(&s, 2, 0, &BTreeSet::new(), 0, None, now()),
            Verdict::Succeeded
        );
        assert_eq!(
            verdict(
                &spec(1, Some(2), true),
                0,
                0,
                &[0, 1].into(),
                0,
                None,
                now()
            ),
            Verdict::Succeeded
        );
        let mut d = spec(1, Some(2), false);
        d.active_deadline = Some(5);
        let start = Some(Timestamp::from_second(9_990).unwrap());
        assert!(matches!(
            verdict(&d, 0, 0, &BTreeSet::new(), 1, start, now()),
            Verdict::Failed("DeadlineExceeded", _)
        ));
        let mut susp = spec(2, Some(2), false);
        susp.suspend = true;
        let a = pod("a", "Running", None);
        assert_eq!(
            plan(&susp, &[&a], 0, 0, &BTreeSet::new(), None, now())
                .delete
                .len(),
            1
        );
    }
}
