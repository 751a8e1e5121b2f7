//! The DaemonSet controller: informer handlers (DaemonSets, pods, nodes, revisions), and the
//! sync that claims pods and revisions, executes [`plan::manage`] and
//! [`plan::rolling_update`], truncates history and writes status.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{Node, Pod, PodTemplateSpec};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::{Api, ResourceExt};

use super::backoff::Backoff;
use super::eligibility::{self, add_daemon_tolerations};
use super::plan::{self, ByNode, Changes, DsView, NodeFacts, TEMPLATE_GENERATION_LABEL};
use super::status;
use component_base::events::{reference_to, EventRecorder, EventSpec, EventType};

use crate::apps::history::{self, History, POD_REVISION_LABEL};
use crate::apps::replicaset::manage::BURST_REPLICAS;
use crate::machinery::expectations::Expectations;
use crate::machinery::informers::informer::{queue_key, split_key, Change, Informer};
use crate::machinery::owner::{self, Claim, Claimant};
use crate::machinery::pod_control::{pod_from_template, PodControl};
use crate::machinery::pod_events::PodEvents;
use crate::machinery::pods;
use crate::machinery::queue::WorkQueue;
use api_helpers::labels;

/// Upstream's controller and service-account name.
pub const NAME: &str = "daemon-set-controller";
const API_VERSION: &str = "apps/v1";
const KIND: &str = "DaemonSet";
/// Annotation with the deprecated template generation.
pub const TEMPLATE_GENERATION_ANNOTATION: &str = "deprecated.daemonset.template.generation";

/// The DaemonSet controller. Cheap to clone.
#[derive(Clone)]
pub struct DaemonSetController {
    client: kube::Client,
    sets: Informer<DaemonSet>,
    pods: Informer<Pod>,
    nodes: Informer<Node>,
    revisions: Informer<ControllerRevision>,
    queue: WorkQueue<String>,
    creations: Arc<Expectations>,
    deletions: Arc<Expectations>,
    creator: PodControl,
    deleter: PodControl,
    history: History,
    failed_backoff: Arc<Backoff>,
    recorder: EventRecorder,
}

/// The spec a daemon pod gets before pinning: the template's plus the daemon tolerations.
pub fn daemon_pod_spec(ds: &DaemonSet) -> k8s_openapi::api::core::v1::PodSpec {
    let mut spec = ds
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.clone())
        .unwrap_or_default();
    add_daemon_tolerations(&mut spec);
    spec
}

/// Eligibility of every node for `ds`.
pub fn node_facts(ds: &DaemonSet, nodes: &[Arc<Node>]) -> Vec<NodeFacts> {
    let spec = daemon_pod_spec(ds);
    nodes
        .iter()
        .map(|n| {
            let (should_run, should_continue) = eligibility::should_run(&spec, n);
            NodeFacts {
                name: n.name_any(),
                should_run,
                should_continue,
            }
        })
        .collect()
}

fn template_generation(ds: &DaemonSet) -> Option<i64> {
    ds.metadata
        .annotations
        .as_ref()?
        .get(TEMPLATE_GENERATION_ANNOTATION)?
        .parse()
        .ok()
}

fn node_changed(old: &Node, new: &Node) -> bool {
    let spec = |n: &Node| n.spec.as_ref().map(|s| (s.taints.clone(), s.unschedulable));
    old.metadata.labels != new.metadata.labels || spec(old) != spec(new)
}

impl DaemonSetController {
    /// Records an event on `ds` in the background.
    fn event(&self, ds: &DaemonSet, warning: bool, reason: &str, action: &str, note: String) {
        let spec = EventSpec {
            regarding: reference_to(ds),
            related: None,
            type_: EventType::warning_if(warning),
            reason: reason.into(),
            action: action.into(),
            note,
        };
        self.recorder.emit(spec);
    }

