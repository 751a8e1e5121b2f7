use super::*;
use k8s_openapi::api::batch::v1::Job;
use serde_json::json;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn cronjob(spec: serde_json::Value, status: serde_json::Value) -> CronJob {
    let mut spec = spec;
    let obj = spec.as_object_mut().unwrap();
    obj.entry("jobTemplate").or_insert(json!({
        "metadata": {"labels": {"app": "x"}, "annotations": {"note": "y"}},
        "spec": {"template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "c", "image": "busybox"}]}}}
    }));
    obj.entry("timeZone").or_insert(json!("UTC"));
    serde_json::from_value(json!({
        "metadata": {"name": "cj", "namespace": "ns", "uid": "cj-uid",
            "creationTimestamp": "2024-01-01T00:00:30Z"},
        "spec": spec,
        "status": status,
    }))
    .unwrap()
}

fn job(name: &str, uid: &str, status: serde_json::Value) -> Job {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "ns", "uid": uid},
        "spec": {"template": {}},
        "status": status,
    }))
    .unwrap()
}

fn finished(kind: &str, start: &str, done: &str) -> serde_json::Value {
    json!({"startTime": start, "completionTime": if kind == "Complete" { json!(done) } else { json!(null) },
        "conditions": [{"type": kind, "status": "True"}]})
}

fn sched(cj: &CronJob) -> Schedule {
    parse(cj).unwrap()
}

#[test]
fn most_recent_schedule_time_counts_missed_starts() {
    let cj = cronjob(json!({"schedule": "*/5 * * * *"}), json!({}));
    let s = sched(&cj);
    // Before the first time after creation (00:05): nothing.
    assert_eq!(
        most_recent_schedule_time(&cj, ts("2024-01-01T00:04:59Z"), &s, true).unwrap(),
        (ts("2024-01-01T00:00:30Z"), None, Missed::None)
    );
    // One due.
    assert_eq!(
        most_recent_schedule_time(&cj, ts("2024-01-01T00:07:00Z"), &s, true).unwrap(),
        (
            ts("2024-01-01T00:00:30Z"),
            Some(ts("2024-01-01T00:05:00Z")),
            Missed::None
        )
    );
    // Three passed: the latest is due, a few were missed.
    let (_, t, m) = most_recent_schedule_time(&cj, ts("2024-01-01T00:16:00Z"), &s, true).unwrap();
    assert_eq!((t, m), (Some(ts("2024-01-01T00:15:00Z")), Missed::Few));
    // A day later: more than a hundred missed.
    let (_, t, m) = most_recent_schedule_time(&cj, ts("2024-01-02T00:01:00Z"), &s, true).unwrap();
    assert_eq!((t, m), (Some(ts("2024-01-02T00:00:00Z")), Missed::Many));
}

#[test]
fn starting_deadline_bounds_the_search() {
    let cj = cronjob(
        json!({"schedule": "*/5 * * * *", "startingDeadlineSeconds": 200}),
        json!({"lastScheduleTime": "2024-01-01T00:05:00Z"}),
    );
    let s = sched(&cj);
    // Only times after now-200s count: 00:35 is the only one, none "many".
    let (earliest, t, m) =
        most_recent_schedule_time(&cj, ts("2024-01-01T00:36:00Z"), &s, true).unwrap();
    assert_eq!(earliest, ts("2024-01-01T00:32:40Z"));
    assert_eq!((t, m), (Some(ts("2024-01-01T00:35:00Z")), Missed::None));
    // Without the deadline (for the next wake-up) the search starts at lastScheduleTime.
    let (earliest, _, m) =
        most_recent_schedule_time(&cj, ts("2024-01-01T00:36:00Z"), &s, false).unwrap();
    assert_eq!((earliest, m), (ts("2024-01-01T00:05:00Z"), Missed::Few));
}

