//! Deployment status and its Available / Progressing / ReplicaFailure conditions, as
//! upstream's `calculateStatus` and `syncRolloutStatus`.

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::util;

/// Condition reasons, as upstream's.
pub mod reason {
    /// The new ReplicaSet got pods or old ones lost pods.
    pub const RS_UPDATED: &str = "ReplicaSetUpdated";
    /// The new ReplicaSet was created.
    pub const NEW_RS_CREATED: &str = "NewReplicaSetCreated";
    /// The new ReplicaSet already existed.
    pub const FOUND_NEW_RS: &str = "FoundNewReplicaSet";
    /// The rollout finished.
    pub const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
    /// progressDeadlineSeconds passed without progress.
    pub const TIMED_OUT: &str = "ProgressDeadlineExceeded";
    /// Paused.
    pub const PAUSED: &str = "DeploymentPaused";
    /// Resumed.
    pub const RESUMED: &str = "DeploymentResumed";
    /// Creating the new ReplicaSet failed.
    pub const RS_CREATE_ERROR: &str = "ReplicaSetCreateError";
    /// Enough pods are available.
    pub const MIN_AVAILABLE: &str = "MinimumReplicasAvailable";
    /// Too few pods are available.
    pub const MIN_UNAVAILABLE: &str = "MinimumReplicasUnavailable";
}

/// A condition stamped `now`.
pub fn condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now: Timestamp,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// The condition of `type_`, if present.
pub fn get<'a>(s: &'a DeploymentStatus, type_: &str) -> Option<&'a DeploymentCondition> {
    s.conditions.as_ref()?.iter().find(|c| c.type_ == type_)
}

/// Sets `c` unless one with the same status and reason exists; a transition keeps the old
/// transition time when the status does not change.
pub fn set(s: &mut DeploymentStatus, mut c: DeploymentCondition) {
    let conds = s.conditions.get_or_insert_with(Vec::new);
    if let Some(cur) = conds.iter().find(|x| x.type_ == c.type_) {
        if cur.status == c.status && cur.reason == c.reason {
            return;
        }
        if cur.status == c.status {
            c.last_transition_time = cur.last_transition_time.clone();
        }
    }
    conds.retain(|x| x.type_ != c.type_);
    conds.push(c);
}

/// Removes the condition of `type_`.
pub fn remove(s: &mut DeploymentStatus, type_: &str) {
    if let Some(c) = s.conditions.as_mut() {
        c.retain(|x| x.type_ != type_);
    }
}

/// Counts from the ReplicaSets, the observed generation and the Available condition.
pub fn calculate(
    d: &Deployment,
    new: Option<&ReplicaSet>,
    all: &[&ReplicaSet],
    now: Timestamp,
) -> DeploymentStatus {
    let st = |rs: &ReplicaSet| rs.status.clone().unwrap_or_default();
    let replicas: i32 = all.iter().map(|r| st(r).replicas).sum();
    let updated = new.map_or(0, |r| st(r).replicas);
    let ready: i32 = all.iter().map(|r| st(r).ready_replicas.unwrap_or(0)).sum();
    let available: i32 = all
        .iter()
        .map(|r| st(r).available_replicas.unwrap_or(0))
        .sum();
    let spec_total: i32 = all.iter().map(|r| util::rs_replicas(r)).sum();
    let prev = d.status.clone().unwrap_or_default();
    let mut s = DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: Some(replicas),
        updated_replicas: Some(updated),
        ready_replicas: Some(ready),
        available_replicas: Some(available),
        unavailable_replicas: Some((spec_total - available).max(0)),
        collision_count: prev.collision_count,
        conditions: prev.conditions.clone(),
        terminating_replicas: None,
    };
    let min = util::replicas(d) - util::max_unavailable(d);
    if available >= min {
        set(
            &mut s,
            condition(
                "Available",
                "True",
                reason::MIN_AVAILABLE,
                "Deployment has minimum availability.".into(),
                now,
            ),
        );
    } else {
        set(
            &mut s,
            condition(
                "Available",
                "False",
                reason::MIN_UNAVAILABLE,
                "Deployment does not have minimum availability.".into(),
                now,
            ),
        );
    }
    s
}

