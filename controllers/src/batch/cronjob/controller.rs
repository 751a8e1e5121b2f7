//! The CronJob controller's I/O around [`plan`]: informer handlers, then per sync:
//! delete finished Jobs beyond the history limits, reconcile `status.active` with the
//! Jobs (confirming surprises against the apiserver as upstream does), start the due Job
//! (replacing active ones under `Replace`), write the status and requeue for the next
//! scheduled time.

use std::sync::Arc;
use std::time::Duration;

use component_base::events::{reference_to, EventRecorder, EventSpec, EventType};
use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, PostParams, PropagationPolicy};
use kube::{Api, ResourceExt};

use super::clock::Clock;
use super::plan::{self, CronEvent, Start};
use crate::machinery::informers::informer::{queue_key, split_key, Change, Informer};
use crate::machinery::owner;
use crate::machinery::queue::WorkQueue;

/// Upstream's controller and service-account name.
pub const NAME: &str = "cronjob-controller";

/// The CronJob controller. Cheap to clone.
#[derive(Clone)]
pub struct CronJobController {
    client: kube::Client,
    cronjobs: Informer<CronJob>,
    jobs: Informer<Job>,
    queue: WorkQueue<String>,
    recorder: EventRecorder,
    clock: Arc<dyn Clock>,
}

impl CronJobController {
    /// A controller over shared informers, writing with `client`, telling time by `clock`.
    pub fn new(
        client: kube::Client,
        cronjobs: Informer<CronJob>,
        jobs: Informer<Job>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let recorder = crate::machinery::context::event_recorder(client.clone(), NAME);
        CronJobController {
            client,
            cronjobs,
            jobs,
            queue: WorkQueue::new(),
            recorder,
            clock,
        }
    }

    /// The work queue.
    pub fn queue(&self) -> &WorkQueue<String> {
        &self.queue
    }

    /// Registers the informer handlers, and follows the clock's jumps (if it jumps) by
    /// looking at every CronJob again.
    pub fn watch(&self) {
        let this = self.clone();
        self.cronjobs.add_handler(move |c| match c {
            Change::Added(cj) | Change::Deleted(cj) => this.queue.add(queue_key(cj)),
            Change::Updated { old, new } => this.on_cronjob_update(old, new),
        });
        let this = self.clone();
        self.jobs.add_handler(move |c| this.on_job(c));
        if let Some(mut jumps) = self.clock.jumps() {
            let this = self.clone();
            tokio::spawn(async move {
                while jumps.changed().await.is_ok() {
                    for cj in this.cronjobs.list() {
                        this.queue.add(queue_key(cj.as_ref()));
                    }
                }
            });
        }
    }

    /// Upstream's updateCronJob: a new schedule or time zone is looked at when it is next
    /// due; anything else at once.
    fn on_cronjob_update(&self, old: &CronJob, new: &CronJob) {
        let spec = |c: &CronJob| {
            c.spec
                .as_ref()
                .map(|s| (s.schedule.clone(), s.time_zone.clone()))
        };
        if spec(old) == spec(new) {
            self.queue.add(queue_key(new));
            return;
        }
        match plan::parse(new) {
            Ok(sched) => {
                let d = plan::next_schedule_delay(new, self.clock.now(), &sched);
                self.queue.add_after(queue_key(new), d);
            }
            Err(_) => {
                let s = new
                    .spec
                    .as_ref()
                    .map(|s| s.schedule.clone())
                    .unwrap_or_default();
                self.record(
                    new,
                    (
                        true,
                        "UnParseableCronJobSchedule",
                        format!("unparseable schedule for cronjob: {s}"),
                    ),
                );
            }
        }
    }

    fn owner_of(&self, j: &Job) -> Option<Arc<CronJob>> {
        let r = owner::controller_of(&j.metadata)?;
        if r.kind != "CronJob" {
            return None;
        }
        let cj = self
            .cronjobs
            .get(j.metadata.namespace.as_deref()?, &r.name)?;
        (cj.metadata.uid.as_deref() == Some(r.uid.as_str())).then_some(cj)
    }