    /// A controller over shared informers, writing with `client`.
    pub fn new(
        client: kube::Client,
        sets: Informer<DaemonSet>,
        pods: Informer<Pod>,
        nodes: Informer<Node>,
        revisions: Informer<ControllerRevision>,
    ) -> Self {
        let creations = Arc::new(Expectations::new());
        let deletions = Arc::new(Expectations::new());
        DaemonSetController {
            creator: PodControl::new(client.clone(), creations.clone(), NAME),
            deleter: PodControl::new(client.clone(), deletions.clone(), NAME),
            history: History::new(client.clone()),
            recorder: crate::machinery::context::event_recorder(client.clone(), NAME),
            client,
            sets,
            pods,
            nodes,
            revisions,
            queue: WorkQueue::new(),
            creations,
            deletions,
            failed_backoff: Arc::new(Backoff::new()),
        }
    }

    /// The work queue (keys `namespace/name`).
    pub fn queue(&self) -> &WorkQueue<String> {
        &self.queue
    }

    fn enqueue_all(&self) {
        for ds in self.sets.list() {
            self.queue.add(queue_key(ds.as_ref()));
        }
    }

    /// Registers the informer handlers.
    pub fn watch(&self) {
        let q = self.queue.clone();
        self.sets.add_handler(move |c| match c {
            Change::Added(o) | Change::Deleted(o) | Change::Updated { new: o, .. } => {
                q.add(queue_key(o))
            }
        });
        let events = PodEvents::new(
            self.sets.clone(),
            self.queue.clone(),
            self.creations.clone(),
            self.deletions.clone(),
        );
        self.pods.add_handler(move |c| events.route(c));
        let this = self.clone();
        self.nodes.add_handler(move |c| match c {
            Change::Added(_) | Change::Deleted(_) => this.enqueue_all(),
            Change::Updated { old, new } => {
                if node_changed(old, new) {
                    this.enqueue_all();
                }
            }
        });
        let this = self.clone();
        self.revisions.add_handler(move |c| {
            let cr = match c {
                Change::Added(o) | Change::Deleted(o) | Change::Updated { new: o, .. } => o,
            };
            if let Some(r) = owner::controller_of(&cr.metadata).filter(|r| r.kind == KIND) {
                let ns = cr.metadata.namespace.clone().unwrap_or_default();
                this.queue.add(format!("{ns}/{}", r.name));
            }
        });
    }

    /// Claims the DaemonSet's pods (adopting matching orphans, releasing non-matching ones).
    async fn claim_pods(&self, ds: &DaemonSet) -> anyhow::Result<Vec<Arc<Pod>>> {
        let ns = ds.namespace().unwrap_or_default();
        let sel = ds
            .spec
            .as_ref()
            .map(|s| s.selector.clone())
            .unwrap_or_default();
        let claimant = Claimant {
            meta: &ds.metadata,
            selector: &sel,
        };
        let ds_uid = ds.metadata.uid.clone().unwrap_or_default();
        let mut owned = Vec::new();
        let mut adopt_checked = false;
        for p in self.pods.list_namespace(&ns) {
            let pod_uid = p.metadata.uid.as_deref().unwrap_or_default();
            match owner::claim(&claimant, &p.metadata) {
                Claim::Owned => owned.push(p),
                Claim::Adopt => {
                    if !adopt_checked {
                        let fresh = Api::<DaemonSet>::namespaced(self.client.clone(), &ns)
                            .get(&ds.name_any())
                            .await?;
                        if fresh.metadata.uid != ds.metadata.uid
                            || fresh.metadata.deletion_timestamp.is_some()
                        {
                            anyhow::bail!(
                                "{ns}/{}: DaemonSet changed while adopting",
                                ds.name_any()
                            );
                        }
                        adopt_checked = true;
                    }
                    let r = owner::controller_ref(API_VERSION, KIND, &ds.metadata);
                    self.creator
                        .patch(&ns, &p.name_any(), &owner::adopt_patch(&r, pod_uid))
                        .await?;
                    owned.push(p);
                }
                Claim::Release => {
                    self.creator
                        .patch(&ns, &p.name_any(), &owner::release_patch(&ds_uid, pod_uid))
                        .await?;
                }
                Claim::Ignore => {}
            }
        }
        Ok(owned)
    }

