//! The rules of one service port: dispatch-map elements always (cheap, diffed), and — when
//! the service changed or on a full sync — its `service-`/`local-`/`external-`/`firewall-`
//! chains, one `endpoint-` chain per reachable endpoint, and ClientIP affinity sets.

use super::base::{addr_type, Stores};
use super::names::{endpoint_names, ServiceChains};
use super::tx::{nft_family, Transaction};
use super::NftConfig;
use crate::model::{categorize, Endpoint, ServicePortInfo};
use std::collections::BTreeSet;

/// What the sync collects across services.
#[derive(Debug, Default)]
pub struct SyncTally {
    /// Service and endpoint chains that must exist after this sync.
    pub active_chains: BTreeSet<String>,
    /// Affinity sets that must exist after this sync.
    pub active_sets: BTreeSet<String>,
    /// Services with endpoints elsewhere but none local for internal traffic.
    pub no_local_internal: usize,
    /// The same for external traffic.
    pub no_local_external: usize,
}

fn ensure_chain(tx: &mut Transaction, tally: &mut SyncTally, chain: &str, write: bool) {
    if tally.active_chains.insert(chain.to_string()) && write {
        tx.add_chain(chain);
        tx.flush_chain(chain);
    }
}

/// Writes one service port; `write` is false for an unchanged service in a partial sync
/// (then only the map elements are ensured, which emits nothing if they are unchanged).
pub fn write_service(
    tx: &mut Transaction,
    stores: &mut Stores,
    cfg: &NftConfig,
    svc: &ServicePortInfo,
    endpoints: &[Endpoint],
    write: bool,
    tally: &mut SyncTally,
) {
    let ip = nft_family(cfg.family);
    let proto = svc.name.protocol.lower();
    let name = svc.name.to_string();
    let chains = ServiceChains::new(&svc.name);
    let cat = categorize(endpoints, svc, &cfg.node_name, &cfg.node_labels);
    let ep_names: Vec<(&Endpoint, String, String)> = cat
        .all_reachable
        .iter()
        .map(|e| {
            let (chain, set) = endpoint_names(&svc.name, e);
            (*e, chain, set)
        })
        .collect();
    for (_, chain, set) in &ep_names {
        ensure_chain(tx, tally, chain, write);
        if svc.affinity_timeout.is_some() {
            tally.active_sets.insert(set.clone());
        }
    }
    let uses_cluster_chain = !cat.cluster.is_empty() && svc.uses_cluster_endpoints();
    if uses_cluster_chain {
        ensure_chain(tx, tally, &chains.cluster, write);
    }
    let uses_local_chain = !cat.local.is_empty() && svc.uses_local_endpoints();
    if uses_local_chain {
        ensure_chain(tx, tally, &chains.local, write);
    }
    let (internal_chain, has_internal) = if svc.internal_policy_local {
        (&chains.local, cat.has_any && !cat.local.is_empty())
    } else {
        (&chains.cluster, cat.has_any)
    };
    let (external_policy_chain, has_external) = if svc.external_policy_local {
        (&chains.local, cat.has_any && !cat.local.is_empty())
    } else {
        (&chains.cluster, cat.has_any)
    };
    let uses_external_chain = cat.has_any && svc.externally_accessible();
    if uses_external_chain {
        ensure_chain(tx, tally, &chains.external, write);
    }
    let (internal_verdict, external_verdict) = if !cat.has_any {
        ("goto reject-chain", "goto reject-chain")
    } else {
        if !has_internal {
            tally.no_local_internal += 1;
        }
        if !has_external {
            tally.no_local_external += 1;
        }
        ("drop", "drop")
    };

    let key = |addr: &std::net::IpAddr| format!("{addr} . {proto} . {}", svc.port);
    stores
        .cluster_ips
        .ensure(tx, svc.cluster_ip.to_string(), None, None);
    if has_internal {
        stores.service_ips.ensure(
            tx,
            key(&svc.cluster_ip),
            Some(format!("goto {internal_chain}")),
            None,
        );
    } else {
        stores.no_endpoint_services.ensure(
            tx,
            key(&svc.cluster_ip),
            Some(internal_verdict.into()),
            Some(&name),
        );
    }
    let external_goto = format!("goto {}", chains.external);
    for addr in svc.external_ips.iter().chain(svc.load_balancer_vips.iter()) {
        if cat.has_any {
            stores
                .service_ips
                .ensure(tx, key(addr), Some(external_goto.clone()), None);
        }
        if !has_external {
            stores.no_endpoint_services.ensure(
                tx,
                key(addr),
                Some(external_verdict.into()),
                Some(&name),
            );
        }
    }
    let uses_firewall =
        !svc.load_balancer_vips.is_empty() && !svc.load_balancer_source_ranges.is_empty();
    if uses_firewall {
        ensure_chain(tx, tally, &chains.firewall, write);
        for vip in &svc.load_balancer_vips {
            stores.firewall_ips.ensure(
                tx,
                key(vip),
                Some(format!("goto {}", chains.firewall)),
                None,
            );
        }
    }
    if svc.node_port != 0 {
        let np = format!("{proto} . {}", svc.node_port);
        if cat.has_any {
            stores
                .service_nodeports
                .ensure(tx, np.clone(), Some(external_goto.clone()), None);
        }
        if !has_external {
            stores
                .no_endpoint_nodeports
                .ensure(tx, np, Some(external_verdict.into()), Some(&name));
        }
    }
    if !write {
        return;
    }

    if has_internal {
        if cfg.masquerade_all {
            tx.add_rule(
                internal_chain,
                &format!("{ip} daddr {} jump mark-for-masquerade", svc.cluster_ip),
                None,
            );
        } else if let Some(cidr) = &cfg.cluster_cidr {
            tx.add_rule(
                internal_chain,
                &format!(
                    "{ip} daddr {} {ip} saddr != {cidr} jump mark-for-masquerade",
                    svc.cluster_ip
                ),
                None,
            );
        }
    }
    if uses_external_chain {
        if !svc.external_policy_local {
            tx.add_rule(&chains.external, "jump mark-for-masquerade", None);
        } else {
            if let Some(cidr) = &cfg.cluster_cidr {
                tx.add_rule(
                    &chains.external,
                    &format!("{ip} saddr {cidr} goto {}", chains.cluster),
                    Some("short-circuit pod traffic"),
                );
            }
            tx.add_rule(
                &chains.external,
                "fib saddr type local jump mark-for-masquerade",
                Some("masquerade local traffic"),
            );
            tx.add_rule(
                &chains.external,
                &format!("fib saddr type local goto {}", chains.cluster),
                Some("short-circuit local traffic"),
            );
        }
        if has_external {
            tx.add_rule(
                &chains.external,
                &format!("goto {external_policy_chain}"),
                None,
            );
        }
    }
    if uses_firewall {
        let mut sources: Vec<String> = svc
            .load_balancer_source_ranges
            .iter()
            .map(|c| c.to_string())
            .collect();
        let from_node = cfg.node_ip.is_some_and(|n| {
            svc.load_balancer_source_ranges
                .iter()
                .any(|c| c.contains(&n))
        });
        if from_node {
            sources.extend(svc.load_balancer_vips.iter().map(|v| v.to_string()));
        }
        tx.add_rule(
            &chains.firewall,
            &format!("{ip} saddr != {{ {} }} drop", sources.join(", ")),
            None,
        );
    }
    if let Some(timeout) = svc.affinity_timeout {
        for (_, _, set) in &ep_names {
            tx.add_container(
                "set",
                set,
                &format!(
                    "type {} ; flags dynamic,timeout ; timeout {timeout}s ;",
                    addr_type(cfg.family)
                ),
            );
        }
    }
    let find = |e: &Endpoint| {
        ep_names
            .iter()
            .find(|(x, ..)| *x == e)
            .map(|(_, c, s)| (c.as_str(), s.as_str()))
    };
    if uses_cluster_chain {
        dispatch(tx, cfg, svc, &chains.cluster, &cat.cluster, &find);
    }
    if uses_local_chain {
        dispatch(tx, cfg, svc, &chains.local, &cat.local, &find);
    }
    for (ep, chain, set) in &ep_names {
        tx.add_rule(
            chain,
            &format!("{ip} saddr {} jump mark-for-masquerade", ep.ip()),
            None,
        );
        if svc.affinity_timeout.is_some() {
            tx.add_rule(chain, &format!("update @{set} {{ {ip} saddr }}"), None);
        }
        tx.add_rule(
            chain,
            &format!("meta l4proto {proto} dnat to {}", ep.addr),
            None,
        );
    }
}

