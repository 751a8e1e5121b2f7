//! Golden tests: the exact nftables transaction generated for each Service shape.
//! Regenerate after an intended change with `FERROKUBE_BLESS=1 cargo test -p proxy --test
//! golden` and review the diff of `tests/golden/`.

mod common;

use common::{service, slice, tracker};
use proxy::model::{IpFamily, ServiceName};
use proxy::nftables::{NftConfig, NftProxier};
use serde_json::json;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Instant;

fn config(family: IpFamily) -> NftConfig {
    let mut cfg = NftConfig::new(family, "node-a");
    cfg.cluster_cidr = Some(match family {
        IpFamily::V4 => "10.0.0.0/8".parse().unwrap(),
        IpFamily::V6 => "fd00:10::/64".parse().unwrap(),
    });
    cfg
}

fn check(name: &str, text: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{name}.nft"));
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
            "{name}: generated rules differ from {} ({} vs {} lines)\n{}",
            path.display(),
            want.lines().count(),
            text.lines().count(),
            diff.join("\n")
        );
    }
}

/// Generates the full-sync transaction for one shape, minus the fixed base layout (which
/// has its own golden file).
fn service_rules(
    cfg: NftConfig,
    svc: serde_json::Value,
    status: serde_json::Value,
    eps: serde_json::Value,
    ports: serde_json::Value,
) -> String {
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
    let mut p = NftProxier::new(cfg);
    let plan = p.plan(&t, &BTreeSet::new(), None, Instant::now());
    let text = plan.tx.text().to_string();
    // Skip the base layout, which ends with the flush of the last element store.
    let marker = "kube-proxy firewall-ips\n";
    let end = text
        .find(&format!(
            "flush map {} {marker}",
            if family == IpFamily::V4 { "ip" } else { "ip6" }
        ))
        .unwrap();
    text[end..].split_once('\n').unwrap().1.to_string()
}

fn tcp80() -> serde_json::Value {
    json!([{"name": "p80", "port": 8080, "protocol": "TCP"}])
}

fn two_ready() -> serde_json::Value {
    json!([{"addresses": ["10.180.0.1"], "nodeName": "node-a"}, {"addresses": ["10.180.0.2"], "nodeName": "node-b"}])
}

#[test]
fn base_layout() {
    let t = tracker(IpFamily::V4, "node-a", &[], &[]);
    let mut cfg = config(IpFamily::V4);
    cfg.service_cidrs = vec!["172.30.0.0/16".parse().unwrap()];
    let mut p = NftProxier::new(cfg);
    check(
        "base",
        p.plan(&t, &BTreeSet::new(), None, Instant::now()).tx.text(),
    );
}

#[test]
fn base_layout_with_nodeport_addresses_ipv6() {
    let t = tracker(IpFamily::V6, "node-a", &[], &[]);
    let mut cfg = config(IpFamily::V6);
    cfg.nodeport_ips = Some(vec!["fd00::2".parse().unwrap(), "::1".parse().unwrap()]);
    let mut p = NftProxier::new(cfg);
    check(
        "base-ipv6-nodeport-addresses",
        p.plan(&t, &BTreeSet::new(), None, Instant::now()).tx.text(),
    );
}

#[test]
fn cluster_ip() {
    let spec = json!({"clusterIP": "172.30.0.41", "ports": [{"name": "p80", "port": 80}]});
    check(
        "cluster-ip",
        &service_rules(config(IpFamily::V4), spec, json!({}), two_ready(), tcp80()),
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
        &service_rules(cfg, spec, json!({}), two_ready(), ports),
    );
}

#[test]
fn cluster_ip_sctp_ipv6() {
    let spec = json!({"clusterIP": "fd00:30::41", "clusterIPs": ["fd00:30::41"], "ports": [{"name": "s", "port": 9, "protocol": "SCTP"}]});
    let eps = json!([{"addresses": ["fd00:10::1"]}]);
    let ports = json!([{"name": "s", "port": 9999, "protocol": "SCTP"}]);
    check(
        "cluster-ip-sctp-ipv6",
        &service_rules(config(IpFamily::V6), spec, json!({}), eps, ports),
    );
}

#[test]
fn no_endpoints_rejects() {
    let spec = json!({"clusterIP": "172.30.0.46", "type": "NodePort", "ports": [{"name": "p80", "port": 80, "nodePort": 30046}]});
    check(
        "no-endpoints",
        &service_rules(config(IpFamily::V4), spec, json!({}), json!([]), tcp80()),
    );
}

