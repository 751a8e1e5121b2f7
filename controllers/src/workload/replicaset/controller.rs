//! The ReplicaSet / ReplicationController controller: informer handlers that enqueue owner
//! keys and lower expectations, and the sync that claims pods, creates or deletes them and
//! writes status.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::{Api, ResourceExt};

use super::kind::ReplicatedKind;
use super::manage::{self, Step};
use super::status::{self, ManageFailure};
use crate::lifecycle::queue::WorkQueue;
use crate::workload::expectations::Expectations;
use crate::workload::informer::{queue_key, split_key, Change, Informer};
use crate::workload::owner::{self, Claim, Claimant};
use crate::workload::pod_control::{pod_from_template, PodControl};
use crate::workload::{pods, selector};

/// Everything one replica controller needs. Cheap to clone.
pub struct ReplicaController<K: ReplicatedKind> {
    client: kube::Client,
    owners: Informer<K>,
    pods: Informer<Pod>,
    /// Every ReplicaSet, to find sibling pods for victim ranking (None for RCs).
    queue: WorkQueue<String>,
    expectations: Arc<Expectations>,
    pod_control: PodControl,
}

impl<K: ReplicatedKind> Clone for ReplicaController<K> {
    fn clone(&self) -> Self {
        ReplicaController {
            client: self.client.clone(),
            owners: self.owners.clone(),
            pods: self.pods.clone(),
            queue: self.queue.clone(),
            expectations: self.expectations.clone(),
            pod_control: self.pod_control.clone(),
        }
    }
}

impl<K: ReplicatedKind> ReplicaController<K> {
    /// A controller over shared informers, writing with `client`.
    pub fn new(client: kube::Client, owners: Informer<K>, pods: Informer<Pod>) -> Self {
        let expectations = Arc::new(Expectations::new());
        ReplicaController {
            pod_control: PodControl::new(client.clone(), expectations.clone(), K::CONTROLLER),
            client,
            owners,
            pods,
            queue: WorkQueue::new(),
            expectations,
        }
    }

    /// The work queue (keys `namespace/name`).
    pub fn queue(&self) -> &WorkQueue<String> {
        &self.queue
    }

    /// Registers the informer handlers.
    pub fn watch(&self) {
        let q = self.queue.clone();
        self.owners.add_handler(move |c| match c {
            Change::Added(o) | Change::Deleted(o) | Change::Updated { new: o, .. } => {
                q.add(queue_key(o))
            }
        });
        let this = self.clone();
        self.pods.add_handler(move |c| this.on_pod(c));
    }

    /// The owner of kind `K` controlling `pod`, if it is in the cache with the same UID.
    fn resolve(&self, pod: &Pod) -> Option<Arc<K>> {
        let r = owner::controller_of(&pod.metadata)?;
        if r.kind != K::KIND {
            return None;
        }
        let o = self
            .owners
            .get(pod.metadata.namespace.as_deref()?, &r.name)?;
        (o.meta().uid.as_deref() == Some(r.uid.as_str())).then_some(o)
    }

