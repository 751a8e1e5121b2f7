//! Which dead containers and sandboxes go, as upstream's container GC decides with the
//! kubelet's default policy (`MinAge` 0, `MaxPerPodContainer` 1, `MaxContainers` -1): of
//! each pod's containers of one name, the newest non-running one is kept (its status is
//! the container's last state); every older one goes. Of a pod's sandboxes, the newest is
//! kept and older ones go once nothing runs in them. Pods whose runtime may go (evicted,
//! on disk pressure) lose every non-running container and every inactive sandbox.

use crate::pod::observed::{ContainerState, ObservedPod};
use std::collections::HashMap;

/// Upstream's default `MaxPerPodContainer`.
pub const MAX_PER_POD_CONTAINER: usize = 1;

/// What the kubelet knows of a pod with runtime objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodState {
    /// A pod the kubelet runs: keep the newest dead container per name and sandbox.
    Active,
    /// A pod whose runtime may be removed entirely (evicted or otherwise finished).
    Removable,
    /// Not known to the kubelet (yet, or any more): left to the pod manager's orphan
    /// cleanup, which waits for the pod list to be complete.
    Unknown,
}

/// The removals decided.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Container IDs to remove (oldest first).
    pub containers: Vec<String>,
    /// Sandbox IDs to remove (oldest first).
    pub sandboxes: Vec<String>,
}

/// Decides for every pod in `pods` (by UID) given its state.
pub fn plan(
    pods: &HashMap<String, ObservedPod>,
    state: &(dyn Fn(&str) -> PodState + Sync),
) -> Plan {
    let mut out = Plan::default();
    let mut uids: Vec<&String> = pods.keys().collect();
    uids.sort();
    for uid in uids {
        let pod = &pods[uid];
        let st = state(uid);
        if st == PodState::Unknown {
            continue;
        }
        let keep = match st {
            PodState::Active => MAX_PER_POD_CONTAINER,
            _ => 0,
        };
        let mut by_name: HashMap<&str, Vec<(&str, i64)>> = HashMap::new();
        for c in pod
            .containers
            .iter()
            .filter(|c| c.state != ContainerState::Running)
        {
            by_name
                .entry(c.name.as_str())
                .or_default()
                .push((c.id.as_str(), c.created_at));
        }
        let mut names: Vec<&&str> = by_name.keys().collect();
        names.sort();
        let mut dead = Vec::new();
        for name in names {
            let mut unit = by_name[*name].clone();
            // Newest first; everything past `keep` goes.
            unit.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
            dead.extend(unit.into_iter().skip(keep));
        }
        dead.sort_by_key(|(_, created)| *created);
        out.containers
            .extend(dead.into_iter().map(|(id, _)| id.to_string()));

        // Sandboxes: active when ready or still holding containers (before this pass).
        let mut sandboxes: Vec<_> = pod.sandboxes.iter().collect();
        sandboxes.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
        let keep = if st == PodState::Active { 1 } else { 0 };
        let mut gone: Vec<_> = sandboxes
            .into_iter()
            .skip(keep)
            .filter(|s| !s.ready && !pod.containers.iter().any(|c| c.sandbox_id == s.id))
            .collect();
        gone.sort_by_key(|s| s.created_at);
        out.sandboxes.extend(gone.into_iter().map(|s| s.id.clone()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::observed::{ObservedContainer, ObservedSandbox};

    fn c(
        id: &str,
        sandbox: &str,
        name: &str,
        state: ContainerState,
        created: i64,
    ) -> ObservedContainer {
        ObservedContainer {
            id: id.into(),
            sandbox_id: sandbox.into(),
            name: name.into(),
            restart_count: 0,
            hash: String::new(),
            state,
            exit_code: 0,
            reason: String::new(),
            message: String::new(),
            created_at: created,
            started_at: 0,
            finished_at: 0,
            image: String::new(),
            image_ref: String::new(),
        }
    }

    fn sb(id: &str, ready: bool, created: i64) -> ObservedSandbox {
        ObservedSandbox {
            id: id.into(),
            attempt: 0,
            ready,
            created_at: created,
            ips: vec![],
        }
    }

    #[test]
    fn keeps_the_newest_dead_container_per_name_and_the_newest_sandbox() {
        use ContainerState::*;
        let pod = ObservedPod {
            sandboxes: vec![sb("s3", true, 30), sb("s2", false, 20), sb("s1", false, 10)],
            containers: vec![
                c("a1", "s2", "app", Exited, 1),
                c("a2", "s3", "app", Exited, 2),
                c("a3", "s3", "app", Exited, 3),
                c("a4", "s3", "app", Running, 4),
                c("b1", "s3", "side", Exited, 5),
            ],
        };
        let pods = HashMap::from([("u".to_string(), pod.clone())]);
        let p = plan(&pods, &|_| PodState::Active);
        assert_eq!(
            p.containers,
            vec!["a1", "a2"],
            "a3 is the last state; a4 runs; b1 is side's only"
        );
        assert_eq!(
            p.sandboxes,
            vec!["s1"],
            "s2 still holds a1 this pass; s3 is ready"
        );

        let p = plan(&pods, &|_| PodState::Removable);
        assert_eq!(p.containers, vec!["a1", "a2", "a3", "b1"]);
        assert_eq!(p.sandboxes, vec!["s1"]);

        assert_eq!(plan(&pods, &|_| PodState::Unknown), Plan::default());
    }
}
