//! `spec.podFailurePolicy` and `spec.successPolicy` as pure functions over a pod (or the
//! set of succeeded indexes).

use std::collections::BTreeSet;

use k8s_openapi::api::batch::v1::{
    PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement, SuccessPolicy,
};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

use super::indexes;

/// A pod failure policy rule's action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Fail the whole Job.
    FailJob,
    /// Fail the pod's index (backoffLimitPerIndex only).
    FailIndex,
    /// Do not count the failure.
    Ignore,
    /// Count the failure as usual.
    Count,
}

impl Action {
    fn parse(s: &str) -> Option<Action> {
        Some(match s {
            "FailJob" => Action::FailJob,
            "FailIndex" => Action::FailIndex,
            "Ignore" => Action::Ignore,
            "Count" => Action::Count,
            _ => return None,
        })
    }
}

/// What the pod failure policy says about one failed pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyMatch {
    /// The Job failure message, when a `FailJob` rule matched.
    pub fail_job: Option<String>,
    /// Whether the failure counts towards backoffLimit (false for `Ignore`).
    pub count_failed: bool,
    /// The matched rule's action, if a rule matched.
    pub action: Option<Action>,
}

/// Matches `pod` against the rules of `policy` in order; the first matching rule wins.
/// Without a policy (or without a match) the failure counts.
pub fn match_pod_failure_policy(policy: Option<&PodFailurePolicy>, pod: &Pod) -> PolicyMatch {
    let counted = PolicyMatch {
        fail_job: None,
        count_failed: true,
        action: None,
    };
    let Some(policy) = policy else {
        return counted;
    };
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    for (i, rule) in policy.rules.iter().enumerate() {
        let Some(action) = Action::parse(&rule.action) else {
            continue;
        };
        let fail_job_message = if let Some(req) = &rule.on_exit_codes {
            let Some(c) = match_exit_codes(pod, req) else {
                continue;
            };
            let code = c
                .state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .map_or(0, |t| t.exit_code);
            format!(
                "Container {} for pod {ns}/{name} failed with exit code {code} matching FailJob rule at index {i}",
                c.name
            )
        } else if let Some(patterns) = &rule.on_pod_conditions {
            let Some(cond) = pod
                .status
                .iter()
                .flat_map(|s| s.conditions.iter().flatten())
                .find(|c| {
                    patterns.iter().any(|p| {
                        p.type_ == c.type_ && p.status.as_deref().unwrap_or("True") == c.status
                    })
                })
            else {
                continue;
            };
            format!(
                "Pod {ns}/{name} has condition {} matching FailJob rule at index {i}",
                cond.type_
            )
        } else {
            continue;
        };
        return match action {
            Action::Ignore => PolicyMatch {
                fail_job: None,
                count_failed: false,
                action: Some(action),
            },
            Action::FailJob => PolicyMatch {
                fail_job: Some(fail_job_message),
                count_failed: true,
                action: Some(action),
            },
            Action::FailIndex | Action::Count => PolicyMatch {
                fail_job: None,
                count_failed: true,
                action: Some(action),
            },
        };
    }
    counted
}

fn match_exit_codes<'a>(
    pod: &'a Pod,
    req: &PodFailurePolicyOnExitCodesRequirement,
) -> Option<&'a ContainerStatus> {
    let status = pod.status.as_ref()?;
    let matches = |c: &&ContainerStatus| {
        let Some(t) = c.state.as_ref().and_then(|s| s.terminated.as_ref()) else {
            return false;
        };
        if req.container_name.as_ref().is_some_and(|n| *n != c.name) || t.exit_code == 0 {
            return false;
        }
        let listed = req.values.contains(&t.exit_code);
        match req.operator.as_str() {
            "In" => listed,
            "NotIn" => !listed,
            _ => false,
        }
    };
    status
        .container_statuses
        .iter()
        .flatten()
        .find(matches)
        .or_else(|| {
            status
                .init_container_statuses
                .iter()
                .flatten()
                .find(matches)
        })
}

