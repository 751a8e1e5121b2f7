//! Real-kernel tests: the rules this crate generates, applied with `nft -f` in a node
//! network namespace, carry real TCP/UDP connections from a client namespace to echo
//! servers in two backend namespaces. Skipped loudly without root or nft.

mod common;
mod lab;

use common::{service, slice};
use lab::{BACKEND_IPS, BACKEND_PORT, NODE_IP};
use proxy::model::{IpFamily, ServiceName};
use proxy::nftables::{Nft, NftConfig};
use proxy::sync::FamilySyncer;
use serde_json::{json, Value};
use std::collections::BTreeSet;

const CLUSTER_IP: &str = "10.96.0.10";

fn syncer(lab: &lab::Lab) -> FamilySyncer {
    let mut cfg = NftConfig::new(IpFamily::V4, "node");
    cfg.cluster_cidr = Some("10.99.0.0/16".parse().unwrap());
    FamilySyncer::new(cfg, Nft::in_netns(&lab.node.name))
}

fn ports() -> Value {
    json!([{"name": "tcp", "port": BACKEND_PORT, "protocol": "TCP"}, {"name": "udp", "port": BACKEND_PORT, "protocol": "UDP"}])
}

fn endpoints(ips: &[&str]) -> Value {
    Value::Array(ips.iter().map(|ip| json!({"addresses": [ip]})).collect())
}

/// Feeds a Service (TCP 80 + UDP 53 → backends' 8080, NodePort 30080/30053) and syncs.
fn program(s: &mut FamilySyncer, extra_spec: Value, backends: &[&str]) {
    let mut spec = json!({"clusterIP": CLUSTER_IP, "type": "NodePort", "ports": [
        {"name": "tcp", "port": 80, "protocol": "TCP", "nodePort": 30080},
        {"name": "udp", "port": 53, "protocol": "UDP", "nodePort": 30053}]});
    for (k, v) in extra_spec.as_object().unwrap() {
        spec[k] = v.clone();
    }
    s.tracker.update_service(
        ServiceName::new("ns", "echo"),
        Some(&service("ns", "echo", spec, json!({}))),
    );
    s.tracker.update_slice(
        &slice("ns", "echo", "IPv4", endpoints(backends), ports()),
        false,
    );
    let out = s.sync();
    assert!(
        out.error.is_none(),
        "nft rejected the transaction: {:?}",
        out.error
    );
}

fn distinct(answers: &[String]) -> BTreeSet<&str> {
    answers.iter().map(String::as_str).collect()
}

#[test]
fn cluster_ip_and_node_port_spread_across_both_backends() {
    let lab = lab_or_skip!("cluster_ip_and_node_port_spread_across_both_backends");
    let mut s = syncer(&lab);
    program(&mut s, json!({}), &BACKEND_IPS);
    let answers = lab.tcp_many(&format!("{CLUSTER_IP}:80"), 40);
    assert_eq!(
        distinct(&answers),
        BTreeSet::from(["backend-0", "backend-1"]),
        "{answers:?}"
    );
    let answers = lab.tcp_many(&format!("{NODE_IP}:30080"), 40);
    assert_eq!(
        distinct(&answers),
        BTreeSet::from(["backend-0", "backend-1"]),
        "{answers:?}"
    );
    let udp: BTreeSet<String> = (0..30)
        .map(|_| lab.udp(&format!("{CLUSTER_IP}:53")).unwrap())
        .collect();
    assert_eq!(udp.len(), 2, "UDP reaches both backends: {udp:?}");
    assert!(lab
        .udp(&format!("{NODE_IP}:30053"))
        .unwrap()
        .starts_with("backend-"));
    // A port the Service does not have is rejected by cluster-ips-check.
    let err = lab.tcp(&format!("{CLUSTER_IP}:81")).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
}

