//! The CronJob controller's decisions as pure functions over the CronJob, its Jobs and
//! "now" (upstream's cronjob_controllerv2.go and utils.go): which scheduled time is due,
//! whether starting it is too late, forbidden or already done, the Job to create, the
//! finished Jobs beyond the history limits, and the status the children imply.

use std::cmp::Ordering;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::tz::TimeZone;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::schedule::Schedule;
use crate::machinery::owner;

/// Upstream's batchv1.CronJobScheduledTimestampAnnotation.
pub const SCHEDULED_TIMESTAMP_ANNOTATION: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// Upstream's nextScheduleDelta: wake up this long after a scheduled time.
pub const NEXT_SCHEDULE_DELTA: Duration = Duration::from_millis(100);
/// More missed start times than this raise the TooManyMissedTimes warning.
pub const MANY_MISSED: i64 = 100;

/// An event to record on the CronJob: `(warning, reason, message)`.
pub type CronEvent = (bool, &'static str, String);

/// How many scheduled times passed unstarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missed {
    /// None.
    None,
    /// Up to [`MANY_MISSED`].
    Few,
    /// More than [`MANY_MISSED`].
    Many,
}

/// The terminal condition type of a Job, if it finished.
pub fn finished_type(j: &Job) -> Option<&str> {
    j.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .map(|c| c.type_.as_str())
}

/// The time zone of `spec.timeZone` (the process's local zone when unset, as upstream).
pub fn time_zone(cj: &CronJob) -> Result<TimeZone, String> {
    match cj.spec.as_ref().and_then(|s| s.time_zone.as_deref()) {
        None => Ok(TimeZone::system()),
        Some(name) => TimeZone::get(name).map_err(|e| e.to_string()),
    }
}

fn schedule_str(cj: &CronJob) -> &str {
    cj.spec.as_ref().map(|s| s.schedule.as_str()).unwrap_or("")
}

/// The time zone and the parsed schedule, or the warning event to record.
pub fn parse(cj: &CronJob) -> Result<Schedule, CronEvent> {
    let tz = time_zone(cj).map_err(|e| {
        let name = cj
            .spec
            .as_ref()
            .and_then(|s| s.time_zone.clone())
            .unwrap_or_default();
        (
            true,
            "UnknownTimeZone",
            format!("invalid timeZone: {name:?}: {e}"),
        )
    })?;
    Schedule::parse(schedule_str(cj), tz).map_err(|e| {
        (
            true,
            "UnparseableSchedule",
            format!("unparseable schedule: {:?} : {e}", schedule_str(cj)),
        )
    })
}

/// The warning upstream records when the schedule itself names a zone.
pub fn unsupported_schedule_event(cj: &CronJob) -> Option<CronEvent> {
    let s = schedule_str(cj);
    s.contains("TZ").then(|| {
        (
            true,
            "UnsupportedSchedule",
            format!(
                "CRON_TZ or TZ used in schedule {s:?} is not officially supported, see \
                 https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/ for more details"
            ),
        )
    })
}

fn creation(cj: &CronJob) -> Timestamp {
    cj.metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0)
        .unwrap_or(Timestamp::UNIX_EPOCH)
}