#[test]
fn next_delay_lands_just_after_the_next_time() {
    let cj = cronjob(
        json!({"schedule": "0 * * * *"}),
        json!({"lastScheduleTime": "2024-01-01T01:00:00Z"}),
    );
    let d = next_schedule_delay(&cj, ts("2024-01-01T01:59:00Z"), &sched(&cj));
    assert_eq!(d, Duration::from_secs(60) + NEXT_SCHEDULE_DELTA);
}

#[test]
fn job_from_template_names_annotates_and_owns() {
    let cj = cronjob(
        json!({"schedule": "0 9 * * *", "timeZone": "Asia/Tokyo"}),
        json!({}),
    );
    let tz = time_zone(&cj).unwrap();
    let t = ts("2024-01-02T00:00:00Z");
    let j = job_from_template(&cj, t, &tz);
    assert_eq!(j.metadata.name.as_deref(), Some("cj-28402560"));
    let ann = j.metadata.annotations.unwrap();
    assert_eq!(
        ann[SCHEDULED_TIMESTAMP_ANNOTATION],
        "2024-01-02T09:00:00+09:00"
    );
    assert_eq!(ann["note"], "y");
    assert_eq!(j.metadata.labels.unwrap()["app"], "x");
    let r = &j.metadata.owner_references.unwrap()[0];
    assert_eq!(
        (r.kind.as_str(), r.uid.as_str(), r.controller),
        ("CronJob", "cj-uid", Some(true))
    );
    assert_eq!(rfc3339_in(t, &TimeZone::UTC), "2024-01-02T00:00:00Z");
}

