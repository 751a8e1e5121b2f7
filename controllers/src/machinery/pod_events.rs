//! Routing pod informer events to the workload object that controls the pod (or could adopt
//! it), as upstream's ReplicaSet, StatefulSet and DaemonSet controllers do in their
//! addPod/updatePod/deletePod handlers: lower the owner's expectations, enqueue its key, and
//! requeue it `minReadySeconds` after a pod turns ready.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::machinery::expectations::Expectations;
use crate::machinery::informers::informer::{queue_key, Change, Informer};
use crate::machinery::queue::WorkQueue;
use crate::machinery::{owner, pods};
use api_helpers::labels;

/// A namespaced kind whose objects own pods chosen by a label selector.
pub trait PodOwner:
    Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + serde::Serialize
    + Debug
    + Send
    + Sync
    + 'static
{
    /// `kind` in the pods' controller owner references.
    const KIND: &'static str;
    /// The pod selector (empty when the spec is missing).
    fn selector(&self) -> LabelSelector;
    /// Seconds a ready pod must stay ready to count as available.
    fn min_ready_seconds(&self) -> i32;
}

/// Turns pod changes into owner keys on `queue` and observed creations/deletions.
pub struct PodEvents<K: PodOwner> {
    owners: Informer<K>,
    queue: WorkQueue<String>,
    creations: Arc<Expectations>,
    deletions: Arc<Expectations>,
}

impl<K: PodOwner> Clone for PodEvents<K> {
    fn clone(&self) -> Self {
        PodEvents {
            owners: self.owners.clone(),
            queue: self.queue.clone(),
            creations: self.creations.clone(),
            deletions: self.deletions.clone(),
        }
    }
}

impl<K: PodOwner> PodEvents<K> {
    /// Routes to owners from `owners`; creations and deletions are observed on the given
    /// expectations (the same `Arc` twice when one tracks both).
    pub fn new(
        owners: Informer<K>,
        queue: WorkQueue<String>,
        creations: Arc<Expectations>,
        deletions: Arc<Expectations>,
    ) -> Self {
        PodEvents {
            owners,
            queue,
            creations,
            deletions,
        }
    }

    /// The owner of kind `K` controlling `pod`, if the cache has it with the same UID.
    pub fn resolve(&self, pod: &Pod) -> Option<Arc<K>> {
        let r = owner::controller_of(&pod.metadata)?;
        if r.kind != K::KIND {
            return None;
        }
        let o = self
            .owners
            .get(pod.metadata.namespace.as_deref()?, &r.name)?;
        (o.meta().uid.as_deref() == Some(r.uid.as_str())).then_some(o)
    }

    /// Owners whose (non-empty) selector matches an orphan pod: candidates to adopt it.
    pub fn matching_owners(&self, pod: &Pod) -> Vec<Arc<K>> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        self.owners
            .list_namespace(ns)
            .into_iter()
            .filter(|o| {
                let s = o.selector();
                !labels::is_empty(&s) && labels::matches(&s, pod.metadata.labels.as_ref())
            })
            .collect()
    }

    fn enqueue_matching(&self, pod: &Pod) {
        for o in self.matching_owners(pod) {
            self.queue.add(queue_key(o.as_ref()));
        }
    }

    fn deletion_observed(&self, pod: &Pod) {
        if let Some(o) = self.resolve(pod) {
            let key = queue_key(o.as_ref());
            let uid = pod.metadata.uid.as_deref().unwrap_or_default();
            self.deletions.deletion_observed(&key, uid);
            self.queue.add(key);
        }
    }

    /// Handles one pod informer event.
    pub fn route(&self, change: Change<'_, Pod>) {
        match change {
            Change::Added(pod) => {
                // A pod first seen while being deleted counts as a deletion, as upstream.
                if pod.metadata.deletion_timestamp.is_some() {
                    return self.deletion_observed(pod);
                }
                if let Some(o) = self.resolve(pod) {
                    let key = queue_key(o.as_ref());
                    self.creations.creation_observed(&key);
                    self.queue.add(key);
                } else if owner::controller_of(&pod.metadata).is_none() {
                    self.enqueue_matching(pod);
                }
            }
            Change::Updated { old, new } => {
                if old.resource_version() == new.resource_version() {
                    return; // a periodic resync, nothing changed
                }
                if new.metadata.deletion_timestamp.is_some() {
                    // Deletion is observed when the timestamp appears, as upstream does.
                    self.deletion_observed(new);
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
                    self.enqueue_matching(new);
                }
            }
            Change::Deleted(pod) => self.deletion_observed(pod),
        }
    }
}

/// The apps/v1 owners: `spec.selector` and `spec.minReadySeconds`.
macro_rules! apps_v1_pod_owner {
    ($($kind:ident),+) => {$(
        impl PodOwner for $kind {
            const KIND: &'static str = stringify!($kind);
            fn selector(&self) -> LabelSelector {
                self.spec.as_ref().map(|s| s.selector.clone()).unwrap_or_default()
            }
            fn min_ready_seconds(&self) -> i32 {
                self.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0)
            }
        }
    )+};
}

apps_v1_pod_owner!(ReplicaSet, StatefulSet, DaemonSet);

impl PodOwner for ReplicationController {
    const KIND: &'static str = "ReplicationController";
    fn selector(&self) -> LabelSelector {
        // An RC without selector selects its template's labels (defaulted by the apiserver).
        let spec = self.spec.as_ref();
        let map = spec
            .and_then(|s| s.selector.clone())
            .or_else(|| spec?.template.as_ref()?.metadata.as_ref()?.labels.clone())
            .unwrap_or_default();
        labels::from_map(&map)
    }
    fn min_ready_seconds(&self) -> i32 {
        self.spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0)
    }
}
