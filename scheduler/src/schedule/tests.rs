use super::*;
use crate::config::default_framework;
use crate::plugins::testutil::*;
use crate::plugins::PluginContext;
use serde_json::json;

#[test]
fn adaptive_percentage_as_upstream() {
    assert_eq!(num_feasible_nodes_to_find(0, 50), 50);
    assert_eq!(num_feasible_nodes_to_find(0, 1000), 420);
    assert_eq!(num_feasible_nodes_to_find(0, 5000), 500);
    assert_eq!(num_feasible_nodes_to_find(0, 6000), 300);
    assert_eq!(num_feasible_nodes_to_find(0, 100_000), 5000);
    assert_eq!(num_feasible_nodes_to_find(1, 1000), 100);
    assert_eq!(num_feasible_nodes_to_find(100, 5000), 5000);
}

#[test]
fn picks_the_least_allocated_feasible_node() {
    let fw = default_framework(&PluginContext::default());
    let busy = node_info(
        node("busy", "4", "8Gi", json!({})),
        &[pod_req("x", "3", "6Gi")],
    );
    let idle = node_info(node("idle", "4", "8Gi", json!({})), &[]);
    let small = node_info(node("small", "500m", "8Gi", json!({})), &[]);
    let snap = snapshot(vec![busy, idle, small]);
    let r = schedule_pod(
        &fw,
        &mut CycleState::default(),
        &pod_req("p", "1", "1Gi"),
        &snap,
        &mut Rotation::default(),
        &Nominated::new(),
        0,
    )
    .unwrap();
    assert_eq!(r.node, "idle");
    assert_eq!(r.feasible, 2);
}

#[test]
fn failed_scheduling_message() {
    let fw = default_framework(&PluginContext::default());
    let mut nodes = vec![];
    for i in 0..2 {
        nodes.push(node_info(
            node(&format!("w{i}"), "1", "8Gi", json!({})),
            &[],
        ));
    }
    for i in 0..3 {
        nodes.push(node_info(
            node_with(
                &format!("cp{i}"),
                "8",
                "8Gi",
                json!({}),
                json!({"taints": [
            {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]}),
            ),
            &[],
        ));
    }
    let snap = snapshot(nodes);
    let err = schedule_pod(
        &fw,
        &mut CycleState::default(),
        &pod_req("p", "2", "1Gi"),
        &snap,
        &mut Rotation::default(),
        &Nominated::new(),
        0,
    )
    .unwrap_err();
    let ScheduleError::Fit { error, .. } = err else {
        panic!("expected a fit error")
    };
    assert_eq!(
        error.message(),
        "0/5 nodes are available: 2 Insufficient cpu, 3 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }."
    );
    assert!(error
        .diagnosis
        .unschedulable_plugins
        .contains("TaintToleration"));
}

#[test]
fn rotation_advances_over_large_clusters() {
    let fw = default_framework(&PluginContext::default());
    let nodes = (0..1000)
        .map(|i| node_info(node(&format!("n{i:04}"), "4", "8Gi", json!({})), &[]))
        .collect();
    let snap = snapshot(nodes);
    let mut rot = Rotation::default();
    let r = schedule_pod(
        &fw,
        &mut CycleState::default(),
        &pod_req("p", "1", "1Gi"),
        &snap,
        &mut rot,
        &Nominated::new(),
        0,
    )
    .unwrap();
    assert!(r.feasible >= 420 && r.evaluated >= 420, "{r:?}");
    assert_eq!(rot.next_start, r.evaluated % 1000);
}

#[test]
fn select_host_breaks_ties_among_best() {
    let mut rng = rand::rng();
    for _ in 0..20 {
        let i = select_host(&[3, 7, 1, 7], &mut rng);
        assert!(i == 1 || i == 3);
    }
}
