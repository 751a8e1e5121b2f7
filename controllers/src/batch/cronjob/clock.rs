//! The CronJob controller's notion of "now", injectable so that tests drive time (as
//! upstream's `ControllerV2.now`).

use std::sync::Arc;

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use tokio::sync::watch;

/// A source of the current time.
pub trait Clock: Send + Sync + 'static {
    /// Now.
    fn now(&self) -> Timestamp;

    /// For a clock that jumps (a test's), a channel told of every jump, so the controller
    /// looks at every CronJob again as if that much time had passed. `None` for real time.
    fn jumps(&self) -> Option<watch::Receiver<Timestamp>> {
        None
    }
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that only moves when told to. Cheap to clone; clones share the time.
#[derive(Debug, Clone)]
pub struct FakeClock {
    now: Arc<watch::Sender<Timestamp>>,
}

impl FakeClock {
    /// A clock standing at `now`.
    pub fn new(now: Timestamp) -> Self {
        FakeClock {
            now: Arc::new(watch::channel(now).0),
        }
    }

    /// Sets the time.
    pub fn set(&self, now: Timestamp) {
        self.now.send_replace(now);
    }

    /// Moves the time forward by `d`.
    pub fn advance(&self, d: SignedDuration) {
        let now = self.now();
        self.set(now.checked_add(d).unwrap_or(now));
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Timestamp {
        *self.now.borrow()
    }

    fn jumps(&self) -> Option<watch::Receiver<Timestamp>> {
        Some(self.now.subscribe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fake_clock_moves_only_when_told() {
        let c = FakeClock::new("2024-01-01T00:00:00Z".parse().unwrap());
        let mut jumps = c.jumps().unwrap();
        assert_eq!(c.now().to_string(), "2024-01-01T00:00:00Z");
        c.clone().advance(SignedDuration::from_mins(5));
        assert_eq!(c.now().to_string(), "2024-01-01T00:05:00Z");
        assert!(jumps.has_changed().unwrap());
        jumps.mark_unchanged();
        assert!(SystemClock.jumps().is_none());
    }
}
