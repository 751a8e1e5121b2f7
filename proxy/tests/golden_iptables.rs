//! Golden tests: the exact iptables-restore input generated for each Service shape
//! (whole transactions: the fixed top-level chains are short). Regenerate after an
//! intended change with `FERROKUBE_BLESS=1 cargo test -p proxy --test golden_iptables`
//! and review the diff of `tests/golden/iptables/`.

mod common;

use common::{service, slice, tracker};
use proxy::config::ProxierConfig;
use proxy::iptables::IptProxier;
use proxy::model::{IpFamily, ServiceName};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::PathBuf;

fn config(family: IpFamily) -> ProxierConfig {
    let mut cfg = ProxierConfig::new(family, "node-a");
    cfg.cluster_cidr = Some(match family {
        IpFamily::V4 => "10.0.0.0/8".parse().unwrap(),
        IpFamily::V6 => "fd00:10::/64".parse().unwrap(),
    });
    cfg
}

fn check(name: &str, text: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/iptables")
        .join(format!("{name}.rules"));
    if std::env::var_os("FERROKUBE_BLESS").is_some() {
        std::fs::write(&path, text).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with FERROKUBE_BLESS=1 to create)",
            path.display()
        )
    });
    if want != text {
        let diff: Vec<String> = want
            .lines()
            .zip(text.lines())
            .enumerate()
            .filter(|(_, (a, b))| a != b)
            .take(5)
            .map(|(i, (a, b))| format!("line {}:\n  want: {a}\n  got:  {b}", i + 1))
            .collect();
        panic!(
            "{name}: generated rules differ from {} ({} vs {} lines)\n{}\n--- got:\n{text}",
            path.display(),
            want.lines().count(),
            text.lines().count(),
            diff.join("\n")
        );
    }
}

/// The full-sync transaction for one Service.
fn rules(cfg: ProxierConfig, svc: Value, status: Value, eps: Value, ports: Value) -> String {
    let family = cfg.family;
    let fam = if family == IpFamily::V4 {
        "IPv4"
    } else {
        "IPv6"
    };
    let t = tracker(
        family,
        "node-a",
        &[service("ns", "svc", svc, status)],
        &[slice("ns", "svc", fam, eps, ports)],
    );
    let mut p = IptProxier::new(cfg);
    p.plan(&t, &BTreeSet::new(), None).restore.text()
}

fn tcp80() -> Value {
    json!([{"name": "p80", "port": 8080, "protocol": "TCP"}])
}

fn two_ready() -> Value {
    json!([{"addresses": ["10.180.0.1"], "nodeName": "node-a"}, {"addresses": ["10.180.0.2"], "nodeName": "node-b"}])
}

#[test]
fn base_layout() {
    let t = tracker(IpFamily::V4, "node-a", &[], &[]);
    let mut p = IptProxier::new(config(IpFamily::V4));
    check("base", &p.plan(&t, &BTreeSet::new(), None).restore.text());
}

#[test]
fn base_layout_ipv6_nodeport_addresses_no_localhost() {
    let t = tracker(IpFamily::V6, "node-a", &[], &[]);
    let mut cfg = config(IpFamily::V6);
    cfg.nodeport_ips = Some(vec!["fd00::2".parse().unwrap()]);
    cfg.conntrack_tcp_liberal = true;
    let mut p = IptProxier::new(cfg);
    check(
        "base-ipv6-nodeport-addresses",
        &p.plan(&t, &BTreeSet::new(), None).restore.text(),
    );
}

#[test]
fn cluster_ip() {
    let spec = json!({"clusterIP": "172.30.0.41", "ports": [{"name": "p80", "port": 80}]});
    check(
        "cluster-ip",
        &rules(config(IpFamily::V4), spec, json!({}), two_ready(), tcp80()),
    );
}

