//! e2e: the CronJob controller against a real apiserver, in this process with a fake clock
//! the test moves (minutes pass in milliseconds); the Jobs it starts are run by the real
//! job controller (kube-controller-manager) and their pods by a fake kubelet.
//!
//! - `every` (`* * * * *` in America/New_York, successfulJobsHistoryLimit 2): one Job a
//!   minute, named `<cronjob>-<minutes since epoch>` with the scheduled-timestamp annotation
//!   in its zone; finished Jobs leave `status.active` and set `lastSuccessfulTime`; the
//!   oldest finished Jobs are deleted; three hours of missed starts give one Job and the
//!   TooManyMissedTimes warning.
//! - `forbid` / `replace` (`*/5`, pods that never finish): Forbid skips a start while a Job
//!   runs (JobAlreadyActive), Replace deletes the running Job and starts the new one.
//! - `suspended`: never starts anything.

#[path = "workload_support.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use controllers::batch::cronjob::clock::FakeClock;
use controllers::batch::cronjob::controller::CronJobController;
use controllers::machinery::informers::InformerFactory;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{ListParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use support::{eventually, fake_kubelet, start_kcm, Outcome};
use tokio_util::sync::CancellationToken;

const NS: &str = "default";

fn cronjob(name: &str, spec: serde_json::Value) -> CronJob {
    let mut spec = spec;
    spec.as_object_mut().unwrap().insert(
        "jobTemplate".into(),
        json!({"metadata": {"labels": {"cronjob": name}},
            "spec": {"backoffLimit": 0, "template": {"metadata": {"labels": {"cronjob": name}},
                "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}}),
    );
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap()
}

/// Runs the kube-controller-manager cargo built for this test target (see workload_job.rs).
fn use_binary_built_for_this_test() {
    if std::env::var_os(e2e::binaries::BIN_DIR_ENV).is_none() {
        let exe = std::path::Path::new(env!("CARGO_BIN_EXE_kube-controller-manager"));
        if let Some(dir) = exe.parent() {
            std::env::set_var(e2e::binaries::BIN_DIR_ENV, dir);
        }
    }
}

/// The names of the (not deleting) Jobs controlled by CronJob `cj`, sorted.
async fn jobs_of(api: &Api<Job>, cj: &str) -> anyhow::Result<Vec<String>> {
    let mut names: Vec<String> = api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|j| j.metadata.deletion_timestamp.is_none())
        .filter(|j| {
            j.owner_references()
                .iter()
                .any(|r| r.controller == Some(true) && r.name == cj)
        })
        .map(|j| j.name_any())
        .collect();
    names.sort();
    Ok(names)
}

fn name_at(cj: &str, t: Timestamp) -> String {
    format!("{cj}-{}", t.as_second() / 60)
}

async fn has_event(client: &kube::Client, regarding: &str, reason: &str) -> anyhow::Result<bool> {
    Ok(Api::<Event>::namespaced(client.clone(), NS)
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .any(|e| {
            e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(regarding)
                && e.reason.as_deref() == Some(reason)
        }))
}

#[tokio::test]
async fn cronjobs_fire_on_schedule_with_a_fake_clock() {
    let t0 = Instant::now();
    let cluster = e2e::cluster_or_skip!();
    use_binary_built_for_this_test();
    let mut kcm = start_kcm(&cluster, "job");
    let client = cluster.client();
    let stop = CancellationToken::new();
    let _guard = stop.clone().drop_guard();
    fake_kubelet(client.clone(), NS, stop.clone(), |p| {
        let cj = p.labels().get("cronjob").cloned().unwrap_or_default();
        Some(if cj == "every" {
            Outcome::Succeed
        } else {
            Outcome::Ready
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

    // The controller under test, on its own informers and a clock standing at "now".
    let clock = FakeClock::new(Timestamp::now());
    let factory = InformerFactory::new(client.clone(), stop.clone());
    let (cronjobs_inf, jobs_inf) = (factory.informer::<CronJob>(), factory.informer::<Job>());
    cronjobs_inf.wait_synced().await;
    jobs_inf.wait_synced().await;
    let controller = CronJobController::new(
        client.clone(),
        cronjobs_inf,
        jobs_inf,
        Arc::new(clock.clone()),
    );
    controller.watch();
    let c = controller.clone();
    let s = stop.clone();
    tokio::spawn(async move {
        let this = c.clone();
        c.queue()
            .run("cronjob-controller", 2, s, move |key| {
                let this = this.clone();
                async move { this.sync(key).await }
            })
            .await
    });

    let cronjobs: Api<CronJob> = Api::namespaced(client.clone(), NS);
    let jobs: Api<Job> = Api::namespaced(client.clone(), NS);
    for cj in [
        cronjob(
            "every",
            json!({"schedule": "* * * * *", "timeZone": "America/New_York",
                "successfulJobsHistoryLimit": 2, "failedJobsHistoryLimit": 1}),
        ),
        cronjob(
            "forbid",
            json!({"schedule": "*/5 * * * *", "concurrencyPolicy": "Forbid"}),
        ),
        cronjob(
            "replace",
            json!({"schedule": "*/5 * * * *", "concurrencyPolicy": "Replace"}),
        ),
        cronjob(
            "suspended",
            json!({"schedule": "* * * * *", "suspend": true}),
        ),
    ] {
        cronjobs.create(&PostParams::default(), &cj).await.unwrap();
    }
    let wait = Duration::from_secs(30);

    // 1. Just past the next five-minute boundary: each active CronJob starts one Job.
    let created = Timestamp::now().as_second();
    let boundary = Timestamp::from_second((created / 300 + 1) * 300).unwrap();
    clock.set(boundary.checked_add(SignedDuration::from_secs(10)).unwrap());
    let first = name_at("every", boundary);
    let five = name_at("forbid", boundary);
    eventually("the first Jobs", wait, &mut kcm, || async {
        let (e, f, r) = (
            jobs_of(&jobs, "every").await?,
            jobs_of(&jobs, "forbid").await?,
            jobs_of(&jobs, "replace").await?,
        );
        Ok(
            (e == [first.clone()] && f == [five.clone()] && r == [name_at("replace", boundary)])
                .then_some(()),
        )
    })
    .await;
    eprintln!("[{:?}] first Jobs", t0.elapsed());
    let j = jobs.get(&first).await.unwrap();
    assert_eq!(
        j.annotations()
            .get("batch.kubernetes.io/cronjob-scheduled-timestamp")
            .map(String::as_str),
        Some(
            boundary
                .to_zoned(k8s_openapi::jiff::tz::TimeZone::get("America/New_York").unwrap())
                .strftime("%Y-%m-%dT%H:%M:%S%:z")
                .to_string()
                .as_str()
        )
    );
    assert_eq!(j.labels().get("cronjob").map(String::as_str), Some("every"));
    // The Job completes (real job controller, fake kubelet): it leaves status.active.
    let every = eventually(
        "every's Job counted as successful",
        wait,
        &mut kcm,
        || async {
            let cj = cronjobs.get("every").await?;
            let s = cj.status.clone().unwrap_or_default();
            Ok(
                (s.last_successful_time.is_some() && s.active.unwrap_or_default().is_empty())
                    .then_some(cj),
            )
        },
    )
    .await;
    assert_eq!(
        every.status.unwrap().last_schedule_time.map(|t| t.0),
        Some(boundary)
    );
    let forbid = cronjobs.get("forbid").await.unwrap().status.unwrap();
    assert_eq!(
        forbid.active.unwrap()[0].name.as_deref(),
        Some(five.as_str())
    );

    // 2. Two more minutes, one at a time: two more Jobs; the history limit (2) deletes
    // the first.
    for m in 1..=2 {
        let at = boundary.checked_add(SignedDuration::from_mins(m)).unwrap();
        clock.set(at.checked_add(SignedDuration::from_secs(5)).unwrap());
        let want = name_at("every", at);
        eventually("every's next Job completes", wait, &mut kcm, || async {
            let s = cronjobs.get("every").await?.status.unwrap_or_default();
            Ok((s.last_schedule_time.map(|t| t.0) == Some(at)
                && s.active.unwrap_or_default().is_empty()
                && jobs_of(&jobs, "every").await?.contains(&want))
            .then_some(()))
        })
        .await;
    }
    let kept = [
        name_at(
            "every",
            boundary.checked_add(SignedDuration::from_mins(1)).unwrap(),
        ),
        name_at(
            "every",
            boundary.checked_add(SignedDuration::from_mins(2)).unwrap(),
        ),
    ];
    eventually("history limit keeps two", wait, &mut kcm, || async {
        Ok((jobs_of(&jobs, "every").await? == kept).then_some(()))
    })
    .await;
    eprintln!("[{:?}] history limit", t0.elapsed());

    // 3. The next five-minute mark: Forbid skips, Replace replaces.
    let next5 = boundary.checked_add(SignedDuration::from_mins(5)).unwrap();
    clock.set(next5.checked_add(SignedDuration::from_secs(5)).unwrap());
    let replaced = name_at("replace", next5);
    eventually(
        "replace starts a new Job in place of the old",
        wait,
        &mut kcm,
        || async {
            let s = cronjobs.get("replace").await?.status.unwrap_or_default();
            let active: Vec<String> = s
                .active
                .unwrap_or_default()
                .into_iter()
                .filter_map(|r| r.name)
                .collect();
            Ok((jobs_of(&jobs, "replace").await? == [replaced.clone()]
                && active == [replaced.clone()])
            .then_some(()))
        },
    )
    .await;
    eventually("forbid skips the start", wait, &mut kcm, || async {
        Ok(has_event(&client, "forbid", "JobAlreadyActive")
            .await?
            .then_some(()))
    })
    .await;
    assert_eq!(jobs_of(&jobs, "forbid").await.unwrap(), [five]);
    let fs = cronjobs.get("forbid").await.unwrap().status.unwrap();
    assert_eq!(fs.last_schedule_time.map(|t| t.0), Some(boundary));
    eprintln!("[{:?}] forbid/replace", t0.elapsed());

    // 4. Three hours later: many missed starts, one Job for the latest and a warning.
    let later = next5.checked_add(SignedDuration::from_hours(3)).unwrap();
    clock.set(later.checked_add(SignedDuration::from_secs(5)).unwrap());
    let latest = name_at("every", later);
    eventually("every catches up with one Job", wait, &mut kcm, || async {
        Ok((jobs_of(&jobs, "every").await?.contains(&latest)
            && has_event(&client, "every", "TooManyMissedTimes").await?)
            .then_some(()))
    })
    .await;
    let s = cronjobs.get("every").await.unwrap().status.unwrap();
    assert_eq!(s.last_schedule_time.map(|t| t.0), Some(later));
    assert!(has_event(&client, "every", "SawCompletedJob")
        .await
        .unwrap());
    assert!(has_event(&client, "every", "SuccessfulDelete")
        .await
        .unwrap());
    assert!(has_event(&client, "replace", "SuccessfulDelete")
        .await
        .unwrap());

    // Suspended: never anything.
    assert!(jobs_of(&jobs, "suspended").await.unwrap().is_empty());
    let s = cronjobs
        .get("suspended")
        .await
        .unwrap()
        .status
        .unwrap_or_default();
    assert!(s.last_schedule_time.is_none());
    eprintln!("[{:?}] done", t0.elapsed());
}
