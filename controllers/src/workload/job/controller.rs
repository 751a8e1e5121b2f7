//! The Job controller: claims pods, counts finished ones through the job-tracking
//! finalizer (`status.uncountedTerminatedPods` first, then the finalizer is removed, then
//! the counts move), creates or deletes pods and sets the Job's conditions.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::{EnvVar, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::{Api, ResourceExt};

use super::plan::{self, Spec, Verdict, COMPLETION_INDEX, TRACKING_FINALIZER};
use crate::lifecycle::queue::WorkQueue;
use crate::workload::expectations::Expectations;
use crate::workload::informer::{queue_key, split_key, Change, Informer};
use crate::workload::owner::{self, Claim, Claimant};
use crate::workload::pod_control::{pod_from_template, PodControl};
use crate::workload::pods;

/// Upstream's controller and service-account name.
pub const NAME: &str = "job-controller";

/// The Job controller. Cheap to clone.
#[derive(Clone)]
pub struct JobController {
    client: kube::Client,
    jobs: Informer<Job>,
    pods: Informer<Pod>,
    queue: WorkQueue<String>,
    expectations: Arc<Expectations>,
    pod_control: PodControl,
}

fn has_finalizer(p: &Pod) -> bool {
    p.metadata
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == TRACKING_FINALIZER)
}

fn is_finished(j: &Job) -> bool {
    j.status
        .iter()
        .flat_map(|s| s.conditions.iter().flatten())
        .any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
}

fn finish_time(p: &Pod) -> Option<Timestamp> {
    p.status
        .as_ref()?
        .container_statuses
        .iter()
        .flatten()
        .filter_map(|c| {
            c.state
                .as_ref()?
                .terminated
                .as_ref()?
                .finished_at
                .as_ref()
                .map(|t| t.0)
        })
        .max()
}

fn set_condition(s: &mut JobStatus, type_: &str, reason: &str, message: &str, now: Timestamp) {
    let conds = s.conditions.get_or_insert_with(Vec::new);
    if conds.iter().any(|c| c.type_ == type_ && c.status == "True") {
        return;
    }
    conds.retain(|c| c.type_ != type_);
    conds.push(JobCondition {
        type_: type_.into(),
        status: "True".into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    });
}

impl JobController {
    /// A controller over shared informers, writing with `client`.
    pub fn new(client: kube::Client, jobs: Informer<Job>, pods: Informer<Pod>) -> Self {
        let expectations = Arc::new(Expectations::new());
        JobController {
            pod_control: PodControl::new(client.clone(), expectations.clone(), NAME),
            client,
            jobs,
            pods,
            queue: WorkQueue::new(),
            expectations,
        }
    }

    /// The work queue.
    pub fn queue(&self) -> &WorkQueue<String> {
        &self.queue
    }

    /// Registers the informer handlers.
    pub fn watch(&self) {
        let q = self.queue.clone();
        self.jobs.add_handler(move |c| match c {
            Change::Added(j) | Change::Deleted(j) | Change::Updated { new: j, .. } => {
                q.add(queue_key(j))
            }
        });
        let this = self.clone();
        self.pods.add_handler(move |c| {
            let (p, created, deleted) = match c {
                Change::Added(p) => (p, true, false),
                Change::Updated { new, .. } => {
                    (new, false, new.metadata.deletion_timestamp.is_some())
                }
                Change::Deleted(p) => (p, false, true),
            };
            let Some(j) = this.resolve(p) else { return };
            let key = queue_key(j.as_ref());
            let uid = p.metadata.uid.as_deref().unwrap_or_default();
            if created {
                this.expectations.creation_observed(&key);
            }
            if deleted {
                this.expectations.deletion_observed(&key, uid);
            }
            this.queue.add(key);
        });
    }

    fn resolve(&self, p: &Pod) -> Option<Arc<Job>> {
        let r = owner::controller_of(&p.metadata).filter(|r| r.kind == "Job")?;
        let j = self.jobs.get(p.metadata.namespace.as_deref()?, &r.name)?;
        (j.metadata.uid.as_deref() == Some(r.uid.as_str())).then_some(j)
    }

    async fn write_status(&self, j: &Job, s: JobStatus) -> anyhow::Result<Job> {
        if j.status.as_ref() == Some(&s) {
            return Ok(j.clone());
        }
        let mut obj = j.clone();
        obj.status = Some(s);
        let api: Api<Job> =
            Api::namespaced(self.client.clone(), &j.namespace().unwrap_or_default());
        Ok(api
            .replace_status(&j.name_any(), &PostParams::default(), &obj)
            .await?)
    }