#[test]
fn cluster_ip_masquerade_all_udp() {
    let mut cfg = config(IpFamily::V4);
    cfg.masquerade_all = true;
    let spec = json!({"clusterIP": "172.30.0.53", "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}]});
    let ports = json!([{"name": "dns", "port": 5353, "protocol": "UDP"}]);
    check(
        "cluster-ip-masquerade-all-udp",
        &rules(cfg, spec, json!({}), two_ready(), ports),
    );
}

#[test]
fn cluster_ip_sctp_ipv6() {
    let spec = json!({"clusterIP": "fd00:30::41", "clusterIPs": ["fd00:30::41"], "ports": [{"name": "s", "port": 9, "protocol": "SCTP"}]});
    let eps = json!([{"addresses": ["fd00:10::1"]}]);
    let ports = json!([{"name": "s", "port": 9999, "protocol": "SCTP"}]);
    check(
        "cluster-ip-sctp-ipv6",
        &rules(config(IpFamily::V6), spec, json!({}), eps, ports),
    );
}

#[test]
fn no_endpoints_rejects() {
    let spec = json!({"clusterIP": "172.30.0.46", "type": "NodePort", "ports": [{"name": "p80", "port": 80, "nodePort": 30046}]});
    check(
        "no-endpoints",
        &rules(config(IpFamily::V4), spec, json!({}), json!([]), tcp80()),
    );
}

#[test]
fn node_port_three_endpoints() {
    let spec = json!({"clusterIP": "172.30.0.43", "type": "NodePort", "ports": [{"name": "p80", "port": 80, "nodePort": 30003}]});
    let eps = json!([{"addresses": ["10.180.0.1"]}, {"addresses": ["10.180.0.2"]}, {"addresses": ["10.180.0.3"]}]);
    check(
        "node-port",
        &rules(config(IpFamily::V4), spec, json!({}), eps, tcp80()),
    );
}

#[test]
fn external_ips() {
    let spec = json!({"clusterIP": "172.30.0.44", "externalIPs": ["192.168.99.33"], "ports": [{"name": "p80", "port": 80}]});
    check(
        "external-ips",
        &rules(config(IpFamily::V4), spec, json!({}), two_ready(), tcp80()),
    );
}

#[test]
fn load_balancer_local_policy() {
    let spec = json!({"clusterIP": "172.30.0.42", "type": "LoadBalancer", "externalTrafficPolicy": "Local",
        "healthCheckNodePort": 30000, "externalIPs": ["192.168.99.22"],
        "ports": [{"name": "p80", "port": 80, "nodePort": 30001}]});
    let status = json!({"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}});
    check(
        "load-balancer-local",
        &rules(config(IpFamily::V4), spec, status, two_ready(), tcp80()),
    );
}

#[test]
fn load_balancer_local_policy_without_local_endpoints_drops() {
    let spec = json!({"clusterIP": "172.30.0.42", "type": "LoadBalancer", "externalTrafficPolicy": "Local",
        "healthCheckNodePort": 30000, "externalIPs": ["192.168.99.22"],
        "ports": [{"name": "p80", "port": 80, "nodePort": 30001}]});
    let status = json!({"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}});
    let eps = json!([{"addresses": ["10.180.0.2"], "nodeName": "node-b"}]);
    check(
        "load-balancer-local-no-local-endpoints",
        &rules(config(IpFamily::V4), spec, status, eps, tcp80()),
    );
}

#[test]
fn load_balancer_source_ranges_and_affinity() {
    let mut cfg = config(IpFamily::V4);
    cfg.node_ip = Some("203.0.113.5".parse().unwrap());
    let spec = json!({"clusterIP": "172.30.0.45", "type": "LoadBalancer", "loadBalancerSourceRanges": [" 203.0.113.0/25"],
        "sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 10800}},
        "ports": [{"name": "p80", "port": 80, "nodePort": 30002}]});
    let status = json!({"loadBalancer": {"ingress": [{"ip": "5.6.7.8"}]}});
    check(
        "load-balancer-source-ranges-affinity",
        &rules(cfg, spec, status, two_ready(), tcp80()),
    );
}

#[test]
fn internal_traffic_policy_local() {
    let spec = json!({"clusterIP": "172.30.0.47", "internalTrafficPolicy": "Local", "ports": [{"name": "p80", "port": 80}]});
    check(
        "internal-local",
        &rules(config(IpFamily::V4), spec, json!({}), two_ready(), tcp80()),
    );
}

#[test]
fn terminating_fallback() {
    let spec = json!({"clusterIP": "172.30.0.48", "ports": [{"name": "p80", "port": 80}]});
    let eps = json!([
        {"addresses": ["10.180.0.1"], "conditions": {"ready": false, "serving": true, "terminating": true}},
        {"addresses": ["10.180.0.2"], "conditions": {"ready": false, "serving": false, "terminating": true}}
    ]);
    check(
        "terminating-fallback",
        &rules(config(IpFamily::V4), spec, json!({}), eps, tcp80()),
    );
}

/// A partial sync rewrites every top-level chain but only the changed Service's own
/// chains; the endpoint chain no longer used is flushed and deleted in the same
/// transaction.
#[test]
fn partial_sync_rewrites_only_the_changed_service() {
    let svc = |n: &str, ip: &str| {
        service(
            "ns",
            n,
            json!({"clusterIP": ip, "ports": [{"name": "p80", "port": 80}]}),
            json!({}),
        )
    };
    let sa = slice("ns", "a", "IPv4", two_ready(), tcp80());
    let sb = slice("ns", "b", "IPv4", two_ready(), tcp80());
    let mut t = tracker(
        IpFamily::V4,
        "node-a",
        &[svc("a", "172.30.1.1"), svc("b", "172.30.1.2")],
        &[sa, sb],
    );
    let mut p = IptProxier::new(config(IpFamily::V4));
    let plan = p.plan(&t, &BTreeSet::new(), None);
    assert!(plan.full);
    p.commit(plan, true);
    t.update_slice(
        &slice(
            "ns",
            "b",
            "IPv4",
            json!([{"addresses": ["10.180.0.1"]}]),
            tcp80(),
        ),
        false,
    );
    let second = t.apply();
    assert_eq!(
        second.updated_services,
        BTreeSet::from([ServiceName::new("ns", "b")])
    );
    let plan = p.plan(&t, &second.updated_services, None);
    assert!(!plan.full);
    assert_eq!(plan.deleted.len(), 1, "{:?}", plan.deleted);
    check("partial-sync", &plan.restore.text());
    p.commit(plan, true);
    // Nothing changed: no service chain is declared (so none is flushed).
    let idle = p.plan(&t, &BTreeSet::new(), None).restore.text();
    assert!(
        !idle.contains(":KUBE-SVC-") && !idle.contains(":KUBE-SEP-"),
        "{idle}"
    );
    // A full sync after a restart deletes chains the kernel has and nobody uses.
    let mut fresh = IptProxier::new(config(IpFamily::V4));
    let kernel = BTreeSet::from(["KUBE-SEP-LEFTOVER0000000".to_string(), "OTHER".to_string()]);
    let plan = fresh.plan(&t, &BTreeSet::new(), Some(&kernel));
    assert_eq!(plan.deleted, vec!["KUBE-SEP-LEFTOVER0000000".to_string()]);
}

/// Over 1000 endpoints in total, per-endpoint rules lose their comments (upstream's
/// large-cluster mode), which forces a full rewrite when it flips.
#[test]
fn large_cluster_mode_drops_endpoint_comments() {
    let eps: Vec<Value> = (0..1001)
        .map(|i| json!({"addresses": [format!("10.181.{}.{}", i / 250, i % 250 + 1)]}))
        .collect();
    let spec = json!({"clusterIP": "172.30.0.49", "ports": [{"name": "p80", "port": 80}]});
    let text = rules(
        config(IpFamily::V4),
        spec,
        json!({}),
        Value::Array(eps),
        tcp80(),
    );
    let sep = text
        .lines()
        .find(|l| l.starts_with("-A KUBE-SEP-"))
        .unwrap();
    assert!(!sep.contains("--comment"), "{sep}");
    assert!(text.contains("--probability 0.0009990010 "), "1/1001");
}

/// After a failed apply the next sync is full again.
#[test]
fn failure_forces_full_sync() {
    let t = tracker(IpFamily::V4, "node-a", &[], &[]);
    let mut p = IptProxier::new(config(IpFamily::V4));
    let plan = p.plan(&t, &BTreeSet::new(), None);
    p.commit(plan, false);
    assert!(p.needs_full_sync());
}
