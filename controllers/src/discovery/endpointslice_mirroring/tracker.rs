//! Remembers the generation of every slice this controller wrote, per Endpoints, so that a
//! sync never acts on an informer cache that has not yet seen its own writes (it would
//! create duplicates), and the informer events of its own writes do not trigger syncs —
//! upstream's `EndpointSliceTracker`.

use std::collections::HashMap;
use std::sync::Mutex;

use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::discovery::endpoints::slices::SERVICE_NAME_LABEL;

/// `(namespace, name)` of an Endpoints object.
pub type Key = (String, String);

/// Generation of a slice known to have been deleted by us.
const DELETION_EXPECTED: i64 = -1;

/// Slice UID → generation we last wrote, per Endpoints.
#[derive(Debug, Default)]
pub struct Tracker {
    by_endpoints: Mutex<HashMap<Key, HashMap<String, i64>>>,
}

fn owner_key(slice: &EndpointSlice) -> Key {
    let svc = slice
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(SERVICE_NAME_LABEL))
        .cloned()
        .unwrap_or_default();
    (slice.metadata.namespace.clone().unwrap_or_default(), svc)
}

fn uid(slice: &EndpointSlice) -> String {
    slice.metadata.uid.clone().unwrap_or_default()
}

impl Tracker {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, HashMap<String, i64>>> {
        self.by_endpoints.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records `slice` as written by us (its generation as the apiserver returned it).
    pub fn update(&self, slice: &EndpointSlice) {
        let generation = slice.metadata.generation.unwrap_or(0);
        self.lock()
            .entry(owner_key(slice))
            .or_default()
            .insert(uid(slice), generation);
    }

    /// Records that we deleted `slice`.
    pub fn expect_deletion(&self, slice: &EndpointSlice) {
        self.lock()
            .entry(owner_key(slice))
            .or_default()
            .insert(uid(slice), DELETION_EXPECTED);
    }

    /// Whether we track `slice`.
    pub fn has(&self, slice: &EndpointSlice) -> bool {
        self.lock()
            .get(&owner_key(slice))
            .is_some_and(|g| g.contains_key(&uid(slice)))
    }

    /// Whether we wrote (or deleted) any slice of `key` since we last forgot it.
    pub fn tracks(&self, key: &Key) -> bool {
        self.lock().get(key).is_some_and(|g| !g.is_empty())
    }

    /// Whether an informer event about `slice` is news to us (not our own write).
    pub fn should_sync(&self, slice: &EndpointSlice) -> bool {
        let map = self.lock();
        let Some(g) = map.get(&owner_key(slice)) else {
            return true;
        };
        match g.get(&uid(slice)) {
            None => true,
            Some(&known) => slice.metadata.generation.unwrap_or(0) > known,
        }
    }

    /// Whether `cached` (the informer's slices of `key`) is older than what we wrote: a slice
    /// we deleted still present or one we wrote missing or at an older generation.
    pub fn stale(&self, key: &Key, cached: &[EndpointSlice]) -> bool {
        let map = self.lock();
        let Some(g) = map.get(key) else {
            return false;
        };
        let mut seen: HashMap<String, i64> = HashMap::new();
        for s in cached {
            let generation = s.metadata.generation.unwrap_or(0);
            seen.insert(uid(s), generation);
            if let Some(&known) = g.get(&uid(s)) {
                if known == DELETION_EXPECTED || known > generation {
                    return true;
                }
            }
        }
        g.iter()
            .any(|(u, &known)| known != DELETION_EXPECTED && !seen.contains_key(u))
    }

    /// Handles the informer's deletion of `slice`: `true` when we expected it (or never
    /// tracked it), `false` when someone else deleted a slice of ours.
    pub fn handle_deletion(&self, slice: &EndpointSlice) -> bool {
        let mut map = self.lock();
        let Some(g) = map.get_mut(&owner_key(slice)) else {
            return true;
        };
        !matches!(g.remove(&uid(slice)), Some(known) if known != DELETION_EXPECTED)
    }

    /// Forgets everything about `key`'s slices.
    pub fn delete_endpoints(&self, key: &Key) {
        self.lock().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn slice(uid: &str, generation: i64) -> EndpointSlice {
        serde_json::from_value(json!({
            "metadata": {"name": uid, "namespace": "ns", "uid": uid, "generation": generation,
                "labels": {SERVICE_NAME_LABEL: "ext"}},
            "addressType": "IPv4", "endpoints": []
        }))
        .unwrap()
    }

    #[test]
    fn cache_behind_our_writes_is_stale() {
        let t = Tracker::default();
        let key = ("ns".to_string(), "ext".to_string());
        assert!(!t.stale(&key, &[]));
        t.update(&slice("a", 2));
        assert!(t.stale(&key, &[]), "created slice not yet cached");
        assert!(t.stale(&key, &[slice("a", 1)]), "older generation cached");
        assert!(!t.stale(&key, &[slice("a", 2)]));
        assert!(!t.should_sync(&slice("a", 2)), "our own write");
        assert!(t.should_sync(&slice("a", 3)), "someone else's write");
        t.expect_deletion(&slice("a", 2));
        assert!(
            t.stale(&key, &[slice("a", 2)]),
            "deleted slice still cached"
        );
        assert!(!t.stale(&key, &[]));
        assert!(t.handle_deletion(&slice("a", 2)), "expected deletion");
        assert!(!t.has(&slice("a", 2)));
        t.update(&slice("b", 1));
        assert!(
            !t.handle_deletion(&slice("b", 1)),
            "deleted by someone else"
        );
        t.update(&slice("c", 1));
        t.delete_endpoints(&key);
        assert!(!t.stale(&key, &[]));
    }
}