/// `spec.progressDeadlineSeconds` unless it is "never" (MaxInt32).
pub fn progress_deadline(d: &Deployment) -> Option<i32> {
    let v = d
        .spec
        .as_ref()
        .and_then(|s| s.progress_deadline_seconds)
        .unwrap_or(600);
    (v != i32::MAX).then_some(v)
}

/// Whether `s` describes a finished rollout of `d` (upstream's `DeploymentComplete`).
pub fn is_complete(d: &Deployment, s: &DeploymentStatus) -> bool {
    let r = util::replicas(d);
    s.updated_replicas == Some(r)
        && s.replicas == Some(r)
        && s.available_replicas == Some(r)
        && s.observed_generation >= d.metadata.generation
}

fn progressed(prev: &DeploymentStatus, s: &DeploymentStatus) -> bool {
    let old = |x: &DeploymentStatus| x.replicas.unwrap_or(0) - x.updated_replicas.unwrap_or(0);
    s.updated_replicas > prev.updated_replicas
        || s.ready_replicas > prev.ready_replicas
        || s.available_replicas > prev.available_replicas
        || old(s) < old(prev)
}

/// The status after a rollout step: counts, Available, Progressing (complete, progressing
/// or timed out) and ReplicaFailure copied from the new ReplicaSet. Also returns when to
/// check the deadline again, if the rollout is still running.
pub fn rollout(
    d: &Deployment,
    new: Option<&ReplicaSet>,
    all: &[&ReplicaSet],
    now: Timestamp,
) -> (DeploymentStatus, Option<i64>) {
    let mut s = calculate(d, new, all, now);
    let prev = d.status.clone().unwrap_or_default();
    let Some(deadline) = progress_deadline(d) else {
        remove(&mut s, "Progressing");
        return (s, None);
    };
    let new_name = new
        .and_then(|r| r.metadata.name.clone())
        .unwrap_or_default();
    let cur = get(&prev, "Progressing").cloned();
    let timed_out = cur
        .as_ref()
        .is_some_and(|c| c.reason.as_deref() == Some(reason::TIMED_OUT));
    if !timed_out {
        if is_complete(d, &s) {
            set(
                &mut s,
                condition(
                    "Progressing",
                    "True",
                    reason::NEW_RS_AVAILABLE,
                    format!("ReplicaSet \"{new_name}\" has successfully progressed."),
                    now,
                ),
            );
        } else if progressed(&prev, &s) {
            let mut c = condition(
                "Progressing",
                "True",
                reason::RS_UPDATED,
                format!("ReplicaSet \"{new_name}\" is progressing."),
                now,
            );
            if let Some(cur) = cur.as_ref().filter(|c| c.status == "True") {
                c.last_transition_time = cur.last_transition_time.clone();
            }
            remove(&mut s, "Progressing");
            set(&mut s, c);
        }
    }
    let mut recheck = None;
    if new.is_some() && !is_complete(d, &s) {
        if let Some(c) = get(&s, "Progressing").cloned() {
            if c.reason.as_deref() != Some(reason::NEW_RS_AVAILABLE)
                && c.reason.as_deref() != Some(reason::TIMED_OUT)
            {
                let from = c.last_update_time.as_ref().map_or(now, |t| t.0);
                let left = from.as_second() + i64::from(deadline) - now.as_second();
                if left < 0 {
                    set(
                        &mut s,
                        condition(
                            "Progressing",
                            "False",
                            reason::TIMED_OUT,
                            format!("ReplicaSet \"{new_name}\" has timed out progressing."),
                            now,
                        ),
                    );
                } else {
                    recheck = Some(left + 1);
                }
            }
        }
    }
    // The new ReplicaSet's failure to create pods shows on the Deployment.
    let failure = new.and_then(|r| {
        r.status
            .as_ref()?
            .conditions
            .as_ref()?
            .iter()
            .find(|c| c.type_ == "ReplicaFailure")
            .cloned()
    });
    match failure {
        Some(f) => set(
            &mut s,
            condition(
                "ReplicaFailure",
                &f.status,
                f.reason.as_deref().unwrap_or_default(),
                f.message.unwrap_or_default(),
                now,
            ),
        ),
        None => remove(&mut s, "ReplicaFailure"),
    }
    (s, recheck)
}

