//! The Deployment controller: claims ReplicaSets, then scales, rolls (RollingUpdate or
//! Recreate), cleans up history and writes status, one API write at a time as upstream.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};

use super::plan::{self, RsView};
use super::replicasets::{self as rsutil};
use super::status::{self, reason};
use super::util;
use crate::machinery::informers::informer::{queue_key, split_key, Change, Informer};
use crate::machinery::owner::{self, Claim, Claimant};
use crate::machinery::pods;
use crate::machinery::queue::WorkQueue;
use api_helpers::labels;

/// Upstream's controller and service-account name.
pub const NAME: &str = "deployment-controller";

/// The Deployment controller. Cheap to clone.
#[derive(Clone)]
pub struct DeploymentController {
    client: kube::Client,
    deployments: Informer<Deployment>,
    replicasets: Informer<ReplicaSet>,
    pods: Informer<Pod>,
    queue: WorkQueue<String>,
}

impl DeploymentController {
    /// A controller over shared informers, writing with `client`.
    pub fn new(
        client: kube::Client,
        deployments: Informer<Deployment>,
        replicasets: Informer<ReplicaSet>,
        pods: Informer<Pod>,
    ) -> Self {
        DeploymentController {
            client,
            deployments,
            replicasets,
            pods,
            // Upstream's maxRetries: a Deployment failing 15 times in a row (5ms .. 82s
            // apart) is dropped until its next change.
            queue: WorkQueue::new().with_max_retries(15),
        }
    }

    /// The work queue.
    pub fn queue(&self) -> &WorkQueue<String> {
        &self.queue
    }

    /// Registers the informer handlers.
    pub fn watch(&self) {
        let q = self.queue.clone();
        self.deployments.add_handler(move |c| match c {
            Change::Added(d) | Change::Deleted(d) | Change::Updated { new: d, .. } => {
                q.add(queue_key(d))
            }
        });
        let this = self.clone();
        self.replicasets.add_handler(move |c| match c {
            Change::Added(rs) | Change::Deleted(rs) => this.enqueue_for_rs(rs),
            Change::Updated { old, new } => {
                if owner::controller_of(&old.metadata).map(|r| &r.uid)
                    != owner::controller_of(&new.metadata).map(|r| &r.uid)
                {
                    this.enqueue_for_rs(old);
                }
                this.enqueue_for_rs(new);
            }
        });
        let this = self.clone();
        self.pods.add_handler(move |c| {
            // Recreate waits for old pods to be gone.
            if let Change::Deleted(p) = c {
                if let Some(d) = this.deployment_of_pod(p) {
                    if !util::is_rolling(&d) {
                        this.queue.add(queue_key(d.as_ref()));
                    }
                }
            }
        });
    }

    fn resolve(&self, rs: &ReplicaSet) -> Option<Arc<Deployment>> {
        let r = owner::controller_of(&rs.metadata).filter(|r| r.kind == "Deployment")?;
        let d = self
            .deployments
            .get(rs.metadata.namespace.as_deref()?, &r.name)?;
        (d.metadata.uid.as_deref() == Some(r.uid.as_str())).then_some(d)
    }

    fn deployment_of_pod(&self, p: &Pod) -> Option<Arc<Deployment>> {
        let r = owner::controller_of(&p.metadata).filter(|r| r.kind == "ReplicaSet")?;
        let rs = self
            .replicasets
            .get(p.metadata.namespace.as_deref()?, &r.name)?;
        self.resolve(&rs)
    }

    fn enqueue_for_rs(&self, rs: &ReplicaSet) {
        if let Some(d) = self.resolve(rs) {
            return self.queue.add(queue_key(d.as_ref()));
        }
        if owner::controller_of(&rs.metadata).is_none() {
            let ns = rs.metadata.namespace.as_deref().unwrap_or_default();
            for d in self.deployments.list_namespace(ns) {
                let sel = d
                    .spec
                    .as_ref()
                    .map(|s| s.selector.clone())
                    .unwrap_or_default();
                if !labels::is_empty(&sel) && labels::matches(&sel, rs.metadata.labels.as_ref()) {
                    self.queue.add(queue_key(d.as_ref()));
                }
            }
        }
    }

    fn rs_api(&self, ns: &str) -> Api<ReplicaSet> {
        Api::namespaced(self.client.clone(), ns)
    }

