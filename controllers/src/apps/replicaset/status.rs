//! ReplicaSet/ReplicationController status as upstream computes it
//! (`calculateStatus`), shared by both kinds (their status schemas are identical).

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::machinery::pods;
use api_helpers::labels;

/// Condition type set while pods cannot be created or deleted.
pub const REPLICA_FAILURE: &str = "ReplicaFailure";

/// One status condition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `ReplicaFailure`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// RFC 3339 time of the last status change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
    /// Machine-readable reason (`FailedCreate`, `FailedDelete`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Human-readable message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The status fields both kinds share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaStatus {
    /// Active pods owned.
    #[serde(default)]
    pub replicas: i32,
    /// Active pods whose labels match the template's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fully_labeled_replicas: Option<i32>,
    /// Active pods that are Ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    /// Active pods Ready for at least minReadySeconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available_replicas: Option<i32>,
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Conditions (`ReplicaFailure`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<Condition>>,
}

/// Why the last pod management failed, for the ReplicaFailure condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManageFailure {
    /// `FailedCreate` or `FailedDelete`.
    pub reason: &'static str,
    /// The apiserver's error.
    pub message: String,
}

/// The status for `active` owned pods: counts, the observed generation and the
/// ReplicaFailure condition (set on `failure`, removed after a clean sync).
#[allow(clippy::too_many_arguments)]
pub fn calculate(
    previous: &ReplicaStatus,
    active: &[&Pod],
    template_labels: Option<&std::collections::BTreeMap<String, String>>,
    min_ready_seconds: i32,
    generation: Option<i64>,
    failure: Option<&ManageFailure>,
    now: Timestamp,
) -> ReplicaStatus {
    let template_selector = labels::from_map(&template_labels.cloned().unwrap_or_default());
    let fully = active
        .iter()
        .filter(|p| labels::matches(&template_selector, p.metadata.labels.as_ref()))
        .count() as i32;
    let ready = active.iter().filter(|p| pods::is_ready(p)).count() as i32;
    let available = active
        .iter()
        .filter(|p| pods::is_available(p, min_ready_seconds, now))
        .count() as i32;
    let mut conditions: Vec<Condition> = previous.conditions.clone().unwrap_or_default();
    let existing = conditions.iter().position(|c| c.type_ == REPLICA_FAILURE);
    match (failure, existing) {
        (Some(f), None) => conditions.push(Condition {
            type_: REPLICA_FAILURE.into(),
            status: "True".into(),
            last_transition_time: Some(now.to_string()),
            reason: Some(f.reason.into()),
            message: Some(f.message.clone()),
        }),
        (None, Some(i)) => {
            conditions.remove(i);
        }
        _ => {}
    }
    ReplicaStatus {
        replicas: active.len() as i32,
        fully_labeled_replicas: Some(fully),
        ready_replicas: Some(ready),
        available_replicas: Some(available),
        observed_generation: generation,
        conditions: (!conditions.is_empty()).then_some(conditions),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machinery::pods::testing::pod;

    #[test]
    fn counts_and_failure_condition() {
        let now = Timestamp::from_second(10_000).unwrap();
        let mut a = pod("a", "Running", Some(9_000));
        a.metadata.labels = Some([("app".to_string(), "x".to_string())].into());
        let b = pod("b", "Running", Some(9_995));
        let c = pod("c", "Pending", None);
        let tl = [("app".to_string(), "x".to_string())].into();
        let fail = ManageFailure {
            reason: "FailedCreate",
            message: "quota".into(),
        };
        let s = calculate(
            &ReplicaStatus::default(),
            &[&a, &b, &c],
            Some(&tl),
            10,
            Some(3),
            Some(&fail),
            now,
        );
        assert_eq!(s.replicas, 3);
        assert_eq!(s.fully_labeled_replicas, Some(1));
        assert_eq!(s.ready_replicas, Some(2));
        assert_eq!(s.available_replicas, Some(1));
        assert_eq!(s.observed_generation, Some(3));
        assert_eq!(
            s.conditions.as_ref().unwrap()[0].reason.as_deref(),
            Some("FailedCreate")
        );
        let s2 = calculate(&s, &[&a], Some(&tl), 0, Some(3), None, now);
        assert!(s2.conditions.is_none());
    }
}
