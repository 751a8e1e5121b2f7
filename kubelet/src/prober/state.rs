//! The pure part of probing, as upstream's prober worker: thresholds, the initial delay,
//! startup gating, results published only after `successThreshold` / `failureThreshold`
//! consecutive outcomes, and what readiness and `started` a container shows.

use k8s_openapi::api::core::v1::{Container, Probe};
use std::time::Duration;

/// Which probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProbeKind {
    /// Restarts the container when it fails.
    Liveness,
    /// Drives the container's `ready`.
    Readiness,
    /// Gates the other two until it succeeds; sets `started`.
    Startup,
}

impl ProbeKind {
    /// Upstream's spelling in events and metrics (`Liveness`, `Readiness`, `Startup`).
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
            ProbeKind::Startup => "Startup",
        }
    }

    /// The container's probe of this kind.
    pub fn spec(self, c: &Container) -> Option<&Probe> {
        match self {
            ProbeKind::Liveness => c.liveness_probe.as_ref(),
            ProbeKind::Readiness => c.readiness_probe.as_ref(),
            ProbeKind::Startup => c.startup_probe.as_ref(),
        }
    }

    /// All kinds.
    pub const ALL: [ProbeKind; 3] = [
        ProbeKind::Liveness,
        ProbeKind::Readiness,
        ProbeKind::Startup,
    ];

    /// The result before the first probe: readiness starts failed, liveness succeeded,
    /// startup unknown (upstream's `initialValue`).
    pub fn initial(self) -> ProbeResult {
        match self {
            ProbeKind::Liveness => ProbeResult::Success,
            ProbeKind::Readiness => ProbeResult::Failure,
            ProbeKind::Startup => ProbeResult::Unknown,
        }
    }
}

/// A published probe result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProbeResult {
    /// Healthy.
    Success,
    /// Unhealthy.
    Failure,
    /// Not known yet.
    Unknown,
}

/// A probe's timing and thresholds with the API's defaults applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// `initialDelaySeconds` (0).
    pub initial_delay: Duration,
    /// `periodSeconds` (10).
    pub period: Duration,
    /// `timeoutSeconds` (1).
    pub timeout: Duration,
    /// `successThreshold` (1).
    pub success_threshold: u32,
    /// `failureThreshold` (3).
    pub failure_threshold: u32,
}

impl Timing {
    /// Reads a probe's fields, with the apiserver's defaults for unset or invalid values.
    pub fn of(p: &Probe) -> Timing {
        let secs = |v: Option<i32>, default: u64, min: u64| {
            Duration::from_secs(v.map_or(default, |v| (v.max(0) as u64).max(min)))
        };
        let count = |v: Option<i32>, default: u32| v.map_or(default, |v| v.max(1) as u32);
        Timing {
            initial_delay: secs(p.initial_delay_seconds, 0, 0),
            period: secs(p.period_seconds, 10, 1),
            timeout: secs(p.timeout_seconds, 1, 1),
            success_threshold: count(p.success_threshold, 1),
            failure_threshold: count(p.failure_threshold, 3),
        }
    }
}

/// One probe of one container: consecutive outcomes and the published result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracker {
    kind: ProbeKind,
    last: Option<ProbeResult>,
    run: u32,
    /// Stops probing after a liveness failure or any startup result, until the container
    /// is replaced.
    on_hold: bool,
    published: ProbeResult,
}

impl Tracker {
    /// A tracker with the kind's initial result.
    pub fn new(kind: ProbeKind) -> Tracker {
        Tracker {
            kind,
            last: None,
            run: 0,
            on_hold: false,
            published: kind.initial(),
        }
    }

    /// The result others see.
    pub fn published(&self) -> ProbeResult {
        self.published
    }

    /// Whether probing has stopped for this container.
    pub fn on_hold(&self) -> bool {
        self.on_hold
    }

    /// Counts one probe outcome; returns whether the published result was (re)set, which
    /// happens once the threshold of consecutive equal outcomes is reached.
    pub fn observe(&mut self, result: ProbeResult, t: &Timing) -> bool {
        if self.last == Some(result) {
            self.run = self.run.saturating_add(1);
        } else {
            self.last = Some(result);
            self.run = 1;
        }
        let below = match result {
            ProbeResult::Failure => self.run < t.failure_threshold,
            ProbeResult::Success => self.run < t.success_threshold,
            ProbeResult::Unknown => false,
        };
        if below {
            return false;
        }
        self.published = result;
        if (self.kind == ProbeKind::Liveness && result == ProbeResult::Failure)
            || self.kind == ProbeKind::Startup
        {
            self.on_hold = true;
            self.run = 0;
        }
        true
    }
}

/// Why a probe is not run now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// Probing stopped until the container is replaced.
    OnHold,
    /// `initialDelaySeconds` has not passed since the container started.
    InitialDelay,
    /// Liveness/readiness wait for the startup probe; startup stops once started.
    StartupGate,
}

/// Whether to probe now (upstream's doProbe gates, in order): `running_for` is how long
/// the container has run, `started` its `started` status.
pub fn gate(
    kind: ProbeKind,
    tracker: &Tracker,
    t: &Timing,
    running_for: Duration,
    started: bool,
) -> Result<(), Skip> {
    if tracker.on_hold() {
        return Err(Skip::OnHold);
    }
    // Upstream compares whole seconds.
    if Duration::from_secs(running_for.as_secs()) < t.initial_delay {
        return Err(Skip::InitialDelay);
    }
    match (kind, started) {
        (ProbeKind::Startup, true) => Err(Skip::StartupGate),
        (ProbeKind::Liveness | ProbeKind::Readiness, false) => Err(Skip::StartupGate),
        _ => Ok(()),
    }
}

