//! One StatefulSet sync's decisions over observed pods (upstream's `updateStatefulSet`
//! without the API calls): create missing ordinals, replace failed pods, scale down from the
//! highest ordinal, then roll pods onto the update revision — strictly one at a time, each
//! predecessor Running and Ready, for `OrderedReady`; all at once for `Parallel`.

use std::cmp::Reverse;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;

use super::identity::{ordinal, revision};
use crate::machinery::pods;

/// Which revision a pod is created from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rev {
    /// `status.currentRevision` (below the partition).
    Current,
    /// `status.updateRevision`.
    Update,
}

/// Why a pod is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// It failed or succeeded: it is recreated once gone.
    Terminated,
    /// Its ordinal is beyond the replicas.
    ScaleDown,
    /// It runs an old revision.
    Update,
}

/// One write the controller should issue.
#[derive(Debug, PartialEq)]
pub enum Action<'a> {
    /// Create pod `ordinal` (and its missing claims) from revision `rev`.
    Create {
        /// The ordinal.
        ordinal: i32,
        /// Its revision.
        rev: Rev,
    },
    /// Delete `pod`.
    Delete {
        /// The pod.
        pod: &'a Pod,
        /// Why.
        why: Why,
    },
    /// A live replica: set its identity labels if wrong, create claims it lacks, and bring
    /// its claims' owner references in line with the retention policy.
    Repair(&'a Pod),
    /// A condemned pod: its claims' owner references follow the retention policy (the pod
    /// becomes their owner under `whenScaled: Delete`) before it is deleted.
    FixClaims(&'a Pod),
    /// The pod is pending: create claims it is missing.
    EnsureClaims(&'a Pod),
}

/// The update strategy, as the plan needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// `OnDelete`: pods change revision only when someone deletes them.
    OnDelete,
    /// `RollingUpdate` (`rollingUpdate` may be absent).
    RollingUpdate {
        /// `rollingUpdate.partition`, `None` without `rollingUpdate`.
        partition: Option<i32>,
        /// `rollingUpdate.maxUnavailable` resolved against the replicas, if set.
        max_unavailable: Option<i32>,
    },
}

/// What the plan needs to know about the set.
#[derive(Debug, Clone)]
pub struct SetView {
    /// `spec.ordinals.start`.
    pub start: i32,
    /// `spec.replicas`.
    pub replicas: i32,
    /// `OrderedReady` (not `Parallel`).
    pub monotonic: bool,
    /// `spec.minReadySeconds`.
    pub min_ready_seconds: i32,
    /// `spec.updateStrategy`.
    pub strategy: Strategy,
    /// `status.currentReplicas` (chooses the revision without a partition).
    pub status_current_replicas: i32,
    /// Name of the update revision.
    pub update_revision: String,
}

/// The decisions of one sync.
#[derive(Debug, Default, PartialEq)]
pub struct Plan<'a> {
    /// Writes, in order.
    pub actions: Vec<Action<'a>>,
    /// Pods deleted for the rolling update (lowers `currentReplicas` in status).
    pub deleted_for_update: i32,
}

impl SetView {
    /// The revision a new pod at `ord` gets (upstream's `newVersionedStatefulSetPod`).
    pub fn revision_for(&self, ord: i32) -> Rev {
        let current = match self.strategy {
            Strategy::RollingUpdate {
                partition: None, ..
            } => ord < self.start + self.status_current_replicas,
            Strategy::RollingUpdate {
                partition: Some(p), ..
            } => ord < self.start + p,
            Strategy::OnDelete => false,
        };
        if current {
            Rev::Current
        } else {
            Rev::Update
        }
    }
}

fn running_and_ready(p: &Pod) -> bool {
    pods::phase(p) == "Running" && pods::is_ready(p)
}

fn running_and_available(p: &Pod, mrs: i32, now: Timestamp) -> bool {
    running_and_ready(p) && pods::is_available(p, mrs, now)
}

/// Not available, or terminating (upstream's `isUnavailable`).
pub fn is_unavailable(p: &Pod, mrs: i32, now: Timestamp) -> bool {
    !pods::is_available(p, mrs, now) || pods::is_terminating(p)
}

