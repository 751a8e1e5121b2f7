//! The Job controller's I/O around [`plan::decide`]: informer handlers keeping the
//! expectations, then per sync: delete/create pods, flush the status with the newly
//! finished pods as uncounted, remove their tracking finalizers, move them into the
//! counters and enact the terminal condition.
//!
//! Stale caches: creations and deletions are expected before they are issued, finalizer
//! removals are expected by pod UID (a cached pod still showing the finalizer is not
//! counted twice), and the Job itself is read as the freshest of the informer's copy and
//! the copy our own last status write returned — a sync never acts on a Job status older
//! than one it wrote (the informer's Job watch may lag behind the Pod watch).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use component_base::events::{reference_to, EventRecorder, EventSpec, EventType};
use k8s_openapi::api::batch::v1::{Job, JobStatus};
use k8s_openapi::api::core::v1::{EnvVar, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::{Api, ResourceExt};

use super::backoff;
use super::indexes::{self, COMPLETION_INDEX};
use super::plan::{self, DeleteMode, NewPod, Observed, TRACKING_FINALIZER};
use crate::machinery::expectations::{Expectations, UidExpectations};
use crate::machinery::informers::informer::{queue_key, split_key, Change, Informer};
use crate::machinery::owner::{self, Claim, Claimant};
use crate::machinery::pod_control::{pod_from_template, PodControl};
use crate::machinery::queue::WorkQueue;
use api_helpers::errors;
use api_helpers::labels;

/// Upstream's controller and service-account name.
pub const NAME: &str = "job-controller";
/// Queue keys of pods whose Job is gone but which still carry the tracking finalizer.
const ORPHAN_PREFIX: &str = "orphan-pod:";

/// The Job controller. Cheap to clone.
#[derive(Clone)]
pub struct JobController {
    client: kube::Client,
    jobs: Informer<Job>,
    pods: Informer<Pod>,
    queue: WorkQueue<String>,
    expectations: Arc<Expectations>,
    finalizers: Arc<UidExpectations>,
    backoff: Arc<backoff::Store>,
    written: Arc<Mutex<HashMap<String, Arc<Job>>>>,
    pod_control: PodControl,
    recorder: EventRecorder,
}

/// Resource versions are etcd revisions: compare them as numbers when both are.
fn newer(a: &Job, b: &Job) -> bool {
    let rv = |j: &Job| {
        j.metadata
            .resource_version
            .as_deref()
            .and_then(|v| v.parse::<u64>().ok())
    };
    matches!((rv(a), rv(b)), (Some(x), Some(y)) if x > y)
}

/// Drops what the apiserver omits (zero counters, empty lists) so that a status compares
/// equal to its round trip.
fn normalized(mut s: JobStatus) -> JobStatus {
    for v in [&mut s.active, &mut s.succeeded, &mut s.failed] {
        if *v == Some(0) {
            *v = None;
        }
    }
    if s.completed_indexes.as_deref() == Some("") {
        s.completed_indexes = None;
    }
    if s.conditions.as_ref().is_some_and(|c| c.is_empty()) {
        s.conditions = None;
    }
    if let Some(u) = s.uncounted_terminated_pods.as_mut() {
        if u.succeeded.as_ref().is_some_and(|v| v.is_empty()) {
            u.succeeded = None;
        }
        if u.failed.as_ref().is_some_and(|v| v.is_empty()) {
            u.failed = None;
        }
    }
    s
}

impl JobController {
    /// A controller over shared informers, writing with `client`.
    pub fn new(client: kube::Client, jobs: Informer<Job>, pods: Informer<Pod>) -> Self {
        let expectations = Arc::new(Expectations::new());
        let recorder = crate::machinery::context::event_recorder(client.clone(), NAME);
        JobController {
            pod_control: PodControl::new(client.clone(), expectations.clone(), NAME)
                .with_events(recorder.clone()),
            client,
            jobs,
            pods,
            queue: WorkQueue::new(),
            expectations,
            finalizers: Arc::new(UidExpectations::new()),
            backoff: Arc::new(backoff::Store::default()),
            written: Arc::default(),
            recorder,
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
        self.pods.add_handler(move |c| this.on_pod(c));
    }

    fn on_pod(&self, c: Change<'_, Pod>) {
        let (p, created, deleted, final_delete) = match c {
            Change::Added(p) => (p, true, p.metadata.deletion_timestamp.is_some(), false),
            Change::Updated { old, new } => {
                if old.metadata.resource_version == new.metadata.resource_version {
                    return;
                }
                if let (Some(o), n) = (
                    owner::controller_of(&old.metadata),
                    owner::controller_of(&new.metadata),
                ) {
                    if n.as_ref().map(|n| &n.uid) != Some(&o.uid) {
                        if let Some(j) = self.resolve_ref(old, o) {
                            let key = queue_key(j.as_ref());
                            self.finalizers
                                .observed(&key, new.metadata.uid.as_deref().unwrap_or_default());
                            self.queue.add(key);
                        }
                    }
                }
                (new, false, new.metadata.deletion_timestamp.is_some(), false)
            }
            Change::Deleted(p) => (p, false, true, true),
        };
        let uid = p.metadata.uid.as_deref().unwrap_or_default();
        let Some(j) = self.resolve(p) else {
            if plan::has_finalizer(p) && !final_delete {
                self.queue.add(format!("{ORPHAN_PREFIX}{}", queue_key(p)));
            }
            // An orphan: every Job whose selector matches may adopt it (upstream's
            // getPodJobs); no creation is observed, since no Job waits for an orphan.
            if owner::controller_of(&p.metadata).is_none() && !final_delete {
                for j in self.jobs_selecting(p) {
                    self.queue.add(queue_key(j.as_ref()));
                }
            }
            return;
        };
        let key = queue_key(j.as_ref());
        if created {
            self.expectations.creation_observed(&key);
        }
        if deleted {
            self.expectations.deletion_observed(&key, uid);
        }
        if final_delete || !plan::has_finalizer(p) {
            self.finalizers.observed(&key, uid);
        }
        if plan::is_finished(&j) && plan::has_finalizer(p) && !final_delete {
            self.queue.add(format!("{ORPHAN_PREFIX}{}", queue_key(p)));
        }
        self.queue.add(key);
    }

    fn resolve_ref(
        &self,
        p: &Pod,
        r: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
    ) -> Option<Arc<Job>> {
        if r.kind != "Job" {
            return None;
        }
        let j = self.jobs.get(p.metadata.namespace.as_deref()?, &r.name)?;
        (j.metadata.uid.as_deref() == Some(r.uid.as_str())).then_some(j)
    }

    /// The Jobs of `p`'s namespace whose selector matches its labels.
    fn jobs_selecting(&self, p: &Pod) -> Vec<Arc<Job>> {
        self.jobs
            .list_namespace(p.metadata.namespace.as_deref().unwrap_or_default())
            .into_iter()
            .filter(|j| {
                j.spec
                    .as_ref()
                    .and_then(|s| s.selector.as_ref())
                    .is_some_and(|sel| {
                        !labels::is_empty(sel) && labels::matches(sel, p.metadata.labels.as_ref())
                    })
            })
            .collect()
    }

    fn resolve(&self, p: &Pod) -> Option<Arc<Job>> {
        let r = owner::controller_of(&p.metadata)?;
        self.resolve_ref(p, r)
    }

    /// The freshest copy of the Job: the informer's, unless our own last write is newer.
    fn freshest(&self, key: &str, cached: Arc<Job>) -> Arc<Job> {
        let mut w = self.written.lock().unwrap_or_else(|e| e.into_inner());
        match w.get(key) {
            Some(mine) if mine.metadata.uid == cached.metadata.uid && newer(mine, &cached) => {
                mine.clone()
            }
            _ => {
                w.remove(key);
                cached
            }
        }
    }

    async fn write_status(&self, key: &str, j: &Job, s: JobStatus) -> anyhow::Result<Job> {
        let s = normalized(s);
        if j.status.clone().map(normalized).as_ref() == Some(&s) {
            return Ok(j.clone());
        }
        let mut obj = j.clone();
        obj.status = Some(s);
        let api: Api<Job> =
            Api::namespaced(self.client.clone(), &j.namespace().unwrap_or_default());
        let out = api
            .replace_status(&j.name_any(), &PostParams::default(), &obj)
            .await?;
        self.written
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.to_string(), Arc::new(out.clone()));
        Ok(out)
    }

    async fn remove_finalizer(&self, p: &Pod) -> Result<(), kube::Error> {
        let patch = serde_json::json!({
            "metadata": { "$deleteFromPrimitiveList/finalizers": [TRACKING_FINALIZER] }
        });
        self.pod_control
            .patch(&p.namespace().unwrap_or_default(), &p.name_any(), &patch)
            .await
    }

    fn record(&self, job: &Job, warning: bool, reason: &str, note: String) {
        let spec = EventSpec {
            regarding: reference_to(job),
            related: None,
            type_: EventType::warning_if(warning),
            reason: reason.into(),
            action: "Sync".into(),
            note,
        };
        self.recorder.emit(spec);
    }

    /// The Job's pods, as upstream's PodControllerRefManager claims them: its own, plus
    /// matching orphans it adopts (its controller reference and the tracking finalizer
    /// patched in, after a fresh read shows the Job still there), less those that stopped
    /// matching, which it releases (reference and finalizer patched out).
    async fn claim_pods(&self, j: &Job, claimant: &Claimant<'_>) -> anyhow::Result<Vec<Arc<Pod>>> {
        let ns = j.namespace().unwrap_or_default();
        let job_uid = j.metadata.uid.clone().unwrap_or_default();
        let mut owned = Vec::new();
        let mut adoption_checked = false;
        for p in self.pods.list_namespace(&ns) {
            let pod_uid = p.metadata.uid.as_deref().unwrap_or_default();
            match owner::claim(claimant, &p.metadata) {
                Claim::Owned => owned.push(p),
                Claim::Adopt => {
                    if !adoption_checked {
                        let fresh = Api::<Job>::namespaced(self.client.clone(), &ns)
                            .get(&j.name_any())
                            .await?;
                        if fresh.metadata.uid != j.metadata.uid
                            || fresh.metadata.deletion_timestamp.is_some()
                        {
                            anyhow::bail!("{ns}/{}: Job changed while adopting", j.name_any());
                        }
                        adoption_checked = true;
                    }
                    let r = owner::controller_ref("batch/v1", "Job", &j.metadata);
                    let mut patch = owner::adopt_patch(&r, pod_uid);
                    patch["metadata"]["finalizers"] = serde_json::json!([TRACKING_FINALIZER]);
                    errors::ignore_not_found(
                        self.pod_control.patch(&ns, &p.name_any(), &patch).await,
                    )?;
                    owned.push(p);
                }
                Claim::Release => {
                    let mut patch = owner::release_patch(&job_uid, pod_uid);
                    patch["metadata"]["$deleteFromPrimitiveList/finalizers"] =
                        serde_json::json!([TRACKING_FINALIZER]);
                    errors::ignore_not_found(
                        self.pod_control.patch(&ns, &p.name_any(), &patch).await,
                    )?;
                }
                Claim::Ignore => {}
            }
        }
        Ok(owned)
    }

    /// Removes the tracking finalizer of a pod whose Job is gone or finished.
    async fn sync_orphan(&self, key: &str) -> anyhow::Result<()> {
        let (ns, name) = split_key(key);
        let Some(p) = self.pods.get(ns, name) else {
            return Ok(());
        };
        if !plan::has_finalizer(&p) {
            return Ok(());
        }
        if let Some(j) = self.resolve(&p) {
            if !plan::is_finished(&j) {
                return Ok(());
            }
        }
        Ok(self.remove_finalizer(&p).await?)
    }

    /// Reconciles `namespace/name`.
    pub async fn sync(&self, key: String) -> anyhow::Result<()> {
        if let Some(pod_key) = key.strip_prefix(ORPHAN_PREFIX) {
            return self.sync_orphan(pod_key).await;
        }
        let (ns, name) = split_key(&key);
        let Some(cached) = self.jobs.get(ns, name) else {
            self.expectations.forget(&key);
            self.finalizers.forget(&key);
            self.backoff.remove(&key);
            self.written
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&key);
            return Ok(());
        };
        let j = self.freshest(&key, cached);
        if plan::is_finished(&j) {
            self.backoff.remove(&key);
            return Ok(());
        }
        if let Some(m) = j.spec.as_ref().and_then(|s| s.managed_by.as_deref()) {
            if m != "kubernetes.io/job-controller" {
                return Ok(());
            }
        }
        // Expectations first: a pod created after this check is seen by the next sync.
        let satisfied = self.expectations.satisfied(&key);
        let sel = j
            .spec
            .as_ref()
            .and_then(|s| s.selector.clone())
            .unwrap_or_default();
        let claimant = Claimant {
            meta: &j.metadata,
            selector: &sel,
        };
        let all = self.claim_pods(&j, &claimant).await?;
        let owned: Vec<&Pod> = all.iter().map(|p| p.as_ref()).collect();
        let expected_rm = self.finalizers.expected(&key);
        let now = Timestamp::now();
        let d = plan::decide(&Observed {
            job: &j,
            pods: owned,
            expected_rm_finalizers: &expected_rm,
            expectations_satisfied: satisfied,
            backoff: self.backoff.get(&key),
            now,
        });

        // Pods first, as upstream's manageJob.
        let mut first_err: Option<anyhow::Error> = None;
        if !d.delete.is_empty() {
            if d.delete_mode == DeleteMode::RemoveFinalizer {
                for p in &d.delete {
                    if let Err(e) = self.remove_finalizer(p).await {
                        first_err.get_or_insert(e.into());
                    }
                }
            }
            if let Err(e) = self.pod_control.delete_all(&key, &d.delete).await {
                first_err.get_or_insert(e.into());
            }
        }
        if !d.create.is_empty() {
            let pods = d
                .create
                .iter()
                .map(|np| self.pod_for(&j, np))
                .collect::<anyhow::Result<Vec<_>>>()?;
            if let Err(e) = self.pod_control.create_all(&key, pods).await {
                first_err.get_or_insert(e.into());
            }
        }
        for (warning, reason, msg) in &d.events {
            self.record(&j, *warning, reason, msg.clone());
        }

        // Uncounted first, then finalizers, then counters and the terminal condition.
        let mut job = (*j).clone();
        if d.needs_flush {
            job = self.write_status(&key, &job, d.status.clone()).await?;
        }
        self.backoff.set(&key, d.backoff);
        let mut with_finalizer: HashSet<String> = d.uids_with_finalizer.clone();
        if !d.remove_finalizers.is_empty() {
            self.finalizers.expect(
                &key,
                d.remove_finalizers
                    .iter()
                    .filter_map(|p| p.metadata.uid.clone()),
            );
            let results = futures::future::join_all(
                d.remove_finalizers.iter().map(|p| self.remove_finalizer(p)),
            )
            .await;
            for (p, r) in d.remove_finalizers.iter().zip(results) {
                let uid = p.metadata.uid.clone().unwrap_or_default();
                match r {
                    Ok(()) => {
                        with_finalizer.remove(&uid);
                    }
                    Err(e) => {
                        self.finalizers.observed(&key, &uid);
                        first_err.get_or_insert(e.into());
                    }
                }
            }
        }
        let mut status = job.status.clone().unwrap_or_default();
        plan::clean_uncounted(&mut status, &with_finalizer);
        let finished = match &d.finished {
            Some(c) if !d.reached_max_uncounted => plan::enact_finished(&mut status, c, now),
            _ => false,
        };
        job = self.write_status(&key, &job, status).await?;
        if finished {
            if let Some(c) = &d.finished {
                self.record_finished(&job, c);
            }
            self.backoff.remove(&key);
        }
        if let Some(after) = d.requeue {
            self.queue
                .add_after(key, after.max(Duration::from_millis(100)));
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn record_finished(&self, job: &Job, c: &k8s_openapi::api::batch::v1::JobCondition) {
        if c.type_ == "Complete" {
            let s = job.status.as_ref();
            let completions = job.spec.as_ref().and_then(|s| s.completions);
            if let (Some(c), Some(ok)) = (completions, s.and_then(|s| s.succeeded)) {
                if ok > c {
                    self.record(
                        job,
                        true,
                        "TooManySucceededPods",
                        "Too many succeeded pods running after completion count reached".into(),
                    );
                }
            }
            self.record(job, false, "Completed", "Job completed".into());
        } else {
            self.record(
                job,
                true,
                c.reason.as_deref().unwrap_or("Failed"),
                c.message.clone().unwrap_or_default(),
            );
        }
    }

    /// A pod for `job` carrying the tracking finalizer (and, for Indexed Jobs, the
    /// completion index and failure counts).
    fn pod_for(&self, job: &Job, np: &NewPod) -> anyhow::Result<Pod> {
        let template = job
            .spec
            .as_ref()
            .map(|s| s.template.clone())
            .ok_or_else(|| anyhow::anyhow!("spec.template is required"))?;
        let ns = job.namespace().unwrap_or_default();
        let r = owner::controller_ref("batch/v1", "Job", &job.metadata);
        let mut labels = BTreeMap::new();
        if let Some(i) = np.index {
            labels.insert(COMPLETION_INDEX.to_string(), i.to_string());
        }
        let mut pod = pod_from_template(&template, &ns, r, None, &labels);
        let fins = pod.metadata.finalizers.get_or_insert_with(Vec::new);
        if !fins.iter().any(|f| f == TRACKING_FINALIZER) {
            fins.push(TRACKING_FINALIZER.into());
        }
        if let Some(i) = np.index {
            pod.metadata.generate_name = Some(format!("{}-{i}-", job.name_any()));
            let ann = pod
                .metadata
                .annotations
                .get_or_insert_with(Default::default);
            ann.insert(COMPLETION_INDEX.into(), i.to_string());
            if let Some((counted, ignored)) = np.failure_counts {
                ann.insert(indexes::INDEX_FAILURE_COUNT.into(), counted.to_string());
                if ignored > 0 {
                    ann.insert(
                        indexes::INDEX_IGNORED_FAILURE_COUNT.into(),
                        ignored.to_string(),
                    );
                }
            }
            if let Some(spec) = pod.spec.as_mut() {
                spec.hostname = Some(format!("{}-{i}", job.name_any()));
                for c in spec
                    .containers
                    .iter_mut()
                    .chain(spec.init_containers.iter_mut().flatten())
                {
                    let env = c.env.get_or_insert_with(Vec::new);
                    if env.iter().any(|e| e.name == "JOB_COMPLETION_INDEX") {
                        continue;
                    }
                    env.push(EnvVar {
                        name: "JOB_COMPLETION_INDEX".into(),
                        value: None,
                        value_from: Some(serde_json::from_value(serde_json::json!({
                            "fieldRef": {"fieldPath": format!("metadata.labels['{COMPLETION_INDEX}']")}
                        }))?),
                    });
                }
            }
        }
        Ok(pod)
    }
}

workload_controller!(JobController);
