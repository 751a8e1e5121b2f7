//! From observations to node conditions and actionable thresholds, as upstream's eviction
//! manager synchronizes: a threshold is met when less than its minimum is available; once
//! met it stays met until its minimum reclaim is available again; it becomes actionable
//! (pods may be evicted) once it has been met for its grace period (zero for hard ones);
//! its condition stays True until it has not been met for
//! `evictionPressureTransitionPeriod` (5m by default), so conditions do not flap.

use super::signals::Observations;
use super::threshold::{Signal, Threshold};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// The thresholds met by `observed` (signals that could not be read never are); with
/// `enforce_min_reclaim`, relative to their minimum plus minimum reclaim.
pub fn met(
    thresholds: &[Threshold],
    observed: &Observations,
    enforce_min_reclaim: bool,
) -> Vec<Threshold> {
    thresholds
        .iter()
        .filter(|t| {
            observed.get(&t.signal).is_some_and(|o| {
                if enforce_min_reclaim {
                    t.met_with_reclaim(o.available, o.capacity)
                } else {
                    t.met(o.available, o.capacity)
                }
            })
        })
        .copied()
        .collect()
}

/// Upstream's eviction priority of thresholds: memory before everything else.
fn priority(t: &Threshold) -> u8 {
    match t.signal {
        Signal::MemoryAvailable => 0,
        _ => 1,
    }
}

/// What one synchronization decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// The node conditions under pressure (`MemoryPressure`, `DiskPressure`, …).
    pub conditions: BTreeSet<String>,
    /// Thresholds met for at least their grace period, in eviction priority order: the
    /// first is the one to reclaim.
    pub actionable: Vec<Threshold>,
}

/// The eviction manager's memory between synchronizations.
#[derive(Debug, Default)]
pub struct State {
    first_observed: Vec<(Threshold, Instant)>,
    conditions_last_observed: BTreeMap<&'static str, Instant>,
    actionable: Vec<Threshold>,
}

impl State {
    /// One synchronization at `now` with `observed`.
    pub fn step(
        &mut self,
        thresholds: &[Threshold],
        observed: &Observations,
        now: Instant,
        transition: Duration,
    ) -> Step {
        let mut current = met(thresholds, observed, false);
        // Thresholds acted on before stay until their minimum reclaim is available.
        for t in met(&self.actionable, observed, true) {
            if !current.iter().any(|c| c.same(&t)) {
                current.push(t);
            }
        }
        let first_observed: Vec<(Threshold, Instant)> = current
            .iter()
            .map(|t| {
                let since = self
                    .first_observed
                    .iter()
                    .find(|(f, _)| f.same(t))
                    .map_or(now, |(_, at)| *at);
                (*t, since)
            })
            .collect();
        for t in &current {
            self.conditions_last_observed
                .insert(t.signal.condition(), now);
        }
        self.conditions_last_observed
            .retain(|_, at| now.saturating_duration_since(*at) < transition);
        let mut actionable: Vec<Threshold> = first_observed
            .iter()
            .filter(|(t, since)| now.saturating_duration_since(*since) >= t.grace_period)
            .map(|(t, _)| *t)
            .collect();
        actionable.sort_by_key(priority);
        self.first_observed = first_observed;
        self.actionable = actionable.clone();
        Step {
            conditions: self
                .conditions_last_observed
                .keys()
                .map(|c| c.to_string())
                .collect(),
            actionable,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eviction::signals::Observed;
    use crate::eviction::threshold::{parse, parse_all, EvictionConfig};

    fn obs(signal: Signal, available: i64) -> Observations {
        Observations::from([(
            signal,
            Observed {
                available,
                capacity: 1 << 30,
            },
        )])
    }

    #[test]
    fn pressure_starts_at_once_and_ends_after_the_transition_period() {
        let t = parse(&[("memory.available".to_string(), "100Mi".to_string())].into()).unwrap();
        let low = obs(Signal::MemoryAvailable, 50 << 20);
        let ok = obs(Signal::MemoryAvailable, 500 << 20);
        let mut s = State::default();
        let t0 = Instant::now();
        let period = Duration::from_secs(300);
        assert!(s.step(&t, &ok, t0, period).conditions.is_empty());
        let p = s.step(&t, &low, t0, period);
        assert_eq!(p.conditions, BTreeSet::from(["MemoryPressure".to_string()]));
        assert_eq!(p.actionable.len(), 1, "hard thresholds act at once");
        let later = s.step(&t, &ok, t0 + Duration::from_secs(299), period);
        assert_eq!(later.conditions, p.conditions, "still within the period");
        assert!(later.actionable.is_empty());
        assert!(s
            .step(&t, &ok, t0 + Duration::from_secs(300), period)
            .conditions
            .is_empty());
        assert!(
            met(&t, &Observations::new(), false).is_empty(),
            "unknown is not pressure"
        );
    }

    #[test]
    fn soft_thresholds_wait_for_their_grace_period_and_reclaim_holds_them() {
        let map = |p: &[(&str, &str)]| {
            p.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let t = parse_all(&EvictionConfig {
            soft: map(&[("nodefs.available", "1Gi")]),
            soft_grace_period: map(&[("nodefs.available", "30s")]),
            minimum_reclaim: map(&[("nodefs.available", "512Mi")]),
            ..Default::default()
        })
        .unwrap();
        let mut s = State::default();
        let t0 = Instant::now();
        let period = Duration::from_secs(60);
        let low = obs(Signal::NodeFsAvailable, 900 << 20);
        let first = s.step(&t, &low, t0, period);
        assert_eq!(
            first.conditions,
            BTreeSet::from(["DiskPressure".to_string()]),
            "the condition does not wait for the grace period"
        );
        assert!(first.actionable.is_empty());
        assert!(s
            .step(&t, &low, t0 + Duration::from_secs(29), period)
            .actionable
            .is_empty());
        let acted = s.step(&t, &low, t0 + Duration::from_secs(30), period);
        assert_eq!(acted.actionable.len(), 1);
        // Above the threshold but below threshold + minimum reclaim: still actionable.
        let partly = obs(Signal::NodeFsAvailable, 1200 << 20);
        assert_eq!(
            s.step(&t, &partly, t0 + Duration::from_secs(40), period)
                .actionable
                .len(),
            1
        );
        let freed = obs(Signal::NodeFsAvailable, 2 << 30);
        assert!(s
            .step(&t, &freed, t0 + Duration::from_secs(50), period)
            .actionable
            .is_empty());
    }

    #[test]
    fn memory_is_reclaimed_before_disk() {
        let t = parse(
            &[
                ("nodefs.available".to_string(), "2Gi".to_string()),
                ("memory.available".to_string(), "2Gi".to_string()),
            ]
            .into(),
        )
        .unwrap();
        let mut o = obs(Signal::NodeFsAvailable, 1);
        o.extend(obs(Signal::MemoryAvailable, 1));
        let step = State::default().step(&t, &o, Instant::now(), Duration::from_secs(1));
        assert_eq!(step.actionable[0].signal, Signal::MemoryAvailable);
        assert_eq!(step.conditions.len(), 2);
    }
}