/// Upstream's mostRecentScheduleTime: the earliest time to consider (the last schedule
/// time, the creation time, or with `include_deadline` now minus startingDeadlineSeconds),
/// the most recent scheduled time not after `now`, and how many were missed.
pub fn most_recent_schedule_time(
    cj: &CronJob,
    now: Timestamp,
    sched: &Schedule,
    include_deadline: bool,
) -> Result<(Timestamp, Option<Timestamp>, Missed), String> {
    let status = cj.status.as_ref();
    let mut earliest = status
        .and_then(|s| s.last_schedule_time.as_ref())
        .map(|t| t.0)
        .unwrap_or_else(|| creation(cj));
    if include_deadline {
        if let Some(sds) = cj.spec.as_ref().and_then(|s| s.starting_deadline_seconds) {
            let deadline = now
                .checked_sub(SignedDuration::from_secs(sds))
                .unwrap_or(Timestamp::MIN);
            if deadline > earliest {
                earliest = deadline;
            }
        }
    }
    let Some(t1) = sched.next_after(earliest) else {
        return Ok((earliest, None, Missed::None));
    };
    if now < t1 {
        return Ok((earliest, None, Missed::None));
    }
    let Some(t2) = sched.next_after(t1) else {
        return Ok((earliest, Some(t1), Missed::None));
    };
    if now < t2 {
        return Ok((earliest, Some(t1), Missed::None));
    }
    // Many may have passed: jump close to now rather than walking every one.
    let between = t2.duration_since(t1).as_secs_f64().round() as i64;
    if between < 1 {
        return Err("time difference between two schedules is less than 1 second".into());
    }
    let elapsed = now.duration_since(t1).as_secs();
    let missed = elapsed / between + 1;
    let from = t1
        .checked_add(SignedDuration::from_secs((missed - 2) * between))
        .unwrap_or(t1);
    let mut most_recent = None;
    let mut t = sched.next_after(from);
    while let Some(at) = t.filter(|at| *at <= now) {
        most_recent = Some(at);
        t = sched.next_after(at);
    }
    let kind = if missed > MANY_MISSED {
        Missed::Many
    } else {
        Missed::Few
    };
    Ok((earliest, most_recent, kind))
}

/// Upstream's nextScheduleTimeDuration: how long until just after the next scheduled time.
pub fn next_schedule_delay(cj: &CronJob, now: Timestamp, sched: &Schedule) -> Duration {
    let from = match most_recent_schedule_time(cj, now, sched, false) {
        Err(_) => now,
        Ok((_, Some(t), _)) => t,
        Ok((earliest, None, Missed::None)) => earliest,
        Ok((_, None, _)) => now,
    };
    match sched.next_after(from) {
        // Wake up once a day to look again when nothing is ever due.
        None => Duration::from_secs(24 * 3600),
        Some(next) => {
            let d = next.duration_since(now);
            let d = Duration::try_from(d).unwrap_or(Duration::ZERO);
            d + NEXT_SCHEDULE_DELTA
        }
    }
}

/// Upstream's getJobName: `<cronjob>-<scheduled time in minutes since the epoch>`.
pub fn job_name(cj: &CronJob, scheduled: Timestamp) -> String {
    format!(
        "{}-{}",
        cj.metadata.name.as_deref().unwrap_or_default(),
        scheduled.as_second().div_euclid(60)
    )
}

/// Go's RFC 3339 rendering (`Z` for a zero offset) of `t` in `tz`.
pub fn rfc3339_in(t: Timestamp, tz: &TimeZone) -> String {
    let z = t.to_zoned(tz.clone());
    if z.offset().seconds() == 0 {
        z.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        z.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
    }
}

/// Upstream's getJobFromTemplate2: the Job for `scheduled`, with the template's labels and
/// annotations, the scheduled-timestamp annotation and a controller reference.
pub fn job_from_template(cj: &CronJob, scheduled: Timestamp, tz: &TimeZone) -> Job {
    let template = cj
        .spec
        .as_ref()
        .map(|s| s.job_template.clone())
        .unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    let mut annotations = meta.annotations.unwrap_or_default();
    annotations.insert(
        SCHEDULED_TIMESTAMP_ANNOTATION.to_string(),
        rfc3339_in(scheduled, tz),
    );
    Job {
        metadata: ObjectMeta {
            name: Some(job_name(cj, scheduled)),
            namespace: cj.metadata.namespace.clone(),
            labels: meta.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![owner::controller_ref(
                "batch/v1",
                "CronJob",
                &cj.metadata,
            )]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    }
}

/// The object reference upstream keeps in `status.active`.
pub fn job_ref(j: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        name: j.metadata.name.clone(),
        namespace: j.metadata.namespace.clone(),
        uid: j.metadata.uid.clone(),
        resource_version: j.metadata.resource_version.clone(),
        ..Default::default()
    }
}

