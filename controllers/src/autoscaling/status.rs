//! The HPA's status as upstream writes it: conditions (`AbleToScale`, `ScalingActive`,
//! `ScalingLimited`) whose `lastTransitionTime` moves only when their status does, the
//! replica counts, `lastScaleTime` and `currentMetrics`; and which HPAs claim a pod.

use std::collections::BTreeMap;

use k8s_openapi::api::autoscaling::v2::{
    HorizontalPodAutoscaler, HorizontalPodAutoscalerCondition, HorizontalPodAutoscalerStatus,
    MetricStatus,
};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use k8s_openapi::jiff::Timestamp;

use api_helpers::labels as selector;

/// `AbleToScale`: whether the target's scale can be read and written now.
pub const ABLE_TO_SCALE: &str = "AbleToScale";
/// `ScalingActive`: whether metrics yield a replica count.
pub const SCALING_ACTIVE: &str = "ScalingActive";
/// `ScalingLimited`: whether the count was clamped by min/max or a rate.
pub const SCALING_LIMITED: &str = "ScalingLimited";

/// Sets condition `type_` on `status` (added if absent); its transition time moves only
/// when `true_` changes it.
pub fn set_condition(
    status: &mut HorizontalPodAutoscalerStatus,
    type_: &str,
    true_: bool,
    reason: &str,
    message: &str,
    now: Timestamp,
) {
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    let want = if true_ { "True" } else { "False" };
    let idx = match conditions.iter().position(|c| c.type_ == type_) {
        Some(i) => i,
        None => {
            conditions.push(HorizontalPodAutoscalerCondition {
                type_: type_.into(),
                ..Default::default()
            });
            conditions.len() - 1
        }
    };
    let c = &mut conditions[idx];
    if c.status != want {
        c.last_transition_time = Some(Time(now));
    }
    c.status = want.into();
    c.reason = Some(reason.into());
    c.message = Some(message.into());
}

/// The condition `type_` of `hpa`, if set.
pub fn condition<'a>(
    status: &'a HorizontalPodAutoscalerStatus,
    type_: &str,
) -> Option<&'a HorizontalPodAutoscalerCondition> {
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == type_)
}

/// Rebuilds the counts and metrics of `status` (conditions and `lastScaleTime` kept;
/// `lastScaleTime` set to `now` on a rescale), as upstream's `setStatus`.
pub fn set_counts(
    status: &mut HorizontalPodAutoscalerStatus,
    current: i32,
    desired: i32,
    metrics: Vec<MetricStatus>,
    rescaled: bool,
    now: Timestamp,
) {
    status.current_replicas = Some(current);
    status.desired_replicas = desired;
    status.current_metrics = (!metrics.is_empty()).then_some(metrics);
    if rescaled {
        status.last_scale_time = Some(Time(now));
    }
}

/// `namespace/name` of an HPA.
pub type Key = (String, String);

/// The other HPAs (besides `me`) whose last known target selector selects any of `pods`
/// (`pods by selector … are controlled by multiple HPAs`), sorted, as `namespace/name`.
pub fn other_controllers(
    me: &Key,
    pods: &[&Pod],
    selectors: &BTreeMap<Key, LabelSelector>,
) -> Vec<String> {
    selectors
        .iter()
        .filter(|(k, _)| *k != me && k.0 == me.0)
        .filter(|(_, s)| {
            pods.iter()
                .any(|p| selector::matches(s, p.metadata.labels.as_ref()))
        })
        .map(|(k, _)| format!("{}/{}", k.0, k.1))
        .collect()
}

/// The effective `minReplicas` (1 when unset, as the apiserver defaults it).
pub fn min_replicas(hpa: &HorizontalPodAutoscaler) -> i32 {
    hpa.spec.as_ref().and_then(|s| s.min_replicas).unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_moves_only_on_status_change() {
        let t0 = Timestamp::from_second(100).unwrap();
        let t1 = Timestamp::from_second(200).unwrap();
        let mut s = HorizontalPodAutoscalerStatus::default();
        set_condition(&mut s, ABLE_TO_SCALE, true, "SucceededGetScale", "m", t0);
        set_condition(&mut s, ABLE_TO_SCALE, true, "ReadyForNewScale", "m2", t1);
        let c = condition(&s, ABLE_TO_SCALE).unwrap();
        assert_eq!(c.last_transition_time, Some(Time(t0)));
        assert_eq!(c.reason.as_deref(), Some("ReadyForNewScale"));
        set_condition(&mut s, ABLE_TO_SCALE, false, "FailedGetScale", "x", t1);
        let c = condition(&s, ABLE_TO_SCALE).unwrap();
        assert_eq!(c.last_transition_time, Some(Time(t1)));
        assert_eq!(c.status, "False");
        set_condition(&mut s, SCALING_ACTIVE, true, "ValidMetricFound", "y", t1);
        assert_eq!(s.conditions.as_ref().unwrap().len(), 2);
    }

    #[test]
    fn counts_keep_last_scale_time_unless_rescaled() {
        let t0 = Timestamp::from_second(100).unwrap();
        let mut s = HorizontalPodAutoscalerStatus::default();
        set_counts(&mut s, 2, 3, vec![], true, t0);
        assert_eq!(s.last_scale_time, Some(Time(t0)));
        assert_eq!(s.current_metrics, None);
        set_counts(
            &mut s,
            3,
            3,
            vec![MetricStatus::default()],
            false,
            Timestamp::from_second(300).unwrap(),
        );
        assert_eq!(s.last_scale_time, Some(Time(t0)));
        assert_eq!((s.current_replicas, s.desired_replicas), (Some(3), 3));
        assert_eq!(s.current_metrics.map(|m| m.len()), Some(1));
    }

    #[test]
    fn ambiguity_is_other_hpas_selecting_the_same_pods() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "labels": {"app": "web"}}
        }))
        .unwrap();
        let sel = selector::parse("app=web").unwrap();
        let other = selector::parse("app=db").unwrap();
        let mut m = BTreeMap::new();
        let me = ("ns".to_string(), "a".to_string());
        m.insert(me.clone(), sel.clone());
        m.insert(("ns".into(), "c".into()), other);
        m.insert(("other".into(), "b".into()), sel.clone());
        assert!(other_controllers(&me, &[&pod], &m).is_empty());
        m.insert(("ns".into(), "b".into()), sel);
        assert_eq!(other_controllers(&me, &[&pod], &m), vec!["ns/b"]);
    }
}
