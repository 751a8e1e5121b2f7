//! `activeDeadlineSeconds`, as upstream's active deadline handler: once the pod has been
//! active on the node (since `status.startTime`) for that long it is failed with reason
//! `DeadlineExceeded` and its containers are stopped.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use std::time::Duration;

/// The pod's status reason (and the event's).
pub const REASON: &str = "DeadlineExceeded";
/// The pod's status message (and the event's).
pub const MESSAGE: &str = "Pod was active on the node longer than the specified deadline";

/// How long the pod may still run: `None` without a deadline or a start time, zero once
/// the deadline has passed. `start` is used when the pod's status has no `startTime` yet.
pub fn time_left(pod: &Pod, start: Option<Timestamp>, now: Timestamp) -> Option<Duration> {
    let seconds = pod.spec.as_ref()?.active_deadline_seconds?;
    let start = pod
        .status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .map(|t| t.0)
        .or(start)?;
    let allowed = Duration::from_secs(seconds.max(0) as u64);
    let active = Duration::try_from(now.duration_since(start)).unwrap_or(Duration::ZERO);
    Some(allowed.saturating_sub(active))
}

/// Whether the pod has been active longer than its `activeDeadlineSeconds`.
pub fn past_active_deadline(pod: &Pod, start: Option<Timestamp>, now: Timestamp) -> bool {
    time_left(pod, start, now).is_some_and(|left| left.is_zero())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::SignedDuration;

    fn pod(deadline: Option<i64>, start: Option<&str>) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [], "activeDeadlineSeconds": deadline},
            "status": {"startTime": start},
        }))
        .unwrap()
    }

    #[test]
    fn deadline_counts_from_the_start_time() {
        let start: Timestamp = "2024-01-01T00:00:00Z".parse().unwrap();
        let p = pod(Some(5), Some("2024-01-01T00:00:00Z"));
        let at = |s: i64| start + SignedDuration::from_secs(s);
        assert_eq!(time_left(&p, None, at(2)), Some(Duration::from_secs(3)));
        assert!(!past_active_deadline(&p, None, at(4)));
        assert!(past_active_deadline(&p, None, at(5)));
        assert!(past_active_deadline(&p, None, at(60)));
        // The status's startTime wins over the kubelet's own first sighting.
        assert!(past_active_deadline(&p, Some(at(10)), at(6)));
    }

    #[test]
    fn no_deadline_or_no_start_never_expires() {
        let now: Timestamp = "2030-01-01T00:00:00Z".parse().unwrap();
        assert!(!past_active_deadline(
            &pod(None, Some("2024-01-01T00:00:00Z")),
            None,
            now
        ));
        assert!(!past_active_deadline(&pod(Some(1), None), None, now));
        let start: Timestamp = "2029-12-31T23:59:00Z".parse().unwrap();
        assert!(past_active_deadline(&pod(Some(1), None), Some(start), now));
    }
}