    async fn remove_finalizer(&self, p: &Pod) -> anyhow::Result<()> {
        let patch = serde_json::json!({
            "metadata": { "$deleteFromPrimitiveList/finalizers": [TRACKING_FINALIZER] }
        });
        Ok(self
            .pod_control
            .patch(&p.namespace().unwrap_or_default(), &p.name_any(), &patch)
            .await?)
    }

    /// Reconciles `namespace/name`.
    pub async fn sync(&self, key: String) -> anyhow::Result<()> {
        let (ns, name) = split_key(&key);
        let Some(j) = self.jobs.get(ns, name) else {
            self.expectations.forget(&key);
            return Ok(());
        };
        let mut job = (*j).clone();
        let sel = job
            .spec
            .as_ref()
            .and_then(|s| s.selector.clone())
            .unwrap_or_default();
        let claimant = Claimant {
            meta: &job.metadata,
            selector: &sel,
        };
        let all = self.pods.list_namespace(ns);
        let owned: Vec<&Pod> = all
            .iter()
            .map(|p| p.as_ref())
            .filter(|p| owner::claim(&claimant, &p.metadata) == Claim::Owned)
            .collect();
        let now = Timestamp::now();
        let spec = Spec::of(&job);
        let mut status = job.status.clone().unwrap_or_default();
        let finished = is_finished(&job);

        // 1. Record newly finished (and deleted) pods as uncounted before touching them.
        let mut unc = status.uncounted_terminated_pods.clone().unwrap_or_default();
        let (mut unc_ok, mut unc_fail): (BTreeSet<String>, BTreeSet<String>) = (
            unc.succeeded
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect(),
            unc.failed.clone().unwrap_or_default().into_iter().collect(),
        );
        let mut completed = plan::parse_indexes(status.completed_indexes.as_deref().unwrap_or(""));
        for p in owned.iter().filter(|p| has_finalizer(p)) {
            let uid = p.metadata.uid.clone().unwrap_or_default();
            match pods::phase(p) {
                "Succeeded" => {
                    if spec.indexed {
                        if let Some(i) = plan::index_of(p) {
                            completed.insert(i);
                        }
                    }
                    unc_ok.insert(uid);
                }
                "Failed" => {
                    unc_fail.insert(uid);
                }
                _ if p.metadata.deletion_timestamp.is_some() || finished => {
                    unc_fail.insert(uid);
                }
                _ => {}
            }
        }
        unc.succeeded = Some(unc_ok.iter().cloned().collect());
        unc.failed = Some(unc_fail.iter().cloned().collect());
        status.uncounted_terminated_pods = Some(unc.clone());
        if spec.indexed {
            status.completed_indexes = Some(plan::format_indexes(&completed));
        }
        if status.start_time.is_none() && !spec.suspend && !finished {
            status.start_time = Some(Time(now));
        }
        job = self.write_status(&job, status.clone()).await?;

        // 2. Release the counted pods.
        for p in owned.iter().filter(|p| has_finalizer(p)) {
            let uid = p.metadata.uid.as_deref().unwrap_or_default();
            if unc_ok.contains(uid) || unc_fail.contains(uid) {
                self.remove_finalizer(p).await?;
            }
        }

        // 3. Move them into the counts.
        status.succeeded = Some(status.succeeded.unwrap_or(0) + unc_ok.len() as i32);
        status.failed = Some(status.failed.unwrap_or(0) + unc_fail.len() as i32);
        status.uncounted_terminated_pods = Some(UncountedTerminatedPods::default());
        let active: Vec<&Pod> = owned
            .iter()
            .copied()
            .filter(|p| pods::is_active(p))
            .collect();
        status.active = Some(active.len() as i32);
        status.ready = Some(active.iter().filter(|p| pods::is_ready(p)).count() as i32);
        status.terminating = Some(
            owned
                .iter()
                .filter(|p| {
                    pods::is_terminating(p) && !matches!(pods::phase(p), "Succeeded" | "Failed")
                })
                .count() as i32,
        );
        if finished {
            self.write_status(&job, status).await?;
            return Ok(());
        }
        let (succeeded, failed) = (status.succeeded.unwrap_or(0), status.failed.unwrap_or(0));
        let start = status.start_time.as_ref().map(|t| t.0);
        let verdict = plan::verdict(
            &spec,
            succeeded,
            failed,
            &completed,
            active.len(),
            start,
            now,
        );
        let mut requeue = None;
        let mut delete: Vec<&Pod> = Vec::new();
        let mut create: Vec<Option<i32>> = Vec::new();
        match &verdict {
            Verdict::Failed(reason, message) => {
                set_condition(&mut status, "FailureTarget", reason, message, now);
                delete = active.clone();
                if active.is_empty() && status.terminating == Some(0) {
                    set_condition(&mut status, "Failed", reason, message, now);
                }
            }
            Verdict::Succeeded => {
                set_condition(
                    &mut status,
                    "SuccessCriteriaMet",
                    "CompletionsReached",
                    "Reached expected number of succeeded pods",
                    now,
                );
                delete = active.clone();
                if active.is_empty() && status.terminating == Some(0) {
                    set_condition(
                        &mut status,
                        "Complete",
                        "CompletionsReached",
                        "Reached expected number of succeeded pods",
                        now,
                    );
                    status.completion_time = Some(Time(now));
                }
            }
            Verdict::Running if self.expectations.satisfied(&key) => {
                if spec.suspend {
                    set_condition(
                        &mut status,
                        "Suspended",
                        "JobSuspended",
                        "Job suspended",
                        now,
                    );
                } else if let Some(c) = status.conditions.as_mut() {
                    c.retain(|c| c.type_ != "Suspended");
                }
                let last_failure = owned
                    .iter()
                    .filter(|p| pods::phase(p) == "Failed")
                    .filter_map(|p| finish_time(p))
                    .max();
                let p = plan::plan(
                    &spec,
                    &active,
                    succeeded,
                    failed,
                    &completed,
                    last_failure,
                    now,
                );
                delete = p.delete;
                create = p.create;
                requeue = p.backoff;
                if let Some(ads) = spec.active_deadline.filter(|_| !spec.suspend) {
                    let left = start.map_or(ads, |s| s.as_second() + ads - now.as_second());
                    requeue = Some(requeue.map_or(left, |r| r.min(left)).max(1));
                }
            }
            Verdict::Running => {}
        }
        self.write_status(&job, status).await?;
        self.pod_control.delete_all(&key, &delete).await?;
        if !create.is_empty() {
            let pods = create
                .iter()
                .map(|i| self.pod_for(&job, *i))
                .collect::<anyhow::Result<Vec<_>>>()?;
            self.pod_control.create_all(&key, pods).await?;
        }
        if let Some(secs) = requeue {
            self.queue
                .add_after(key, Duration::from_secs(secs.max(1) as u64));
        }
        Ok(())
    }

