//! Which resources the garbage collector monitors (upstream's `GetDeletableResources` and
//! the decision half of `GarbageCollector.Sync`): what one discovery round means for the
//! set of metadata watches. Pure, so it unit-tests without a server.

use kube::discovery::verbs;

use crate::machinery::discovery::Served;

/// The outcome of one discovery round.
#[derive(Debug)]
pub enum Resync {
    /// Discovery failed or reported no deletable resources: nothing changes, and it counts
    /// as a resources sync error (as upstream's).
    NoResources,
    /// Every deletable resource is monitored already.
    Unchanged,
    /// These deletable resources are new and need a monitor.
    Add(Vec<Served>),
}

/// Whether the garbage collector can monitor and collect `s`: it must support list, watch
/// and delete.
pub fn deletable(s: &Served) -> bool {
    s.supports(verbs::LIST) && s.supports(verbs::WATCH) && s.supports(verbs::DELETE)
}

fn same_resource(a: &Served, b: &Served) -> bool {
    a.resource.group == b.resource.group && a.resource.kind == b.resource.kind
}

/// What to do with `discovered` (`None` when discovery failed) given the `monitored`
/// resources. Monitors are only ever added: a resource that disappears keeps its watch,
/// which then simply fails and retries (upstream stops it; the graph keeps its objects
/// until they are seen deleted either way).
pub fn resync(monitored: &[Served], discovered: Option<Vec<Served>>) -> Resync {
    let deletable: Vec<Served> = discovered
        .unwrap_or_default()
        .into_iter()
        .filter(deletable)
        .collect();
    if deletable.is_empty() {
        return Resync::NoResources;
    }
    let mut new: Vec<Served> = Vec::new();
    for s in deletable {
        if !monitored.iter().chain(&new).any(|m| same_resource(m, &s)) {
            new.push(s);
        }
    }
    if new.is_empty() {
        Resync::Unchanged
    } else {
        Resync::Add(new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machinery::discovery::testing::served;

    const ALL: &[&str] = &["list", "watch", "delete", "get"];

    fn kinds(r: Resync) -> Vec<String> {
        match r {
            Resync::Add(v) => v.into_iter().map(|s| s.resource.kind).collect(),
            other => panic!("expected Add, got {other:?}"),
        }
    }

    #[test]
    fn failed_or_empty_discovery_is_a_sync_error() {
        assert!(matches!(resync(&[], None), Resync::NoResources));
        assert!(matches!(resync(&[], Some(Vec::new())), Resync::NoResources));
        // Resources that cannot be deleted (or watched) do not count.
        let undeletable = vec![
            served("", "Binding", &["create"]),
            served("authorization.k8s.io", "SubjectAccessReview", &["create"]),
            served("", "ComponentStatus", &["list", "get"]),
        ];
        assert!(matches!(
            resync(&[served("", "Pod", ALL)], Some(undeletable)),
            Resync::NoResources
        ));
    }

    #[test]
    fn only_new_deletable_resources_get_a_monitor() {
        let first = resync(
            &[],
            Some(vec![
                served("", "Pod", ALL),
                served("apps", "Deployment", ALL),
                served("", "Binding", &["create"]),
            ]),
        );
        assert_eq!(kinds(first), ["Pod", "Deployment"]);
        let monitored = [served("", "Pod", ALL), served("apps", "Deployment", ALL)];
        assert!(matches!(
            resync(
                &monitored,
                Some(vec![
                    served("", "Pod", ALL),
                    served("apps", "Deployment", ALL)
                ])
            ),
            Resync::Unchanged
        ));
        // A CRD appears; a kind of the same name in another group is another resource.
        let next = resync(
            &monitored,
            Some(vec![
                served("", "Pod", ALL),
                served("example.com", "Deployment", ALL),
                served("example.com", "Deployment", ALL),
            ]),
        );
        assert_eq!(kinds(next), ["Deployment"]);
    }
}
