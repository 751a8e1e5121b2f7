//! The iptables rules of one service port, as upstream's iptables proxier writes them:
//! top-level portal rules (`KUBE-SERVICES`, `KUBE-NODEPORTS`, the filter table's reject,
//! drop and firewall rules) and the service's own `KUBE-SVC`/`KUBE-SVL`/`KUBE-EXT`/
//! `KUBE-FW`/`KUBE-SEP` chains.

use super::names::{
    endpoint_chain, ServiceChains, EXTERNAL_SERVICES, MARK_MASQ, NODEPORTS, PROXY_FIREWALL,
    SERVICES,
};
use super::restore::{comment, Lines};
use crate::config::ProxierConfig;
use crate::model::{categorize, Endpoint, ServicePortInfo};
use std::collections::BTreeSet;

/// Above this many endpoints in total, per-endpoint rules carry no comment (upstream's
/// `largeClusterEndpointsThreshold`).
pub const LARGE_CLUSTER_ENDPOINTS: usize = 1000;

/// What one Service's ports contribute to a sync.
#[derive(Debug, Clone, Default)]
pub struct ServiceRules {
    /// Rules in the filter table's top-level chains.
    pub filter: Lines,
    /// Rules in the nat table's `KUBE-SERVICES` and `KUBE-NODEPORTS`.
    pub nat_top: Lines,
    /// Declarations of the service's own nat chains.
    pub nat_chains: Lines,
    /// Rules of the service's own nat chains.
    pub nat_rules: Lines,
    /// The service's own nat chains.
    pub chains: BTreeSet<String>,
    /// Ports with endpoints elsewhere but none local for (internal, external) traffic.
    pub no_local: (usize, usize),
}

/// `1/n` as upstream prints it (`%0.10f`).
pub fn probability(n: usize) -> String {
    format!("{:.10}", 1.0 / n as f64)
}

