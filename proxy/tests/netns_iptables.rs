//! Real-kernel tests of `--proxy-mode=iptables`: the iptables-restore input this crate
//! generates, applied with the host's iptables-restore (iptables-nft on Debian 12)
//! inside the lab's node network namespace only, carries real TCP/UDP connections from
//! a client namespace to echo servers in two backend namespaces. Skipped loudly without
//! root, nft/ip or iptables.

mod common;
mod lab;

use common::{service, slice};
use lab::{BACKEND_IPS, BACKEND_PORT, NODE_IP};
use proxy::config::ProxierConfig;
use proxy::iptables::Iptables;
use proxy::model::{IpFamily, ServiceName};
use proxy::sync::IptSyncer;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::process::Command;

const CLUSTER_IP: &str = "10.96.0.10";

fn iptables_missing() -> Option<String> {
    let ok = Command::new("iptables-restore")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    (!ok).then(|| "`iptables-restore` is not installed".to_string())
}

macro_rules! ipt_lab_or_skip {
    ($name:expr) => {{
        if let Some(why) = iptables_missing() {
            lab::skip($name, &why);
            return;
        }
        lab_or_skip!($name)
    }};
}

fn syncer(lab: &lab::Lab) -> IptSyncer {
    let mut cfg = ProxierConfig::new(IpFamily::V4, "node");
    cfg.cluster_cidr = Some("10.99.0.0/16".parse().unwrap());
    IptSyncer::new(cfg, Iptables::new(IpFamily::V4, Some(&lab.node.name)))
}

fn ipt(lab: &lab::Lab) -> Iptables {
    Iptables::new(IpFamily::V4, Some(&lab.node.name))
}

fn ports() -> Value {
    json!([{"name": "tcp", "port": BACKEND_PORT, "protocol": "TCP"}, {"name": "udp", "port": BACKEND_PORT, "protocol": "UDP"}])
}

fn endpoints(ips: &[&str]) -> Value {
    Value::Array(ips.iter().map(|ip| json!({"addresses": [ip]})).collect())
}

/// Feeds a Service (TCP 80 + UDP 53 → backends' 8080, NodePort 30080/30053) and syncs.
fn program(s: &mut IptSyncer, extra_spec: Value, backends: &[&str]) {
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
        "iptables-restore rejected the transaction: {:?}",
        out.error
    );
}

fn distinct(answers: &[String]) -> BTreeSet<&str> {
    answers.iter().map(String::as_str).collect()
}

#[test]
fn iptables_cluster_ip_and_node_port_spread_across_both_backends() {
    let lab = ipt_lab_or_skip!("iptables_cluster_ip_and_node_port_spread_across_both_backends");
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
    // The jumps from the built-in chains are in place, once each.
    let nat = ipt(&lab).save("nat").unwrap();
    let jumps = nat
        .lines()
        .filter(|l| l.starts_with("-A PREROUTING") && l.contains("-j KUBE-SERVICES"))
        .count();
    assert_eq!(jumps, 1, "{nat}");
    // A second full sync neither duplicates the jumps nor fails.
    s.proxier.force_full_sync();
    assert!(s.sync().error.is_none());
    let nat = ipt(&lab).save("nat").unwrap();
    let jumps = nat
        .lines()
        .filter(|l| l.starts_with("-A PREROUTING") && l.contains("-j KUBE-SERVICES"))
        .count();
    assert_eq!(jumps, 1, "{nat}");
}

#[test]
fn iptables_client_ip_affinity_sticks_to_one_backend() {
    let lab = ipt_lab_or_skip!("iptables_client_ip_affinity_sticks_to_one_backend");
    let mut s = syncer(&lab);
    program(
        &mut s,
        json!({"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}}),
        &BACKEND_IPS,
    );
    let answers = lab.tcp_many(&format!("{CLUSTER_IP}:80"), 25);
    assert_eq!(distinct(&answers).len(), 1, "{answers:?}");
    assert!(answers[0].starts_with("backend-"), "{answers:?}");
    let nat = ipt(&lab).save("nat").unwrap();
    assert!(
        nat.contains("--rcheck --seconds 60 --reap"),
        "recent-module affinity with the Service's timeout:\n{nat}"
    );
}

#[test]
fn iptables_no_endpoints_is_refused_and_endpoint_changes_are_followed() {
    let lab =
        ipt_lab_or_skip!("iptables_no_endpoints_is_refused_and_endpoint_changes_are_followed");
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

    // Partial sync: only this service's chains are rewritten; traffic moves at once and
    // the old endpoint's chain is gone.
    let before = ipt(&lab).chains("nat").unwrap();
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
    let after = ipt(&lab).chains("nat").unwrap();
    let seps = |c: &BTreeSet<String>| {
        c.iter()
            .filter(|c| c.starts_with("KUBE-SEP-"))
            .cloned()
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(seps(&after).len(), 2, "one SEP per port: {after:?}");
    assert!(
        seps(&before).is_disjoint(&seps(&after)),
        "{before:?} vs {after:?}"
    );

    // The Service goes away: its ClusterIP no longer answers and no chain of it is left.
    s.tracker
        .update_service(ServiceName::new("ns", "echo"), None);
    assert!(s.sync().error.is_none());
    assert!(lab.tcp(&format!("{CLUSTER_IP}:80")).is_err());
    let nat = ipt(&lab).save("nat").unwrap();
    assert!(
        !nat.contains("KUBE-SVC-") && !nat.contains("KUBE-SEP-"),
        "no chain of the deleted Service is left:\n{nat}"
    );
}

#[test]
fn iptables_restart_adopts_leftovers_and_cleanup_removes_everything() {
    let lab = ipt_lab_or_skip!("iptables_restart_adopts_leftovers_and_cleanup_removes_everything");
    let mut first = syncer(&lab);
    program(&mut first, json!({}), &BACKEND_IPS);
    // A new process (fresh memory) that no longer has the Service must remove its chains.
    let mut second = syncer(&lab);
    let out = second.sync();
    assert!(out.full && out.error.is_none(), "{out:?}");
    let nat = ipt(&lab).save("nat").unwrap();
    assert!(
        !nat.contains(CLUSTER_IP) && !nat.contains("KUBE-SEP-"),
        "{nat}"
    );
    // A non-kube-proxy rule in a built-in chain survives both syncs and the cleanup.
    let custom = [
        "-w",
        "5",
        "-t",
        "nat",
        "-A",
        "POSTROUTING",
        "-s",
        "10.77.0.0/16",
        "-j",
        "RETURN",
    ];
    let ok = Command::new("ip")
        .args(["netns", "exec", &lab.node.name, "iptables"])
        .args(custom)
        .status()
        .unwrap();
    assert!(ok.success());
    program(&mut second, json!({}), &BACKEND_IPS);
    let deleted = ipt(&lab).cleanup().unwrap();
    assert!(deleted >= 10, "top-level and service chains: {deleted}");
    let nat = ipt(&lab).save("nat").unwrap();
    let filter = ipt(&lab).save("filter").unwrap();
    for text in [&nat, &filter] {
        for line in text.lines() {
            assert!(
                !line.contains("KUBE-") || line.contains("KUBE-FIREWALL"),
                "left after cleanup: {line}\n{text}"
            );
        }
    }
    assert!(nat.contains("10.77.0.0/16"), "foreign rule kept:\n{nat}");
}
