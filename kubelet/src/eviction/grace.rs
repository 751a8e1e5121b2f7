//! How long an evicted pod is given to stop, as upstream's eviction manager decides it:
//! a hard threshold kills at once (upstream's immediate grace period, 1 s — the runtime
//! still gives each container its 2 s minimum); a soft threshold gives the pod
//! `evictionMaxPodGracePeriod`, or its own `terminationGracePeriodSeconds` when that is
//! shorter. As upstream's pod workers apply the override, it is never below 1 s (so an
//! unset or negative maximum means 1 s).

use super::threshold::Threshold;
use k8s_openapi::api::core::v1::Pod;

/// Upstream's `immediateEvictionGracePeriodSeconds`: the grace of a pod evicted for a hard
/// threshold (and, upstream, for exceeding a local-storage limit).
pub const IMMEDIATE_EVICTION_GRACE_PERIOD_SECONDS: i64 = 1;

/// The shortest grace period a kill is given (upstream's pod workers' floor).
pub const MINIMUM_GRACE_PERIOD_SECONDS: i64 = 1;

/// The grace period, in seconds, of a pod evicted for `threshold`; `max_pod_grace_period`
/// is `evictionMaxPodGracePeriod` (0 when unset).
pub fn grace_period(threshold: &Threshold, pod: &Pod, max_pod_grace_period: i64) -> i64 {
    override_seconds(threshold, pod, max_pod_grace_period).max(MINIMUM_GRACE_PERIOD_SECONDS)
}

/// The override the eviction manager asks for, before the floor.
fn override_seconds(threshold: &Threshold, pod: &Pod, max_pod_grace_period: i64) -> i64 {
    if threshold.hard {
        return IMMEDIATE_EVICTION_GRACE_PERIOD_SECONDS;
    }
    let own = pod
        .spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds);
    match own {
        Some(g) => max_pod_grace_period.min(g),
        None => max_pod_grace_period,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eviction::threshold::{Amount, Signal};
    use std::time::Duration;

    fn pod(grace: Option<i64>) -> Pod {
        let mut spec = serde_json::json!({"containers": [{"name": "c", "image": "i"}]});
        if let Some(g) = grace {
            spec["terminationGracePeriodSeconds"] = g.into();
        }
        serde_json::from_value(serde_json::json!({"spec": spec})).unwrap()
    }

    #[test]
    fn hard_is_immediate_soft_is_the_shorter_of_pod_and_maximum() {
        let hard = Threshold::hard(Signal::MemoryAvailable, Amount::Absolute(1));
        let soft = Threshold {
            hard: false,
            grace_period: Duration::from_secs(30),
            ..Threshold::hard(Signal::NodeFsAvailable, Amount::Fraction(0.1))
        };
        // Hard: 1 s whatever the pod or the maximum say.
        for (g, max) in [(Some(600), 60), (None, 0), (Some(0), 5)] {
            assert_eq!(grace_period(&hard, &pod(g), max), 1);
        }
        // Soft: min(maximum, the pod's own); the maximum alone when the pod names none.
        assert_eq!(grace_period(&soft, &pod(Some(30)), 60), 30);
        assert_eq!(grace_period(&soft, &pod(Some(300)), 60), 60);
        assert_eq!(grace_period(&soft, &pod(None), 45), 45);
        // Unset (0) or negative maximum, or a pod asking for 0: floored at 1 s.
        assert_eq!(grace_period(&soft, &pod(Some(30)), 0), 1);
        assert_eq!(grace_period(&soft, &pod(Some(30)), -1), 1);
        assert_eq!(grace_period(&soft, &pod(Some(0)), 60), 1);
    }
}