/// Whether `status.active` holds `uid`.
pub fn in_active(status: &CronJobStatus, uid: &str) -> bool {
    status
        .active
        .iter()
        .flatten()
        .any(|r| r.uid.as_deref() == Some(uid))
}

/// Removes `uid` from `status.active`.
pub fn remove_active(status: &mut CronJobStatus, uid: &str) {
    if let Some(a) = status.active.as_mut() {
        a.retain(|r| r.uid.as_deref() != Some(uid));
    }
}

/// Upstream's byJobStartTime: started Jobs first, oldest first, then by name.
fn by_start_time(a: &Job, b: &Job) -> Ordering {
    let start = |j: &Job| {
        j.status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .map(|t| t.0)
    };
    match (start(a), start(b)) {
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (x, y) if x == y => a.metadata.name.cmp(&b.metadata.name),
        (x, y) => x.cmp(&y),
    }
}

/// The finished Jobs beyond `successfulJobsHistoryLimit` / `failedJobsHistoryLimit`,
/// oldest first (upstream's cleanupFinishedJobs).
pub fn jobs_over_history_limits<'a>(cj: &CronJob, jobs: &[&'a Job]) -> Vec<&'a Job> {
    let spec = cj.spec.as_ref();
    let mut out = Vec::new();
    for (kind, limit) in [
        (
            "Complete",
            spec.and_then(|s| s.successful_jobs_history_limit),
        ),
        ("Failed", spec.and_then(|s| s.failed_jobs_history_limit)),
    ] {
        let Some(limit) = limit else { continue };
        let mut finished: Vec<&Job> = jobs
            .iter()
            .copied()
            .filter(|j| finished_type(j) == Some(kind))
            .collect();
        let excess = finished.len().saturating_sub(limit.max(0) as usize);
        finished.sort_by(|a, b| by_start_time(a, b));
        out.extend(finished.into_iter().take(excess));
    }
    out
}

/// What the children say about the status (upstream's first loop in syncCronJob).
#[derive(Debug, Default)]
pub struct Children<'a> {
    /// Unfinished Jobs not in `status.active` (confirm against a fresh CronJob before
    /// warning UnexpectedJob).
    pub unlisted: Vec<&'a Job>,
    /// Entries of `status.active` with no Job in the cache (confirm with a GET before
    /// dropping them as MissingJob).
    pub unseen: Vec<ObjectReference>,
    /// Events to record.
    pub events: Vec<CronEvent>,
    /// Whether `status` changed.
    pub changed: bool,
}

/// Drops finished Jobs from `status.active` and advances `lastSuccessfulTime`.
pub fn reconcile_children<'a>(status: &mut CronJobStatus, jobs: &[&'a Job]) -> Children<'a> {
    let mut out = Children::default();
    for j in jobs {
        let uid = j.metadata.uid.as_deref().unwrap_or_default();
        let found = in_active(status, uid);
        match finished_type(j) {
            None if !found => out.unlisted.push(j),
            None => {}
            Some(kind) => {
                if found {
                    remove_active(status, uid);
                    out.events.push((
                        false,
                        "SawCompletedJob",
                        format!(
                            "Saw completed job: {}, condition: {kind}",
                            j.metadata.name.as_deref().unwrap_or_default()
                        ),
                    ));
                    out.changed = true;
                }
                if kind == "Complete" {
                    let done = j.status.as_ref().and_then(|s| s.completion_time.clone());
                    if let Some(done) = done {
                        let later = status
                            .last_successful_time
                            .as_ref()
                            .is_none_or(|t| done.0 > t.0);
                        if later {
                            status.last_successful_time = Some(done);
                            out.changed = true;
                        }
                    }
                }
            }
        }
    }
    let uids: Vec<&str> = jobs
        .iter()
        .filter_map(|j| j.metadata.uid.as_deref())
        .collect();
    out.unseen = status
        .active
        .iter()
        .flatten()
        .filter(|r| !uids.contains(&r.uid.as_deref().unwrap_or_default()))
        .cloned()
        .collect();
    out
}

