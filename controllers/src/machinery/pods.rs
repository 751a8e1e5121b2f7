//! Facts about pods that every workload controller uses: active, ready, available, and
//! upstream's order of deletion victims (`ActivePodsWithRanks`).

use std::cmp::Ordering;
use std::collections::HashMap;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;

/// Upstream's annotation lowering (or raising) a pod's chance to be deleted first.
pub const DELETION_COST_ANNOTATION: &str = "controller.kubernetes.io/pod-deletion-cost";

/// The pod's phase, `""` when unset.
pub fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// Not terminated and not being deleted (upstream's `IsPodActive`).
pub fn is_active(pod: &Pod) -> bool {
    !matches!(phase(pod), "Succeeded" | "Failed") && pod.metadata.deletion_timestamp.is_none()
}

/// Being deleted (it still counts until gone for some controllers).
pub fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// When the pod's Ready condition became true, if it is true.
pub fn ready_since(pod: &Pod) -> Option<Option<Timestamp>> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")
        .map(|c| c.last_transition_time.as_ref().map(|t| t.0))
}

/// Whether the pod's Ready condition is true.
pub fn is_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// Ready for at least `min_ready_seconds` at `now` (upstream's `IsPodAvailable`).
pub fn is_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    match ready_since(pod) {
        None => false,
        Some(_) if min_ready_seconds <= 0 => true,
        Some(None) => false,
        Some(Some(t)) => now.as_second() - t.as_second() >= i64::from(min_ready_seconds),
    }
}

/// Seconds until a ready pod becomes available, if it is ready but not yet available.
pub fn seconds_until_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> Option<i64> {
    match ready_since(pod)? {
        Some(t) if min_ready_seconds > 0 => {
            let left = i64::from(min_ready_seconds) - (now.as_second() - t.as_second());
            (left > 0).then_some(left)
        }
        _ => None,
    }
}

fn phase_ordinal(pod: &Pod) -> u8 {
    match phase(pod) {
        "Unknown" => 1,
        "Running" => 2,
        _ => 0,
    }
}

fn deletion_cost(pod: &Pod) -> i32 {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DELETION_COST_ANNOTATION))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn max_restarts(pod: &Pod) -> (i32, i32) {
    let Some(status) = &pod.status else {
        return (0, 0);
    };
    let regular = status
        .container_statuses
        .iter()
        .flatten()
        .map(|c| c.restart_count)
        .max()
        .unwrap_or(0);
    let sidecar = status
        .init_container_statuses
        .iter()
        .flatten()
        .map(|c| c.restart_count)
        .max()
        .unwrap_or(0);
    (regular, sidecar)
}

/// `floor(log2(now - t in ns))`, or -1 for a time not in the past (LogarithmicScaleDown).
fn log_rank(t: Timestamp, now: Timestamp) -> i64 {
    let d = now.as_nanosecond() - t.as_nanosecond();
    if d > 0 {
        (d as f64).log2() as i64
    } else {
        -1
    }
}

/// "Later or unset comes first": unset < newer < older.
fn newer_first(
    a: Option<Timestamp>,
    b: Option<Timestamp>,
    now: Timestamp,
    a_uid: &str,
    b_uid: &str,
) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(a), Some(b)) if a == b => Ordering::Equal,
        (Some(a), Some(b)) => match log_rank(a, now).cmp(&log_rank(b, now)) {
            Ordering::Equal => a_uid.cmp(b_uid),
            o => o,
        },
    }
}

/// Upstream's deletion order (most deletable first) between two pods with their ranks
/// (count of related active pods on the same node).
pub fn victim_order(a: &Pod, ra: usize, b: &Pod, rb: usize, now: Timestamp) -> Ordering {
    let node = |p: &Pod| {
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default()
    };
    let (na, nb) = (node(a), node(b));
    if na != nb && (na.is_empty() || nb.is_empty()) {
        return if na.is_empty() {
            Ordering::Less
        } else {
            Ordering::Greater
        };
    }
    let uid = |p: &Pod| p.metadata.uid.clone().unwrap_or_default();
    phase_ordinal(a)
        .cmp(&phase_ordinal(b))
        .then_with(|| is_ready(a).cmp(&is_ready(b)))
        .then_with(|| deletion_cost(a).cmp(&deletion_cost(b)))
        .then_with(|| rb.cmp(&ra))
        .then_with(|| {
            if is_ready(a) && is_ready(b) {
                let t = |p: &Pod| ready_since(p).flatten();
                newer_first(t(a), t(b), now, &uid(a), &uid(b))
            } else {
                Ordering::Equal
            }
        })
        .then_with(|| {
            let (ma, mb) = (max_restarts(a), max_restarts(b));
            mb.0.cmp(&ma.0).then(mb.1.cmp(&ma.1))
        })
        .then_with(|| {
            let t = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
            newer_first(t(a), t(b), now, &uid(a), &uid(b))
        })
}

