//! From observations to node conditions: a threshold is met when less than its minimum is
//! available; its condition stays True until it has not been met for
//! `evictionPressureTransitionPeriod` (5m by default), as upstream avoids flapping.

use super::signals::Observations;
use super::threshold::{Signal, Threshold};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// The thresholds met by `observed` (signals that could not be read never are).
pub fn met(thresholds: &[Threshold], observed: &Observations) -> Vec<Threshold> {
    thresholds
        .iter()
        .filter(|t| {
            observed
                .get(&t.signal)
                .is_some_and(|o| t.met(o.available, o.capacity))
        })
        .copied()
        .collect()
}

/// Remembers when each condition was last observed, for the transition period.
#[derive(Debug, Default)]
pub struct Conditions {
    last_met: BTreeMap<&'static str, Instant>,
}

impl Conditions {
    /// Records the met signals at `now` and returns the conditions under pressure.
    pub fn update(
        &mut self,
        met: &[Signal],
        now: Instant,
        transition: Duration,
    ) -> BTreeSet<String> {
        for s in met {
            self.last_met.insert(s.condition(), now);
        }
        self.last_met
            .retain(|_, at| now.saturating_duration_since(*at) < transition);
        self.last_met.keys().map(|c| c.to_string()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eviction::signals::Observed;
    use crate::eviction::threshold::parse;

    #[test]
    fn pressure_starts_at_once_and_ends_after_the_transition_period() {
        let t = parse(&[("memory.available".to_string(), "100Mi".to_string())].into()).unwrap();
        let low = Observations::from([(
            Signal::MemoryAvailable,
            Observed {
                available: 50 << 20,
                capacity: 1 << 30,
            },
        )]);
        let ok = Observations::from([(
            Signal::MemoryAvailable,
            Observed {
                available: 500 << 20,
                capacity: 1 << 30,
            },
        )]);
        let signals = |o: &Observations| met(&t, o).iter().map(|t| t.signal).collect::<Vec<_>>();
        let mut c = Conditions::default();
        let t0 = Instant::now();
        let period = Duration::from_secs(300);
        assert!(c.update(&signals(&ok), t0, period).is_empty());
        let p = c.update(&signals(&low), t0, period);
        assert_eq!(p, BTreeSet::from(["MemoryPressure".to_string()]));
        assert_eq!(
            c.update(&signals(&ok), t0 + Duration::from_secs(299), period),
            p,
            "still within the period"
        );
        assert!(c
            .update(&signals(&ok), t0 + Duration::from_secs(300), period)
            .is_empty());
        assert!(
            met(&t, &Observations::new()).is_empty(),
            "unknown is not pressure"
        );
    }
}
