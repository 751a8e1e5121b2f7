//! Turning a metric recommendation into the replica count to set (upstream's
//! `normalizeDesiredReplicas*`): the stabilization windows over recent recommendations, the
//! scaling policies (`Pods`/`Percent` per `periodSeconds`, `selectPolicy`
//! `Max`/`Min`/`Disabled`), min/max replicas, and the `AbleToScale`/`ScalingLimited`
//! reasons that explain the outcome. Pure functions over an HPA's [`History`].

use std::time::Duration;

use k8s_openapi::api::autoscaling::v2::{HPAScalingRules, HorizontalPodAutoscalerBehavior};
use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// Without `behavior`, a scale-up goes at most to `max(2 × current, 4)`.
const SCALE_UP_LIMIT_FACTOR: f64 = 2.0;
/// See [`SCALE_UP_LIMIT_FACTOR`].
const SCALE_UP_LIMIT_MINIMUM: f64 = 4.0;

/// A past (unstabilized) recommendation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recommendation {
    /// The replica count recommended.
    pub replicas: i32,
    /// When.
    pub at: Timestamp,
}

/// A past rescale in one direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScaleEvent {
    /// Replicas added or removed (non-negative).
    pub change: i32,
    /// When.
    pub at: Timestamp,
    /// Older than every policy period: its slot may be reused.
    pub outdated: bool,
}

/// What the controller remembers of one HPA between syncs (upstream keeps the same in
/// memory, so a restart forgets it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    /// Recent recommendations.
    pub recommendations: Vec<Recommendation>,
    /// Recent scale-ups.
    pub scale_ups: Vec<ScaleEvent>,
    /// Recent scale-downs.
    pub scale_downs: Vec<ScaleEvent>,
}

impl History {
    /// Records `current` as the first recommendation of a newly seen HPA.
    pub fn init(&mut self, current: i32, now: Timestamp) {
        if self.recommendations.is_empty() {
            self.recommendations.push(Recommendation {
                replicas: current,
                at: now,
            });
        }
    }
}

/// How `selectPolicy` picks among the policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Select {
    /// The policy allowing the largest change (the default).
    Max,
    /// The policy allowing the smallest change.
    Min,
    /// No scaling in this direction.
    Disabled,
}

/// One scaling policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// `Pods` (true) or `Percent` (false); `None` for a type this version does not know.
    pub pods: Option<bool>,
    /// Pods, or percent of the replicas at the start of the period.
    pub value: i32,
    /// The period the change is counted over.
    pub period_seconds: i32,
}

/// One direction's rules with upstream's defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    /// Seconds of recommendations considered.
    pub stabilization_window_seconds: i32,
    /// How the policies combine.
    pub select: Select,
    /// The policies.
    pub policies: Vec<Policy>,
}

/// Both directions' rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Behavior {
    /// `behavior.scaleUp`.
    pub scale_up: Rules,
    /// `behavior.scaleDown`.
    pub scale_down: Rules,
}

fn rules(r: Option<&HPAScalingRules>, window: i32, default_policies: Vec<Policy>) -> Rules {
    let select = match r.and_then(|r| r.select_policy.as_deref()) {
        Some("Min") => Select::Min,
        Some("Disabled") => Select::Disabled,
        _ => Select::Max,
    };
    let policies = match r.and_then(|r| r.policies.as_ref()) {
        Some(ps) => ps
            .iter()
            .map(|p| Policy {
                pods: match p.type_.as_str() {
                    "Pods" => Some(true),
                    "Percent" => Some(false),
                    _ => None,
                },
                value: p.value,
                period_seconds: p.period_seconds,
            })
            .collect(),
        None => default_policies,
    };
    Rules {
        stabilization_window_seconds: r
            .and_then(|r| r.stabilization_window_seconds)
            .unwrap_or(window),
        select,
        policies,
    }
}

impl Behavior {
    /// The HPA's `behavior` with the apiserver's defaults for anything unset (scale-up:
    /// no window, 4 pods or 100 % per 15 s; scale-down: 100 % per 15 s) and the scale-down
    /// window from `--horizontal-pod-autoscaler-downscale-stabilization`.
    pub fn resolve(b: &HorizontalPodAutoscalerBehavior, downscale_window: Duration) -> Self {
        let p = |pods, value| Policy {
            pods: Some(pods),
            value,
            period_seconds: 15,
        };
        Behavior {
            scale_up: rules(b.scale_up.as_ref(), 0, vec![p(true, 4), p(false, 100)]),
            scale_down: rules(
                b.scale_down.as_ref(),
                downscale_window.as_secs().min(i32::MAX as u64) as i32,
                vec![p(false, 100)],
            ),
        }
    }
}

