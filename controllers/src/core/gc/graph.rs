//! The ownerReference graph and the garbage collector's decisions over it, as pure data.

use std::collections::{HashMap, HashSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

/// `foregroundDeletion` finalizer.
pub const FOREGROUND: &str = "foregroundDeletion";
/// `orphan` finalizer.
pub const ORPHAN: &str = "orphan";

/// Where an object lives: index of its resource in the discovered list, namespace, name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Location {
    /// Index into the controller's resource table.
    pub resource: usize,
    /// Namespace (`None` for cluster-scoped objects).
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
}

/// One object of the graph.
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    /// Where it is.
    pub location: Location,
    /// Its owners.
    pub owners: Vec<OwnerReference>,
    /// `deletionTimestamp` is set.
    pub deleting: bool,
    /// `metadata.finalizers`.
    pub finalizers: Vec<String>,
}

impl Object {
    /// Whether it carries `finalizer`.
    pub fn has(&self, finalizer: &str) -> bool {
        self.finalizers.iter().any(|f| f == finalizer)
    }
}

/// Objects by UID plus the reverse edges (owner UID → dependents' UIDs).
#[derive(Debug, Default)]
pub struct Graph {
    objects: HashMap<String, Object>,
    dependents: HashMap<String, HashSet<String>>,
}

impl Graph {
    /// Records `obj` under `uid`, replacing what was known.
    pub fn upsert(&mut self, uid: &str, obj: Object) {
        self.remove_edges(uid);
        for o in &obj.owners {
            self.dependents
                .entry(o.uid.clone())
                .or_default()
                .insert(uid.to_string());
        }
        self.objects.insert(uid.to_string(), obj);
    }

    /// Forgets `uid`; returns its dependents (they may now be dangling).
    pub fn remove(&mut self, uid: &str) -> Vec<String> {
        self.remove_edges(uid);
        self.objects.remove(uid);
        self.dependents_of(uid)
    }

    fn remove_edges(&mut self, uid: &str) {
        if let Some(old) = self.objects.get(uid) {
            for o in &old.owners {
                if let Some(set) = self.dependents.get_mut(&o.uid) {
                    set.remove(uid);
                    if set.is_empty() {
                        self.dependents.remove(&o.uid);
                    }
                }
            }
        }
    }

    /// The object with `uid`.
    pub fn get(&self, uid: &str) -> Option<&Object> {
        self.objects.get(uid)
    }

    /// UIDs of objects naming `uid` as an owner.
    pub fn dependents_of(&self, uid: &str) -> Vec<String> {
        self.dependents
            .get(uid)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Dependents whose reference to `uid` blocks its foreground deletion.
    pub fn blocking_dependents(&self, uid: &str) -> Vec<String> {
        self.dependents_of(uid)
            .into_iter()
            .filter(|d| {
                self.objects.get(d).is_some_and(|o| {
                    o.owners
                        .iter()
                        .any(|r| r.uid == uid && r.block_owner_deletion == Some(true))
                })
            })
            .collect()
    }
}

impl Graph {
    /// Whether deleting `uid` in the foreground could close a circle of foreground deletions:
    /// one of its dependents is itself being deleted in the foreground, waiting on its own
    /// dependents (upstream's attemptToDeleteItem check, which has false positives and no
    /// false negatives). Such an object's references are made non-blocking before it is
    /// deleted, so the circle cannot hold every member waiting on the next.
    pub fn may_close_foreground_circle(&self, uid: &str) -> bool {
        self.dependents_of(uid).iter().any(|d| {
            self.objects
                .get(d)
                .is_some_and(|o| o.deleting && o.has(FOREGROUND))
        })
    }
}

/// What an owner reference points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerState {
    /// Exists and is not waiting on its dependents.
    Solid,
    /// Gone (or replaced by an object with another UID).
    Dangling,
    /// Being deleted in the foreground and this reference blocks it.
    WaitingForDependents,
}

/// The propagation policy for a delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    /// Dependents are collected after the owner is gone.
    Background,
    /// The owner waits for blocking dependents.
    Foreground,
    /// Dependents lose their reference.
    Orphan,
}

/// The garbage collector's verdict for a dependent (upstream's attemptToDeleteItem).
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Nothing to do.
    Nothing,
    /// Some owner is solid: drop the references to these owner UIDs only.
    RemoveReferences(Vec<String>),
    /// No solid owner: delete the object with this policy.
    Delete(Propagation),
}