#[test]
fn client_ip_affinity_sticks_to_one_backend() {
    let lab = lab_or_skip!("client_ip_affinity_sticks_to_one_backend");
    let mut s = syncer(&lab);
    program(
        &mut s,
        json!({"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}}),
        &BACKEND_IPS,
    );
    let answers = lab.tcp_many(&format!("{CLUSTER_IP}:80"), 25);
    assert_eq!(distinct(&answers).len(), 1, "{answers:?}");
    assert!(answers[0].starts_with("backend-"), "{answers:?}");
    let table = Nft::in_netns(&lab.node.name).list(IpFamily::V4).unwrap();
    assert!(
        table.contains("timeout 1m"),
        "affinity set with the Service's timeout:\n{table}"
    );
    assert!(
        table.contains(lab::CLIENT_IP),
        "the client is remembered in an affinity set:\n{table}"
    );
}

#[test]
fn no_endpoints_is_refused_and_endpoint_changes_are_followed() {
    let lab = lab_or_skip!("no_endpoints_is_refused_and_endpoint_changes_are_followed");
    let mut s = syncer(&lab);
    program(&mut s, json!({}), &[]);
    for target in [format!("{CLUSTER_IP}:80"), format!("{NODE_IP}:30080")] {
        let err = lab.tcp(&target).unwrap_err();
        assert_eq!(
            err.kind(),
            std::io::ErrorKind::ConnectionRefused,
            "{target}: {err}"
        );
    }
    assert!(
        lab.udp(&format!("{CLUSTER_IP}:53")).is_err(),
        "UDP without endpoints gets no answer"
    );

    program(&mut s, json!({}), &[BACKEND_IPS[0]]);
    let answers = lab.tcp_many(&format!("{CLUSTER_IP}:80"), 10);
    assert_eq!(
        distinct(&answers),
        BTreeSet::from(["backend-0"]),
        "{answers:?}"
    );

    // Partial sync: only this service's chains are rewritten; traffic moves at once.
    s.tracker.update_slice(
        &slice("ns", "echo", "IPv4", endpoints(&[BACKEND_IPS[1]]), ports()),
        false,
    );
    let out = s.sync();
    assert!(!out.full && out.error.is_none(), "{out:?}");
    let answers = lab.tcp_many(&format!("{CLUSTER_IP}:80"), 10);
    assert_eq!(
        distinct(&answers),
        BTreeSet::from(["backend-1"]),
        "{answers:?}"
    );
    let answers = lab.tcp_many(&format!("{NODE_IP}:30080"), 10);
    assert_eq!(
        distinct(&answers),
        BTreeSet::from(["backend-1"]),
        "{answers:?}"
    );

    // The Service goes away: its ClusterIP no longer answers, its chains are flushed and
    // then deleted by a later sync.
    s.tracker
        .update_service(ServiceName::new("ns", "echo"), None);
    assert!(s.sync().error.is_none());
    assert!(lab.tcp(&format!("{CLUSTER_IP}:80")).is_err());
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert!(s.sync().error.is_none());
    let table = Nft::in_netns(&lab.node.name).list(IpFamily::V4).unwrap();
    assert!(
        !table.contains("ns/echo"),
        "no chain of the deleted Service is left:\n{table}"
    );
}

#[test]
fn restart_full_sync_adopts_and_cleans_the_existing_table() {
    let lab = lab_or_skip!("restart_full_sync_adopts_and_cleans_the_existing_table");
    let mut first = syncer(&lab);
    program(&mut first, json!({}), &BACKEND_IPS);
    // A new process (fresh memory) that no longer has the Service must remove its rules.
    let mut second = syncer(&lab);
    let out = second.sync();
    assert!(out.full && out.error.is_none(), "{out:?}");
    let table = Nft::in_netns(&lab.node.name).list(IpFamily::V4).unwrap();
    assert!(!table.contains("10.96.0.10"), "{table}");
    assert!(Nft::in_netns(&lab.node.name)
        .delete_table(IpFamily::V4)
        .unwrap());
    assert!(Nft::in_netns(&lab.node.name)
        .list(IpFamily::V4)
        .unwrap()
        .is_empty());
}

#[test]
fn unallocated_cluster_ips_in_service_cidrs_are_dropped() {
    let lab = lab_or_skip!("unallocated_cluster_ips_in_service_cidrs_are_dropped");
    // An address inside the Service CIDR that no Service holds, but that backend-0 owns:
    // without the ServiceCIDR rule the node's default route delivers it there.
    let unallocated = "10.96.0.99";
    lab.backends[0].exec(&[
        "ip",
        "addr",
        "add",
        &format!("{unallocated}/32"),
        "dev",
        "lo",
    ]);
    let target = format!("{unallocated}:{BACKEND_PORT}");
    let mut s = syncer(&lab);
    program(&mut s, json!({}), &BACKEND_IPS);
    assert_eq!(
        lab.tcp(&target).unwrap(),
        "backend-0",
        "no ServiceCIDR known yet"
    );

    // A ServiceCIDR appears: a partial sync rewrites cluster-ips-check alone.
    s.proxier.cfg.service_cidrs = vec!["10.96.0.0/16".parse().unwrap()];
    let out = s.sync();
    assert!(!out.full && out.error.is_none(), "{out:?}");
    let err = lab.tcp(&target).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "dropped: {err}");
    // Allocated ClusterIPs are unaffected: defined ports answer, others are rejected.
    let answers = lab.tcp_many(&format!("{CLUSTER_IP}:80"), 10);
    assert!(
        answers.iter().all(|a| a.starts_with("backend-")),
        "{answers:?}"
    );
    let err = lab.tcp(&format!("{CLUSTER_IP}:81")).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
    let table = Nft::in_netns(&lab.node.name).list(IpFamily::V4).unwrap();
    assert!(table.contains("10.96.0.0/16"), "{table}");

    // The ServiceCIDR goes away: traffic to the address flows again.
    s.proxier.cfg.service_cidrs.clear();
    let out = s.sync();
    assert!(!out.full && out.error.is_none(), "{out:?}");
    assert_eq!(lab.tcp(&target).unwrap(), "backend-0");
}