#[test]
fn history_limits_remove_the_oldest_finished_jobs() {
    let cj = cronjob(
        json!({"schedule": "* * * * *", "successfulJobsHistoryLimit": 1, "failedJobsHistoryLimit": 0}),
        json!({}),
    );
    let jobs = [
        job(
            "ok-old",
            "1",
            finished("Complete", "2024-01-01T00:01:00Z", "2024-01-01T00:01:10Z"),
        ),
        job(
            "ok-new",
            "2",
            finished("Complete", "2024-01-01T00:02:00Z", "2024-01-01T00:02:10Z"),
        ),
        job("bad", "3", finished("Failed", "2024-01-01T00:03:00Z", "")),
        job("running", "4", json!({"startTime": "2024-01-01T00:04:00Z"})),
    ];
    let refs: Vec<&Job> = jobs.iter().collect();
    let names: Vec<_> = jobs_over_history_limits(&cj, &refs)
        .iter()
        .map(|j| j.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(names, ["ok-old", "bad"]);
    // Without limits nothing goes.
    let unlimited = cronjob(json!({"schedule": "* * * * *"}), json!({}));
    assert!(jobs_over_history_limits(&unlimited, &refs).is_empty());
}

#[test]
fn children_update_active_and_last_successful_time() {
    let mut status: CronJobStatus = serde_json::from_value(json!({
        "active": [
            {"kind": "Job", "name": "done", "namespace": "ns", "uid": "1"},
            {"kind": "Job", "name": "running", "namespace": "ns", "uid": "2"},
            {"kind": "Job", "name": "gone", "namespace": "ns", "uid": "9"}
        ],
        "lastSuccessfulTime": "2024-01-01T00:00:00Z"
    }))
    .unwrap();
    let jobs = [
        job(
            "done",
            "1",
            finished("Complete", "2024-01-01T00:01:00Z", "2024-01-01T00:01:30Z"),
        ),
        job("running", "2", json!({})),
        job("stray", "3", json!({})),
    ];
    let refs: Vec<&Job> = jobs.iter().collect();
    let c = reconcile_children(&mut status, &refs);
    assert!(c.changed);
    assert_eq!(c.events[0].1, "SawCompletedJob");
    assert_eq!(
        c.events[0].2,
        "Saw completed job: done, condition: Complete"
    );
    assert_eq!(
        status.last_successful_time.unwrap().0,
        ts("2024-01-01T00:01:30Z")
    );
    let active: Vec<_> = status
        .active
        .unwrap()
        .iter()
        .map(|r| r.uid.clone().unwrap())
        .collect();
    assert_eq!(active, ["2", "9"]);
    assert_eq!(c.unlisted[0].metadata.name.as_deref(), Some("stray"));
    assert_eq!(c.unseen[0].name.as_deref(), Some("gone"));
}

#[test]
fn starts_the_due_time_once() {
    let cj = cronjob(json!({"schedule": "*/5 * * * *"}), json!({}));
    let (s, ev) = decide_start(&cj, ts("2024-01-01T00:05:02Z"));
    assert!(ev.is_empty());
    assert_eq!(
        s,
        Start::Run {
            scheduled: ts("2024-01-01T00:05:00Z"),
            replace: vec![],
            then: Duration::from_secs(298) + NEXT_SCHEDULE_DELTA,
        }
    );
    // Once recorded, nothing until the next time.
    let done = cronjob(
        json!({"schedule": "*/5 * * * *"}),
        json!({"lastScheduleTime": "2024-01-01T00:05:00Z"}),
    );
    let (s, _) = decide_start(&done, ts("2024-01-01T00:05:03Z"));
    assert_eq!(
        s,
        Start::Wait(Duration::from_secs(297) + NEXT_SCHEDULE_DELTA)
    );
}

#[test]
fn concurrency_policies() {
    let status = json!({"active": [{"kind": "Job", "name": "cj-1", "namespace": "ns", "uid": "1"}],
        "lastScheduleTime": "2024-01-01T00:00:00Z"});
    let now = ts("2024-01-01T00:01:01Z");
    let with = |policy: &str| {
        decide_start(
            &cronjob(
                json!({"schedule": "* * * * *", "concurrencyPolicy": policy}),
                status.clone(),
            ),
            now,
        )
    };
    let (s, _) = with("Allow");
    assert!(matches!(s, Start::Run { ref replace, .. } if replace.is_empty()));
    let (s, ev) = with("Forbid");
    assert!(matches!(s, Start::Wait(_)));
    assert_eq!(ev[0].1, "JobAlreadyActive");
    let (s, _) = with("Replace");
    assert!(matches!(s, Start::Run { ref replace, .. } if replace.len() == 1));
}

#[test]
fn suspended_late_and_broken_cronjobs() {
    let now = ts("2024-01-01T00:10:30Z");
    let (s, ev) = decide_start(
        &cronjob(json!({"schedule": "* * * * *", "suspend": true}), json!({})),
        now,
    );
    assert_eq!((s, ev.len()), (Start::Idle, 0));
    // Due at 00:10:00, but with a 10 s starting deadline only times after 00:10:20
    // count: that start is skipped and the next one awaited.
    let (s, ev) = decide_start(
        &cronjob(
            json!({"schedule": "*/10 * * * *", "startingDeadlineSeconds": 10}),
            json!({"lastScheduleTime": "2024-01-01T00:00:00Z"}),
        ),
        now,
    );
    assert_eq!(
        s,
        Start::Wait(Duration::from_secs(570) + NEXT_SCHEDULE_DELTA)
    );
    assert!(ev.is_empty());
    let (s, ev) = decide_start(
        &cronjob(
            json!({"schedule": "* * * * *", "timeZone": "Nowhere/Special"}),
            json!({}),
        ),
        now,
    );
    assert_eq!((s, ev[0].1), (Start::Idle, "UnknownTimeZone"));
    let (s, ev) = decide_start(&cronjob(json!({"schedule": "61 * * * *"}), json!({})), now);
    assert_eq!((s, ev[0].1), (Start::Idle, "UnparseableSchedule"));
    // A year behind without a deadline: the latest time starts, with the warning.
    let (s, ev) = decide_start(
        &cronjob(json!({"schedule": "0 * * * *"}), json!({})),
        ts("2025-01-01T00:30:00Z"),
    );
    assert!(matches!(s, Start::Run { scheduled, .. } if scheduled == ts("2025-01-01T00:00:00Z")));
    assert_eq!(ev[0].1, "TooManyMissedTimes");
}
