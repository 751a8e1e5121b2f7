//! What the pod manager remembers between events, and how each event changes it: pure
//! transitions that return the [`Effect`]s for [`super::run`] to carry out (start or
//! update a worker, stop one, evict, reject, wake, clean an orphan up). No I/O here.

use crate::cri::labels::PodRef;
use crate::eviction::admit::{self, Rejection};
use crate::eviction::Eviction;
use crate::pod::observed::ObservedPod;
use k8s_openapi::api::core::v1::Pod;
use std::collections::{BTreeSet, HashMap, HashSet};

/// A cheap summary of a pod's runtime state: a change wakes its worker.
pub type Fingerprint = Vec<(String, String)>;

/// What the manager must do after an event.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Record the pod and hand it to its worker, starting one when it has none.
    Upsert(Pod),
    /// Tell the worker of this UID that its pod is gone (it stops and cleans up).
    Stop(String),
    /// Drop the handle of this UID's finished worker.
    Reap(String),
    /// Forget the pod of this UID (no longer served on /pods).
    Forget(String),
    /// Tell the worker of this UID to evict its pod within the grace period (seconds).
    Evict(String, i64),
    /// Leave the pod Failed/Evicted with this message (its worker has stopped it).
    WriteEvicted(Pod, String),
    /// Refuse the pod at admission.
    Reject(Pod, Rejection),
    /// Wake the worker of this UID (its containers changed).
    Wake(String),
    /// Stop and remove a runtime pod no worker owns (deleted while the kubelet was down).
    CleanupOrphan(PodRef, ObservedPod),
}

/// The pod manager's memory (upstream's pod workers' and pod manager's maps).
#[derive(Debug, Default)]
pub struct State {
    /// UIDs that have a worker.
    workers: HashSet<String>,
    /// The last runtime fingerprint of each pod the runtime holds.
    fingerprints: HashMap<String, Fingerprint>,
    /// Whether the pod watch has listed everything once (orphans are only known then).
    synced: bool,
    /// The static pods' UIDs, started first so the orphan cleanup never takes them.
    static_uids: HashSet<String>,
    /// Pods being evicted: their workers stop them, then they are left Failed/Evicted.
    evicted: HashMap<String, (Pod, String)>,
    /// Pods refused at admission: never started nor checked again.
    rejected: HashSet<String>,
}

fn uid_of(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}

/// The fingerprint of a pod's runtime state: its sandboxes' readiness and its containers'
/// states.
pub fn fingerprint(o: &ObservedPod) -> Fingerprint {
    let mut f: Fingerprint = o
        .sandboxes
        .iter()
        .map(|s| (s.id.clone(), format!("{}", s.ready)))
        .chain(
            o.containers
                .iter()
                .map(|c| (c.id.clone(), format!("{:?}", c.state))),
        )
        .collect();
    f.sort();
    f
}

impl State {
    /// Whether the pod of `uid` has a worker.
    pub fn has_worker(&self, uid: &str) -> bool {
        self.workers.contains(uid)
    }

    fn upsert(&mut self, pod: Pod) -> Effect {
        self.workers.insert(uid_of(&pod));
        Effect::Upsert(pod)
    }

    /// The static pods are now `pods`: removed ones stop, the others start or update (a
    /// changed file is a new UID: the old pod stops and the new one starts, as upstream).
    pub fn statics(&mut self, pods: Vec<Pod>) -> Vec<Effect> {
        let wanted: HashSet<String> = pods.iter().filter_map(|p| p.metadata.uid.clone()).collect();
        let mut gone: Vec<&String> = self.static_uids.difference(&wanted).collect();
        gone.sort();
        let mut out = Vec::new();
        for uid in gone {
            out.push(Effect::Forget(uid.clone()));
            if self.workers.contains(uid) {
                out.push(Effect::Stop(uid.clone()));
            }
        }
        for pod in pods {
            out.push(self.upsert(pod));
        }
        self.static_uids = wanted;
        out
    }

    /// The worker of `uid` has finished (its pod is stopped and cleaned up).
    pub fn worker_done(&mut self, uid: &str) -> Vec<Effect> {
        self.workers.remove(uid);
        let mut out = vec![
            Effect::Reap(uid.to_string()),
            Effect::Forget(uid.to_string()),
        ];
        if let Some((pod, message)) = self.evicted.remove(uid) {
            out.push(Effect::WriteEvicted(pod, message));
        }
        out
    }

    /// The eviction manager chose a pod; `pod` is the kubelet's copy (`None`: not known).
    /// Only a pod with a worker is evicted.
    pub fn evict(&mut self, e: Eviction, pod: Option<Pod>) -> Vec<Effect> {
        match pod {
            Some(pod) if self.workers.contains(&e.uid) => {
                self.evicted.insert(e.uid.clone(), (pod, e.message));
                vec![Effect::Evict(e.uid, e.grace_period)]
            }
            _ => Vec::new(),
        }
    }

    /// A pod (not a mirror pod) was added or changed in the API. A new pod is admitted
    /// against the node's pressure `conditions` and the host ports of the kubelet's
    /// `pods`; an evicted or refused pod is left alone.
    pub fn apply<'a>(
        &mut self,
        pod: Pod,
        conditions: &BTreeSet<String>,
        pods: impl IntoIterator<Item = &'a Pod>,
    ) -> Vec<Effect> {
        let uid = uid_of(&pod);
        let known = self.workers.contains(&uid);
        let stopped =
            self.evicted.contains_key(&uid) || (crate::eviction::is_evicted(&pod) && !known);
        if stopped || self.rejected.contains(&uid) {
            return Vec::new();
        }
        let admitted = admit::admit_new(&pod, known, conditions).and_then(|()| {
            if !admit::needs_admission(&pod, known) {
                return Ok(());
            }
            crate::eviction::predicate::admit(&pod, pods)
        });
        match admitted {
            Ok(()) => vec![self.upsert(pod)],
            Err(r) => {
                self.rejected.insert(uid);
                vec![Effect::Reject(pod, r)]
            }
        }
    }

    /// A pod (not a mirror pod) was deleted from the API: its worker stops it.
    pub fn delete(&mut self, pod: &Pod) -> Vec<Effect> {
        let uid = uid_of(pod);
        self.rejected.remove(&uid);
        let mut out = vec![Effect::Forget(uid.clone())];
        if self.workers.contains(&uid) {
            out.push(Effect::Stop(uid));
        }
        out
    }

    /// The pod watch has listed every pod once.
    pub fn synced(&mut self) {
        self.synced = true;
    }

    /// The runtime now holds `all` (by UID): workers whose pods changed wake, and once
    /// the watch is synced, pods without a worker are orphans to clean up.
    pub fn relist(&mut self, all: &HashMap<String, (PodRef, ObservedPod)>) -> Vec<Effect> {
        let mut uids: Vec<&String> = all.keys().collect();
        uids.sort();
        let mut out = Vec::new();
        for uid in uids {
            let (r, observed) = &all[uid];
            let f = fingerprint(observed);
            if self.fingerprints.get(uid) != Some(&f) {
                if self.workers.contains(uid) {
                    out.push(Effect::Wake(uid.clone()));
                }
                self.fingerprints.insert(uid.clone(), f);
            }
            if self.synced && !self.workers.contains(uid) {
                out.push(Effect::CleanupOrphan(r.clone(), observed.clone()));
            }
        }
        self.fingerprints.retain(|uid, _| all.contains_key(uid));
        out
    }
}

#[cfg(test)]
mod tests;