/// Writes one service port into `out`. `large` drops per-endpoint comments.
pub fn write_service_port(
    cfg: &ProxierConfig,
    svc: &ServicePortInfo,
    endpoints: &[Endpoint],
    large: bool,
    out: &mut ServiceRules,
) {
    let proto = svc.name.protocol.lower();
    let name = svc.name.to_string();
    let port = svc.port.to_string();
    let chains = ServiceChains::new(&svc.name);
    let cat = categorize(endpoints, svc, &cfg.node_name, &cfg.node_labels);
    let has_endpoints = cat.has_any;
    let uses_cluster_chain = !cat.cluster.is_empty() && svc.uses_cluster_endpoints();
    let uses_local_chain = !cat.local.is_empty() && svc.uses_local_endpoints();
    let (internal_chain, has_internal) = if svc.internal_policy_local {
        (&chains.local, has_endpoints && !cat.local.is_empty())
    } else {
        (&chains.cluster, has_endpoints)
    };
    let (external_policy_chain, has_external) = if svc.external_policy_local {
        (&chains.local, has_endpoints && !cat.local.is_empty())
    } else {
        (&chains.cluster, has_endpoints)
    };
    let uses_external_chain = has_endpoints && svc.externally_accessible();
    let uses_fw_chain = has_endpoints
        && !svc.load_balancer_vips.is_empty()
        && !svc.load_balancer_source_ranges.is_empty();
    let lb_chain = if uses_fw_chain {
        &chains.firewall
    } else {
        &chains.external
    };
    let (internal_target, internal_comment, external_target, external_comment) = if !has_endpoints {
        let c = comment(&format!("{name} has no endpoints"));
        ("REJECT", c.clone(), "REJECT", c)
    } else {
        let c = comment(&format!("{name} has no local endpoints"));
        if !has_internal {
            out.no_local.0 += 1;
        }
        if !has_external {
            out.no_local.1 += 1;
        }
        ("DROP", c.clone(), "DROP", c)
    };

    // Capture the ClusterIP.
    let cluster_ip = svc.cluster_ip.to_string();
    let cluster_comment = comment(&format!("{name} cluster IP"));
    fn portal<'a>(proto: &'a str, dst: &'a str) -> [&'a str; 7] {
        ["-m", proto, "-p", proto, "-d", dst, "--dport"]
    }
    /// `-A chain -m comment --comment c <portal> port -j target`.
    fn portal_rule<'a>(
        chain: &'a str,
        comment: &'a str,
        proto: &'a str,
        dst: &'a str,
        port: &'a str,
        target: &'a str,
    ) -> Vec<&'a str> {
        let mut r = vec!["-A", chain, "-m", "comment", "--comment", comment];
        r.extend(portal(proto, dst));
        r.extend([port, "-j", target]);
        r
    }
    if has_internal {
        out.nat_top.push(&portal_rule(
            SERVICES,
            &cluster_comment,
            proto,
            &cluster_ip,
            &port,
            internal_chain,
        ));
    } else {
        out.filter.push(&portal_rule(
            SERVICES,
            &internal_comment,
            proto,
            &cluster_ip,
            &port,
            internal_target,
        ));
    }

    // Capture externalIPs.
    let ext_comment = comment(&format!("{name} external IP"));
    for ip in &svc.external_ips {
        let ip = ip.to_string();
        if has_endpoints {
            out.nat_top.push(&portal_rule(
                SERVICES,
                &ext_comment,
                proto,
                &ip,
                &port,
                &chains.external,
            ));
        }
        if !has_external {
            out.filter.push(&portal_rule(
                EXTERNAL_SERVICES,
                &external_comment,
                proto,
                &ip,
                &port,
                external_target,
            ));
        }
    }

    // Capture load-balancer ingress.
    let lb_comment = comment(&format!("{name} loadbalancer IP"));
    let fw_drop_comment = comment(&format!(
        "{name} traffic not accepted by {}",
        chains.firewall
    ));
    for ip in &svc.load_balancer_vips {
        let ip = ip.to_string();
        if has_endpoints {
            out.nat_top.push(&portal_rule(
                SERVICES,
                &lb_comment,
                proto,
                &ip,
                &port,
                lb_chain,
            ));
        }
        if uses_fw_chain {
            out.filter.push(&portal_rule(
                PROXY_FIREWALL,
                &fw_drop_comment,
                proto,
                &ip,
                &port,
                "DROP",
            ));
        }
    }
    if !has_external {
        for ip in &svc.load_balancer_vips {
            let ip = ip.to_string();
            out.filter.push(&portal_rule(
                EXTERNAL_SERVICES,
                &external_comment,
                proto,
                &ip,
                &port,
                external_target,
            ));
        }
    }

    // Capture NodePorts.
    if svc.node_port != 0 {
        let node_port = svc.node_port.to_string();
        let name_comment = comment(&name);
        if has_endpoints {
            out.nat_top.push(&[
                "-A",
                NODEPORTS,
                "-m",
                "comment",
                "--comment",
                &name_comment,
                "-m",
                proto,
                "-p",
                proto,
                "--dport",
                &node_port,
                "-j",
                &chains.external,
            ]);
        }
        if !has_external {
            out.filter.push(&[
                "-A",
                EXTERNAL_SERVICES,
                "-m",
                "comment",
                "--comment",
                &external_comment,
                "-m",
                "addrtype",
                "--dst-type",
                "LOCAL",
                "-m",
                proto,
                "-p",
                proto,
                "--dport",
                &node_port,
                "-j",
                external_target,
            ]);
        }
    }

    // Accept healthCheckNodePorts, with or without local endpoints.
    if svc.health_check_node_port != 0 {
        let hc = svc.health_check_node_port.to_string();
        out.filter.push(&[
            "-A",
            NODEPORTS,
            "-m",
            "comment",
            "--comment",
            &comment(&format!("{name} health check node port")),
            "-m",
            "tcp",
            "-p",
            "tcp",
            "--dport",
            &hc,
            "-j",
            "ACCEPT",
        ]);
    }

    let cidr = cfg.cluster_cidr.map(|c| c.to_string());
    // Internal traffic: masquerade what does not come from a pod.
    if has_internal {
        let mut r = vec!["-A", internal_chain.as_str(), "-m", "comment", "--comment"];
        r.push(&cluster_comment);
        r.extend(portal(proto, &cluster_ip));
        r.push(&port);
        if cfg.masquerade_all {
            r.extend(["-j", MARK_MASQ]);
            out.nat_rules.push(&r);
        } else if let Some(cidr) = &cidr {
            r.extend(["!", "-s", cidr, "-j", MARK_MASQ]);
            out.nat_rules.push(&r);
        }
    }

    // External traffic: everything captured for external destinations goes through EXT.
    if uses_external_chain {
        let ext = chains.external.as_str();
        declare(out, ext);
        if !svc.external_policy_local {
            out.nat_rules.push(&[
                "-A",
                ext,
                "-m",
                "comment",
                "--comment",
                &comment(&format!(
                    "masquerade traffic for {name} external destinations"
                )),
                "-j",
                MARK_MASQ,
            ]);
        } else {
            if let Some(cidr) = &cidr {
                out.nat_rules.push(&[
                    "-A",
                    ext,
                    "-m",
                    "comment",
                    "--comment",
                    &comment(&format!("pod traffic for {name} external destinations")),
                    "-s",
                    cidr,
                    "-j",
                    &chains.cluster,
                ]);
            }
            out.nat_rules.push(&[
                "-A",
                ext,
                "-m",
                "comment",
                "--comment",
                &comment(&format!(
                    "masquerade LOCAL traffic for {name} external destinations"
                )),
                "-m",
                "addrtype",
                "--src-type",
                "LOCAL",
                "-j",
                MARK_MASQ,
            ]);
            out.nat_rules.push(&[
                "-A",
                ext,
                "-m",
                "comment",
                "--comment",
                &comment(&format!(
                    "route LOCAL traffic for {name} external destinations"
                )),
                "-m",
                "addrtype",
                "--src-type",
                "LOCAL",
                "-j",
                &chains.cluster,
            ]);
        }
        if has_external {
            out.nat_rules
                .push(&["-A", ext, "-j", external_policy_chain]);
        }
    }

    // loadBalancerSourceRanges.
    if uses_fw_chain {
        let fw = chains.firewall.as_str();
        declare(out, fw);
        let mut allow_from_node = false;
        for range in &svc.load_balancer_source_ranges {
            let r = range.to_string();
            out.nat_rules.push(&[
                "-A",
                fw,
                "-m",
                "comment",
                "--comment",
                &lb_comment,
                "-s",
                &r,
                "-j",
                &chains.external,
            ]);
            allow_from_node |= cfg.node_ip.is_some_and(|ip| range.contains(&ip));
        }
        if allow_from_node {
            for vip in &svc.load_balancer_vips {
                let v = vip.to_string();
                out.nat_rules.push(&[
                    "-A",
                    fw,
                    "-m",
                    "comment",
                    "--comment",
                    &lb_comment,
                    "-s",
                    &v,
                    "-j",
                    &chains.external,
                ]);
            }
        }
        out.nat_rules.push(&[
            "-A",
            fw,
            "-m",
            "comment",
            "--comment",
            &comment(&format!(
                "other traffic to {name} will be dropped by KUBE-PROXY-FIREWALL"
            )),
        ]);
    }

    let sep = |e: &Endpoint| endpoint_chain(&svc.name, e);
    if uses_cluster_chain {
        declare(out, &chains.cluster);
        dispatch(out, svc, &name, &chains.cluster, &cat.cluster, large, &sep);
    }
    if uses_local_chain {
        declare(out, &chains.local);
        dispatch(out, svc, &name, &chains.local, &cat.local, large, &sep);
    }

    // Per-endpoint chains.
    let name_comment = comment(&name);
    for ep in &cat.all_reachable {
        let chain = sep(ep);
        declare(out, &chain);
        let mut head = vec!["-A", chain.as_str()];
        if !large {
            head.extend(["-m", "comment", "--comment", &name_comment]);
        }
        let ip = ep.ip().to_string();
        let mut masq = head.clone();
        masq.extend(["-s", &ip, "-j", MARK_MASQ]);
        out.nat_rules.push(&masq);
        let mut dnat = head;
        if svc.affinity_timeout.is_some() {
            dnat.extend(["-m", "recent", "--name", &chain, "--set"]);
        }
        let to = ep.addr.to_string();
        dnat.extend([
            "-m",
            proto,
            "-p",
            proto,
            "-j",
            "DNAT",
            "--to-destination",
            &to,
        ]);
        out.nat_rules.push(&dnat);
    }
}