/// Whether `succeeded` (indexes below `completions`) meets a rule of `policy`; returns
/// upstream's condition message `Matched rules at index <i>`.
pub fn match_success_policy(
    policy: Option<&SuccessPolicy>,
    completions: i32,
    succeeded: &BTreeSet<i32>,
) -> Option<String> {
    let policy = policy?;
    if succeeded.is_empty() {
        return None;
    }
    for (i, rule) in policy.rules.iter().enumerate() {
        let met = if let Some(ix) = &rule.succeeded_indexes {
            let required = indexes::parse(ix, completions);
            if required.is_empty() {
                continue;
            }
            let contained = required.intersection(succeeded).count();
            contained == required.len()
                || rule
                    .succeeded_count
                    .is_some_and(|c| contained as i64 >= i64::from(c))
        } else if let Some(c) = rule.succeeded_count {
            succeeded.len() as i64 >= i64::from(c)
        } else {
            false
        };
        if met {
            return Some(format!("Matched rules at index {i}"));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::SuccessPolicyRule;

    fn policy(v: serde_json::Value) -> PodFailurePolicy {
        serde_json::from_value(v).unwrap()
    }

    fn failed_pod(exit: i32, conditions: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "status": {"phase": "Failed", "conditions": conditions,
                "containerStatuses": [{"name": "main", "image": "i", "imageID": "", "ready": false,
                    "restartCount": 0, "state": {"terminated": {"exitCode": exit}}}]}
        }))
        .unwrap()
    }

    #[test]
    fn exit_code_rules_in_order() {
        let p = policy(serde_json::json!({"rules": [
            {"action": "Ignore", "onExitCodes": {"operator": "In", "values": [3]}},
            {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In", "values": [42]}},
            {"action": "Count", "onExitCodes": {"operator": "NotIn", "values": [42, 3]}},
        ]}));
        let m = match_pod_failure_policy(Some(&p), &failed_pod(42, serde_json::json!([])));
        assert_eq!(m.action, Some(Action::FailJob));
        assert_eq!(
            m.fail_job.as_deref(),
            Some("Container main for pod ns/p failed with exit code 42 matching FailJob rule at index 1")
        );
        let m = match_pod_failure_policy(Some(&p), &failed_pod(3, serde_json::json!([])));
        assert_eq!((m.count_failed, m.action), (false, Some(Action::Ignore)));
        let m = match_pod_failure_policy(Some(&p), &failed_pod(1, serde_json::json!([])));
        assert_eq!((m.count_failed, m.action), (true, Some(Action::Count)));
        // Exit code 0 never matches, even NotIn.
        let m = match_pod_failure_policy(Some(&p), &failed_pod(0, serde_json::json!([])));
        assert_eq!(m.action, None);
        assert!(
            match_pod_failure_policy(None, &failed_pod(42, serde_json::json!([]))).count_failed
        );
    }

    #[test]
    fn disruption_target_condition() {
        let p = policy(serde_json::json!({"rules": [
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
            {"action": "FailIndex", "onPodConditions": [{"type": "ConfigIssue", "status": "True"}]},
        ]}));
        let disrupted = failed_pod(
            137,
            serde_json::json!([{"type": "DisruptionTarget", "status": "True"}]),
        );
        let m = match_pod_failure_policy(Some(&p), &disrupted);
        assert_eq!((m.count_failed, m.action), (false, Some(Action::Ignore)));
        let not_true = failed_pod(
            1,
            serde_json::json!([{"type": "DisruptionTarget", "status": "False"}]),
        );
        assert_eq!(match_pod_failure_policy(Some(&p), &not_true).action, None);
        let cfg = failed_pod(
            1,
            serde_json::json!([{"type": "ConfigIssue", "status": "True"}]),
        );
        assert_eq!(
            match_pod_failure_policy(Some(&p), &cfg).action,
            Some(Action::FailIndex)
        );
    }

    #[test]
    fn success_policy_rules() {
        let rules = |r: Vec<SuccessPolicyRule>| SuccessPolicy { rules: r };
        let by_indexes = rules(vec![SuccessPolicyRule {
            succeeded_indexes: Some("0,2-3".into()),
            succeeded_count: None,
        }]);
        assert_eq!(
            match_success_policy(Some(&by_indexes), 5, &[0, 2].into()),
            None
        );
        assert_eq!(
            match_success_policy(Some(&by_indexes), 5, &[0, 2, 3].into()).as_deref(),
            Some("Matched rules at index 0")
        );
        let mixed = rules(vec![
            SuccessPolicyRule {
                succeeded_indexes: Some("0-3".into()),
                succeeded_count: Some(2),
            },
            SuccessPolicyRule {
                succeeded_indexes: None,
                succeeded_count: Some(3),
            },
        ]);
        assert_eq!(match_success_policy(Some(&mixed), 10, &[0, 9].into()), None);
        assert_eq!(
            match_success_policy(Some(&mixed), 10, &[1, 3].into()).as_deref(),
            Some("Matched rules at index 0")
        );
        assert_eq!(
            match_success_policy(Some(&mixed), 10, &[5, 6, 7].into()).as_deref(),
            Some("Matched rules at index 1")
        );
        assert_eq!(match_success_policy(None, 10, &[1].into()), None);
    }
}
