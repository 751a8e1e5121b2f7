//! A PodDisruptionBudget's status from observed pods, as pure functions (upstream's
//! `getExpectedPodCount`, `countHealthyPods`, `buildDisruptedPodMap`, `updatePdbStatus`).

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use api_helpers::labels;

/// How long a pod the eviction API marked disrupted may take to be deleted before it
/// counts as healthy again (upstream's `DeletionTimeout`).
pub const DELETION_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a `DisruptionTarget=True` condition may sit on a pod that is not being
/// deleted before it is reset to False.
pub const STALE_DISRUPTION_TIMEOUT: Duration = Duration::from_secs(120);
/// The PDB condition type.
pub const DISRUPTION_ALLOWED: &str = "DisruptionAllowed";

/// The pods of the budget's namespace its selector picks (a missing selector picks none,
/// an empty one all, as policy/v1).
pub fn selected<'a>(pdb: &PodDisruptionBudget, pods: &'a [&'a Pod]) -> Vec<&'a Pod> {
    let Some(sel) = pdb.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
        return Vec::new();
    };
    let ns = pdb.metadata.namespace.as_deref();
    pods.iter()
        .copied()
        .filter(|p| p.metadata.namespace.as_deref() == ns)
        .filter(|p| labels::matches(sel, p.metadata.labels.as_ref()))
        .collect()
}

/// Whether the budget is a percentage or maxUnavailable, i.e. needs the controllers' scale.
pub fn needs_scale(pdb: &PodDisruptionBudget) -> bool {
    let spec = pdb.spec.as_ref();
    spec.and_then(|s| s.max_unavailable.as_ref()).is_some()
        || matches!(
            spec.and_then(|s| s.min_available.as_ref()),
            Some(IntOrString::String(_))
        )
}

/// `intstr.GetScaledValueFromIntOrPercent(v, total, roundUp=true)`.
pub fn scaled_value(v: &IntOrString, total: i32, field: &str) -> Result<i32, String> {
    match v {
        IntOrString::Int(i) => Ok(*i),
        IntOrString::String(s) => {
            let pct: i64 = s
                .strip_suffix('%')
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| {
                    format!("invalid value for {field}: {s:?} is not an integer or a percentage")
                })?;
            Ok(((pct * total as i64) as f64 / 100.0).ceil() as i32)
        }
    }
}

/// `(expectedPods, desiredHealthy)` for the budget over `pod_count` selected pods;
/// `scale` is the summed scale of their controllers when [`needs_scale`].
pub fn expected_and_desired(
    pdb: &PodDisruptionBudget,
    pod_count: usize,
    scale: Option<i32>,
) -> Result<(i32, i32), String> {
    let spec = pdb.spec.as_ref();
    if let Some(max) = spec.and_then(|s| s.max_unavailable.as_ref()) {
        let expected = scale.ok_or("the controllers' scale is unknown")?;
        let max = scaled_value(max, expected, "spec.maxUnavailable")?;
        return Ok((expected, (expected - max).max(0)));
    }
    match spec.and_then(|s| s.min_available.as_ref()) {
        Some(IntOrString::Int(n)) => Ok((pod_count as i32, *n)),
        Some(v @ IntOrString::String(_)) => {
            let expected = scale.ok_or("the controllers' scale is unknown")?;
            Ok((expected, scaled_value(v, expected, "spec.minAvailable")?))
        }
        None => Ok((0, 0)),
    }
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True")
}

fn elapsed_since(t: &Time, now: jiff::Timestamp) -> Duration {
    Duration::try_from(now.duration_since(t.0)).unwrap_or_default()
}

/// The `disruptedPods` entries still pending: pods that exist, are not yet being deleted,
/// and were marked less than [`DELETION_TIMEOUT`] ago; plus when to look again.
pub fn pending_disruptions(
    pdb: &PodDisruptionBudget,
    pods: &[&Pod],
    now: jiff::Timestamp,
) -> (BTreeMap<String, Time>, Option<Duration>) {
    let Some(marked) = pdb.status.as_ref().and_then(|s| s.disrupted_pods.as_ref()) else {
        return (BTreeMap::new(), None);
    };
    let mut out = BTreeMap::new();
    let mut recheck: Option<Duration> = None;
    for pod in pods {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let Some(at) = pod.metadata.name.as_ref().and_then(|n| marked.get(n)) else {
            continue;
        };
        let elapsed = elapsed_since(at, now);
        if elapsed < DELETION_TIMEOUT {
            let left = DELETION_TIMEOUT - elapsed;
            recheck = Some(recheck.map_or(left, |r| r.min(left)));
            out.insert(pod.metadata.name.clone().unwrap_or_default(), at.clone());
        }
    }
    (out, recheck)
}