/// What to do about the schedule once the children are reconciled.
#[derive(Debug, PartialEq)]
pub enum Start {
    /// Nothing now (deleted, suspended or bad schedule); no requeue.
    Idle,
    /// Nothing due; look again after this long.
    Wait(Duration),
    /// Start the Job for this scheduled time (replacing `replace` first).
    Run {
        /// The scheduled time.
        scheduled: Timestamp,
        /// Active Jobs to delete first (concurrencyPolicy Replace).
        replace: Vec<ObjectReference>,
        /// The next wake-up after starting.
        then: Duration,
    },
}

/// Upstream's decisions in syncCronJob after the children loop, with the events to
/// record.
pub fn decide_start(cj: &CronJob, now: Timestamp) -> (Start, Vec<CronEvent>) {
    let mut events = Vec::new();
    if cj.metadata.deletion_timestamp.is_some() {
        return (Start::Idle, events);
    }
    let spec = cj.spec.clone().unwrap_or_default();
    let sched = match parse(cj) {
        Ok(s) => s,
        Err(e) if e.1 == "UnknownTimeZone" => return (Start::Idle, vec![e]),
        Err(e) => {
            if spec.suspend == Some(true) {
                return (Start::Idle, events);
            }
            return (Start::Idle, vec![e]);
        }
    };
    if spec.suspend == Some(true) {
        return (Start::Idle, events);
    }
    events.extend(unsupported_schedule_event(cj));
    let wait = |events| (Start::Wait(next_schedule_delay(cj, now, &sched)), events);
    let scheduled = match most_recent_schedule_time(cj, now, &sched, true) {
        Err(e) => {
            events.push((
                true,
                "InvalidSchedule",
                format!("invalid schedule: {} : {e}", spec.schedule),
            ));
            return (Start::Idle, events);
        }
        Ok((_, None, _)) => return wait(events),
        Ok((_, Some(t), _)) if t > now => return wait(events),
        Ok((_, Some(t), missed)) => {
            if missed == Missed::Many {
                events.push((
                    true,
                    "TooManyMissedTimes",
                    "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew".into(),
                ));
            }
            t
        }
    };
    if let Some(sds) = spec.starting_deadline_seconds {
        let late = scheduled
            .checked_add(SignedDuration::from_secs(sds))
            .is_ok_and(|d| d < now);
        if late {
            events.push((
                true,
                "MissSchedule",
                format!(
                    "Missed scheduled time to start a job: {}",
                    scheduled.strftime("%a, %d %b %Y %H:%M:%S +0000")
                ),
            ));
            return wait(events);
        }
    }
    let status = cj.status.clone().unwrap_or_default();
    let name = job_name(cj, scheduled);
    let listed = status
        .active
        .iter()
        .flatten()
        .any(|r| r.name.as_deref() == Some(&name) && r.namespace == cj.metadata.namespace);
    let last = status.last_schedule_time.as_ref().map(|t| t.0);
    if listed || last == Some(scheduled) {
        return wait(events);
    }
    let active = status.active.clone().unwrap_or_default();
    let policy = spec.concurrency_policy.as_deref().unwrap_or("Allow");
    if policy == "Forbid" && !active.is_empty() {
        events.push((
            false,
            "JobAlreadyActive",
            "Not starting job because prior execution is running and concurrency policy is Forbid"
                .into(),
        ));
        return wait(events);
    }
    let replace = if policy == "Replace" { active } else { vec![] };
    // The next wake-up is computed as if the start were already recorded.
    let mut started = cj.clone();
    started
        .status
        .get_or_insert_with(Default::default)
        .last_schedule_time = Some(Time(scheduled));
    let then = next_schedule_delay(&started, now, &sched);
    (
        Start::Run {
            scheduled,
            replace,
            then,
        },
        events,
    )
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
