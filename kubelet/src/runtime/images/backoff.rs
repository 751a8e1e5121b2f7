//! Per-key exponential back-off, as upstream's `flowcontrol.Backoff` (which the kubelet
//! keys by `<podUID>_<image>` for image pulls): each failure doubles the delay from
//! `initial` up to `max`; an entry untouched for more than `2 × max` starts over.
//!
//! Pure: every call takes the time, so tests drive it with their own clock.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Upstream's `imageBackOffPeriod`.
pub const INITIAL: Duration = Duration::from_secs(10);
/// Upstream's `MaxImageBackOff`.
pub const MAX: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy)]
struct Entry {
    delay: Duration,
    last_update: Instant,
}

/// Back-off delays by key.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    entries: HashMap<String, Entry>,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(INITIAL, MAX)
    }
}

impl Backoff {
    /// Delays start at `initial` and double up to `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            entries: HashMap::new(),
        }
    }

    fn expired(&self, e: &Entry, now: Instant) -> bool {
        now.saturating_duration_since(e.last_update) > self.max * 2
    }

    /// Records a failure of `key` at `now`: the first (or first after expiry) sets the
    /// delay to `initial`, later ones double it, capped at `max`.
    pub fn next(&mut self, key: &str, now: Instant) {
        let delay = match self.entries.get(key) {
            Some(e) if !self.expired(e, now) => e.delay.saturating_mul(2).min(self.max),
            _ => self.initial,
        };
        self.entries.insert(
            key.to_string(),
            Entry {
                delay,
                last_update: now,
            },
        );
    }

    /// The current delay of `key` (zero when it has none).
    pub fn get(&self, key: &str) -> Duration {
        self.entries.get(key).map_or(Duration::ZERO, |e| e.delay)
    }

    /// Whether `now` is still inside the delay that began at `key`'s last failure.
    pub fn in_backoff_since_update(&self, key: &str, now: Instant) -> bool {
        match self.entries.get(key) {
            Some(e) if !self.expired(e, now) => {
                now.saturating_duration_since(e.last_update) < e.delay
            }
            _ => false,
        }
    }

    /// How long until `key`'s delay is over (zero when not backing off).
    pub fn remaining(&self, key: &str, now: Instant) -> Duration {
        match self.entries.get(key) {
            Some(e) if self.in_backoff_since_update(key, now) => {
                e.delay - now.saturating_duration_since(e.last_update)
            }
            _ => Duration::ZERO,
        }
    }

    /// Forgets `key`.
    pub fn reset(&mut self, key: &str) {
        self.entries.remove(key);
    }

    /// Drops entries that have expired, so the map does not grow without bound.
    pub fn gc(&mut self, now: Instant) {
        let max2 = self.max * 2;
        self.entries
            .retain(|_, e| now.saturating_duration_since(e.last_update) <= max2);
    }

    /// Number of keys tracked.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A test clock: a fixed origin plus whatever the test advances.
    struct Clock(Instant, Duration);

    impl Clock {
        fn new() -> Self {
            Clock(Instant::now(), Duration::ZERO)
        }
        fn now(&self) -> Instant {
            self.0 + self.1
        }
        fn step(&mut self, secs: u64) {
            self.1 += Duration::from_secs(secs);
        }
    }

    const KEY: &str = "uid1_localhost:1/none:latest";

    #[test]
    fn no_failure_means_no_backoff() {
        let b = Backoff::default();
        let c = Clock::new();
        assert!(!b.in_backoff_since_update(KEY, c.now()));
        assert_eq!(b.get(KEY), Duration::ZERO);
    }

    #[test]
    fn first_failure_backs_off_ten_seconds() {
        let mut b = Backoff::default();
        let mut c = Clock::new();
        b.next(KEY, c.now());
        assert_eq!(b.get(KEY), INITIAL);
        assert!(b.in_backoff_since_update(KEY, c.now()));
        c.step(9);
        assert!(b.in_backoff_since_update(KEY, c.now()));
        assert_eq!(b.remaining(KEY, c.now()), Duration::from_secs(1));
        c.step(1);
        assert!(!b.in_backoff_since_update(KEY, c.now()));
        assert_eq!(b.remaining(KEY, c.now()), Duration::ZERO);
    }

    #[test]
    fn delays_double_to_five_minutes() {
        let mut b = Backoff::default();
        let mut c = Clock::new();
        let mut seen = Vec::new();
        for _ in 0..8 {
            b.next(KEY, c.now());
            seen.push(b.get(KEY).as_secs());
            c.step(b.get(KEY).as_secs());
        }
        assert_eq!(seen, vec![10, 20, 40, 80, 160, 300, 300, 300]);
    }

    #[test]
    fn keys_back_off_independently() {
        let mut b = Backoff::default();
        let c = Clock::new();
        b.next("uid1_a", c.now());
        b.next("uid1_a", c.now());
        assert_eq!(b.get("uid1_a"), Duration::from_secs(20));
        assert!(!b.in_backoff_since_update("uid2_a", c.now()));
        assert!(!b.in_backoff_since_update("uid1_b", c.now()));
    }

    #[test]
    fn quiet_for_twice_the_max_starts_over() {
        let mut b = Backoff::default();
        let mut c = Clock::new();
        for _ in 0..4 {
            b.next(KEY, c.now());
        }
        assert_eq!(b.get(KEY), Duration::from_secs(80));
        c.step(600);
        // Exactly 2 × max is not yet expired (upstream uses `>`).
        b.gc(c.now());
        assert_eq!(b.len(), 1);
        c.step(1);
        assert!(!b.in_backoff_since_update(KEY, c.now()));
        b.gc(c.now());
        assert!(b.is_empty());
        b.next(KEY, c.now());
        assert_eq!(b.get(KEY), INITIAL);
    }

    #[test]
    fn expired_entry_restarts_at_initial_without_gc() {
        let mut b = Backoff::default();
        let mut c = Clock::new();
        b.next(KEY, c.now());
        b.next(KEY, c.now());
        c.step(601);
        b.next(KEY, c.now());
        assert_eq!(b.get(KEY), INITIAL);
        b.reset(KEY);
        assert_eq!(b.get(KEY), Duration::ZERO);
    }
}