/// Ready pods that are neither being deleted nor pending disruption.
pub fn current_healthy(pods: &[&Pod], disrupted: &BTreeMap<String, Time>) -> i32 {
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            p.metadata
                .name
                .as_ref()
                .is_none_or(|n| !disrupted.contains_key(n))
        })
        .filter(|p| is_ready(p))
        .count() as i32
}

/// `meta.SetStatusCondition`: replaces the condition of that type, keeping its
/// lastTransitionTime unless the status changed.
pub fn set_condition(conditions: &mut Vec<Condition>, mut c: Condition) {
    if let Some(old) = conditions.iter_mut().find(|o| o.type_ == c.type_) {
        if old.status == c.status {
            c.last_transition_time = old.last_transition_time.clone();
        }
        *old = c;
    } else {
        conditions.push(c);
    }
}

fn allowed_condition(
    status: &str,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: jiff::Timestamp,
) -> Condition {
    Condition {
        type_: DISRUPTION_ALLOWED.into(),
        status: status.into(),
        reason: reason.into(),
        message,
        observed_generation: generation,
        last_transition_time: Time(now),
    }
}

/// The status to write, or `None` when the current one is already right.
pub fn desired_status(
    pdb: &PodDisruptionBudget,
    current_healthy: i32,
    desired_healthy: i32,
    expected: i32,
    disrupted: BTreeMap<String, Time>,
    now: jiff::Timestamp,
) -> Option<PodDisruptionBudgetStatus> {
    let allowed = if expected <= 0 {
        0
    } else {
        (current_healthy - desired_healthy).max(0)
    };
    let old = pdb.status.clone().unwrap_or_default();
    let generation = pdb.metadata.generation;
    let mut conditions = old.conditions.clone().unwrap_or_default();
    let (status, reason) = if allowed > 0 {
        ("True", "SufficientPods")
    } else {
        ("False", "InsufficientPods")
    };
    set_condition(
        &mut conditions,
        allowed_condition(status, reason, String::new(), generation, now),
    );
    let new = PodDisruptionBudgetStatus {
        current_healthy,
        desired_healthy,
        expected_pods: expected,
        disruptions_allowed: allowed,
        disrupted_pods: (!disrupted.is_empty()).then_some(disrupted),
        observed_generation: generation,
        conditions: Some(conditions),
    };
    (new != old).then_some(new)
}

/// The fail-safe status after a sync error: no disruptions allowed, `SyncFailed`.
pub fn failed_status(
    pdb: &PodDisruptionBudget,
    error: &str,
    now: jiff::Timestamp,
) -> PodDisruptionBudgetStatus {
    let mut status = pdb.status.clone().unwrap_or_default();
    status.disruptions_allowed = 0;
    let mut conditions = status.conditions.take().unwrap_or_default();
    set_condition(
        &mut conditions,
        allowed_condition(
            "False",
            "SyncFailed",
            error.to_string(),
            status.observed_generation,
            now,
        ),
    );
    status.conditions = Some(conditions);
    status
}

