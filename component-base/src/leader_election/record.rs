//! The lease arithmetic of leader election, as pure functions: what a candidate writes,
//! given the Lease it observed and when it observed it (client-go's tryAcquireOrRenew).
//! Expiry is judged by the *local* time a change was first observed, never by the
//! timestamps in the record, so clock skew between candidates cannot steal a lease.

use k8s_openapi::api::coordination::v1::LeaseSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use std::time::Duration;
use tokio::time::Instant;

/// A Lease spec as last seen, with the local instant it was first seen in that form.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    /// The spec.
    pub spec: LeaseSpec,
    /// When this exact spec was first observed locally.
    pub at: Instant,
}

/// Folds a freshly read spec into the previous observation: the observation instant only
/// moves when the record changed.
pub fn observe(previous: Option<Observed>, current: &LeaseSpec, now: Instant) -> Observed {
    match previous {
        Some(prev) if prev.spec == *current => prev,
        _ => Observed {
            spec: current.clone(),
            at: now,
        },
    }
}

/// What a candidate should do after reading the Lease.
#[derive(Debug, Clone, PartialEq)]
pub enum Attempt {
    /// No Lease exists: create it with this spec.
    Create(LeaseSpec),
    /// Write this spec over the observed one (renewal or takeover).
    Update(LeaseSpec),
    /// Someone else holds an unexpired lease.
    HeldBy(String),
}

/// Decides the next write for `identity`. `observed` is `None` when the Lease does not exist.
pub fn next_attempt(
    observed: Option<&Observed>,
    identity: &str,
    lease_duration: Duration,
    now: Instant,
    wall: Timestamp,
) -> Attempt {
    let fresh = LeaseSpec {
        holder_identity: Some(identity.to_string()),
        lease_duration_seconds: Some(lease_duration.as_secs() as i32),
        acquire_time: Some(MicroTime(wall)),
        renew_time: Some(MicroTime(wall)),
        lease_transitions: Some(0),
        ..Default::default()
    };
    let Some(observed) = observed else {
        return Attempt::Create(fresh);
    };
    let old = &observed.spec;
    let holder = old.holder_identity.clone().unwrap_or_default();
    let old_duration = Duration::from_secs(old.lease_duration_seconds.unwrap_or(0).max(0) as u64);
    let is_leader = holder == identity;
    if !holder.is_empty() && !is_leader && observed.at + old_duration > now {
        return Attempt::HeldBy(holder);
    }
    let transitions = old.lease_transitions.unwrap_or(0);
    Attempt::Update(if is_leader {
        LeaseSpec {
            acquire_time: old.acquire_time.clone(),
            lease_transitions: Some(transitions),
            ..fresh
        }
    } else {
        LeaseSpec {
            lease_transitions: Some(transitions + 1),
            ..fresh
        }
    })
}

/// The spec a leader writes when it steps down: no holder and a one-second duration, so
/// another candidate takes over at once (client-go's ReleaseOnCancel).
pub fn released(observed: &LeaseSpec, wall: Timestamp) -> LeaseSpec {
    LeaseSpec {
        holder_identity: Some(String::new()),
        lease_duration_seconds: Some(1),
        acquire_time: Some(MicroTime(wall)),
        renew_time: Some(MicroTime(wall)),
        lease_transitions: observed.lease_transitions,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_secs(15);

    fn spec(holder: &str, transitions: i32, wall: Timestamp) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            acquire_time: Some(MicroTime(wall)),
            renew_time: Some(MicroTime(wall)),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }

    #[test]
    fn creates_when_absent() {
        let wall = Timestamp::now();
        let Attempt::Create(s) = next_attempt(None, "a", LEASE, Instant::now(), wall) else {
            panic!("expected create");
        };
        assert_eq!(s.holder_identity.as_deref(), Some("a"));
        assert_eq!(s.lease_duration_seconds, Some(15));
        assert_eq!(s.lease_transitions, Some(0));
        assert_eq!(s.acquire_time, Some(MicroTime(wall)));
    }

    #[test]
    fn renewal_keeps_acquire_time_and_transitions() {
        let t0 = Timestamp::now();
        let now = Instant::now();
        let obs = Observed {
            spec: spec("a", 3, t0),
            at: now,
        };
        let later = t0 + k8s_openapi::jiff::SignedDuration::from_secs(2);
        let Attempt::Update(s) = next_attempt(Some(&obs), "a", LEASE, now, later) else {
            panic!("expected update");
        };
        assert_eq!(s.acquire_time, Some(MicroTime(t0)));
        assert_eq!(s.renew_time, Some(MicroTime(later)));
        assert_eq!(s.lease_transitions, Some(3));
    }

    #[test]
    fn others_wait_until_the_observed_lease_expires_then_take_over() {
        let t0 = Timestamp::now();
        let start = Instant::now();
        let obs = observe(None, &spec("a", 0, t0), start);
        assert_eq!(
            next_attempt(Some(&obs), "b", LEASE, start + Duration::from_secs(14), t0),
            Attempt::HeldBy("a".into())
        );
        let Attempt::Update(s) =
            next_attempt(Some(&obs), "b", LEASE, start + Duration::from_secs(16), t0)
        else {
            panic!("expected takeover");
        };
        assert_eq!(s.holder_identity.as_deref(), Some("b"));
        assert_eq!(s.lease_transitions, Some(1));
    }

    #[test]
    fn observation_time_moves_only_on_change() {
        let t0 = Timestamp::now();
        let start = Instant::now();
        let first = observe(None, &spec("a", 0, t0), start);
        let same = observe(
            Some(first.clone()),
            &spec("a", 0, t0),
            start + Duration::from_secs(5),
        );
        assert_eq!(same.at, start);
        let renewed = spec("a", 0, t0 + k8s_openapi::jiff::SignedDuration::from_secs(2));
        let moved = observe(Some(same), &renewed, start + Duration::from_secs(6));
        assert_eq!(moved.at, start + Duration::from_secs(6));
    }

    #[test]
    fn a_released_lease_is_taken_at_once() {
        let t0 = Timestamp::now();
        let start = Instant::now();
        let rel = released(&spec("a", 4, t0), t0);
        assert_eq!(rel.holder_identity.as_deref(), Some(""));
        assert_eq!(rel.lease_transitions, Some(4));
        let obs = observe(None, &rel, start);
        let Attempt::Update(s) = next_attempt(Some(&obs), "b", LEASE, start, t0) else {
            panic!("expected takeover of a released lease");
        };
        assert_eq!(s.holder_identity.as_deref(), Some("b"));
        assert_eq!(s.lease_transitions, Some(5));
    }
}
