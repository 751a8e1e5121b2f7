//! The StatefulSet controller: informer handlers, and the sync that claims pods and
//! revisions, executes the [`plan`](super::plan), keeps claims' owner references in line
//! with the retention policy, writes status and truncates history.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};

use super::claims;
use super::identity::{self, ordinal};
use super::plan::{self, Action, Rev, SetView, Strategy};
use super::status::{self, StatusInputs};
use component_base::events::{reference_to, EventRecorder, EventSpec, EventType};

use crate::apps::history::{self, History};
use crate::machinery::expectations::Expectations;
use crate::machinery::informers::informer::{queue_key, split_key, Change, Informer};
use crate::machinery::owner::{self, Claim, Claimant};
use crate::machinery::pod_control::PodControl;
use crate::machinery::pod_events::PodEvents;
use crate::machinery::pods;
use crate::machinery::queue::WorkQueue;
use api_helpers::labels;

/// Upstream's controller and service-account name.
pub const NAME: &str = "statefulset-controller";
const API_VERSION: &str = "apps/v1";
const KIND: &str = "StatefulSet";

/// The StatefulSet controller. Cheap to clone.
#[derive(Clone)]
pub struct StatefulSetController {
    client: kube::Client,
    sets: Informer<StatefulSet>,
    pods: Informer<Pod>,
    revisions: Informer<ControllerRevision>,
    claims: Informer<PersistentVolumeClaim>,
    queue: WorkQueue<String>,
    creations: Arc<Expectations>,
    deletions: Arc<Expectations>,
    creator: PodControl,
    deleter: PodControl,
    history: History,
    recorder: EventRecorder,
}

/// `rollingUpdate.maxUnavailable` against `replicas` (percent rounded down, at least 1).
pub fn resolve_max_unavailable(v: &IntOrString, replicas: i32) -> i32 {
    let n = match v {
        IntOrString::Int(i) => *i,
        IntOrString::String(s) => {
            let pct: i64 = s.trim_end_matches('%').parse().unwrap_or(0);
            (pct * i64::from(replicas) / 100) as i32
        }
    };
    n.max(1)
}

fn strategy(set: &StatefulSet) -> Strategy {
    let s = set.spec.as_ref().and_then(|s| s.update_strategy.as_ref());
    match s.and_then(|s| s.type_.as_deref()) {
        Some("OnDelete") => Strategy::OnDelete,
        _ => {
            let ru = s.and_then(|s| s.rolling_update.as_ref());
            Strategy::RollingUpdate {
                partition: ru.map(|r| r.partition.unwrap_or(0)),
                max_unavailable: ru
                    .and_then(|r| r.max_unavailable.as_ref())
                    .map(|m| resolve_max_unavailable(m, identity::replicas(set))),
            }
        }
    }
}

impl StatefulSetController {
    /// Records an event on `set` in the background (upstream's `recordPodEvent` /
    /// `recordClaimEvent` wording).
    fn event(&self, set: &StatefulSet, warning: bool, reason: &str, note: String) {
        let spec = EventSpec {
            regarding: reference_to(set),
            related: None,
            type_: EventType::warning_if(warning),
            action: if reason.ends_with("Create") {
                "Create"
            } else {
                "Delete"
            }
            .into(),
            reason: reason.into(),
            note,
        };
        self.recorder.emit(spec);
    }

    /// A controller over shared informers, writing with `client`.
    pub fn new(
        client: kube::Client,
        sets: Informer<StatefulSet>,
        pods: Informer<Pod>,
        revisions: Informer<ControllerRevision>,
        claims: Informer<PersistentVolumeClaim>,
    ) -> Self {
        let creations = Arc::new(Expectations::new());
        let deletions = Arc::new(Expectations::new());
        StatefulSetController {
            creator: PodControl::new(client.clone(), creations.clone(), NAME),
            deleter: PodControl::new(client.clone(), deletions.clone(), NAME),
            history: History::new(client.clone()),
            recorder: crate::machinery::context::event_recorder(client.clone(), NAME),
            client,
            sets,
            pods,
            revisions,
            claims,
            queue: WorkQueue::new(),
            creations,
            deletions,
        }
    }

