//! Pod re-creation backoff after failures: the Job-wide record of failures since the last
//! success (upstream's backoffStore) and the per-index delay of backoffLimitPerIndex.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;

use super::indexes;

/// Upstream's DefaultJobPodFailureBackOff.
pub const BASE: Duration = Duration::from_secs(10);
/// Upstream's MaxJobPodFailureBackOff.
pub const MAX: Duration = Duration::from_secs(360);

/// Failures since the last success and when the newest of them happened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Record {
    /// Failed pods finished after the last succeeded one.
    pub failures_after_last_success: i32,
    /// When the newest of them finished.
    pub last_failure: Option<Timestamp>,
}

/// When a pod finished: its containers' latest finishedAt, else its Ready=False transition,
/// else its deletion time minus the grace period, else its creation.
pub fn finished_time(p: &Pod) -> Timestamp {
    let status = p.status.as_ref();
    let containers: Option<Timestamp> = status.and_then(|s| {
        let cs = s.container_statuses.as_deref().unwrap_or_default();
        if cs.is_empty() {
            return None;
        }
        cs.iter()
            .map(|c| {
                c.state
                    .as_ref()
                    .and_then(|s| s.terminated.as_ref())
                    .and_then(|t| t.finished_at.as_ref())
                    .map(|t| t.0)
            })
            .collect::<Option<Vec<_>>>()?
            .into_iter()
            .max()
    });
    containers
        .or_else(|| {
            status?
                .conditions
                .iter()
                .flatten()
                .find(|c| c.type_ == "Ready" && c.status == "False")?
                .last_transition_time
                .as_ref()
                .map(|t| t.0)
        })
        .or_else(|| {
            let d = p.metadata.deletion_timestamp.as_ref()?.0;
            let grace = p.metadata.deletion_grace_period_seconds.unwrap_or(0);
            d.checked_sub(k8s_openapi::jiff::SignedDuration::from_secs(grace))
                .ok()
        })
        .or_else(|| p.metadata.creation_timestamp.as_ref().map(|t| t.0))
        .unwrap_or(Timestamp::UNIX_EPOCH)
}

/// The record after this sync's newly finished pods (upstream's newBackoffRecord): a new
/// success resets the count to the failures that finished after it.
pub fn next_record(prev: Record, new_succeeded: &[&Pod], new_failed: &[&Pod]) -> Record {
    let mut failed: Vec<Timestamp> = new_failed.iter().map(|p| finished_time(p)).collect();
    failed.sort();
    if new_succeeded.is_empty() {
        let Some(last) = failed.last() else {
            return prev;
        };
        return Record {
            failures_after_last_success: prev.failures_after_last_success + failed.len() as i32,
            last_failure: Some(*last),
        };
    }
    let last_success = new_succeeded
        .iter()
        .map(|p| finished_time(p))
        .max()
        .unwrap_or(Timestamp::UNIX_EPOCH);
    let after: Vec<&Timestamp> = failed.iter().filter(|t| **t > last_success).collect();
    Record {
        failures_after_last_success: after.len() as i32,
        last_failure: after.last().map(|t| **t),
    }
}

/// The delay after `failures` consecutive failures: 10s doubled per failure, capped at 6m.
pub fn delay(failures: i32) -> Duration {
    let mut d = BASE;
    for _ in 1..failures {
        d *= 2;
        if d >= MAX {
            return MAX;
        }
    }
    d
}

/// How long to wait before creating pods again, zero when there is no backoff left.
pub fn remaining(failures: i32, last_failure: Option<Timestamp>, now: Timestamp) -> Duration {
    let Some(last) = last_failure.filter(|_| failures > 0) else {
        return Duration::ZERO;
    };
    let elapsed = now.duration_since(last);
    let elapsed = Duration::try_from(elapsed).unwrap_or(Duration::ZERO);
    delay(failures).saturating_sub(elapsed)
}

/// The per-index delay before replacing `last_failed` (backoffLimitPerIndex).
pub fn remaining_for_index(last_failed: Option<&Pod>, now: Timestamp) -> Duration {
    match last_failed {
        None => Duration::ZERO,
        Some(p) => remaining(
            indexes::absolute_failure_count(p) + 1,
            Some(finished_time(p)),
            now,
        ),
    }
}

/// Backoff records by Job key, kept in memory as upstream's (a restart forgets them).
#[derive(Debug, Default)]
pub struct Store {
    records: Mutex<HashMap<String, Record>>,
}

impl Store {
    /// The record of `key` (default when none).
    pub fn get(&self, key: &str) -> Record {
        self.lock().get(key).copied().unwrap_or_default()
    }

    /// Stores the record of `key`.
    pub fn set(&self, key: &str, r: Record) {
        self.lock().insert(key.to_string(), r);
    }

    /// Forgets `key` (its Job finished or was deleted).
    pub fn remove(&self, key: &str) {
        self.lock().remove(key);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Record>> {
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finished_at(secs: i64) -> Pod {
        let t = Timestamp::from_second(secs).unwrap().to_string();
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "status": {"phase": "Failed", "containerStatuses": [{"name": "c", "image": "i",
                "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 1, "finishedAt": t}}}]}
        }))
        .unwrap()
    }

    #[test]
    fn delays_double_up_to_the_cap() {
        assert_eq!(delay(1), Duration::from_secs(10));
        assert_eq!(delay(3), Duration::from_secs(40));
        assert_eq!(delay(10), MAX);
        let now = Timestamp::from_second(1_000).unwrap();
        let last = Some(Timestamp::from_second(995).unwrap());
        assert_eq!(remaining(1, last, now), Duration::from_secs(5));
        assert_eq!(remaining(0, last, now), Duration::ZERO);
        assert_eq!(remaining(2, last, now), Duration::from_secs(15));
    }

    #[test]
    fn success_resets_failures() {
        let (f1, f2, ok) = (finished_at(100), finished_at(300), finished_at(200));
        let r = next_record(Record::default(), &[], &[&f1]);
        assert_eq!(r.failures_after_last_success, 1);
        let r = next_record(r, &[&ok], &[&f2]);
        assert_eq!(
            r,
            Record {
                failures_after_last_success: 1,
                last_failure: Some(Timestamp::from_second(300).unwrap())
            }
        );
        assert_eq!(next_record(r, &[&ok], &[]), Record::default());
    }

    #[test]
    fn per_index_delay_uses_the_failure_count_annotation() {
        let mut p = finished_at(1_000);
        p.metadata.annotations =
            Some([(indexes::INDEX_FAILURE_COUNT.to_string(), "1".to_string())].into());
        let now = Timestamp::from_second(1_005).unwrap();
        // Second failure of the index: 20s backoff, 5s elapsed.
        assert_eq!(remaining_for_index(Some(&p), now), Duration::from_secs(15));
        assert_eq!(remaining_for_index(None, now), Duration::ZERO);
    }
}