    /// Owners whose selector matches an orphan pod.
    fn matching_owners(&self, pod: &Pod) -> Vec<Arc<K>> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        self.owners
            .list_namespace(ns)
            .into_iter()
            .filter(|o| {
                let s = o.selector();
                !selector::is_empty(&s) && selector::matches(&s, pod.metadata.labels.as_ref())
            })
            .collect()
    }

    fn on_pod(&self, change: Change<'_, Pod>) {
        match change {
            Change::Added(pod) => {
                if pod.metadata.deletion_timestamp.is_some() {
                    return self.on_pod(Change::Deleted(pod));
                }
                if let Some(o) = self.resolve(pod) {
                    let key = queue_key(o.as_ref());
                    self.expectations.creation_observed(&key);
                    self.queue.add(key);
                } else if owner::controller_of(&pod.metadata).is_none() {
                    for o in self.matching_owners(pod) {
                        self.queue.add(queue_key(o.as_ref()));
                    }
                }
            }
            Change::Updated { old, new } => {
                if old.resource_version() == new.resource_version() {
                    return;
                }
                if new.metadata.deletion_timestamp.is_some() {
                    // Deletion is observed when the timestamp appears, as upstream does.
                    if let Some(o) = self.resolve(new) {
                        let key = queue_key(o.as_ref());
                        self.expectations.deletion_observed(
                            &key,
                            new.metadata.uid.as_deref().unwrap_or_default(),
                        );
                        self.queue.add(key);
                    }
                    if old.labels() != new.labels() {
                        if let Some(o) = self.resolve(old) {
                            self.queue.add(queue_key(o.as_ref()));
                        }
                    }
                    return;
                }
                let old_ref = owner::controller_of(&old.metadata).map(|r| r.uid.clone());
                let new_ref = owner::controller_of(&new.metadata).map(|r| r.uid.clone());
                if old_ref != new_ref {
                    if let Some(o) = self.resolve(old) {
                        self.queue.add(queue_key(o.as_ref()));
                    }
                }
                if let Some(o) = self.resolve(new) {
                    let key = queue_key(o.as_ref());
                    self.queue.add(key.clone());
                    // A pod that just became ready becomes available minReadySeconds later.
                    let mrs = o.min_ready_seconds();
                    if mrs > 0 && !pods::is_ready(old) && pods::is_ready(new) {
                        self.queue
                            .add_after(key, Duration::from_secs(mrs as u64 + 1));
                    }
                } else if new_ref.is_none() && (old.labels() != new.labels() || old_ref.is_some()) {
                    for o in self.matching_owners(new) {
                        self.queue.add(queue_key(o.as_ref()));
                    }
                }
            }
            Change::Deleted(pod) => {
                if let Some(o) = self.resolve(pod) {
                    let key = queue_key(o.as_ref());
                    self.expectations
                        .deletion_observed(&key, pod.metadata.uid.as_deref().unwrap_or_default());
                    self.queue.add(key);
                }
            }
        }
    }

    /// Pods of every ReplicaSet controlled by the same owner as `o` (a Deployment's other
    /// ReplicaSets), for victim ranking; just `own` when `o` has no controller.
    fn related_pods(&self, o: &K, all: &[Arc<Pod>], own: &[&Pod]) -> Vec<Pod> {
        let Some(parent) = owner::controller_of(o.meta()) else {
            return own.iter().map(|p| (*p).clone()).collect();
        };
        let ns = o.namespace().unwrap_or_default();
        let siblings: Vec<String> = self
            .owners
            .list_namespace(&ns)
            .iter()
            .filter(|s| owner::is_controlled_by(s.meta(), &parent.uid))
            .filter_map(|s| s.meta().uid.clone())
            .collect();
        all.iter()
            .filter(|p| {
                owner::controller_of(&p.metadata).is_some_and(|r| siblings.contains(&r.uid))
            })
            .map(|p| (**p).clone())
            .collect()
    }

    /// Reconciles `namespace/name`.
    pub async fn sync(&self, key: String) -> anyhow::Result<()> {
        let (ns, name) = split_key(&key);
        let Some(o) = self.owners.get(ns, name) else {
            self.expectations.forget(&key);
            return Ok(());
        };
        let needs_sync = self.expectations.satisfied(&key);
        let all = self.pods.list_namespace(ns);
        let sel = o.selector();
        let claimant = Claimant {
            meta: o.meta(),
            selector: &sel,
        };
        let owner_uid = o.meta().uid.clone().unwrap_or_default();
        let mut owned: Vec<&Pod> = Vec::new();
        let mut adopt_checked = false;
        for p in all.iter().filter(|p| pods::is_active(p)) {
            let pod_uid = p.metadata.uid.as_deref().unwrap_or_default();
            match owner::claim(&claimant, &p.metadata) {
                Claim::Owned => owned.push(p),
                Claim::Adopt => {
                    if !adopt_checked {
                        // Upstream re-reads the owner before adopting: never adopt for an
                        // owner that was deleted and recreated under the same name.
                        let fresh = Api::<K>::namespaced(self.client.clone(), ns)
                            .get(name)
                            .await?;
                        if fresh.meta().uid != o.meta().uid
                            || fresh.meta().deletion_timestamp.is_some()
                        {
                            anyhow::bail!("{key}: owner changed while adopting pods");
                        }
                        adopt_checked = true;
                    }
                    let r = owner::controller_ref(K::API_VERSION, K::KIND, o.meta());
                    self.pod_control
                        .patch(ns, &p.name_any(), &owner::adopt_patch(&r, pod_uid))
                        .await?;
                    owned.push(p);
                }
                Claim::Release => {
                    self.pod_control
                        .patch(
                            ns,
                            &p.name_any(),
                            &owner::release_patch(&owner_uid, pod_uid),
                        )
                        .await?;
                }
                Claim::Ignore => {}
            }
        }
        let now = Timestamp::now();
        let mut failure = None;
        if needs_sync && o.meta().deletion_timestamp.is_none() {
            let related = self.related_pods(&o, &all, &owned);
            let related: Vec<&Pod> = related.iter().collect();
            match manage::decide(o.replicas(), &owned, &related, now) {
                Step::Steady => {}
                Step::Create(n) => {
                    let template = o
                        .template()
                        .ok_or_else(|| anyhow::anyhow!("{key}: spec.template is required"))?;
                    let r = owner::controller_ref(K::API_VERSION, K::KIND, o.meta());
                    let batch: Vec<Pod> = (0..n)
                        .map(|_| pod_from_template(template, ns, r.clone(), None, &BTreeMap::new()))
                        .collect();
                    if let Err(e) = self.pod_control.create_all(&key, batch).await {
                        failure = Some(ManageFailure {
                            reason: "FailedCreate",
                            message: e.to_string(),
                        });
                    }
                }
                Step::Delete(victims) => {
                    if let Err(e) = self.pod_control.delete_all(&key, &victims).await {
                        failure = Some(ManageFailure {
                            reason: "FailedDelete",
                            message: e.to_string(),
                        });
                    }
                }
            }
        }
        let template_labels = o
            .template()
            .and_then(|t| t.metadata.as_ref()?.labels.as_ref());
        let previous = o.current_status();
        let new_status = status::calculate(
            &previous,
            &owned,
            template_labels,
            o.min_ready_seconds(),
            o.meta().generation,
            failure.as_ref(),
            now,
        );
        if new_status != previous {
            // Upstream's RBAC grants `update` (not `patch`) on the status subresource.
            let api = Api::<K>::namespaced(self.client.clone(), ns);
            let mut obj = serde_json::to_value(o.as_ref())?;
            obj["status"] = serde_json::to_value(&new_status)?;
            let obj: K = serde_json::from_value(obj)?;
            match api.replace_status(name, &PostParams::default(), &obj).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
        if let Some(f) = failure {
            anyhow::bail!("{key}: {}: {}", f.reason, f.message);
        }
        // Come back when the next ready pod becomes available.
        let wait = owned
            .iter()
            .filter_map(|p| pods::seconds_until_available(p, o.min_ready_seconds(), now))
            .min();
        if let Some(s) = wait {
            self.queue.add_after(key, Duration::from_secs(s as u64));
        }
        Ok(())
    }
}
