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
use crate::machinery::expectations::Expectations;
use crate::machinery::informers::informer::{queue_key, split_key, Change, Informer};
use crate::machinery::owner::{self, Claim, Claimant};
use crate::machinery::pod_control::{pod_from_template, PodControl};
use crate::machinery::pod_events::PodEvents;
use crate::machinery::pods;
use crate::machinery::queue::WorkQueue;

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
        let events = PodEvents::new(
            self.owners.clone(),
            self.queue.clone(),
            self.expectations.clone(),
            self.expectations.clone(),
        );
        self.pods.add_handler(move |c| events.route(c));
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
                Err(e) if api_helpers::errors::is_not_found(&e) => return Ok(()),
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

workload_controller!(ReplicaController<K>, K: ReplicatedKind);
