//! `usageNanoCores` from two readings of a cumulative CPU counter, kept per cgroup or
//! container as upstream's CRI stats provider keeps its `cpuUsageCache`: an updating read
//! computes the rate against the previous reading and stores it; other reads return the
//! stored rate.

use std::collections::HashMap;
use std::time::Duration;

/// Records not refreshed for this long are dropped (upstream's `defaultCachePeriod`).
pub const CACHE_PERIOD: Duration = Duration::from_secs(10 * 60);

#[derive(Debug, Clone, Copy)]
struct Record {
    /// Unix nanoseconds of the reading.
    at: i64,
    /// Cumulative core-nanoseconds.
    total: u64,
    /// The rate computed when this reading was taken.
    nano_cores: Option<u64>,
}

/// The cache of previous readings, by key (container ID, cgroup path, `node`).
#[derive(Debug, Default)]
pub struct CpuRates {
    records: HashMap<String, Record>,
}

/// Average nanocores between two readings; `None` when time did not advance or the
/// counter went backwards (a new cgroup under the same key).
pub fn nano_cores(prev: (i64, u64), now: (i64, u64)) -> Option<u64> {
    let elapsed = now.0 - prev.0;
    if elapsed <= 0 || now.1 < prev.1 {
        return None;
    }
    Some(((now.1 - prev.1) as f64 / elapsed as f64 * 1e9) as u64)
}

impl CpuRates {
    /// Records a reading of `key` (`total` core-nanoseconds at `at` Unix nanoseconds) and
    /// returns the rate since the previous one, if there was a usable previous one.
    pub fn update(&mut self, key: &str, at: i64, total: u64) -> Option<u64> {
        let rate = self
            .records
            .get(key)
            .and_then(|r| nano_cores((r.at, r.total), (at, total)));
        // A reading too close to the previous one keeps the previous rate rather than
        // replace it with a noisy one.
        if let Some(prev) = self.records.get(key) {
            if rate.is_some() && at - prev.at < 500_000_000 {
                return prev.nano_cores.or(rate);
            }
        }
        self.records.insert(
            key.to_string(),
            Record {
                at,
                total,
                nano_cores: rate,
            },
        );
        rate
    }

    /// The rate stored for `key` by the last updating read.
    pub fn get(&self, key: &str) -> Option<u64> {
        self.records.get(key).and_then(|r| r.nano_cores)
    }

    /// Drops records older than [`CACHE_PERIOD`] at `now` (Unix nanoseconds).
    pub fn expire(&mut self, now: i64) {
        let period = CACHE_PERIOD.as_nanos() as i64;
        self.records.retain(|_, r| now - r.at <= period);
    }

    /// How many keys are cached.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    #[test]
    fn rate_is_the_counter_delta_over_time() {
        // Half a core for two seconds.
        assert_eq!(
            nano_cores((0, 0), (2 * S, 1_000_000_000)),
            Some(500_000_000)
        );
        assert_eq!(nano_cores((S, 5), (S, 10)), None);
        assert_eq!(nano_cores((0, 10), (S, 5)), None);
    }

    #[test]
    fn first_reading_has_no_rate_the_second_does() {
        let mut c = CpuRates::default();
        assert_eq!(c.update("c1", 10 * S, 1_000), None);
        assert_eq!(c.get("c1"), None);
        assert_eq!(
            c.update("c1", 20 * S, 1_000 + 5 * S as u64),
            Some(500_000_000)
        );
        assert_eq!(c.get("c1"), Some(500_000_000));
        // A restarted counter starts over.
        assert_eq!(c.update("c1", 30 * S, 10), None);
        assert_eq!(c.update("c1", 31 * S, 10 + S as u64), Some(1_000_000_000));
    }

    #[test]
    fn readings_too_close_together_keep_the_last_rate() {
        let mut c = CpuRates::default();
        c.update("c", 0, 0);
        assert_eq!(c.update("c", 10 * S, 2 * S as u64), Some(200_000_000));
        assert_eq!(
            c.update("c", 10 * S + 1000, 3 * S as u64),
            Some(200_000_000)
        );
        // The next proper interval is measured from the kept reading.
        assert_eq!(c.update("c", 20 * S, 4 * S as u64), Some(200_000_000));
    }

    #[test]
    fn stale_records_expire() {
        let mut c = CpuRates::default();
        c.update("old", 0, 0);
        c.update("new", 700 * S, 0);
        c.expire(700 * S);
        assert_eq!(c.len(), 1);
        assert!(c.get("old").is_none());
    }
}
