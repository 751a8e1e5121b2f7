//! Per-node backoff for replacing failed daemon pods (upstream's `failedPodsBackoff`,
//! client-go's `flowcontrol.Backoff` from 1s doubling to 15 minutes), so a pod that fails at
//! once is not recreated in a hot loop.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Upstream's initial failed-pod backoff.
pub const INITIAL: Duration = Duration::from_secs(1);
/// Upstream's maximum failed-pod backoff.
pub const MAX: Duration = Duration::from_secs(15 * 60);

/// Backoff entries by key (`<namespace>/<ds>/<node>`).
#[derive(Debug, Default)]
pub struct Backoff {
    entries: Mutex<HashMap<String, (Duration, Instant)>>,
}

impl Backoff {
    /// No entries.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Duration, Instant)>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The remaining wait if `key` is still backing off at `now` (since its last failure).
    pub fn remaining(&self, key: &str, now: Instant) -> Option<Duration> {
        let (delay, at) = *self.lock().get(key)?;
        let since = now.saturating_duration_since(at);
        (since < delay).then(|| delay - since)
    }

    /// Records a failure of `key` at `now`: the delay doubles (or restarts at [`INITIAL`]
    /// when the last failure is older than twice the maximum).
    pub fn next(&self, key: &str, now: Instant) {
        let mut m = self.lock();
        let delay = match m.get(key) {
            Some((d, at)) if now.saturating_duration_since(*at) <= 2 * MAX => (*d * 2).min(MAX),
            _ => INITIAL,
        };
        m.insert(key.to_string(), (delay, now));
    }

    /// Drops entries older than twice the maximum.
    pub fn gc(&self, now: Instant) {
        self.lock()
            .retain(|_, (_, at)| now.saturating_duration_since(*at) <= 2 * MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_and_expires() {
        let b = Backoff::new();
        let t0 = Instant::now();
        assert_eq!(b.remaining("k", t0), None);
        b.next("k", t0);
        assert_eq!(b.remaining("k", t0), Some(INITIAL));
        assert_eq!(b.remaining("k", t0 + INITIAL), None);
        let t1 = t0 + INITIAL;
        b.next("k", t1);
        assert_eq!(b.remaining("k", t1), Some(2 * INITIAL));
        let late = t1 + 3 * MAX;
        b.next("k", late);
        assert_eq!(b.remaining("k", late), Some(INITIAL));
        b.gc(late + 3 * MAX);
        assert_eq!(b.remaining("k", late + 3 * MAX), None);
    }
}