/// What a running container reports: (`started`, `ready`), from its spec and the published
/// results (`None` when no worker has published anything yet).
pub fn container_health(
    c: &Container,
    running: bool,
    startup: Option<ProbeResult>,
    readiness: Option<ProbeResult>,
) -> (bool, bool) {
    if !running {
        return (false, false);
    }
    let started = match &c.startup_probe {
        None => true,
        Some(_) => startup == Some(ProbeResult::Success),
    };
    let ready = started
        && match &c.readiness_probe {
            None => true,
            Some(_) => readiness == Some(ProbeResult::Success),
        };
    (started, ready)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing(success: u32, failure: u32) -> Timing {
        Timing {
            initial_delay: Duration::from_secs(5),
            period: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            success_threshold: success,
            failure_threshold: failure,
        }
    }

    #[test]
    fn defaults_follow_the_api() {
        let t = Timing::of(&Probe::default());
        assert_eq!(t.period, Duration::from_secs(10));
        assert_eq!(t.timeout, Duration::from_secs(1));
        assert_eq!((t.success_threshold, t.failure_threshold), (1, 3));
        assert_eq!(t.initial_delay, Duration::ZERO);
        let t = Timing::of(&Probe {
            period_seconds: Some(0),
            failure_threshold: Some(0),
            ..Default::default()
        });
        assert_eq!((t.period, t.failure_threshold), (Duration::from_secs(1), 1));
    }

    #[test]
    fn initial_results_per_kind() {
        assert_eq!(
            Tracker::new(ProbeKind::Readiness).published(),
            ProbeResult::Failure
        );
        assert_eq!(
            Tracker::new(ProbeKind::Liveness).published(),
            ProbeResult::Success
        );
        assert_eq!(
            Tracker::new(ProbeKind::Startup).published(),
            ProbeResult::Unknown
        );
    }

    #[test]
    fn failures_publish_only_at_the_threshold() {
        let t = timing(1, 3);
        let mut tr = Tracker::new(ProbeKind::Readiness);
        assert!(tr.observe(ProbeResult::Success, &t));
        assert_eq!(tr.published(), ProbeResult::Success);
        assert!(!tr.observe(ProbeResult::Failure, &t));
        assert!(!tr.observe(ProbeResult::Failure, &t));
        assert_eq!(tr.published(), ProbeResult::Success, "2 of 3 failures");
        // A success in between starts the count over.
        assert!(tr.observe(ProbeResult::Success, &t));
        assert!(!tr.observe(ProbeResult::Failure, &t));
        assert!(!tr.observe(ProbeResult::Failure, &t));
        assert!(tr.observe(ProbeResult::Failure, &t));
        assert_eq!(tr.published(), ProbeResult::Failure);
        assert!(!tr.on_hold(), "readiness keeps probing");
    }

    #[test]
    fn successes_publish_only_at_the_threshold() {
        let t = timing(2, 1);
        let mut tr = Tracker::new(ProbeKind::Readiness);
        assert!(!tr.observe(ProbeResult::Success, &t));
        assert_eq!(tr.published(), ProbeResult::Failure);
        assert!(tr.observe(ProbeResult::Success, &t));
        assert_eq!(tr.published(), ProbeResult::Success);
    }

    #[test]
    fn liveness_failure_and_startup_results_hold_probing() {
        let t = timing(1, 1);
        let mut live = Tracker::new(ProbeKind::Liveness);
        live.observe(ProbeResult::Success, &t);
        assert!(!live.on_hold());
        live.observe(ProbeResult::Failure, &t);
        assert!(live.on_hold());
        assert_eq!(
            gate(
                ProbeKind::Liveness,
                &live,
                &t,
                Duration::from_secs(60),
                true
            ),
            Err(Skip::OnHold)
        );
        let mut startup = Tracker::new(ProbeKind::Startup);
        startup.observe(ProbeResult::Success, &t);
        assert!(startup.on_hold());
    }

    #[test]
    fn initial_delay_and_startup_gate() {
        let t = timing(1, 1);
        let live = Tracker::new(ProbeKind::Liveness);
        let secs = Duration::from_secs;
        assert_eq!(
            gate(
                ProbeKind::Liveness,
                &live,
                &t,
                Duration::from_millis(4900),
                true
            ),
            Err(Skip::InitialDelay)
        );
        assert_eq!(gate(ProbeKind::Liveness, &live, &t, secs(5), true), Ok(()));
        assert_eq!(
            gate(ProbeKind::Readiness, &live, &t, secs(9), false),
            Err(Skip::StartupGate),
            "not started: only the startup probe runs"
        );
        let s = Tracker::new(ProbeKind::Startup);
        assert_eq!(gate(ProbeKind::Startup, &s, &t, secs(9), false), Ok(()));
        assert_eq!(
            gate(ProbeKind::Startup, &s, &t, secs(9), true),
            Err(Skip::StartupGate)
        );
    }

    #[test]
    fn readiness_and_started_from_results() {
        let plain = Container::default();
        assert_eq!(container_health(&plain, true, None, None), (true, true));
        assert_eq!(container_health(&plain, false, None, None), (false, false));
        let probed = Container {
            readiness_probe: Some(Probe::default()),
            startup_probe: Some(Probe::default()),
            ..Default::default()
        };
        assert_eq!(container_health(&probed, true, None, None), (false, false));
        assert_eq!(
            container_health(&probed, true, Some(ProbeResult::Success), None),
            (true, false)
        );
        assert_eq!(
            container_health(
                &probed,
                true,
                Some(ProbeResult::Success),
                Some(ProbeResult::Success)
            ),
            (true, true)
        );
        assert_eq!(
            container_health(
                &probed,
                true,
                Some(ProbeResult::Failure),
                Some(ProbeResult::Success)
            ),
            (false, false),
            "not started is never ready"
        );
    }
}