/// The outcome of normalization, with the conditions that explain it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The replica count to set.
    pub replicas: i32,
    /// `AbleToScale` (True) reason: `ReadyForNewScale`, `ScaleUpStabilized` or
    /// `ScaleDownStabilized`.
    pub able_reason: &'static str,
    /// Its message.
    pub able_message: &'static str,
    /// Whether `ScalingLimited` is True.
    pub limited: bool,
    /// `ScalingLimited` reason (`DesiredWithinRange`, `TooManyReplicas`, ...).
    pub limited_reason: &'static str,
    /// Its message.
    pub limited_message: &'static str,
}

const READY: (&str, &str) = ("ReadyForNewScale", "recommended size matches current size");
const UP_STABILIZED: (&str, &str) = (
    "ScaleUpStabilized",
    "recent recommendations were lower than current one, applying the lowest recent recommendation",
);
const DOWN_STABILIZED: (&str, &str) = (
    "ScaleDownStabilized",
    "recent recommendations were higher than current one, applying the highest recent recommendation",
);
const WITHIN: (&str, &str) = (
    "DesiredWithinRange",
    "the desired count is within the acceptable range",
);
const TOO_MANY: (&str, &str) = (
    "TooManyReplicas",
    "the desired replica count is more than the maximum replica count",
);
const TOO_FEW: (&str, &str) = (
    "TooFewReplicas",
    "the desired replica count is less than the minimum replica count",
);
const UP_LIMIT: (&str, &str) = (
    "ScaleUpLimit",
    "the desired replica count is increasing faster than the maximum scale rate",
);
const DOWN_LIMIT: (&str, &str) = (
    "ScaleDownLimit",
    "the desired replica count is decreasing faster than the maximum scale rate",
);

fn before(now: Timestamp, secs: i64) -> Timestamp {
    now.checked_sub(SignedDuration::from_secs(secs))
        .unwrap_or(Timestamp::MIN)
}

fn decision(
    replicas: i32,
    stabilized: i32,
    able: (&'static str, &'static str),
    limit: (&'static str, &'static str),
) -> Decision {
    Decision {
        replicas,
        able_reason: able.0,
        able_message: able.1,
        limited: replicas != stabilized,
        limited_reason: limit.0,
        limited_message: limit.1,
    }
}

/// Normalization without `behavior`: the highest recommendation of the downscale window,
/// then min/max replicas and the `max(2 × current, 4)` scale-up limit.
pub fn normalize(
    h: &mut History,
    current: i32,
    desired: i32,
    min: i32,
    max: i32,
    downscale_window: Duration,
    now: Timestamp,
) -> Decision {
    let cutoff = before(now, downscale_window.as_secs() as i64);
    let mut stabilized = desired;
    let mut old = None;
    for (i, r) in h.recommendations.iter().enumerate() {
        if r.at < cutoff {
            old = Some(i);
        } else {
            stabilized = stabilized.max(r.replicas);
        }
    }
    let rec = Recommendation {
        replicas: desired,
        at: now,
    };
    match old {
        Some(i) => h.recommendations[i] = rec,
        None => h.recommendations.push(rec),
    }
    let able = if stabilized != desired {
        DOWN_STABILIZED
    } else {
        READY
    };
    let up_limit = (SCALE_UP_LIMIT_FACTOR * f64::from(current)).max(SCALE_UP_LIMIT_MINIMUM) as i32;
    let (max_allowed, over) = if max > up_limit {
        (up_limit, UP_LIMIT)
    } else {
        (max, TOO_MANY)
    };
    let (replicas, limit) = if stabilized < min {
        (min, TOO_FEW)
    } else if stabilized > max_allowed {
        (max_allowed, over)
    } else {
        (stabilized, WITHIN)
    };
    decision(replicas, stabilized, able, limit)
}

/// Normalization with `behavior`: stabilize between the lowest recommendation of the
/// scale-up window and the highest of the scale-down window, then the policies' rate
/// limits and min/max replicas.
pub fn normalize_with_behavior(
    h: &mut History,
    b: &Behavior,
    current: i32,
    desired: i32,
    min: i32,
    max: i32,
    now: Timestamp,
) -> Decision {
    let (stabilized, able) = stabilize(h, b, current, desired, now);
    let (replicas, limit) = rate_limited(h, b, current, stabilized, min, max, now);
    let able = if stabilized != desired { able } else { READY };
    decision(replicas, stabilized, able, limit)
}

/// Stabilizes `desired` between the lowest recommendation of the scale-up window and the
/// highest of the scale-down window (never past `current`), records `desired` (reusing the
/// slot of one older than both windows), and says which window would apply.
pub fn stabilize(
    h: &mut History,
    b: &Behavior,
    current: i32,
    desired: i32,
    now: Timestamp,
) -> (i32, (&'static str, &'static str)) {
    let up_cutoff = before(now, i64::from(b.scale_up.stabilization_window_seconds));
    let down_cutoff = before(now, i64::from(b.scale_down.stabilization_window_seconds));
    let (mut up, mut down) = (desired, desired);
    let mut old = None;
    for (i, r) in h.recommendations.iter().enumerate() {
        if r.at > up_cutoff {
            up = up.min(r.replicas);
        }
        if r.at > down_cutoff {
            down = down.max(r.replicas);
        }
        if r.at < up_cutoff && r.at < down_cutoff {
            old = Some(i);
        }
    }
    let recommendation = current.max(up).min(down);
    let rec = Recommendation {
        replicas: desired,
        at: now,
    };
    match old {
        Some(i) => h.recommendations[i] = rec,
        None => h.recommendations.push(rec),
    }
    let why = if desired >= current {
        UP_STABILIZED
    } else {
        DOWN_STABILIZED
    };
    (recommendation, why)
}