    /// The ReplicaSets this Deployment controls, after adopting orphans and releasing
    /// ReplicaSets that no longer match.
    async fn claim_replicasets(&self, d: &Deployment) -> anyhow::Result<Vec<ReplicaSet>> {
        let ns = d.namespace().unwrap_or_default();
        let sel = d
            .spec
            .as_ref()
            .map(|s| s.selector.clone())
            .unwrap_or_default();
        let claimant = Claimant {
            meta: &d.metadata,
            selector: &sel,
        };
        let mut out = Vec::new();
        for rs in self.replicasets.list_namespace(&ns) {
            let uid = rs.metadata.uid.clone().unwrap_or_default();
            match owner::claim(&claimant, &rs.metadata) {
                Claim::Owned => out.push((*rs).clone()),
                Claim::Adopt => {
                    let r = owner::controller_ref("apps/v1", "Deployment", &d.metadata);
                    let patched = self
                        .rs_api(&ns)
                        .patch(
                            &rs.name_any(),
                            &PatchParams::default(),
                            &Patch::Strategic(owner::adopt_patch(&r, &uid)),
                        )
                        .await?;
                    out.push(patched);
                }
                Claim::Release => {
                    let p =
                        owner::release_patch(d.metadata.uid.as_deref().unwrap_or_default(), &uid);
                    self.rs_api(&ns)
                        .patch(
                            &rs.name_any(),
                            &PatchParams::default(),
                            &Patch::Strategic(p),
                        )
                        .await?;
                }
                Claim::Ignore => {}
            }
        }
        Ok(out)
    }

    /// Reconciles `namespace/name`.
    pub async fn sync(&self, key: String) -> anyhow::Result<()> {
        let (ns, name) = split_key(&key);
        let Some(d) = self.deployments.get(ns, name) else {
            return Ok(());
        };
        let mut d = (*d).clone();
        let sel = d
            .spec
            .as_ref()
            .map(|s| s.selector.clone())
            .unwrap_or_default();
        if labels::is_empty(&sel) {
            tracing::warn!(deployment = %key, "spec.selector selects everything; not syncing");
            return Ok(());
        }
        let mut rss = self.claim_replicasets(&d).await?;
        if d.metadata.deletion_timestamp.is_some() {
            return self.sync_status_only(&d, &rss).await;
        }
        let now = Timestamp::now();
        if let Some(c) = status::paused_condition(&d, now) {
            let mut s = d.status.clone().unwrap_or_default();
            status::set(&mut s, c);
            d = self.write_status(&d, s).await?;
        }
        let paused = d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
        let all: Vec<&ReplicaSet> = rss.iter().collect();
        if paused || rsutil::is_scaling_event(&d, &all) {
            return self.sync_scale(&mut d, &mut rss, paused).await;
        }
        if util::is_rolling(&d) {
            self.rollout_rolling(&mut d, &mut rss).await
        } else {
            self.rollout_recreate(&mut d, &mut rss).await
        }
    }