/// Decides for `obj` given the state of each owner reference (same order as `obj.owners`)
/// and whether it has dependents itself.
pub fn decide(obj: &Object, owners: &[OwnerState], has_dependents: bool) -> Action {
    if obj.owners.is_empty() || obj.deleting {
        return Action::Nothing;
    }
    let with = |s: OwnerState| -> Vec<String> {
        obj.owners
            .iter()
            .zip(owners)
            .filter(|(_, st)| **st == s)
            .map(|(r, _)| r.uid.clone())
            .collect()
    };
    let (solid, dangling, waiting) = (
        with(OwnerState::Solid),
        with(OwnerState::Dangling),
        with(OwnerState::WaitingForDependents),
    );
    if !solid.is_empty() {
        let drop: Vec<String> = dangling.into_iter().chain(waiting).collect();
        return if drop.is_empty() {
            Action::Nothing
        } else {
            Action::RemoveReferences(drop)
        };
    }
    if !waiting.is_empty() && has_dependents {
        return Action::Delete(Propagation::Foreground);
    }
    Action::Delete(if obj.has(ORPHAN) {
        Propagation::Orphan
    } else if obj.has(FOREGROUND) || !waiting.is_empty() {
        Propagation::Foreground
    } else {
        Propagation::Background
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(uid: &str, block: bool) -> OwnerReference {
        OwnerReference {
            api_version: "apps/v1".into(),
            kind: "ReplicaSet".into(),
            name: uid.into(),
            uid: uid.into(),
            block_owner_deletion: Some(block),
            controller: Some(true),
        }
    }

    fn obj(owners: Vec<OwnerReference>) -> Object {
        Object {
            location: Location {
                resource: 0,
                namespace: Some("ns".into()),
                name: "x".into(),
            },
            owners,
            deleting: false,
            finalizers: vec![],
        }
    }

    #[test]
    fn graph_tracks_reverse_edges() {
        let mut g = Graph::default();
        g.upsert("pod", obj(vec![owner("rs", true)]));
        g.upsert("pod2", obj(vec![owner("rs", false)]));
        assert_eq!(g.blocking_dependents("rs"), vec!["pod"]);
        let mut deps = g.dependents_of("rs");
        deps.sort();
        assert_eq!(deps, vec!["pod", "pod2"]);
        g.upsert("pod", obj(vec![])); // reference removed
        assert_eq!(g.dependents_of("rs"), vec!["pod2"]);
        assert_eq!(g.remove("rs"), vec!["pod2"]);
    }

    #[test]
    fn solid_owner_keeps_object_but_drops_dangling_refs() {
        let o = obj(vec![owner("a", false), owner("b", false)]);
        assert_eq!(
            decide(&o, &[OwnerState::Solid, OwnerState::Solid], false),
            Action::Nothing
        );
        assert_eq!(
            decide(&o, &[OwnerState::Solid, OwnerState::Dangling], false),
            Action::RemoveReferences(vec!["b".into()])
        );
    }

    #[test]
    fn all_owners_gone_deletes_with_the_objects_own_policy() {
        let mut o = obj(vec![owner("a", false)]);
        assert_eq!(
            decide(&o, &[OwnerState::Dangling], false),
            Action::Delete(Propagation::Background)
        );
        o.finalizers = vec![ORPHAN.into()];
        assert_eq!(
            decide(&o, &[OwnerState::Dangling], false),
            Action::Delete(Propagation::Orphan)
        );
        o.finalizers = vec![FOREGROUND.into()];
        assert_eq!(
            decide(&o, &[OwnerState::Dangling], false),
            Action::Delete(Propagation::Foreground)
        );
    }

    #[test]
    fn foreground_owner_deletes_dependents_in_the_foreground() {
        let o = obj(vec![owner("a", true)]);
        assert_eq!(
            decide(&o, &[OwnerState::WaitingForDependents], true),
            Action::Delete(Propagation::Foreground)
        );
        assert_eq!(
            decide(&o, &[OwnerState::WaitingForDependents], false),
            Action::Delete(Propagation::Foreground)
        );
        let mut gone = o.clone();
        gone.deleting = true;
        assert_eq!(
            decide(&gone, &[OwnerState::Dangling], false),
            Action::Nothing
        );
    }

    #[test]
    fn a_dependent_waiting_on_its_own_dependents_may_close_a_circle() {
        // pod1 -> pod3 -> pod2 -> pod1 (each owned by the next, blocking): pod1 is being
        // deleted in the foreground.
        let mut g = Graph::default();
        let mut pod1 = obj(vec![owner("pod3", true)]);
        pod1.deleting = true;
        pod1.finalizers = vec![FOREGROUND.into()];
        g.upsert("pod1", pod1);
        g.upsert("pod2", obj(vec![owner("pod1", true)]));
        g.upsert("pod3", obj(vec![owner("pod2", true)]));
        // pod3's dependent pod1 waits: deleting pod3 as it is could close the circle.
        assert!(g.may_close_foreground_circle("pod3"));
        // pod2's dependent pod3 is not being deleted yet.
        assert!(!g.may_close_foreground_circle("pod2"));
    }
}
