//! How many pods to create, or which to delete, to reach the desired count (upstream's
//! `manageReplicas` decision, without the API calls).

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;

use crate::machinery::pods;

/// Upstream's BurstReplicas: at most this many creations or deletions per sync.
pub const BURST_REPLICAS: usize = 500;

/// The outcome of one reconcile step.
#[derive(Debug, PartialEq)]
pub enum Step<'a> {
    /// Nothing to do.
    Steady,
    /// Create this many pods.
    Create(usize),
    /// Delete these pods, in this order.
    Delete(Vec<&'a Pod>),
}

/// What to do for `desired` replicas given the owned `active` pods and the `related` pods of
/// sibling ReplicaSets (for victim ranking).
pub fn decide<'a>(desired: i32, active: &[&'a Pod], related: &[&Pod], now: Timestamp) -> Step<'a> {
    let desired = desired.max(0) as usize;
    if active.len() < desired {
        Step::Create((desired - active.len()).min(BURST_REPLICAS))
    } else if active.len() > desired {
        let n = (active.len() - desired).min(BURST_REPLICAS);
        Step::Delete(pods::pick_victims(active, related, n, now))
    } else {
        Step::Steady
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machinery::pods::testing::{on_node, pod};

    #[test]
    fn creates_up_to_burst() {
        let now = Timestamp::from_second(1).unwrap();
        assert_eq!(decide(3, &[], &[], now), Step::Create(3));
        assert_eq!(decide(2000, &[], &[], now), Step::Create(BURST_REPLICAS));
        let p = pod("a", "Running", None);
        assert_eq!(decide(1, &[&p], &[&p], now), Step::Steady);
        assert_eq!(decide(-1, &[], &[], now), Step::Steady);
    }

    #[test]
    fn deletes_least_valuable_pods() {
        let now = Timestamp::from_second(100_000).unwrap();
        let ready = on_node(pod("ready", "Running", Some(10)), "n1");
        let pending = on_node(pod("pending", "Pending", None), "n1");
        let unassigned = pod("unassigned", "Pending", None);
        let active = [&ready, &pending, &unassigned];
        match decide(1, &active, &active, now) {
            Step::Delete(v) => {
                let names: Vec<_> = v
                    .iter()
                    .map(|p| p.metadata.name.as_deref().unwrap())
                    .collect();
                assert_eq!(names, ["unassigned", "pending"]);
            }
            other => panic!("expected deletions, got {other:?}"),
        }
    }
}