fn declare(out: &mut ServiceRules, chain: &str) {
    if out.chains.insert(chain.to_string()) {
        out.nat_chains.chain(chain);
    }
}

/// `KUBE-SVC`/`KUBE-SVL` rules: ClientIP affinity checks first, then one
/// `statistic --mode random` rule per endpoint (the last one unconditional).
fn dispatch(
    out: &mut ServiceRules,
    svc: &ServicePortInfo,
    name: &str,
    chain: &str,
    endpoints: &[&Endpoint],
    large: bool,
    sep: &dyn Fn(&Endpoint) -> String,
) {
    let comments: Vec<String> = endpoints
        .iter()
        .map(|e| comment(&format!("{name} -> {}", e.addr)))
        .collect();
    let seps: Vec<String> = endpoints.iter().map(|e| sep(e)).collect();
    if let Some(timeout) = svc.affinity_timeout {
        let seconds = timeout.to_string();
        for (c, s) in comments.iter().zip(&seps) {
            let mut r = vec!["-A", chain];
            if !large {
                r.extend(["-m", "comment", "--comment", c]);
            }
            r.extend([
                "-m",
                "recent",
                "--name",
                s,
                "--rcheck",
                "--seconds",
                &seconds,
                "--reap",
                "-j",
                s,
            ]);
            out.nat_rules.push(&r);
        }
    }
    let n = endpoints.len();
    for (i, (c, s)) in comments.iter().zip(&seps).enumerate() {
        let mut r = vec!["-A", chain];
        if !large {
            r.extend(["-m", "comment", "--comment", c]);
        }
        let p = probability(n - i);
        if i + 1 < n {
            r.extend(["-m", "statistic", "--mode", "random", "--probability", &p]);
        }
        r.extend(["-j", s]);
        out.nat_rules.push(&r);
    }
}