#[test]
fn node_port() {
    let spec = json!({"clusterIP": "172.30.0.43", "type": "NodePort", "ports": [{"name": "p80", "port": 80, "nodePort": 30003}]});
    check(
        "node-port",
        &service_rules(config(IpFamily::V4), spec, json!({}), two_ready(), tcp80()),
    );
}

#[test]
fn external_ips() {
    let spec = json!({"clusterIP": "172.30.0.44", "externalIPs": ["192.168.99.33"], "ports": [{"name": "p80", "port": 80}]});
    check(
        "external-ips",
        &service_rules(config(IpFamily::V4), spec, json!({}), two_ready(), tcp80()),
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
        &service_rules(config(IpFamily::V4), spec, status, two_ready(), tcp80()),
    );
}

#[test]
fn load_balancer_local_policy_without_local_endpoints_drops() {
    let spec = json!({"clusterIP": "172.30.0.42", "type": "LoadBalancer", "externalTrafficPolicy": "Local",
        "ports": [{"name": "p80", "port": 80, "nodePort": 30001}]});
    let status = json!({"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}});
    let eps = json!([{"addresses": ["10.180.0.2"], "nodeName": "node-b"}]);
    check(
        "load-balancer-local-no-local-endpoints",
        &service_rules(config(IpFamily::V4), spec, status, eps, tcp80()),
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
        &service_rules(cfg, spec, status, two_ready(), tcp80()),
    );
}

#[test]
fn internal_traffic_policy_local() {
    let spec = json!({"clusterIP": "172.30.0.47", "internalTrafficPolicy": "Local", "ports": [{"name": "p80", "port": 80}]});
    check(
        "internal-local",
        &service_rules(config(IpFamily::V4), spec, json!({}), two_ready(), tcp80()),
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
        &service_rules(config(IpFamily::V4), spec, json!({}), eps, tcp80()),
    );
}

/// A partial sync after one endpoint change rewrites only that service's chains and
/// elements; the other service is untouched and the removed endpoint chain is flushed,
/// then deleted by a later sync.
#[test]
fn partial_sync_touches_only_the_changed_service() {
    let a = service(
        "ns",
        "a",
        json!({"clusterIP": "172.30.1.1", "ports": [{"name": "p80", "port": 80}]}),
        json!({}),
    );
    let b = service(
        "ns",
        "b",
        json!({"clusterIP": "172.30.1.2", "ports": [{"name": "p80", "port": 80}]}),
        json!({}),
    );
    let sa = slice("ns", "a", "IPv4", two_ready(), tcp80());
    let sb = slice("ns", "b", "IPv4", two_ready(), tcp80());
    let mut t = tracker(IpFamily::V4, "node-a", &[a, b], &[sa, sb]);
    let mut p = NftProxier::new(config(IpFamily::V4));
    let t0 = Instant::now();
    let plan = p.plan(&t, &BTreeSet::new(), None, t0);
    assert!(plan.full);
    p.commit(plan, true, t0);
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
    let plan = p.plan(&t, &second.updated_services, None, t0);
    assert!(!plan.full);
    check("partial-sync", plan.tx.text());
    p.commit(plan, true, t0);
    assert_eq!(p.stale_chains(), 1);
    let later = t0 + std::time::Duration::from_secs(2);
    let plan = p.plan(&t, &BTreeSet::new(), None, later);
    assert_eq!(plan.tx.text().lines().count(), 1, "{}", plan.tx.text());
    assert!(plan
        .tx
        .text()
        .starts_with("delete chain ip kube-proxy endpoint-"));
    p.commit(plan, true, later);
    assert_eq!(p.stale_chains(), 0);
    let idle = p.plan(&t, &BTreeSet::new(), None, later);
    assert!(
        idle.tx.is_empty(),
        "nothing changed, nothing written: {}",
        idle.tx.text()
    );
}

/// After a failed apply the next sync is full again.
#[test]
fn failure_forces_full_sync() {
    let t = tracker(IpFamily::V4, "node-a", &[], &[]);
    let mut p = NftProxier::new(config(IpFamily::V4));
    let now = Instant::now();
    let plan = p.plan(&t, &BTreeSet::new(), None, now);
    p.commit(plan, false, now);
    assert!(p.needs_full_sync());
    let plan = p.plan(&t, &BTreeSet::new(), None, now);
    assert!(plan.full);
}