    /// Finds or (if `create`) creates the new ReplicaSet and syncs revision annotations.
    /// Returns the index of the new ReplicaSet in `rss`.
    async fn sync_revision(
        &self,
        d: &mut Deployment,
        rss: &mut Vec<ReplicaSet>,
        create: bool,
    ) -> anyhow::Result<Option<usize>> {
        let ns = d.namespace().unwrap_or_default();
        let (new, old) = rsutil::split_new_old(d, rss);
        let revision = rsutil::next_revision(&old);
        let new_name = new.map(|r| r.name_any());
        let now = Timestamp::now();
        let idx = if let Some(new_name) = new_name {
            let i = rss
                .iter()
                .position(|r| r.name_any() == new_name)
                .unwrap_or(0);
            let cur = rss[i].metadata.annotations.clone().unwrap_or_default();
            let want = rsutil::new_rs_annotations(d, &cur, revision);
            let mrs = d.spec.as_ref().and_then(|s| s.min_ready_seconds);
            let cur_mrs = rss[i].spec.as_ref().and_then(|s| s.min_ready_seconds);
            if want != cur || mrs.unwrap_or(0) != cur_mrs.unwrap_or(0) {
                let patch = serde_json::json!({
                    "metadata": { "annotations": want },
                    "spec": { "minReadySeconds": mrs.unwrap_or(0) },
                });
                rss[i] = self
                    .rs_api(&ns)
                    .patch(&new_name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
            }
            if d.status
                .as_ref()
                .and_then(|s| status::get(s, "Progressing"))
                .is_none()
                && status::progress_deadline(d).is_some()
            {
                let mut s = d.status.clone().unwrap_or_default();
                status::set(
                    &mut s,
                    status::condition(
                        "Progressing",
                        "True",
                        reason::FOUND_NEW_RS,
                        format!("Found new replica set \"{new_name}\""),
                        now,
                    ),
                );
                *d = self.write_status(d, s).await?;
            }
            Some(i)
        } else if create {
            let (surge, _) = util::fenceposts(d);
            let total: i32 = rss.iter().map(util::rs_replicas).sum();
            let size =
                plan::new_rs_replicas(util::replicas(d), surge, util::is_rolling(d), 0, total);
            let new_rs = rsutil::build_new(d, size, revision);
            let created = match self
                .rs_api(&ns)
                .create(&PostParams::default(), &new_rs)
                .await
            {
                Ok(rs) => rs,
                Err(e) if api_helpers::errors::is_conflict(&e) => {
                    let existing = self.rs_api(&ns).get(&new_rs.name_any()).await?;
                    let same = owner::is_controlled_by(
                        &existing.metadata,
                        d.metadata.uid.as_deref().unwrap_or_default(),
                    ) && existing
                        .spec
                        .as_ref()
                        .and_then(|s| s.template.as_ref())
                        .zip(d.spec.as_ref())
                        .is_some_and(|(t, s)| util::equal_ignore_hash(t, &s.template));
                    if same {
                        existing
                    } else {
                        // A hash collision: bump collisionCount so the next hash differs.
                        let mut s = d.status.clone().unwrap_or_default();
                        s.collision_count = Some(s.collision_count.unwrap_or(0) + 1);
                        self.write_status(d, s).await?;
                        anyhow::bail!("hash collision creating ReplicaSet {}; retrying with a new collisionCount", new_rs.name_any());
                    }
                }
                Err(e) => {
                    let mut s = d.status.clone().unwrap_or_default();
                    status::set(
                        &mut s,
                        status::condition(
                            "ReplicaFailure",
                            "True",
                            reason::RS_CREATE_ERROR,
                            e.to_string(),
                            now,
                        ),
                    );
                    self.write_status(d, s).await?;
                    return Err(e.into());
                }
            };
            if status::progress_deadline(d).is_some() {
                let mut s = d.status.clone().unwrap_or_default();
                status::set(
                    &mut s,
                    status::condition(
                        "Progressing",
                        "True",
                        reason::NEW_RS_CREATED,
                        format!("Created new replica set \"{}\"", created.name_any()),
                        now,
                    ),
                );
                *d = self.write_status(d, s).await?;
            }
            rss.push(created);
            Some(rss.len() - 1)
        } else {
            None
        };
        // The Deployment carries its newest revision.
        if let Some(i) = idx {
            let rev =
                util::annotation(&rss[i].metadata.annotations, util::REVISION).map(str::to_string);
            if rev.is_some()
                && util::annotation(&d.metadata.annotations, util::REVISION) != rev.as_deref()
            {
                // `update`, as upstream's RBAC allows no `patch` on deployments.
                let mut obj = d.clone();
                obj.metadata
                    .annotations
                    .get_or_insert_with(Default::default)
                    .insert(util::REVISION.into(), rev.unwrap_or_default());
                let api: Api<Deployment> = Api::namespaced(self.client.clone(), &ns);
                *d = api
                    .replace(&d.name_any(), &PostParams::default(), &obj)
                    .await?;
            }
        }
        Ok(idx)
    }

    /// Sets `rss[i]` to `replicas`, stamping desired/max replicas annotations.
    async fn scale(
        &self,
        d: &Deployment,
        rs: &mut ReplicaSet,
        replicas: i32,
    ) -> anyhow::Result<bool> {
        let (surge, _) = util::fenceposts(d);
        let desired = util::replicas(d).to_string();
        let max = (util::replicas(d) + surge).to_string();
        let ann = &rs.metadata.annotations;
        if util::rs_replicas(rs) == replicas
            && util::annotation(ann, util::DESIRED_REPLICAS) == Some(desired.as_str())
            && util::annotation(ann, util::MAX_REPLICAS) == Some(max.as_str())
        {
            return Ok(false);
        }
        let changed = util::rs_replicas(rs) != replicas;
        let patch = serde_json::json!({
            "metadata": { "annotations": { util::DESIRED_REPLICAS: desired, util::MAX_REPLICAS: max } },
            "spec": { "replicas": replicas },
        });
        let ns = rs.namespace().unwrap_or_default();
        *rs = self
            .rs_api(&ns)
            .patch(
                &rs.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
        if changed {
            tracing::info!(deployment = %d.name_any(), replicaset = %rs.name_any(), replicas, "Scaled replica set");
        }
        Ok(changed)
    }

    fn views(rss: &[&ReplicaSet]) -> Vec<RsView> {
        rss.iter()
            .map(|rs| RsView {
                name: rs.name_any(),
                replicas: util::rs_replicas(rs),
                available: util::rs_available(rs),
                created: rs
                    .metadata
                    .creation_timestamp
                    .as_ref()
                    .map_or(Timestamp::UNIX_EPOCH, |t| t.0),
                max_replicas: util::annotation(&rs.metadata.annotations, util::MAX_REPLICAS)
                    .and_then(|v| v.parse().ok()),
            })
            .collect()
    }

    async fn apply_sizes(
        &self,
        d: &Deployment,
        rss: &mut [ReplicaSet],
        sizes: &[(String, i32)],
    ) -> anyhow::Result<bool> {
        let mut changed = false;
        for (name, size) in sizes {
            if let Some(rs) = rss.iter_mut().find(|r| &r.name_any() == name) {
                changed |= self.scale(d, rs, *size).await?;
            }
        }
        Ok(changed)
    }

    /// Scaling (and paused Deployments): resize without rolling out.
    async fn sync_scale(
        &self,
        d: &mut Deployment,
        rss: &mut Vec<ReplicaSet>,
        paused: bool,
    ) -> anyhow::Result<()> {
        let new_idx = self.sync_revision(d, rss, false).await?;
        let desired = util::replicas(d);
        let new_name = new_idx.map(|i| rss[i].name_any());
        let active: Vec<usize> = (0..rss.len())
            .filter(|&i| util::rs_replicas(&rss[i]) > 0)
            .collect();
        let sizes: Vec<(String, i32)> = if active.len() <= 1 {
            // One active (or none: the newest) takes the whole count.
            let target = active.first().copied().or(new_idx).or_else(|| {
                (0..rss.len()).max_by_key(|&i| rss[i].metadata.creation_timestamp.clone())
            });
            target
                .map(|i| vec![(rss[i].name_any(), desired)])
                .unwrap_or_default()
        } else if new_idx.is_some_and(|i| {
            let st = rss[i].status.clone().unwrap_or_default();
            util::rs_replicas(&rss[i]) == desired && st.available_replicas.unwrap_or(0) == desired
        }) {
            active
                .iter()
                .filter(|&&i| Some(rss[i].name_any()) != new_name)
                .map(|&i| (rss[i].name_any(), 0))
                .collect()
        } else if util::is_rolling(d) {
            let (surge, _) = util::fenceposts(d);
            let refs: Vec<&ReplicaSet> = active.iter().map(|&i| &rss[i]).collect();
            let views = Self::views(&refs);
            let prev = d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0);
            let sizes = plan::proportional(desired, surge, prev, &views);
            views
                .into_iter()
                .zip(sizes)
                .map(|(v, s)| (v.name, s))
                .collect()
        } else {
            Vec::new()
        };
        self.apply_sizes(d, rss, &sizes).await?;
        if paused {
            self.cleanup(d, rss, new_name.as_deref()).await?;
        }
        self.sync_status_only(d, rss).await
    }

    async fn rollout_rolling(
        &self,
        d: &mut Deployment,
        rss: &mut Vec<ReplicaSet>,
    ) -> anyhow::Result<()> {
        let new_idx = self
            .sync_revision(d, rss, true)
            .await?
            .ok_or_else(|| anyhow::anyhow!("no new ReplicaSet"))?;
        let new_name = rss[new_idx].name_any();
        let desired = util::replicas(d);
        let (surge, _) = util::fenceposts(d);
        let total: i32 = rss.iter().map(util::rs_replicas).sum();
        let new_size = util::rs_replicas(&rss[new_idx]);
        let target = if new_size > desired {
            desired
        } else {
            plan::new_rs_replicas(desired, surge, true, new_size, total)
        };
        if self.scale(d, &mut rss[new_idx], target).await? {
            return self.sync_rollout_status(d, rss, Some(&new_name)).await;
        }
        let new_view = Self::views(&[&rss[new_idx]]).pop();
        let old: Vec<&ReplicaSet> = rss.iter().filter(|r| r.name_any() != new_name).collect();
        let sizes = plan::scale_down_old(
            desired,
            util::max_unavailable(d),
            new_view.as_ref(),
            &Self::views(&old),
        );
        if self.apply_sizes(d, rss, &sizes).await? {
            return self.sync_rollout_status(d, rss, Some(&new_name)).await;
        }
        let all: Vec<&ReplicaSet> = rss.iter().collect();
        let (s, _) = status::rollout(d, Some(&rss[new_idx]), &all, Timestamp::now());
        if status::is_complete(d, &s) {
            self.cleanup(d, rss, Some(&new_name)).await?;
        }
        self.sync_rollout_status(d, rss, Some(&new_name)).await
    }

    async fn rollout_recreate(
        &self,
        d: &mut Deployment,
        rss: &mut Vec<ReplicaSet>,
    ) -> anyhow::Result<()> {
        let new_idx = self.sync_revision(d, rss, false).await?;
        let new_name = new_idx.map(|i| rss[i].name_any());
        let old_names: Vec<String> = rss
            .iter()
            .map(|r| r.name_any())
            .filter(|n| Some(n) != new_name.as_ref())
            .collect();
        let to_zero: Vec<(String, i32)> = old_names.iter().map(|n| (n.clone(), 0)).collect();
        if self.apply_sizes(d, rss, &to_zero).await? {
            return self.sync_rollout_status(d, rss, new_name.as_deref()).await;
        }
        // Wait until no pod of an old ReplicaSet runs (terminating ones included).
        let old_uids: Vec<String> = rss
            .iter()
            .filter(|r| old_names.contains(&r.name_any()))
            .filter_map(|r| r.metadata.uid.clone())
            .collect();
        let ns = d.namespace().unwrap_or_default();
        let old_running = self.pods.list_namespace(&ns).iter().any(|p| {
            owner::controller_of(&p.metadata).is_some_and(|r| old_uids.contains(&r.uid))
                && !matches!(pods::phase(p), "Succeeded" | "Failed")
        });
        if old_running {
            return self.sync_rollout_status(d, rss, new_name.as_deref()).await;
        }
        let new_idx = match new_idx {
            Some(i) => i,
            None => self
                .sync_revision(d, rss, true)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no new ReplicaSet"))?,
        };
        let new_name = rss[new_idx].name_any();
        let desired = util::replicas(d);
        if self.scale(d, &mut rss[new_idx], desired).await? {
            return self.sync_rollout_status(d, rss, Some(&new_name)).await;
        }
        let all: Vec<&ReplicaSet> = rss.iter().collect();
        let (s, _) = status::rollout(d, Some(&rss[new_idx]), &all, Timestamp::now());
        if status::is_complete(d, &s) {
            self.cleanup(d, rss, Some(&new_name)).await?;
        }
        self.sync_rollout_status(d, rss, Some(&new_name)).await
    }

    async fn cleanup(
        &self,
        d: &Deployment,
        rss: &[ReplicaSet],
        new_name: Option<&str>,
    ) -> anyhow::Result<()> {
        let old: Vec<&ReplicaSet> = rss
            .iter()
            .filter(|r| Some(r.name_any().as_str()) != new_name)
            .collect();
        for rs in rsutil::history_to_delete(d, &old) {
            let ns = rs.namespace().unwrap_or_default();
            match self
                .rs_api(&ns)
                .delete(&rs.name_any(), &DeleteParams::default())
                .await
            {
                Ok(_) => {}
                Err(e) if api_helpers::errors::is_not_found(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    async fn sync_rollout_status(
        &self,
        d: &Deployment,
        rss: &[ReplicaSet],
        new_name: Option<&str>,
    ) -> anyhow::Result<()> {
        let all: Vec<&ReplicaSet> = rss.iter().collect();
        let new = rss.iter().find(|r| Some(r.name_any().as_str()) == new_name);
        let (s, recheck) = status::rollout(d, new, &all, Timestamp::now());
        self.write_status(d, s).await?;
        if let Some(secs) = recheck {
            self.queue
                .add_after(queue_key(d), Duration::from_secs(secs as u64));
        }
        Ok(())
    }

    async fn sync_status_only(&self, d: &Deployment, rss: &[ReplicaSet]) -> anyhow::Result<()> {
        let (new, _) = rsutil::split_new_old(d, rss);
        let all: Vec<&ReplicaSet> = rss.iter().collect();
        let s = status::calculate(d, new, &all, Timestamp::now());
        self.write_status(d, s).await?;
        Ok(())
    }

    /// Writes `s` unless it equals the current status (ignoring condition timestamps).
    async fn write_status(
        &self,
        d: &Deployment,
        s: DeploymentStatus,
    ) -> anyhow::Result<Deployment> {
        if d.status.as_ref() == Some(&s) {
            return Ok(d.clone());
        }
        // Upstream's RBAC grants `update` (not `patch`) on deployments/status.
        let api: Api<Deployment> =
            Api::namespaced(self.client.clone(), &d.namespace().unwrap_or_default());
        let mut obj = d.clone();
        obj.status = Some(s);
        Ok(api
            .replace_status(&d.name_any(), &PostParams::default(), &obj)
            .await?)
    }
}

workload_controller!(DeploymentController);