/// Replicas changed in the last `period_seconds` by `events`.
fn changed_within(events: &[ScaleEvent], period_seconds: i32, now: Timestamp) -> i32 {
    let cutoff = before(now, i64::from(period_seconds));
    events
        .iter()
        .filter(|e| e.at > cutoff)
        .map(|e| e.change)
        .sum()
}

/// The highest replica count the scale-up rules allow now (upstream's
/// `calculateScaleUpLimitWithScalingRules`).
pub fn scale_up_limit(h: &History, r: &Rules, current: i32, now: Timestamp) -> i32 {
    let (mut result, pick): (i32, fn(i32, i32) -> i32) = match r.select {
        Select::Disabled => return current,
        Select::Min => (i32::MAX, std::cmp::min),
        Select::Max => (i32::MIN, std::cmp::max),
    };
    let mut proposed = 0;
    for p in &r.policies {
        let start = current - changed_within(&h.scale_ups, p.period_seconds, now)
            + changed_within(&h.scale_downs, p.period_seconds, now);
        match p.pods {
            Some(true) => proposed = start.saturating_add(p.value),
            Some(false) => {
                proposed = (f64::from(start) * (1.0 + f64::from(p.value) / 100.0)).ceil() as i32
            }
            None => {}
        }
        result = pick(result, proposed);
    }
    result
}

/// The lowest replica count the scale-down rules allow now (upstream's
/// `calculateScaleDownLimitWithBehaviors`).
pub fn scale_down_limit(h: &History, r: &Rules, current: i32, now: Timestamp) -> i32 {
    let (mut result, pick): (i32, fn(i32, i32) -> i32) = match r.select {
        Select::Disabled => return current,
        Select::Min => (i32::MIN, std::cmp::max),
        Select::Max => (i32::MAX, std::cmp::min),
    };
    let mut proposed = 0;
    for p in &r.policies {
        let start = current - changed_within(&h.scale_ups, p.period_seconds, now)
            + changed_within(&h.scale_downs, p.period_seconds, now);
        match p.pods {
            Some(true) => proposed = start.saturating_sub(p.value),
            Some(false) => {
                proposed = (f64::from(start) * (1.0 - f64::from(p.value) / 100.0)) as i32
            }
            None => {}
        }
        result = pick(result, proposed);
    }
    result
}

fn rate_limited(
    h: &History,
    b: &Behavior,
    current: i32,
    desired: i32,
    min: i32,
    max: i32,
    now: Timestamp,
) -> (i32, (&'static str, &'static str)) {
    if desired > current {
        let limit = scale_up_limit(h, &b.scale_up, current, now).max(current);
        let (allowed, why) = if max > limit {
            (limit, UP_LIMIT)
        } else {
            (max, TOO_MANY)
        };
        if desired > allowed {
            return (allowed, why);
        }
    } else if desired < current {
        let limit = scale_down_limit(h, &b.scale_down, current, now).min(current);
        let (allowed, why) = if min < limit {
            (limit, DOWN_LIMIT)
        } else {
            (min, TOO_FEW)
        };
        if desired < allowed {
            return (allowed, why);
        }
    }
    (desired, WITHIN)
}

/// Remembers a rescale from `prev` to `new` for the policies' periods, reusing the slot of
/// an event older than the longest period (nothing is kept without `behavior`).
pub fn record_scale(h: &mut History, b: Option<&Behavior>, prev: i32, new: i32, now: Timestamp) {
    let Some(b) = b else { return };
    let (events, rules, change) = if new > prev {
        (&mut h.scale_ups, &b.scale_up, new - prev)
    } else {
        (&mut h.scale_downs, &b.scale_down, prev - new)
    };
    let longest = rules
        .policies
        .iter()
        .map(|p| p.period_seconds)
        .max()
        .unwrap_or(0);
    let cutoff = before(now, i64::from(longest));
    let mut slot = None;
    for (i, e) in events.iter_mut().enumerate() {
        if e.at < cutoff {
            e.outdated = true;
        }
        if e.outdated {
            slot = Some(i);
        }
    }
    let event = ScaleEvent {
        change,
        at: now,
        outdated: false,
    };
    match slot {
        Some(i) => events[i] = event,
        None => events.push(event),
    }
}
