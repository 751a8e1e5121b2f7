use super::*;
use crate::plugins::testutil::{node, pod_req};
use serde_json::json;

fn bound(name: &str, node: &str) -> Arc<PodInfo> {
    let p = pod_req(name, "1", "1Gi");
    let mut pod = (*p.pod).clone();
    pod.spec.as_mut().unwrap().node_name = Some(node.into());
    PodInfo::new(Arc::new(pod))
}

#[test]
fn assume_confirm_forget() {
    let mut c = Cache::default();
    c.upsert_node(Arc::new(node("n1", "4", "8Gi", json!({}))));
    let mut snap = Snapshot::default();
    c.update_snapshot(&mut snap);
    let p = pod_req("p", "1", "1Gi");
    c.assume(p.clone(), "n1").unwrap();
    assert!(c.assume(p.clone(), "n1").is_err());
    c.update_snapshot(&mut snap);
    assert_eq!(snap.get("n1").unwrap().requested.milli_cpu, 1000);
    // The informer confirms the binding: no double counting.
    c.upsert_pod(bound("p", "n1"));
    assert!(!c.is_assumed("p"));
    c.update_snapshot(&mut snap);
    assert_eq!(snap.get("n1").unwrap().requested.milli_cpu, 1000);
    // A failed binding forgets only assumed pods.
    c.forget("p");
    assert!(c.has_pod("p"));
    c.assume(pod_req("q", "1", "1Gi"), "n1").unwrap();
    c.forget("q");
    c.update_snapshot(&mut snap);
    assert_eq!(snap.get("n1").unwrap().pods.len(), 1);
}

#[test]
fn expired_assumed_pods_are_dropped() {
    let mut c = Cache::default();
    c.upsert_node(Arc::new(node("n1", "4", "8Gi", json!({}))));
    c.assume(pod_req("p", "1", "1Gi"), "n1").unwrap();
    c.finish_binding("p", Some(Duration::ZERO));
    assert_eq!(c.expire(Instant::now()), vec!["default/p".to_string()]);
    assert!(!c.has_pod("p"));
}

#[test]
fn snapshot_shares_unchanged_nodes_and_interleaves_zones() {
    let mut c = Cache::default();
    for (n, z) in [("a1", "a"), ("a2", "a"), ("b1", "b")] {
        c.upsert_node(Arc::new(node(
            n,
            "4",
            "8Gi",
            json!({"topology.kubernetes.io/zone": z}),
        )));
    }
    let mut snap = Snapshot::default();
    c.update_snapshot(&mut snap);
    let names: Vec<&str> = snap.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, vec!["a1", "b1", "a2"]);
    let before = snap.get("a2").unwrap().clone();
    c.assume(pod_req("p", "1", "1Gi"), "a1").unwrap();
    c.update_snapshot(&mut snap);
    assert!(Arc::ptr_eq(&before, snap.get("a2").unwrap()));
    assert_eq!(snap.get("a1").unwrap().pods.len(), 1);
    // The snapshot taken before is unaffected (copy-on-write).
    assert!(before.pods.is_empty());
}