    /// A pod for `job` (with completion index `index` for Indexed Jobs) carrying the
    /// tracking finalizer.
    fn pod_for(&self, job: &Job, index: Option<i32>) -> anyhow::Result<Pod> {
        let template = job
            .spec
            .as_ref()
            .map(|s| s.template.clone())
            .ok_or_else(|| anyhow::anyhow!("spec.template is required"))?;
        let ns = job.namespace().unwrap_or_default();
        let r = owner::controller_ref("batch/v1", "Job", &job.metadata);
        let mut labels = BTreeMap::new();
        if let Some(i) = index {
            labels.insert(COMPLETION_INDEX.to_string(), i.to_string());
        }
        let mut pod = pod_from_template(&template, &ns, r, None, &labels);
        pod.metadata
            .finalizers
            .get_or_insert_with(Vec::new)
            .push(TRACKING_FINALIZER.into());
        if let Some(i) = index {
            pod.metadata.generate_name = Some(format!("{}-{i}-", job.name_any()));
            pod.metadata
                .annotations
                .get_or_insert_with(Default::default)
                .insert(COMPLETION_INDEX.into(), i.to_string());
            if let Some(spec) = pod.spec.as_mut() {
                spec.hostname = Some(format!("{}-{i}", job.name_any()));
                for c in spec
                    .containers
                    .iter_mut()
                    .chain(spec.init_containers.iter_mut().flatten())
                {
                    c.env.get_or_insert_with(Vec::new).push(EnvVar {
                        name: "JOB_COMPLETION_INDEX".into(),
                        value: None,
                        value_from: Some(serde_json::from_value(serde_json::json!({
                            "fieldRef": {"fieldPath": format!("metadata.annotations['{COMPLETION_INDEX}']")}
                        }))?),
                    });
                }
            }
        }
        Ok(pod)
    }
}
