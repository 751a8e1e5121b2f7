//! Per-pod exponential backoff, as upstream's calculateBackoffDuration.

use std::time::Duration;

/// Upstream's defaults: podInitialBackoffSeconds 1, podMaxBackoffSeconds 10.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// Backoff after the first failed attempt.
    pub initial: Duration,
    /// Upper bound.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(10),
        }
    }
}

impl Backoff {
    /// Backoff after `attempts` failed attempts: initial × 2^(attempts-1), capped at max.
    pub fn duration(&self, attempts: u32) -> Duration {
        let mut d = self.initial;
        for _ in 1..attempts {
            d = d.saturating_mul(2);
            if d > self.max {
                return self.max;
            }
        }
        d.min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_max() {
        let b = Backoff::default();
        let secs: Vec<u64> = (1..=6).map(|a| b.duration(a).as_secs()).collect();
        assert_eq!(secs, vec![1, 2, 4, 8, 10, 10]);
    }
}