/// Plans one sync of `set` over its (claimed) `pods`.
pub fn plan<'a>(set: &SetView, pods_in: &[&'a Pod], now: Timestamp) -> Plan<'a> {
    let mut out = Plan::default();
    let n = set.replicas.max(0) as usize;
    let mrs = set.min_ready_seconds;
    let mut slots: Vec<Option<&'a Pod>> = vec![None; n];
    let mut condemned: Vec<&'a Pod> = Vec::new();
    for p in pods_in {
        let Some(ord) = ordinal(p) else { continue };
        let idx = i64::from(ord) - i64::from(set.start);
        if idx >= 0 && (idx as usize) < n {
            slots[idx as usize] = Some(p);
        } else {
            condemned.push(p);
        }
    }
    condemned.sort_by_key(|p| Reverse(ordinal(p)));
    let replica_unavailable = slots
        .iter()
        .any(|s| s.is_none_or(|p| is_unavailable(p, mrs, now)));
    // The first unhealthy condemned pod, lowest ordinal first; only consulted when every
    // replica is available.
    let first_unhealthy_condemned = (!replica_unavailable)
        .then(|| {
            condemned
                .iter()
                .rev()
                .find(|p| is_unavailable(p, mrs, now))
                .copied()
        })
        .flatten();
    let monotonic = set.monotonic;

    for (i, slot) in slots.iter().enumerate() {
        let ord = set.start + i as i32;
        let Some(p) = slot else {
            out.actions.push(Action::Create {
                ordinal: ord,
                rev: set.revision_for(ord),
            });
            if monotonic {
                return out;
            }
            continue;
        };
        if matches!(pods::phase(p), "Failed" | "Succeeded") {
            if !pods::is_terminating(p) {
                out.actions.push(Action::Delete {
                    pod: p,
                    why: Why::Terminated,
                });
            }
            if monotonic {
                return out;
            }
            continue;
        }
        if pods::phase(p) == "Pending" {
            out.actions.push(Action::EnsureClaims(p));
        }
        if monotonic
            && (pods::is_terminating(p)
                || !running_and_ready(p)
                || !running_and_available(p, mrs, now))
        {
            return out;
        }
        out.actions.push(Action::Repair(p));
    }

    out.actions
        .extend(condemned.iter().map(|p| Action::FixClaims(p)));
    for p in &condemned {
        if pods::is_terminating(p) {
            if monotonic {
                return out;
            }
            continue;
        }
        let is_first = first_unhealthy_condemned.is_some_and(|f| std::ptr::eq(f, *p));
        if monotonic && !running_and_available(p, mrs, now) && !is_first {
            return out;
        }
        out.actions.push(Action::Delete {
            pod: p,
            why: Why::ScaleDown,
        });
        if monotonic {
            return out;
        }
    }

    let (partition, max_unavailable) = match set.strategy {
        Strategy::OnDelete => return out,
        Strategy::RollingUpdate {
            partition,
            max_unavailable,
        } => (partition.unwrap_or(0).max(0) as usize, max_unavailable),
    };
    let stale = |p: &Pod| revision(p) != set.update_revision && !pods::is_terminating(p);
    match max_unavailable {
        None => {
            for target in (partition..n).rev() {
                let Some(p) = slots[target] else { return out };
                if stale(p) {
                    out.actions.push(Action::Delete {
                        pod: p,
                        why: Why::Update,
                    });
                    out.deleted_for_update += 1;
                    return out;
                }
                if is_unavailable(p, mrs, now) {
                    return out;
                }
            }
        }
        Some(max) => {
            let unavailable = slots
                .iter()
                .filter(|s| s.is_none_or(|p| is_unavailable(p, mrs, now)))
                .count() as i32;
            let mut budget = max.max(1) - unavailable;
            for target in (partition..n).rev() {
                if budget <= 0 {
                    break;
                }
                if let Some(p) = slots[target].filter(|p| stale(p)) {
                    out.actions.push(Action::Delete {
                        pod: p,
                        why: Why::Update,
                    });
                    out.deleted_for_update += 1;
                    budget -= 1;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apps::history::POD_REVISION_LABEL;
    use crate::machinery::pods::testing::pod;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn now() -> Timestamp {
        Timestamp::from_second(100_000).unwrap()
    }

    fn sp(ord: i32, phase: &str, ready: bool, rev: &str) -> Pod {
        let mut p = pod(&format!("web-{ord}"), phase, ready.then_some(100_000 - 100));
        p.metadata.labels = Some([(POD_REVISION_LABEL.to_string(), rev.to_string())].into());
        p
    }

    fn terminating(mut p: Pod) -> Pod {
        p.metadata.deletion_timestamp = Some(Time(now()));
        p
    }

    fn view(replicas: i32, monotonic: bool, strategy: Strategy) -> SetView {
        SetView {
            start: 0,
            replicas,
            monotonic,
            min_ready_seconds: 0,
            strategy,
            status_current_replicas: 0,
            update_revision: "new".into(),
        }
    }

    const ROLL: Strategy = Strategy::RollingUpdate {
        partition: Some(0),
        max_unavailable: None,
    };

    fn summary(p: &Plan<'_>) -> Vec<String> {
        p.actions
            .iter()
            .filter_map(|a| match a {
                Action::Create { ordinal, rev } => Some(format!("create {ordinal} {rev:?}")),
                Action::Delete { pod, why } => Some(format!(
                    "delete {} {why:?}",
                    pod.metadata.name.as_deref().unwrap()
                )),
                Action::Repair(_) => None,
                Action::FixClaims(_) => None,
                Action::EnsureClaims(p) => {
                    Some(format!("claims {}", p.metadata.name.as_deref().unwrap()))
                }
            })
            .collect()
    }

    #[test]
    fn ordered_ready_creates_one_at_a_time() {
        let v = view(3, true, ROLL);
        assert_eq!(summary(&plan(&v, &[], now())), ["create 0 Update"]);
        let p0 = sp(0, "Pending", false, "new");
        assert_eq!(summary(&plan(&v, &[&p0], now())), ["claims web-0"]);
        let p0 = sp(0, "Running", true, "new");
        assert_eq!(summary(&plan(&v, &[&p0], now())), ["create 1 Update"]);
        // Parallel creates every missing ordinal at once.
        let v = view(3, false, ROLL);
        assert_eq!(
            summary(&plan(&v, &[], now())),
            ["create 0 Update", "create 1 Update", "create 2 Update"]
        );
    }

    #[test]
    fn failed_pods_are_deleted_and_block_ordered_progress() {
        let v = view(2, true, ROLL);
        let p0 = sp(0, "Failed", false, "new");
        assert_eq!(
            summary(&plan(&v, &[&p0], now())),
            ["delete web-0 Terminated"]
        );
        let p0 = terminating(p0);
        assert!(summary(&plan(&v, &[&p0], now())).is_empty());
    }

    #[test]
    fn scale_down_highest_first_one_at_a_time() {
        let v = view(1, true, ROLL);
        let pods: Vec<Pod> = (0..3).map(|o| sp(o, "Running", true, "new")).collect();
        let refs: Vec<&Pod> = pods.iter().collect();
        assert_eq!(summary(&plan(&v, &refs, now())), ["delete web-2 ScaleDown"]);
        // While web-2 terminates nothing else happens.
        let t2 = terminating(pods[2].clone());
        assert!(summary(&plan(&v, &[&pods[0], &pods[1], &t2], now())).is_empty());
        // An unready replica blocks scale-down.
        let un0 = sp(0, "Running", false, "new");
        assert!(summary(&plan(&v, &[&un0, &pods[1], &pods[2]], now())).is_empty());
        // Parallel deletes all condemned pods.
        let v = view(1, false, ROLL);
        assert_eq!(
            summary(&plan(&v, &refs, now())),
            ["delete web-2 ScaleDown", "delete web-1 ScaleDown"]
        );
    }

    #[test]
    fn condemned_claims_are_fixed_before_deletion() {
        let v = view(1, true, ROLL);
        let pods: Vec<Pod> = (0..3).map(|o| sp(o, "Running", true, "new")).collect();
        let refs: Vec<&Pod> = pods.iter().collect();
        let p = plan(&v, &refs, now());
        let order: Vec<String> = p
            .actions
            .iter()
            .map(|a| match a {
                Action::Repair(p) => format!("repair {}", p.metadata.name.as_deref().unwrap()),
                Action::FixClaims(p) => format!("fix {}", p.metadata.name.as_deref().unwrap()),
                Action::Delete { pod, .. } => {
                    format!("delete {}", pod.metadata.name.as_deref().unwrap())
                }
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(
            order,
            ["repair web-0", "fix web-2", "fix web-1", "delete web-2"]
        );
        // A blocked replica stops the sync before any condemned pod is touched.
        let un0 = sp(0, "Running", false, "new");
        let p = plan(&v, &[&un0, &pods[1], &pods[2]], now());
        assert!(p.actions.is_empty());
    }

    #[test]
    fn unhealthy_condemned_pod_may_go_first() {
        let v = view(1, true, ROLL);
        let p0 = sp(0, "Running", true, "new");
        let p1 = sp(1, "Running", false, "new");
        assert_eq!(
            summary(&plan(&v, &[&p0, &p1], now())),
            ["delete web-1 ScaleDown"]
        );
    }

    #[test]
    fn rolling_update_respects_partition_and_waits() {
        let v = view(
            3,
            true,
            Strategy::RollingUpdate {
                partition: Some(1),
                max_unavailable: None,
            },
        );
        let pods: Vec<Pod> = (0..3).map(|o| sp(o, "Running", true, "old")).collect();
        let refs: Vec<&Pod> = pods.iter().collect();
        let p = plan(&v, &refs, now());
        assert_eq!(summary(&p), ["delete web-2 Update"]);
        assert_eq!(p.deleted_for_update, 1);
        // web-2 updated but not ready yet: wait.
        let n2 = sp(2, "Running", false, "new");
        assert!(summary(&plan(&v, &[&pods[0], &pods[1], &n2], now())).is_empty());
        let n2 = sp(2, "Running", true, "new");
        assert_eq!(
            summary(&plan(&v, &[&pods[0], &pods[1], &n2], now())),
            ["delete web-1 Update"]
        );
        let n1 = sp(1, "Running", true, "new");
        assert!(summary(&plan(&v, &[&pods[0], &n1, &n2], now())).is_empty());
        // Below the partition a recreated pod gets the current revision.
        assert_eq!(v.revision_for(0), Rev::Current);
        assert_eq!(v.revision_for(1), Rev::Update);
        // OnDelete never deletes for updates.
        let v = view(3, true, Strategy::OnDelete);
        assert!(summary(&plan(&v, &refs, now())).is_empty());
    }

    #[test]
    fn max_unavailable_deletes_several() {
        let v = view(
            4,
            true,
            Strategy::RollingUpdate {
                partition: Some(0),
                max_unavailable: Some(2),
            },
        );
        let pods: Vec<Pod> = (0..4).map(|o| sp(o, "Running", true, "old")).collect();
        let refs: Vec<&Pod> = pods.iter().collect();
        let p = plan(&v, &refs, now());
        assert_eq!(summary(&p), ["delete web-3 Update", "delete web-2 Update"]);
        // One already unavailable (but ordered mode waits for readiness first).
        let v = SetView {
            monotonic: false,
            ..v
        };
        let u3 = sp(3, "Running", false, "new");
        let p = plan(&v, &[&pods[0], &pods[1], &pods[2], &u3], now());
        assert_eq!(summary(&p), ["delete web-2 Update"]);
    }

    #[test]
    fn start_ordinal_shifts_the_range() {
        let mut v = view(2, false, ROLL);
        v.start = 5;
        let p4 = sp(4, "Running", true, "new");
        assert_eq!(
            summary(&plan(&v, &[&p4], now())),
            [
                "create 5 Update",
                "create 6 Update",
                "delete web-4 ScaleDown"
            ]
        );
    }
}
