//! In-memory benchmark: one scheduling cycle (default profile, adaptive
//! percentageOfNodesToScore) over a 5000-node snapshot with 2 pods per node.
//! Env: BENCH_NODES (5000), BENCH_CYCLES (2000).

use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::core::v1::{Node, Pod};
use scheduler::config::default_framework;
use scheduler::framework::CycleState;
use scheduler::plugins::PluginContext;
use scheduler::schedule::{schedule_pod, Nominated, Rotation};
use scheduler::snapshot::{NodeInfo, PodInfo, Snapshot};
use serde_json::json;

fn pod(name: &str, node: Option<&str>) -> Arc<PodInfo> {
    let p: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default", "uid": name},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "pause",
            "resources": {"requests": {"cpu": "100m", "memory": "500Mi"}}}]}
    }))
    .unwrap();
    PodInfo::new(Arc::new(p))
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let n: usize = std::env::var("BENCH_NODES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    let cycles: usize = std::env::var("BENCH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let nodes: Vec<Arc<NodeInfo>> = (0..n)
        .map(|i| {
            let name = format!("node-{i:05}");
            let node: Node = serde_json::from_value(json!({
                "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
                "status": {"allocatable": {"cpu": "4", "memory": "32Gi", "pods": "110"}}
            }))
            .unwrap();
            let mut ni = NodeInfo::new(Arc::new(node));
            for k in 0..2 {
                ni.add_pod(pod(&format!("existing-{i}-{k}"), Some(&name)));
            }
            Arc::new(ni)
        })
        .collect();
    let snap = Snapshot::new(nodes);
    let fw = default_framework(&PluginContext::default());
    let incoming = pod("incoming", None);
    let mut rotation = Rotation::default();
    let nominated = Nominated::new();
    // Warm up (rayon pool, allocations).
    for _ in 0..20 {
        schedule_pod(
            &fw,
            &mut CycleState::default(),
            &incoming,
            &snap,
            &mut rotation,
            &nominated,
            0,
        )
        .unwrap();
    }
    let mut times = Vec::with_capacity(cycles);
    let start = Instant::now();
    for _ in 0..cycles {
        let t = Instant::now();
        let r = schedule_pod(
            &fw,
            &mut CycleState::default(),
            &incoming,
            &snap,
            &mut rotation,
            &nominated,
            0,
        )
        .unwrap();
        std::hint::black_box(r);
        times.push(t.elapsed());
    }
    let total = start.elapsed();
    times.sort();
    let pct = |q: f64| {
        times[((times.len() as f64 * q) as usize).min(times.len() - 1)].as_secs_f64() * 1e6
    };
    println!(
        "scheduling cycle over {n} nodes ({} threads): {cycles} cycles, mean {:.1} µs, p50 {:.1} µs, p99 {:.1} µs → {:.0} cycles/s",
        rayon::current_num_threads(),
        total.as_secs_f64() * 1e6 / cycles as f64,
        pct(0.5),
        pct(0.99),
        cycles as f64 / total.as_secs_f64()
    );
}
