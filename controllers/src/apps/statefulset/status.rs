//! StatefulSet status from observed pods (upstream's `updateStatus` and
//! `completeRollingUpdate`).

use k8s_openapi::api::apps::v1::StatefulSetStatus;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;

use super::identity::revision;
use crate::machinery::pods;

/// Inputs besides the pods.
#[derive(Debug, Clone)]
pub struct StatusInputs<'a> {
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// `spec.minReadySeconds`.
    pub min_ready_seconds: i32,
    /// Whether the strategy is `RollingUpdate`.
    pub rolling: bool,
    /// Current revision name.
    pub current_revision: &'a str,
    /// Update revision name.
    pub update_revision: &'a str,
    /// Collision count after revision creation.
    pub collision_count: i32,
    /// Pods deleted for the update in this sync.
    pub deleted_for_update: i32,
}

fn opt(n: i32) -> Option<i32> {
    (n != 0).then_some(n)
}

/// The status for `pods` (those with an ordinal), keeping `previous` conditions.
pub fn calculate(
    previous: &StatefulSetStatus,
    pods_in: &[&Pod],
    i: &StatusInputs<'_>,
    now: Timestamp,
) -> StatefulSetStatus {
    let (mut replicas, mut ready, mut available, mut current, mut updated) = (0, 0, 0, 0, 0);
    for p in pods_in {
        let created = !pods::phase(p).is_empty();
        if created {
            replicas += 1;
        }
        if pods::phase(p) == "Running" && pods::is_ready(p) {
            ready += 1;
            if pods::is_available(p, i.min_ready_seconds, now) {
                available += 1;
            }
        }
        if created && !pods::is_terminating(p) {
            if revision(p) == i.current_revision {
                current += 1;
            }
            if revision(p) == i.update_revision {
                updated += 1;
            }
        }
    }
    current -= i.deleted_for_update;
    let mut current_revision = i.current_revision.to_string();
    // Upstream's completeRollingUpdate compares with the observed (status) replicas.
    if i.rolling && updated == replicas && ready == replicas {
        current = updated;
        current_revision = i.update_revision.to_string();
    }
    StatefulSetStatus {
        observed_generation: i.generation,
        replicas,
        ready_replicas: opt(ready),
        available_replicas: Some(available),
        current_replicas: opt(current),
        updated_replicas: opt(updated),
        current_revision: (!current_revision.is_empty()).then_some(current_revision),
        update_revision: (!i.update_revision.is_empty()).then(|| i.update_revision.to_string()),
        collision_count: Some(i.collision_count),
        conditions: previous.conditions.clone(),
    }
}

/// Whether two statuses differ as the apiserver stores them (zero and absent are equal).
pub fn differs(a: &StatefulSetStatus, b: &StatefulSetStatus) -> bool {
    let n = |v: Option<i32>| v.unwrap_or(0);
    let s = |v: &Option<String>| v.clone().unwrap_or_default();
    a.observed_generation.unwrap_or(0) != b.observed_generation.unwrap_or(0)
        || a.replicas != b.replicas
        || n(a.ready_replicas) != n(b.ready_replicas)
        || n(a.available_replicas) != n(b.available_replicas)
        || n(a.current_replicas) != n(b.current_replicas)
        || n(a.updated_replicas) != n(b.updated_replicas)
        || s(&a.current_revision) != s(&b.current_revision)
        || s(&a.update_revision) != s(&b.update_revision)
        || a.collision_count.unwrap_or(0) != b.collision_count.unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apps::history::POD_REVISION_LABEL;
    use crate::machinery::pods::testing::pod;

    fn sp(name: &str, phase: &str, ready_at: Option<i64>, rev: &str) -> Pod {
        let mut p = pod(name, phase, ready_at);
        p.metadata.labels = Some([(POD_REVISION_LABEL.to_string(), rev.to_string())].into());
        p
    }

    fn inputs() -> StatusInputs<'static> {
        StatusInputs {
            generation: Some(3),
            min_ready_seconds: 10,
            rolling: true,
            current_revision: "old",
            update_revision: "new",
            collision_count: 0,
            deleted_for_update: 0,
        }
    }

    #[test]
    fn counts_and_availability() {
        let now = Timestamp::from_second(1_000).unwrap();
        let a = sp("web-0", "Running", Some(900), "old");
        let b = sp("web-1", "Running", Some(995), "new");
        let c = sp("web-2", "Pending", None, "new");
        let s = calculate(&Default::default(), &[&a, &b, &c], &inputs(), now);
        assert_eq!(s.replicas, 3);
        assert_eq!(s.ready_replicas, Some(2));
        assert_eq!(s.available_replicas, Some(1));
        assert_eq!(s.current_replicas, Some(1));
        assert_eq!(s.updated_replicas, Some(2));
        assert_eq!(s.current_revision.as_deref(), Some("old"));
        assert_eq!(s.observed_generation, Some(3));
    }

    #[test]
    fn completed_rollout_makes_update_current() {
        let now = Timestamp::from_second(1_000).unwrap();
        let a = sp("web-0", "Running", Some(900), "new");
        let s = calculate(&Default::default(), &[&a], &inputs(), now);
        assert_eq!(s.current_revision.as_deref(), Some("new"));
        assert_eq!(s.current_replicas, Some(1));
        let mut stored = s.clone();
        stored.ready_replicas = Some(1);
        assert!(!differs(&s, &stored));
        stored.replicas = 2;
        assert!(differs(&s, &stored));
    }
}