    /// The current revision (created or renumbered as upstream's `constructHistory`), the
    /// other revisions, and the collision count.
    async fn construct_history(
        &self,
        ds: &DaemonSet,
    ) -> anyhow::Result<(ControllerRevision, Vec<ControllerRevision>, i32)> {
        let ns = ds.namespace().unwrap_or_default();
        let sel = ds
            .spec
            .as_ref()
            .map(|s| s.selector.clone())
            .unwrap_or_default();
        let uid = ds.metadata.uid.clone().unwrap_or_default();
        let mut revisions = Vec::new();
        for cr in self.revisions.list_namespace(&ns) {
            if !labels::matches(&sel, cr.metadata.labels.as_ref()) {
                continue;
            }
            match owner::controller_of(&cr.metadata) {
                Some(r) if r.uid == uid => revisions.push((*cr).clone()),
                Some(_) => {}
                None => {
                    let r = owner::controller_ref(API_VERSION, KIND, &ds.metadata);
                    revisions.push(self.history.adopt(&cr, r).await?);
                }
            }
        }
        history::sort(&mut revisions);
        let template = ds
            .spec
            .as_ref()
            .map(|s| s.template.clone())
            .unwrap_or_default();
        let data = history::template_patch(&template);
        let equal = history::find_equal(&revisions, &data);
        let max = revisions.iter().map(|r| r.revision).max().unwrap_or(0);
        let mut collision_count = ds
            .status
            .as_ref()
            .and_then(|s| s.collision_count)
            .unwrap_or(0);
        let current = match equal.last() {
            Some(&i) if revisions[i].revision < max => {
                self.history.set_revision(&revisions[i], max + 1).await?
            }
            Some(&i) => revisions[i].clone(),
            None => {
                let r = owner::controller_ref(API_VERSION, KIND, &ds.metadata);
                let labels = template.metadata.as_ref().and_then(|m| m.labels.as_ref());
                let cr = history::new_revision(
                    r,
                    &ns,
                    labels,
                    ds.metadata.annotations.clone(),
                    data,
                    max + 1,
                );
                self.history
                    .create(&ds.name_any(), POD_REVISION_LABEL, cr, &mut collision_count)
                    .await?
            }
        };
        let old: Vec<ControllerRevision> = revisions
            .into_iter()
            .filter(|r| r.metadata.name != current.metadata.name)
            .collect();
        Ok((current, old, collision_count))
    }

    /// Creates daemon pods pinned to `nodes` and deletes `victims`.
    async fn sync_nodes(
        &self,
        ds: &DaemonSet,
        key: &str,
        hash: &str,
        nodes: &[String],
        victims: &[&Pod],
    ) -> anyhow::Result<()> {
        let ns = ds.namespace().unwrap_or_default();
        let mut template: PodTemplateSpec = ds
            .spec
            .as_ref()
            .map(|s| s.template.clone())
            .unwrap_or_default();
        template.spec = Some(daemon_pod_spec(ds));
        let mut labels = BTreeMap::new();
        if let Some(g) = template_generation(ds) {
            labels.insert(TEMPLATE_GENERATION_LABEL.to_string(), g.to_string());
        }
        if !hash.is_empty() {
            labels.insert(POD_REVISION_LABEL.to_string(), hash.to_string());
        }
        let r = owner::controller_ref(API_VERSION, KIND, &ds.metadata);
        let pods: Vec<Pod> = nodes
            .iter()
            .take(BURST_REPLICAS)
            .map(|node| {
                let mut p = pod_from_template(&template, &ns, r.clone(), None, &labels);
                let spec = p.spec.get_or_insert_with(Default::default);
                spec.affinity = Some(eligibility::pin_to_node(spec.affinity.take(), node));
                p
            })
            .collect();
        if !pods.is_empty() {
            tracing::info!(daemonset = %key, count = pods.len(), "creating daemon pods");
        }
        let created = self.creator.create_all(key, pods).await;
        let victims: Vec<&Pod> = victims.iter().copied().take(BURST_REPLICAS).collect();
        if !victims.is_empty() {
            tracing::info!(daemonset = %key, count = victims.len(), "deleting daemon pods");
        }
        let deleted = self.deleter.delete_all(key, &victims).await;
        match &deleted {
            Ok(()) => {
                for v in &victims {
                    let note = format!("Deleted pod: {}", v.name_any());
                    self.event(ds, false, "SuccessfulDelete", "Delete", note);
                }
            }
            Err(e) => {
                let note = format!("Error deleting: {e}");
                self.event(ds, true, "FailedDelete", "Delete", note);
            }
        }
        if let Err(e) = &created {
            let note = format!("Error creating: {e}");
            self.event(ds, true, "FailedCreate", "Create", note);
        }
        created?;
        deleted?;
        Ok(())
    }