    /// The work queue (keys `namespace/name`).
    pub fn queue(&self) -> &WorkQueue<String> {
        &self.queue
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

    /// Claims the set's pods (adopting matching orphans named after the set, releasing
    /// those that no longer match).
    async fn claim_pods(&self, set: &StatefulSet) -> anyhow::Result<Vec<Arc<Pod>>> {
        let ns = set.namespace().unwrap_or_default();
        let sel = set
            .spec
            .as_ref()
            .map(|s| s.selector.clone())
            .unwrap_or_default();
        let claimant = Claimant {
            meta: &set.metadata,
            selector: &sel,
        };
        let set_uid = set.metadata.uid.clone().unwrap_or_default();
        let set_name = set.name_any();
        let mut owned = Vec::new();
        let mut adopt_checked = false;
        for p in self.pods.list_namespace(&ns) {
            let member = p
                .metadata
                .name
                .as_deref()
                .and_then(identity::parent_and_ordinal)
                .is_some_and(|(parent, _)| parent == set_name);
            let pod_uid = p.metadata.uid.as_deref().unwrap_or_default();
            let decision = match owner::claim(&claimant, &p.metadata) {
                Claim::Adopt if !member => Claim::Ignore,
                Claim::Owned if !member && set.metadata.deletion_timestamp.is_none() => {
                    Claim::Release
                }
                c => c,
            };
            match decision {
                Claim::Owned => owned.push(p),
                Claim::Adopt => {
                    if !adopt_checked {
                        let fresh = Api::<StatefulSet>::namespaced(self.client.clone(), &ns)
                            .get(&set_name)
                            .await?;
                        if fresh.metadata.uid != set.metadata.uid
                            || fresh.metadata.deletion_timestamp.is_some()
                        {
                            anyhow::bail!("{ns}/{set_name}: set changed while adopting pods");
                        }
                        adopt_checked = true;
                    }
                    let r = owner::controller_ref(API_VERSION, KIND, &set.metadata);
                    self.creator
                        .patch(&ns, &p.name_any(), &owner::adopt_patch(&r, pod_uid))
                        .await?;
                    owned.push(p);
                }
                Claim::Release => {
                    self.creator
                        .patch(&ns, &p.name_any(), &owner::release_patch(&set_uid, pod_uid))
                        .await?;
                }
                Claim::Ignore => {}
            }
        }
        Ok(owned)
    }

    /// The set's revisions (sorted), adopting orphans that match its selector.
    async fn claim_revisions(&self, set: &StatefulSet) -> anyhow::Result<Vec<ControllerRevision>> {
        let ns = set.namespace().unwrap_or_default();
        let sel = set
            .spec
            .as_ref()
            .map(|s| s.selector.clone())
            .unwrap_or_default();
        let uid = set.metadata.uid.clone().unwrap_or_default();
        let mut out = Vec::new();
        for cr in self.revisions.list_namespace(&ns) {
            if labels::is_empty(&sel) || !labels::matches(&sel, cr.metadata.labels.as_ref()) {
                continue;
            }
            match owner::controller_of(&cr.metadata) {
                Some(r) if r.uid == uid => out.push((*cr).clone()),
                Some(_) => {}
                None if set.metadata.deletion_timestamp.is_none() => {
                    let r = owner::controller_ref(API_VERSION, KIND, &set.metadata);
                    out.push(self.history.adopt(&cr, r).await?);
                }
                None => {}
            }
        }
        history::sort(&mut out);
        Ok(out)
    }

    /// The current and update revisions (creating or renumbering the update revision as
    /// upstream's `getStatefulSetRevisions`) and the collision count.
    async fn revisions_for(
        &self,
        set: &StatefulSet,
        revisions: &[ControllerRevision],
    ) -> anyhow::Result<(ControllerRevision, ControllerRevision, i32)> {
        let status = set.status.clone().unwrap_or_default();
        let mut collision_count = status.collision_count.unwrap_or(0);
        let template = set
            .spec
            .as_ref()
            .map(|s| s.template.clone())
            .unwrap_or_default();
        let data = history::template_patch(&template);
        let equal = history::find_equal(revisions, &data);
        let next = history::next_revision(revisions);
        let update = match equal.last() {
            Some(&i) if i + 1 == revisions.len() => revisions[i].clone(),
            Some(&i) => self.history.set_revision(&revisions[i], next).await?,
            None => {
                let r = owner::controller_ref(API_VERSION, KIND, &set.metadata);
                let labels = template.metadata.as_ref().and_then(|m| m.labels.as_ref());
                let cr = history::new_revision(
                    r,
                    &set.namespace().unwrap_or_default(),
                    labels,
                    None,
                    data,
                    next,
                );
                self.history
                    .create(
                        &set.name_any(),
                        history::REVISION_HASH_LABEL,
                        cr,
                        &mut collision_count,
                    )
                    .await?
            }
        };
        let current = revisions
            .iter()
            .find(|r| r.metadata.name.is_some() && r.metadata.name == status.current_revision)
            .cloned()
            .unwrap_or_else(|| update.clone());
        Ok((current, update, collision_count))
    }

    /// Creates the claims pod `ord` needs that do not exist yet.
    async fn ensure_claims(
        &self,
        set: &StatefulSet,
        ord: i32,
        pod: Option<&Pod>,
    ) -> anyhow::Result<()> {
        let ns = set.namespace().unwrap_or_default();
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), &ns);
        let start = identity::start_ordinal(set);
        let scaled_down = ord < start || ord >= start + identity::replicas(set);
        for (_, mut claim) in identity::claims_for(set, ord) {
            let name = claim.metadata.name.clone().unwrap_or_default();
            if self.claims.get(&ns, &name).is_some() {
                continue;
            }
            let empty = Pod::default();
            if let Some(refs) =
                claims::desired_refs(&claim, set, pod.unwrap_or(&empty), scaled_down)
            {
                claim.metadata = claims::with_refs(&claim.metadata, refs);
            }
            let pod_name = identity::pod_name(&set.name_any(), ord);
            match api.create(&PostParams::default(), &claim).await {
                Ok(_) => self.event(
                    set,
                    false,
                    "SuccessfulCreate",
                    format!(
                        "create Claim {name} Pod {pod_name} in StatefulSet {} success",
                        set.name_any()
                    ),
                ),
                Err(e) if api_helpers::errors::is_conflict(&e) => {}
                Err(e) => {
                    self.event(
                        set,
                        true,
                        "FailedCreate",
                        format!(
                            "create Claim {name} for Pod {pod_name} in StatefulSet {} failed error: {e}",
                            set.name_any()
                        ),
                    );
                    anyhow::bail!("create claim {ns}/{name}: {e}")
                }
            }
        }
        Ok(())
    }

    /// Brings the owner references of pod `p`'s claims in line with the retention policy
    /// (claims are updated, as upstream's RBAC allows no patch). Claims not in the cache yet
    /// are left for a later sync.
    async fn fix_claim_refs(&self, set: &StatefulSet, p: &Pod) -> anyhow::Result<()> {
        let Some(ord) = ordinal(p) else {
            return Ok(());
        };
        let ns = set.namespace().unwrap_or_default();
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), &ns);
        let start = identity::start_ordinal(set);
        let scaled_down = ord < start || ord >= start + identity::replicas(set);
        for (_, template_claim) in identity::claims_for(set, ord) {
            let name = template_claim.metadata.name.clone().unwrap_or_default();
            let Some(claim) = self.claims.get(&ns, &name) else {
                continue;
            };
            if let Some(refs) = claims::desired_refs(&claim, set, p, scaled_down) {
                let mut c = (*claim).clone();
                c.metadata = claims::with_refs(&c.metadata, refs);
                match api.replace(&name, &PostParams::default(), &c).await {
                    Ok(_) => {}
                    Err(e)
                        if api_helpers::errors::is_not_found(&e)
                            || api_helpers::errors::is_conflict(&e) => {}
                    Err(e) => anyhow::bail!("update claim {ns}/{name}: {e}"),
                }
            }
        }
        Ok(())
    }

    /// Reconciles `namespace/name`.
    pub async fn sync(&self, key: String) -> anyhow::Result<()> {
        let (ns, name) = split_key(&key);
        let Some(set) = self.sets.get(ns, name) else {
            self.creations.forget(&key);
            self.deletions.forget(&key);
            return Ok(());
        };
        let sel = set
            .spec
            .as_ref()
            .map(|s| s.selector.clone())
            .unwrap_or_default();
        if labels::is_empty(&sel) {
            tracing::warn!(statefulset = %key, "empty selector selects nothing, skipping");
            return Ok(());
        }
        if !(self.creations.satisfied(&key) && self.deletions.satisfied(&key)) {
            return Ok(());
        }
        let owned = self.claim_pods(&set).await?;
        let owned: Vec<&Pod> = owned.iter().map(|p| p.as_ref()).collect();
        let revisions = self.claim_revisions(&set).await?;
        let (current, update, collision_count) = self.revisions_for(&set, &revisions).await?;
        let current_name = current.metadata.name.clone().unwrap_or_default();
        let update_name = update.metadata.name.clone().unwrap_or_default();
        let spec = set.spec.clone().unwrap_or_default();
        let mrs = spec.min_ready_seconds.unwrap_or(0);
        let now = Timestamp::now();
        let previous = set.status.clone().unwrap_or_default();
        let view = SetView {
            start: identity::start_ordinal(&set),
            replicas: identity::replicas(&set),
            monotonic: spec.pod_management_policy.as_deref() != Some("Parallel"),
            min_ready_seconds: mrs,
            strategy: strategy(&set),
            status_current_replicas: previous.current_replicas.unwrap_or(0),
            update_revision: update_name.clone(),
        };
        let mut deleted_for_update = 0;
        let mut failure: Option<anyhow::Error> = None;
        if set.metadata.deletion_timestamp.is_none() {
            let p = plan::plan(&view, &owned, now);
            deleted_for_update = p.deleted_for_update;
            if let Err(e) = self.execute(&set, &p.actions, (&current, &update)).await {
                failure = Some(e);
            }
        }
        let with_ordinal: Vec<&Pod> = owned
            .iter()
            .copied()
            .filter(|p| ordinal(p).is_some())
            .collect();
        let new_status = status::calculate(
            &previous,
            &with_ordinal,
            &StatusInputs {
                generation: set.metadata.generation,
                min_ready_seconds: mrs,
                rolling: matches!(view.strategy, Strategy::RollingUpdate { .. }),
                current_revision: &current_name,
                update_revision: &update_name,
                collision_count,
                deleted_for_update,
            },
            now,
        );
        if status::differs(&previous, &new_status) {
            self.write_status(&set, new_status.clone()).await?;
        }
        // Truncate history: keep live revisions and the newest revisionHistoryLimit others.
        let mut live: HashSet<String> = [current_name, update_name].into();
        live.extend(owned.iter().map(|p| identity::revision(p).to_string()));
        let mut all = revisions.clone();
        if !all.iter().any(|r| r.metadata.name == update.metadata.name) {
            all.push(update.clone());
            history::sort(&mut all);
        }
        for cr in history::to_truncate(&all, &live, spec.revision_history_limit.unwrap_or(10)) {
            self.history.delete(cr).await?;
        }
        if let Some(e) = failure {
            return Err(e);
        }
        let wait = owned
            .iter()
            .filter_map(|p| pods::seconds_until_available(p, mrs, now))
            .min();
        if let Some(s) = wait {
            self.queue.add_after(key, Duration::from_secs(s as u64 + 1));
        }
        Ok(())
    }

    async fn execute(
        &self,
        set: &StatefulSet,
        actions: &[Action<'_>],
        (current, update): (&ControllerRevision, &ControllerRevision),
    ) -> anyhow::Result<()> {
        let key = queue_key(set);
        let ns = set.namespace().unwrap_or_default();
        let spec_template = set
            .spec
            .as_ref()
            .map(|s| s.template.clone())
            .unwrap_or_default();
        let template_of = |cr: &ControllerRevision| -> PodTemplateSpec {
            history::template_of(cr).unwrap_or_else(|| spec_template.clone())
        };
        let (current_t, update_t) = (template_of(current), template_of(update));
        let owner_ref = owner::controller_ref(API_VERSION, KIND, &set.metadata);
        let mut creates = Vec::new();
        let mut deletes: Vec<&Pod> = Vec::new();
        for a in actions {
            match a {
                Action::Create { ordinal, rev } => {
                    self.ensure_claims(set, *ordinal, None).await?;
                    let (t, cr) = match rev {
                        Rev::Current => (&current_t, current),
                        Rev::Update => (&update_t, update),
                    };
                    let rev_name = cr.metadata.name.clone().unwrap_or_default();
                    creates.push(identity::new_pod(
                        set,
                        t,
                        owner_ref.clone(),
                        *ordinal,
                        &rev_name,
                    ));
                }
                Action::Delete { pod, why } => {
                    tracing::info!(statefulset = %key, pod = %pod.name_any(), ?why, "deleting pod");
                    deletes.push(pod);
                }
                Action::EnsureClaims(p) => {
                    if let Some(ord) = ordinal(p) {
                        self.ensure_claims(set, ord, Some(p)).await?;
                    }
                }
                Action::Repair(p) => {
                    let Some(ord) = ordinal(p) else { continue };
                    if !identity::identity_matches(set, p) {
                        let patch = serde_json::json!({"metadata": {"labels":
                            identity::identity_labels(&set.name_any(), ord)}});
                        Api::<Pod>::namespaced(self.client.clone(), &ns)
                            .patch(
                                &p.name_any(),
                                &PatchParams::default(),
                                &Patch::Merge(&patch),
                            )
                            .await?;
                    }
                    if !identity::storage_matches(set, p) {
                        self.ensure_claims(set, ord, Some(p)).await?;
                    }
                    self.fix_claim_refs(set, p).await?;
                }
                Action::FixClaims(p) => self.fix_claim_refs(set, p).await?,
            }
        }
        let set_name = set.name_any();
        if !creates.is_empty() {
            tracing::info!(statefulset = %key, count = creates.len(), "creating pods");
            let names: Vec<String> = creates.iter().map(|p| p.name_any()).collect();
            match self.creator.create_all(&key, creates).await {
                Ok(_) => {
                    for n in names {
                        let note = format!("create Pod {n} in StatefulSet {set_name} successful");
                        self.event(set, false, "SuccessfulCreate", note);
                    }
                }
                Err(e) => {
                    let note = format!(
                        "create Pod {} in StatefulSet {set_name} failed error: {e}",
                        names.join(", ")
                    );
                    self.event(set, true, "FailedCreate", note);
                    return Err(e.into());
                }
            }
        }
        let names: Vec<String> = deletes.iter().map(|p| p.name_any()).collect();
        match self.deleter.delete_all(&key, &deletes).await {
            Ok(()) => {
                for n in names {
                    let note = format!("delete Pod {n} in StatefulSet {set_name} successful");
                    self.event(set, false, "SuccessfulDelete", note);
                }
                Ok(())
            }
            Err(e) => {
                let note = format!(
                    "delete Pod {} in StatefulSet {set_name} failed error: {e}",
                    names.join(", ")
                );
                self.event(set, true, "FailedDelete", note);
                Err(e.into())
            }
        }
    }

    async fn write_status(
        &self,
        set: &StatefulSet,
        status: StatefulSetStatus,
    ) -> anyhow::Result<()> {
        let ns = set.namespace().unwrap_or_default();
        let api: Api<StatefulSet> = Api::namespaced(self.client.clone(), &ns);
        let mut obj = set.clone();
        obj.status = Some(status);
        match api
            .replace_status(&set.name_any(), &PostParams::default(), &obj)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if api_helpers::errors::is_not_found(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

workload_controller!(StatefulSetController);