/// The Progressing condition for a paused (or just resumed) Deployment, if it must change.
pub fn paused_condition(d: &Deployment, now: Timestamp) -> Option<DeploymentCondition> {
    progress_deadline(d)?;
    let paused = d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
    let prev = d.status.clone().unwrap_or_default();
    let cur = get(&prev, "Progressing");
    let cur_reason = cur.and_then(|c| c.reason.as_deref());
    if paused && cur_reason != Some(reason::PAUSED) {
        Some(condition(
            "Progressing",
            "Unknown",
            reason::PAUSED,
            "Deployment is paused".into(),
            now,
        ))
    } else if !paused && cur_reason == Some(reason::PAUSED) {
        Some(condition(
            "Progressing",
            "Unknown",
            reason::RESUMED,
            "Deployment is resumed".into(),
            now,
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DeploymentSpec, ReplicaSetSpec, ReplicaSetStatus};
    use kube::api::ObjectMeta;

    fn rs(name: &str, spec: i32, replicas: i32, available: i32) -> ReplicaSet {
        ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(spec),
                ..Default::default()
            }),
            status: Some(ReplicaSetStatus {
                replicas,
                ready_replicas: Some(available),
                available_replicas: Some(available),
                ..Default::default()
            }),
        }
    }

    fn deploy(replicas: i32, deadline: i32) -> Deployment {
        Deployment {
            metadata: ObjectMeta {
                generation: Some(2),
                ..Default::default()
            },
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                progress_deadline_seconds: Some(deadline),
                ..Default::default()
            }),
            status: None,
        }
    }

    #[test]
    fn complete_rollout_is_available_and_progressed() {
        let now = Timestamp::from_second(1000).unwrap();
        let new = rs("d-1", 3, 3, 3);
        let (s, recheck) = rollout(&deploy(3, 600), Some(&new), &[&new], now);
        assert_eq!(s.available_replicas, Some(3));
        assert_eq!(get(&s, "Available").unwrap().status, "True");
        let p = get(&s, "Progressing").unwrap();
        assert_eq!(p.reason.as_deref(), Some(reason::NEW_RS_AVAILABLE));
        assert_eq!(recheck, None);
    }

    #[test]
    fn stalled_rollout_times_out() {
        let start = Timestamp::from_second(1000).unwrap();
        let new = rs("d-2", 3, 3, 0);
        let old = rs("d-1", 1, 1, 1);
        let mut d = deploy(3, 10);
        let (s, recheck) = rollout(&d, Some(&new), &[&new, &old], start);
        assert_eq!(
            get(&s, "Progressing").unwrap().reason.as_deref(),
            Some(reason::RS_UPDATED)
        );
        assert_eq!(recheck, Some(11));
        assert_eq!(get(&s, "Available").unwrap().status, "False");
        d.status = Some(s);
        let later = Timestamp::from_second(1011).unwrap();
        let (s, _) = rollout(&d, Some(&new), &[&new, &old], later);
        let p = get(&s, "Progressing").unwrap();
        assert_eq!(
            (p.status.as_str(), p.reason.as_deref()),
            ("False", Some(reason::TIMED_OUT))
        );
    }

    #[test]
    fn pause_and_resume_conditions() {
        let now = Timestamp::from_second(5).unwrap();
        let mut d = deploy(1, 600);
        d.spec.as_mut().unwrap().paused = Some(true);
        let c = paused_condition(&d, now).unwrap();
        assert_eq!(c.reason.as_deref(), Some(reason::PAUSED));
        d.status = Some(DeploymentStatus {
            conditions: Some(vec![c]),
            ..Default::default()
        });
        assert!(paused_condition(&d, now).is_none());
        d.spec.as_mut().unwrap().paused = Some(false);
        assert_eq!(
            paused_condition(&d, now).unwrap().reason.as_deref(),
            Some(reason::RESUMED)
        );
    }
}