/// For a pod carrying `DisruptionTarget=True` while not being deleted: how long until that
/// condition is stale (zero: reset it now). `None` when there is nothing to reset.
pub fn stale_disruption_in(pod: &Pod, now: jiff::Timestamp) -> Option<Duration> {
    if pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let cond = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())?
        .iter()
        .find(|c| c.type_ == "DisruptionTarget" && c.status == "True")?;
    let elapsed = cond
        .last_transition_time
        .as_ref()
        .map(|t| elapsed_since(t, now))
        .unwrap_or(STALE_DISRUPTION_TIMEOUT);
    Some(STALE_DISRUPTION_TIMEOUT.saturating_sub(elapsed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pdb(spec: serde_json::Value, status: serde_json::Value) -> PodDisruptionBudget {
        serde_json::from_value(
            json!({"metadata": {"name": "b", "namespace": "ns", "generation": 3},
            "spec": spec, "status": status}),
        )
        .unwrap()
    }

    fn pod(name: &str, ready: bool, deleting: bool) -> Pod {
        let mut v = json!({"metadata": {"name": name, "namespace": "ns", "labels": {"app": "x"}},
            "status": {"conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}});
        if deleting {
            v["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
        serde_json::from_value(v).unwrap()
    }

    fn now() -> jiff::Timestamp {
        "2026-01-01T00:10:00Z".parse().unwrap()
    }

    #[test]
    fn min_available_int_counts_pods() {
        let b = pdb(
            json!({"minAvailable": 2, "selector": {"matchLabels": {"app": "x"}}}),
            json!({}),
        );
        assert!(!needs_scale(&b));
        assert_eq!(expected_and_desired(&b, 3, None), Ok((3, 2)));
    }

    #[test]
    fn percentages_and_max_unavailable_use_scale_rounding_up() {
        let b = pdb(json!({"minAvailable": "50%"}), json!({}));
        assert!(needs_scale(&b));
        assert_eq!(expected_and_desired(&b, 3, Some(5)), Ok((5, 3)));
        let b = pdb(json!({"maxUnavailable": "30%"}), json!({}));
        assert_eq!(
            expected_and_desired(&b, 3, Some(5)),
            Ok((5, 3)),
            "ceil(1.5)=2 unavailable"
        );
        let b = pdb(json!({"maxUnavailable": 7}), json!({}));
        assert_eq!(expected_and_desired(&b, 3, Some(5)), Ok((5, 0)));
        let b = pdb(json!({"maxUnavailable": "x%"}), json!({}));
        assert!(expected_and_desired(&b, 3, Some(5))
            .unwrap_err()
            .contains("spec.maxUnavailable"));
    }

    #[test]
    fn selector_missing_picks_none_empty_picks_all() {
        let pods = [pod("a", true, false)];
        let refs: Vec<&Pod> = pods.iter().collect();
        assert!(selected(&pdb(json!({}), json!({})), &refs).is_empty());
        assert_eq!(
            selected(&pdb(json!({"selector": {}}), json!({})), &refs).len(),
            1
        );
        let other = pdb(
            json!({"selector": {"matchLabels": {"app": "y"}}}),
            json!({}),
        );
        assert!(selected(&other, &refs).is_empty());
    }

    #[test]
    fn healthy_excludes_unready_deleting_and_disrupted() {
        let pods = [
            pod("a", true, false),
            pod("b", true, true),
            pod("c", false, false),
            pod("d", true, false),
            pod("e", true, false),
        ];
        let refs: Vec<&Pod> = pods.iter().collect();
        let b = pdb(
            json!({}),
            json!({"disruptedPods": {
            "d": "2026-01-01T00:09:00Z", // 1 min ago: pending
            "e": "2026-01-01T00:05:00Z", // 5 min ago: expired
            "b": "2026-01-01T00:09:30Z"  // being deleted: dropped
        }, "currentHealthy": 0, "desiredHealthy": 0, "expectedPods": 0, "disruptionsAllowed": 0}),
        );
        let (pending, recheck) = pending_disruptions(&b, &refs, now());
        assert_eq!(pending.keys().collect::<Vec<_>>(), ["d"]);
        assert_eq!(recheck, Some(Duration::from_secs(60)));
        assert_eq!(current_healthy(&refs, &pending), 2, "a and e");
    }

    #[test]
    fn status_and_condition() {
        let b = pdb(
            json!({"minAvailable": 2}),
            json!({"currentHealthy": 0, "desiredHealthy": 0,
            "expectedPods": 0, "disruptionsAllowed": 0}),
        );
        let s = desired_status(&b, 3, 2, 3, BTreeMap::new(), now()).unwrap();
        assert_eq!(
            (
                s.current_healthy,
                s.desired_healthy,
                s.expected_pods,
                s.disruptions_allowed
            ),
            (3, 2, 3, 1)
        );
        assert_eq!(s.observed_generation, Some(3));
        let c = &s.conditions.as_ref().unwrap()[0];
        assert_eq!(
            (c.type_.as_str(), c.status.as_str(), c.reason.as_str()),
            ("DisruptionAllowed", "True", "SufficientPods")
        );
        // Unchanged: nothing to write.
        let mut written = b.clone();
        written.status = Some(s);
        assert!(desired_status(&written, 3, 2, 3, BTreeMap::new(), now()).is_none());
        // No expected pods: never allowed.
        let s = desired_status(&b, 3, 0, 0, BTreeMap::new(), now()).unwrap();
        assert_eq!(s.disruptions_allowed, 0);
        assert_eq!(s.conditions.unwrap()[0].reason, "InsufficientPods");
        let f = failed_status(&written, "found no controllers for pod \"a\"", now());
        assert_eq!(f.disruptions_allowed, 0);
        let c = &f.conditions.unwrap()[0];
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "SyncFailed")
        );
    }

    #[test]
    fn stale_disruption_target() {
        let mut p = pod("a", true, false);
        p.status
            .as_mut()
            .unwrap()
            .conditions
            .as_mut()
            .unwrap()
            .push(
                serde_json::from_value(json!({"type": "DisruptionTarget", "status": "True",
                "lastTransitionTime": "2026-01-01T00:09:00Z"}))
                .unwrap(),
            );
        assert_eq!(
            stale_disruption_in(&p, now()),
            Some(Duration::from_secs(60))
        );
        let later: jiff::Timestamp = "2026-01-01T00:20:00Z".parse().unwrap();
        assert_eq!(stale_disruption_in(&p, later), Some(Duration::ZERO));
        assert_eq!(stale_disruption_in(&pod("b", true, false), now()), None);
    }
}