    fn on_job(&self, c: Change<'_, Job>) {
        let j = match c {
            Change::Added(j) | Change::Deleted(j) => j,
            Change::Updated { old, new } => {
                if old.metadata.resource_version == new.metadata.resource_version {
                    return;
                }
                let (o, n) = (
                    owner::controller_of(&old.metadata),
                    owner::controller_of(&new.metadata),
                );
                if o.is_some() && o != n {
                    if let Some(cj) = self.owner_of(old) {
                        self.queue.add(queue_key(cj.as_ref()));
                    }
                }
                new
            }
        };
        if let Some(cj) = self.owner_of(j) {
            self.queue.add(queue_key(cj.as_ref()));
        }
    }

    fn record(&self, cj: &CronJob, (warning, reason, note): CronEvent) {
        tracing::debug!(cronjob = %queue_key(cj), reason, %note, "event");
        let spec = EventSpec {
            regarding: reference_to(cj),
            related: None,
            type_: EventType::warning_if(warning),
            reason: reason.into(),
            action: "Sync".into(),
            note,
        };
        self.recorder.emit(spec);
    }

    fn jobs_api(&self, ns: &str) -> Api<Job> {
        Api::namespaced(self.client.clone(), ns)
    }

    /// Upstream's deleteJob: background propagation, an event either way; on success the
    /// Job leaves `status.active`.
    async fn delete_job(&self, cj: &CronJob, status: &mut CronJobStatus, j: &Job) -> bool {
        let ns = j.namespace().unwrap_or_default();
        let dp = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..Default::default()
        };
        match self.jobs_api(&ns).delete(&j.name_any(), &dp).await {
            Ok(_) => {
                plan::remove_active(status, j.metadata.uid.as_deref().unwrap_or_default());
                self.record(
                    cj,
                    (
                        false,
                        "SuccessfulDelete",
                        format!("Deleted job {}", j.name_any()),
                    ),
                );
                true
            }
            Err(e) => {
                self.record(cj, (true, "FailedDelete", format!("Deleted job: {e}")));
                tracing::error!(cronjob = %queue_key(cj), job = %j.name_any(), error = %e, "Error deleting job from cronjob");
                false
            }
        }
    }

    /// Reconciles `namespace/name`.
    pub async fn sync(&self, key: String) -> anyhow::Result<()> {
        let (ns, name) = split_key(&key);
        let Some(cached) = self.cronjobs.get(ns, name) else {
            return Ok(());
        };
        let cj = cached.as_ref();
        let all = self.jobs.list_namespace(ns);
        let jobs: Vec<&Job> = all
            .iter()
            .map(|j| j.as_ref())
            .filter(|j| owner::controller_of(&j.metadata).is_some_and(|r| r.name == name))
            .collect();
        let mut status = cj.status.clone().unwrap_or_default();
        let mut update = false;

        // 1. History limits.
        for j in plan::jobs_over_history_limits(cj, &jobs) {
            update |= self.delete_job(cj, &mut status, j).await;
        }

        // 2. The children.
        let (requeue, err) = match self.sync_children_and_start(cj, &jobs, &mut status).await {
            Ok((changed, requeue)) => {
                update |= changed;
                (requeue, None)
            }
            Err((changed, e)) => {
                update |= changed;
                tracing::info!(cronjob = %key, error = %format!("{e:#}"), "Error reconciling cronjob");
                (None, Some(e))
            }
        };

        // 3. The status, then the next wake-up.
        if update {
            let mut obj = cj.clone();
            if status.active.as_ref().is_some_and(|a| a.is_empty()) {
                status.active = None;
            }
            obj.status = Some(status);
            Api::<CronJob>::namespaced(self.client.clone(), ns)
                .replace_status(name, &PostParams::default(), &obj)
                .await?;
        }
        if let Some(d) = requeue {
            self.queue.add_after(key, d);
            return Ok(());
        }
        err.map_or(Ok(()), Err)
    }

    /// Upstream's syncCronJob: returns whether the status changed and the requeue delay,
    /// or (changed, error).
    async fn sync_children_and_start(
        &self,
        cj: &CronJob,
        jobs: &[&Job],
        status: &mut CronJobStatus,
    ) -> Result<(bool, Option<Duration>), (bool, anyhow::Error)> {
        let ns = cj.namespace().unwrap_or_default();
        let cj_api: Api<CronJob> = Api::namespaced(self.client.clone(), &ns);
        let children = plan::reconcile_children(status, jobs);
        let mut changed = children.changed;
        for e in children.events {
            self.record(cj, e);
        }
        for j in children.unlisted {
            // The cache may lag behind our own status write: ask the apiserver.
            let fresh = cj_api
                .get(&cj.name_any())
                .await
                .map_err(|e| (changed, e.into()))?;
            let uid = j.metadata.uid.as_deref().unwrap_or_default();
            if fresh
                .status
                .as_ref()
                .is_some_and(|s| plan::in_active(s, uid))
            {
                continue;
            }
            self.record(
                cj,
                (
                    true,
                    "UnexpectedJob",
                    format!(
                        "Saw a job that the controller did not create or forgot: {}",
                        j.name_any()
                    ),
                ),
            );
        }
        for r in children.unseen {
            let jns = r.namespace.clone().unwrap_or_else(|| ns.clone());
            let jname = r.name.clone().unwrap_or_default();
            match self.jobs_api(&jns).get(&jname).await {
                Err(e) if api_helpers::errors::is_not_found(&e) => {
                    self.record(
                        cj,
                        (
                            false,
                            "MissingJob",
                            format!("Active job went missing: {jname}"),
                        ),
                    );
                    plan::remove_active(status, r.uid.as_deref().unwrap_or_default());
                    changed = true;
                }
                Err(e) => return Err((changed, e.into())),
                Ok(_) => {}
            }
        }

        let mut current = cj.clone();
        current.status = Some(status.clone());
        let now = self.clock.now();
        let (start, events) = plan::decide_start(&current, now);
        for e in events {
            self.record(cj, e);
        }
        let (scheduled, replace, then) = match start {
            Start::Idle => return Ok((changed, None)),
            Start::Wait(d) => return Ok((changed, Some(d))),
            Start::Run {
                scheduled,
                replace,
                then,
            } => (scheduled, replace, then),
        };
        for r in replace {
            let jname = r.name.clone().unwrap_or_default();
            let jns = r.namespace.clone().unwrap_or_else(|| ns.clone());
            let job = match self.jobs_api(&jns).get(&jname).await {
                Ok(j) => j,
                Err(e) => {
                    self.record(cj, (true, "FailedGet", format!("Get job: {e}")));
                    return Err((changed, e.into()));
                }
            };
            if !self.delete_job(cj, status, &job).await {
                return Err((
                    changed,
                    anyhow::anyhow!("could not replace job {jns}/{jname}"),
                ));
            }
            changed = true;
        }

        let tz = plan::time_zone(cj).map_err(|e| (changed, anyhow::anyhow!(e)))?;
        let want = plan::job_from_template(cj, scheduled, &tz);
        let created = match self
            .jobs_api(&ns)
            .create(&PostParams::default(), &want)
            .await
        {
            Ok(j) => {
                self.record(
                    cj,
                    (
                        false,
                        "SuccessfulCreate",
                        format!("Created job {}", j.name_any()),
                    ),
                );
                j
            }
            Err(e) if api_helpers::errors::is_already_exists(&e) => {
                let j = self
                    .jobs_api(&ns)
                    .get(&want.name_any())
                    .await
                    .map_err(|e| (changed, e.into()))?;
                let uid = cj.metadata.uid.as_deref().unwrap_or_default();
                let juid = j.metadata.uid.as_deref().unwrap_or_default();
                if !owner::is_controlled_by(&j.metadata, uid) || plan::in_active(status, juid) {
                    return Ok((changed, None));
                }
                tracing::info!(cronjob = %queue_key(cj), job = %j.name_any(), "Job already exists");
                j
            }
            Err(e) if api_helpers::errors::is_namespace_terminating(&e) => {
                return Err((changed, e.into()));
            }
            Err(e) => {
                self.record(
                    cj,
                    (true, "FailedCreate", format!("Error creating job: {e}")),
                );
                return Err((changed, e.into()));
            }
        };
        status
            .active
            .get_or_insert_with(Vec::new)
            .push(plan::job_ref(&created));
        status.last_schedule_time = Some(Time(scheduled));
        Ok((true, Some(then)))
    }
}

workload_controller!(CronJobController);
