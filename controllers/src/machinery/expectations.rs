//! Controller expectations, as upstream's ControllerExpectations and
//! UIDTrackingControllerExpectations: after issuing creates or deletes, a controller waits
//! until its informer has observed them before it trusts the cache again, so it neither
//! over-creates nor over-deletes while the cache lags.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Upstream's ExpectationsTimeout: after this, unmet expectations are ignored (a watch event
/// may have been lost) and the controller resyncs from its cache.
pub const EXPECTATIONS_TIMEOUT: Duration = Duration::from_secs(5 * 60);

#[derive(Debug)]
struct Entry {
    adds: i64,
    dels: i64,
    pending_deletes: HashSet<String>,
    since: Instant,
}

/// Per-controller-key expectations of creations and (by UID) deletions.
#[derive(Debug, Default)]
pub struct Expectations {
    entries: Mutex<HashMap<String, Entry>>,
}

impl Expectations {
    /// No expectations.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `key` may sync: nothing outstanding, never recorded, or expired.
    pub fn satisfied(&self, key: &str) -> bool {
        self.satisfied_at(key, Instant::now())
    }

    fn satisfied_at(&self, key: &str, now: Instant) -> bool {
        match self.lock().get(key) {
            None => true,
            Some(e) => {
                (e.adds <= 0 && e.dels <= 0) || now.duration_since(e.since) > EXPECTATIONS_TIMEOUT
            }
        }
    }

    /// Records that `adds` creations are about to be issued for `key` (replacing what was).
    pub fn expect_creations(&self, key: &str, adds: usize) {
        self.set(key, adds as i64, HashSet::new());
    }

    /// Records that the pods with these UIDs are about to be deleted for `key`.
    pub fn expect_deletions(&self, key: &str, uids: impl IntoIterator<Item = String>) {
        let uids: HashSet<String> = uids.into_iter().collect();
        self.set(key, 0, uids);
    }

    fn set(&self, key: &str, adds: i64, deletes: HashSet<String>) {
        self.lock().insert(
            key.to_string(),
            Entry {
                adds,
                dels: deletes.len() as i64,
                pending_deletes: deletes,
                since: Instant::now(),
            },
        );
    }

    /// One expected creation for `key` was seen (or will never happen: a failed create).
    pub fn creation_observed(&self, key: &str) {
        if let Some(e) = self.lock().get_mut(key) {
            e.adds -= 1;
        }
    }

    /// The pod `uid` of `key` was seen deleted (or will not be: a failed delete). Counted at
    /// most once per UID, however many events announce it.
    pub fn deletion_observed(&self, key: &str, uid: &str) {
        if let Some(e) = self.lock().get_mut(key) {
            if e.pending_deletes.remove(uid) {
                e.dels -= 1;
            }
        }
    }

    /// Forgets `key` (its owner was deleted).
    pub fn forget(&self, key: &str) {
        self.lock().remove(key);
    }
}

/// Expected removals of a finalizer, by pod UID, per controller key (upstream's
/// uidTrackingExpectations for the Job controller's tracking finalizer): while a removal
/// is pending, a cached pod still showing the finalizer must not be counted again.
#[derive(Debug, Default)]
pub struct UidExpectations {
    entries: Mutex<HashMap<String, HashSet<String>>>,
}

impl UidExpectations {
    /// None expected.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashSet<String>>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records that the finalizers of these pods are about to be removed for `key`.
    pub fn expect(&self, key: &str, uids: impl IntoIterator<Item = String>) {
        self.lock().entry(key.to_string()).or_default().extend(uids);
    }

    /// The removal for pod `uid` was observed (or failed and will not be).
    pub fn observed(&self, key: &str, uid: &str) {
        let mut m = self.lock();
        if let Some(set) = m.get_mut(key) {
            set.remove(uid);
            if set.is_empty() {
                m.remove(key);
            }
        }
    }

    /// The UIDs still expected for `key`.
    pub fn expected(&self, key: &str) -> HashSet<String> {
        self.lock().get(key).cloned().unwrap_or_default()
    }

    /// Forgets `key`.
    pub fn forget(&self, key: &str) {
        self.lock().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creations_block_until_observed() {
        let e = Expectations::new();
        assert!(e.satisfied("ns/rs"));
        e.expect_creations("ns/rs", 2);
        assert!(!e.satisfied("ns/rs"));
        e.creation_observed("ns/rs");
        assert!(!e.satisfied("ns/rs"));
        e.creation_observed("ns/rs");
        assert!(e.satisfied("ns/rs"));
    }

    #[test]
    fn deletions_count_each_uid_once() {
        let e = Expectations::new();
        e.expect_deletions("k", ["a".to_string(), "b".to_string()]);
        e.deletion_observed("k", "a");
        e.deletion_observed("k", "a");
        assert!(!e.satisfied("k"));
        e.deletion_observed("k", "b");
        assert!(e.satisfied("k"));
    }

    #[test]
    fn expire_after_timeout() {
        let e = Expectations::new();
        e.expect_creations("k", 1);
        let later = Instant::now() + EXPECTATIONS_TIMEOUT + Duration::from_secs(1);
        assert!(e.satisfied_at("k", later));
        e.forget("k");
        assert!(e.satisfied("k"));
    }

    #[test]
    fn uid_expectations_track_each_pod() {
        let e = UidExpectations::new();
        e.expect("k", ["a".to_string(), "b".to_string()]);
        e.observed("k", "a");
        e.observed("k", "a");
        assert_eq!(e.expected("k"), ["b".to_string()].into());
        e.observed("k", "b");
        assert!(e.expected("k").is_empty());
        e.expect("k", ["c".to_string()]);
        e.forget("k");
        assert!(e.expected("k").is_empty());
    }
}