/// The endpoint selection of a `service-`/`local-` chain: affinity matches first, then a
/// uniformly random pick.
fn dispatch<'a>(
    tx: &mut Transaction,
    cfg: &NftConfig,
    svc: &ServicePortInfo,
    chain: &str,
    endpoints: &[&'a Endpoint],
    find: &dyn Fn(&Endpoint) -> Option<(&'a str, &'a str)>,
) {
    let ip = nft_family(cfg.family);
    let names: Vec<(&str, &str)> = endpoints.iter().filter_map(|e| find(e)).collect();
    if svc.affinity_timeout.is_some() {
        for (ep_chain, set) in &names {
            tx.add_rule(chain, &format!("{ip} saddr @{set} goto {ep_chain}"), None);
        }
    }
    // A cascade of random picks, as iptables mode's probabilities: the i-th of n rules
    // matches one time in n-i, so every endpoint gets 1/n. Upstream writes one
    // `numgen random mod n vmap { … }` instead, but every such anonymous map costs the
    // kernel a walk of the whole pending transaction when it is bound (quadratic in the
    // Service count: 83 s of a 10,000-Service full sync here), and these chains only see
    // the first packet of a connection.
    let n = names.len();
    for (i, (ep_chain, _)) in names.iter().enumerate() {
        let rule = if i + 1 < n {
            format!("numgen random mod {} 0 goto {ep_chain}", n - i)
        } else {
            format!("goto {ep_chain}")
        };
        tx.add_rule(chain, &rule, None);
    }
}