/// The `count` pods of `pods` to delete first, ranking by the active `related` pods (those of
/// every sibling ReplicaSet) sharing their node.
pub fn pick_victims<'a>(
    pods: &[&'a Pod],
    related: &[&Pod],
    count: usize,
    now: Timestamp,
) -> Vec<&'a Pod> {
    let mut on_node: HashMap<String, usize> = HashMap::new();
    for p in related.iter().filter(|p| is_active(p)) {
        let n = p
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default();
        *on_node.entry(n).or_default() += 1;
    }
    let rank = |p: &Pod| {
        let n = p
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default();
        on_node.get(&n).copied().unwrap_or(0)
    };
    let mut ranked: Vec<(&Pod, usize)> = pods.iter().map(|p| (*p, rank(p))).collect();
    ranked.sort_by(|(a, ra), (b, rb)| victim_order(a, *ra, b, *rb, now));
    ranked.into_iter().take(count).map(|(p, _)| p).collect()
}

#[cfg(test)]
pub(crate) mod testing {
    //! Pod builders for unit tests.
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use kube::api::ObjectMeta;

    /// A pod `name` with phase and, if `ready_at` is set, a Ready condition since then.
    pub fn pod(name: &str, phase: &str, ready_at: Option<i64>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                uid: Some(format!("uid-{name}")),
                creation_timestamp: Some(Time(Timestamp::from_second(1_000).unwrap())),
                ..Default::default()
            },
            spec: Some(PodSpec::default()),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                conditions: ready_at.map(|t| {
                    vec![PodCondition {
                        type_: "Ready".into(),
                        status: "True".into(),
                        last_transition_time: Some(Time(Timestamp::from_second(t).unwrap())),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
        }
    }

    /// The same pod bound to `node`.
    pub fn on_node(mut p: Pod, node: &str) -> Pod {
        p.spec.get_or_insert_with(Default::default).node_name = Some(node.into());
        p
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    fn now() -> Timestamp {
        Timestamp::from_second(100_000).unwrap()
    }

    #[test]
    fn availability_honours_min_ready_seconds() {
        let p = pod("a", "Running", Some(100_000 - 5));
        assert!(is_available(&p, 0, now()));
        assert!(is_available(&p, 5, now()));
        assert!(!is_available(&p, 6, now()));
        assert_eq!(seconds_until_available(&p, 8, now()), Some(3));
        assert!(!is_available(&pod("b", "Running", None), 0, now()));
    }

    #[test]
    fn victims_in_upstream_order() {
        let unassigned = pod("unassigned", "Pending", None);
        let pending = on_node(pod("pending", "Pending", None), "n1");
        let running_unready = on_node(pod("unready", "Running", None), "n1");
        let ready_old = on_node(pod("ready-old", "Running", Some(10)), "n2");
        let ready_new = on_node(pod("ready-new", "Running", Some(99_990)), "n3");
        let mut costly = on_node(pod("costly", "Running", None), "n1");
        costly.metadata.annotations =
            Some([(DELETION_COST_ANNOTATION.to_string(), "100".to_string())].into());
        let all = [
            &ready_old,
            &costly,
            &pending,
            &ready_new,
            &unassigned,
            &running_unready,
        ];
        let order: Vec<String> = pick_victims(&all, &all, 6, now())
            .iter()
            .map(|p| p.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(
            order,
            [
                "unassigned",
                "pending",
                "unready",
                "costly",
                "ready-new",
                "ready-old"
            ]
        );
    }

    #[test]
    fn doubled_up_pods_go_first() {
        let a = on_node(pod("alone", "Running", Some(50)), "n1");
        let b = on_node(pod("crowded1", "Running", Some(50)), "n2");
        let c = on_node(pod("crowded2", "Running", Some(50)), "n2");
        let all = [&a, &b, &c];
        let v = pick_victims(&all, &all, 1, now());
        assert!(v[0]
            .metadata
            .name
            .as_deref()
            .unwrap()
            .starts_with("crowded"));
    }

    #[test]
    fn terminal_and_deleting_pods_are_inactive() {
        assert!(!is_active(&pod("s", "Succeeded", None)));
        assert!(!is_active(&pod("f", "Failed", None)));
        assert!(is_active(&pod("r", "Running", None)));
    }
}