    /// The failed pods of `changes` whose node is out of backoff (each starts a new backoff
    /// period); requeues the key for the others.
    fn failed_to_delete<'a>(
        &self,
        ds: &DaemonSet,
        key: &str,
        changes: &Changes<'a>,
    ) -> Vec<&'a Pod> {
        let now = Instant::now();
        let mut out = Vec::new();
        for (node, pod) in &changes.failed {
            let bkey = format!("{key}/{node}");
            match self.failed_backoff.remaining(&bkey, now) {
                Some(wait) => self.queue.add_after(key.to_string(), wait),
                None => {
                    self.failed_backoff.next(&bkey, now);
                    let note = format!(
                        "Found failed daemon pod {}/{} on node {node}, will try to kill it",
                        pod.namespace().unwrap_or_default(),
                        pod.name_any()
                    );
                    tracing::info!(daemonset = %key, "{note}");
                    self.event(ds, true, "FailedDaemonPod", "Delete", note);
                    out.push(*pod);
                }
            }
        }
        out
    }

    /// Reconciles `namespace/name`.
    pub async fn sync(&self, key: String) -> anyhow::Result<()> {
        let (ns, name) = split_key(&key);
        let Some(ds) = self.sets.get(ns, name) else {
            self.creations.forget(&key);
            self.deletions.forget(&key);
            return Ok(());
        };
        let sel = ds
            .spec
            .as_ref()
            .map(|s| s.selector.clone())
            .unwrap_or_default();
        if labels::is_empty(&sel) {
            tracing::warn!(daemonset = %key, "empty selector selects all pods, skipping");
            let note = "This daemon set is selecting all pods. A non-empty selector is required.";
            self.event(&ds, true, "SelectingAll", "Sync", note.into());
            return Ok(());
        }
        if ds.metadata.deletion_timestamp.is_some() {
            return Ok(());
        }
        self.failed_backoff.gc(Instant::now());
        let (current, old, collision_count) = self.construct_history(&ds).await?;
        let hash = current
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(POD_REVISION_LABEL))
            .cloned()
            .unwrap_or_default();
        let spec = ds.spec.clone().unwrap_or_default();
        let rolling = spec
            .update_strategy
            .as_ref()
            .and_then(|s| s.type_.as_deref())
            .unwrap_or("RollingUpdate")
            == "RollingUpdate";
        let ru = spec
            .update_strategy
            .as_ref()
            .and_then(|s| s.rolling_update.clone())
            .unwrap_or_default();
        let allows_surge = rolling && plan::scaled(ru.max_surge.as_ref(), 0, 1) != 0;
        let view = DsView {
            hash: hash.clone(),
            template_generation: template_generation(&ds),
            min_ready_seconds: spec.min_ready_seconds.unwrap_or(0),
            allows_surge,
        };
        let nodes = self.nodes.list();
        let facts = node_facts(&ds, &nodes);
        let now = Timestamp::now();
        let satisfied = self.creations.satisfied(&key) && self.deletions.satisfied(&key);
        let mut failure = None;
        if satisfied {
            let owned = self.claim_pods(&ds).await?;
            let by_node = by_node(&owned);
            let changes = plan::manage(&facts, &by_node, &view, now);
            let mut victims = changes.delete.clone();
            victims.extend(self.failed_to_delete(&ds, &key, &changes));
            let wrote = !changes.create_on.is_empty() || !victims.is_empty();
            if let Err(e) = self
                .sync_nodes(&ds, &key, &hash, &changes.create_on, &victims)
                .await
            {
                failure = Some(e);
            }
            if failure.is_none() && !wrote && rolling {
                let budgets =
                    plan::budgets(&facts, ru.max_surge.as_ref(), ru.max_unavailable.as_ref());
                let ch = plan::rolling_update(&facts, &by_node, &view, budgets, now);
                if let Err(e) = self
                    .sync_nodes(&ds, &key, &hash, &ch.create_on, &ch.delete)
                    .await
                {
                    failure = Some(e);
                }
            }
            // Truncate history: keep the current revision and those pods still run.
            let pod_hashes: HashSet<&str> = owned
                .iter()
                .filter_map(|p| p.metadata.labels.as_ref()?.get(POD_REVISION_LABEL))
                .map(String::as_str)
                .collect();
            let mut live: HashSet<String> = HashSet::new();
            live.extend(current.metadata.name.clone());
            for cr in &old {
                let h = cr
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(POD_REVISION_LABEL));
                if h.is_some_and(|h| pod_hashes.contains(h.as_str())) {
                    live.extend(cr.metadata.name.clone());
                }
            }
            let limit = spec.revision_history_limit.unwrap_or(10);
            for cr in history::to_truncate(&old, &live, limit) {
                self.history.delete(cr).await?;
            }
        }
        // Status from the cache (upstream also writes it when expectations are pending, then
        // without observedGeneration).
        let owned: Vec<Arc<Pod>> = self
            .pods
            .list_namespace(ns)
            .into_iter()
            .filter(|p| {
                owner::is_controlled_by(&p.metadata, ds.metadata.uid.as_deref().unwrap_or(""))
            })
            .collect();
        let by_node = by_node(&owned);
        let previous = ds.status.clone().unwrap_or_default();
        let generation = if satisfied {
            ds.metadata.generation
        } else {
            previous.observed_generation
        };
        let new_status = status::calculate(
            &previous,
            &facts,
            &by_node,
            &view,
            generation,
            (collision_count != 0).then_some(collision_count),
            now,
        );
        if status::differs(&previous, &new_status) {
            self.write_status(&ds, new_status.clone()).await?;
        }
        if let Some(e) = failure {
            return Err(e);
        }
        let mrs = view.min_ready_seconds;
        if mrs > 0 && new_status.number_ready != new_status.number_available.unwrap_or(0) {
            self.queue.add_after(key, Duration::from_secs(mrs as u64));
        }
        Ok(())
    }

    async fn write_status(&self, ds: &DaemonSet, status: DaemonSetStatus) -> anyhow::Result<()> {
        let ns = ds.namespace().unwrap_or_default();
        let api: Api<DaemonSet> = Api::namespaced(self.client.clone(), &ns);
        let mut obj = ds.clone();
        obj.status = Some(status);
        match api
            .replace_status(&ds.name_any(), &PostParams::default(), &obj)
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if api_helpers::errors::is_not_found(&e)
                    || api_helpers::errors::is_conflict(&e) =>
            {
                // A conflict: the next event brings the fresh object.
                self.queue
                    .add_after(queue_key(ds), Duration::from_millis(100));
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// Claimed pods by target node, without pods both terminal and being deleted.
fn by_node(owned: &[Arc<Pod>]) -> ByNode<'_> {
    let mut m: ByNode = BTreeMap::new();
    for p in owned {
        let terminal = matches!(pods::phase(p), "Succeeded" | "Failed");
        if terminal && p.metadata.deletion_timestamp.is_some() {
            continue;
        }
        if let Some(n) = eligibility::target_node(p) {
            m.entry(n).or_default().push(p.as_ref());
        }
    }
    m
}

workload_controller!(DaemonSetController);
