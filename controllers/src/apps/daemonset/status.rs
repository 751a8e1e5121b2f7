//! DaemonSet status from observed nodes and pods (upstream's `updateDaemonSetStatus`).

use k8s_openapi::api::apps::v1::DaemonSetStatus;
use k8s_openapi::jiff::Timestamp;

use super::eligibility::oldest_first;
use super::plan::{ByNode, DsView, NodeFacts};
use crate::machinery::pods;

/// The status counts for `nodes` and their daemon pods (`by_node` without pods that are both
/// terminal and being deleted), keeping `previous` conditions and collision count.
pub fn calculate(
    previous: &DaemonSetStatus,
    nodes: &[NodeFacts],
    by_node: &ByNode<'_>,
    view: &DsView,
    generation: Option<i64>,
    collision_count: Option<i32>,
    now: Timestamp,
) -> DaemonSetStatus {
    let (mut desired, mut current, mut misscheduled, mut ready, mut updated, mut available) =
        (0, 0, 0, 0, 0, 0);
    for node in nodes {
        let on_node = by_node.get(&node.name).filter(|l| !l.is_empty());
        if node.should_run {
            desired += 1;
            let Some(list) = on_node else { continue };
            current += 1;
            let mut list = list.clone();
            list.sort_by(|a, b| oldest_first(a, b));
            let p = list[0];
            if pods::is_ready(p) {
                ready += 1;
                if pods::is_available(p, view.min_ready_seconds, now) {
                    available += 1;
                }
            }
            if view.is_updated(p) {
                updated += 1;
            }
        } else if on_node.is_some() {
            misscheduled += 1;
        }
    }
    let opt = |n: i32| (n != 0).then_some(n);
    DaemonSetStatus {
        current_number_scheduled: current,
        desired_number_scheduled: desired,
        number_misscheduled: misscheduled,
        number_ready: ready,
        updated_number_scheduled: opt(updated),
        number_available: opt(available),
        number_unavailable: opt(desired - available),
        observed_generation: generation,
        collision_count,
        conditions: previous.conditions.clone(),
    }
}

/// Whether two statuses differ as the apiserver stores them (zero and absent are equal).
pub fn differs(a: &DaemonSetStatus, b: &DaemonSetStatus) -> bool {
    let n = |v: Option<i32>| v.unwrap_or(0);
    a.current_number_scheduled != b.current_number_scheduled
        || a.desired_number_scheduled != b.desired_number_scheduled
        || a.number_misscheduled != b.number_misscheduled
        || a.number_ready != b.number_ready
        || n(a.updated_number_scheduled) != n(b.updated_number_scheduled)
        || n(a.number_available) != n(b.number_available)
        || n(a.number_unavailable) != n(b.number_unavailable)
        || a.observed_generation.unwrap_or(0) != b.observed_generation.unwrap_or(0)
        || n(a.collision_count) != n(b.collision_count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apps::history::POD_REVISION_LABEL;
    use crate::machinery::pods::testing::pod;

    #[test]
    fn counts() {
        let now = Timestamp::from_second(100_000).unwrap();
        let mut a = pod("a", "Running", Some(1_000));
        a.metadata.labels = Some([(POD_REVISION_LABEL.to_string(), "h".to_string())].into());
        let b = pod("b", "Pending", None);
        let c = pod("c", "Running", Some(1_000));
        let by_node: ByNode = [
            ("n1".to_string(), vec![&a]),
            ("n2".to_string(), vec![&b]),
            ("n3".to_string(), vec![&c]),
        ]
        .into();
        let f = |n: &str, run: bool| NodeFacts {
            name: n.into(),
            should_run: run,
            should_continue: run,
        };
        let nodes = [f("n1", true), f("n2", true), f("n3", false), f("n4", true)];
        let view = DsView {
            hash: "h".into(),
            template_generation: None,
            min_ready_seconds: 0,
            allows_surge: false,
        };
        let s = calculate(
            &Default::default(),
            &nodes,
            &by_node,
            &view,
            Some(2),
            None,
            now,
        );
        assert_eq!(s.desired_number_scheduled, 3);
        assert_eq!(s.current_number_scheduled, 2);
        assert_eq!(s.number_misscheduled, 1);
        assert_eq!(s.number_ready, 1);
        assert_eq!(s.number_available, Some(1));
        assert_eq!(s.number_unavailable, Some(2));
        assert_eq!(s.updated_number_scheduled, Some(1));
        assert_eq!(s.observed_generation, Some(2));
        assert!(!differs(&s, &s.clone()));
    }
}
