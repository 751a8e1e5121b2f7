//! The iptables proxier of one family: one iptables-restore transaction (`--noflush`,
//! tables `filter` and `nat`) per sync. The top-level chains are rewritten every time (as
//! upstream); a service's own chains only on a full sync or when the service changed
//! (partial sync); chains no longer used are flushed and deleted in the same transaction.
//! Building ([`IptProxier::plan`]) is pure; the caller applies the text and reports back
//! with [`IptProxier::commit`].

use super::names::{
    is_service_chain, EXTERNAL_SERVICES, FORWARD, KUBELET_FIREWALL, MARK_MASQ, NODEPORTS,
    POSTROUTING, PROXY_FIREWALL, SERVICES,
};
use super::restore::{comment, Restore};
use super::service::{write_service_port, ServiceRules, LARGE_CLUSTER_ENDPOINTS};
use crate::config::ProxierConfig;
use crate::model::{ChangeTracker, IpFamily, ServiceName};
use std::collections::{BTreeMap, BTreeSet};

/// One sync's transaction and what it leaves behind.
#[derive(Debug)]
pub struct IptPlan {
    /// The iptables-restore input.
    pub restore: Restore,
    /// Whether every service chain was rewritten.
    pub full: bool,
    /// Service chains in use after this sync.
    active: BTreeSet<String>,
    /// Stale service chains this sync deletes.
    pub deleted: Vec<String>,
    /// Services with endpoints elsewhere but none local (internal, external).
    pub no_local: (usize, usize),
    large: bool,
}

/// The state of one family's iptables proxier.
#[derive(Debug)]
pub struct IptProxier {
    /// Settings.
    pub cfg: ProxierConfig,
    /// Per Service: its top-level rules and the names of its chains (the chains' own
    /// rules are dropped once written).
    services: BTreeMap<ServiceName, ServiceRules>,
    /// Service chains believed to exist in the kernel's nat table.
    kernel_chains: BTreeSet<String>,
    need_full: bool,
    large: bool,
}

impl IptProxier {
    /// A proxier that has not synced yet (its first sync is full).
    pub fn new(cfg: ProxierConfig) -> Self {
        IptProxier {
            cfg,
            services: BTreeMap::new(),
            kernel_chains: BTreeSet::new(),
            need_full: true,
            large: false,
        }
    }

    /// Whether the next sync must be full.
    pub fn needs_full_sync(&self) -> bool {
        self.need_full
    }

    /// Forces the next sync to be full (topology change, periodic resync).
    pub fn force_full_sync(&mut self) {
        self.need_full = true;
    }

    fn write_one(
        &self,
        tracker: &ChangeTracker,
        service: &ServiceName,
        large: bool,
    ) -> ServiceRules {
        let mut out = ServiceRules::default();
        for svc in tracker.ports_of(service) {
            let endpoints = tracker
                .endpoints
                .get(&svc.name)
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            write_service_port(&self.cfg, svc, endpoints, large, &mut out);
        }
        out
    }

    /// Builds the transaction for the tracker's applied view. `updated` are the Services
    /// changed since the last sync; `existing` are the nat table's chains as listed by
    /// iptables-save (on full syncs; `None` trusts memory).
    pub fn plan(
        &mut self,
        tracker: &ChangeTracker,
        updated: &BTreeSet<ServiceName>,
        existing: Option<&BTreeSet<String>>,
    ) -> IptPlan {
        let total_endpoints: usize = tracker
            .ports
            .keys()
            .filter_map(|k| tracker.endpoints.get(k))
            .map(Vec::len)
            .sum();
        let large = total_endpoints > LARGE_CLUSTER_ENDPOINTS;
        let full = self.need_full || large != self.large;
        let mut written: BTreeSet<ServiceName> = BTreeSet::new();
        if full {
            self.services.clear();
            let names: BTreeSet<&ServiceName> = tracker.ports.keys().map(|k| &k.service).collect();
            for name in names {
                let rules = self.write_one(tracker, name, large);
                self.services.insert(name.clone(), rules);
                written.insert(name.clone());
            }
        } else {
            for name in updated {
                let rules = self.write_one(tracker, name, large);
                if rules.chains.is_empty() && rules.filter.is_empty() && rules.nat_top.is_empty() {
                    self.services.remove(name);
                } else {
                    self.services.insert(name.clone(), rules);
                    written.insert(name.clone());
                }
            }
        }

        let mut r = Restore::default();
        let v6 = self.cfg.family == IpFamily::V6;
        let localhost_nodeports = !v6 && self.cfg.localhost_nodeports;
        for chain in [
            SERVICES,
            EXTERNAL_SERVICES,
            FORWARD,
            NODEPORTS,
            PROXY_FIREWALL,
        ] {
            r.filter_chains.chain(chain);
        }
        for chain in [SERVICES, NODEPORTS, POSTROUTING, MARK_MASQ] {
            r.nat_chains.chain(chain);
        }
        let mark = self.cfg.mark();
        let mark_mask = format!("{mark}/{mark}");
        r.nat_rules.push(&[
            "-A",
            POSTROUTING,
            "-m",
            "mark",
            "!",
            "--mark",
            &mark_mask,
            "-j",
            "RETURN",
        ]);
        r.nat_rules
            .push(&["-A", POSTROUTING, "-j", "MARK", "--xor-mark", &mark]);
        r.nat_rules.push(&[
            "-A",
            POSTROUTING,
            "-m",
            "comment",
            "--comment",
            &comment("kubernetes service traffic requiring SNAT"),
            "-j",
            "MASQUERADE",
            "--random-fully",
        ]);
        r.nat_rules
            .push(&["-A", MARK_MASQ, "-j", "MARK", "--or-mark", &mark]);
        if localhost_nodeports {
            r.filter_chains.chain(KUBELET_FIREWALL);
            r.filter_rules.push(&[
                "-A",
                KUBELET_FIREWALL,
                "-m",
                "comment",
                "--comment",
                &comment("block incoming localnet connections"),
                "-d",
                "127.0.0.0/8",
                "!",
                "-s",
                "127.0.0.0/8",
                "-m",
                "conntrack",
                "!",
                "--ctstate",
                "RELATED,ESTABLISHED,DNAT",
                "-j",
                "DROP",
            ]);
        }

        let mut active = BTreeSet::new();
        let mut no_local = (0, 0);
        for (name, rules) in self.services.iter_mut() {
            r.filter_rules.extend(&rules.filter);
            r.nat_rules.extend(&rules.nat_top);
            if written.contains(name) {
                r.nat_chains.extend(&rules.nat_chains);
                r.nat_rules.extend(&rules.nat_rules);
                rules.nat_chains = Default::default();
                rules.nat_rules = Default::default();
            }
            active.extend(rules.chains.iter().cloned());
            no_local.0 += rules.no_local.0;
            no_local.1 += rules.no_local.1;
        }

        // Delete service chains nothing uses any more (a chain line flushes, then -X).
        let known = match existing {
            Some(chains) if full => chains,
            _ => &self.kernel_chains,
        };
        let deleted: Vec<String> = known
            .iter()
            .filter(|c| is_service_chain(c) && !active.contains(*c))
            .cloned()
            .collect();
        for chain in &deleted {
            r.nat_chains.chain(chain);
            r.nat_rules.push(&["-X", chain]);
        }

        // The tail call to KUBE-NODEPORTS must be the last rule of KUBE-SERVICES.
        let np_comment =
            comment("kubernetes service nodeports; NOTE: this must be the last rule in this chain");
        let head = [
            "-A",
            SERVICES,
            "-m",
            "comment",
            "--comment",
            np_comment.as_str(),
        ];
        match &self.cfg.nodeport_ips {
            None => {
                let mut rule = head.to_vec();
                rule.extend(["-m", "addrtype", "--dst-type", "LOCAL"]);
                if v6 {
                    rule.extend(["!", "-d", "::1/128"]);
                } else if !localhost_nodeports {
                    rule.extend(["!", "-d", "127.0.0.0/8"]);
                }
                rule.extend(["-j", NODEPORTS]);
                r.nat_rules.push(&rule);
            }
            Some(ips) => {
                for ip in ips {
                    if ip.is_loopback() && !localhost_nodeports {
                        continue;
                    }
                    let ip = ip.to_string();
                    let mut rule = head.to_vec();
                    rule.extend(["-d", ip.as_str(), "-j", NODEPORTS]);
                    r.nat_rules.push(&rule);
                }
            }
        }

        if !self.cfg.conntrack_tcp_liberal {
            r.filter_rules.push(&[
                "-A",
                FORWARD,
                "-m",
                "conntrack",
                "--ctstate",
                "INVALID",
                "-j",
                "DROP",
            ]);
        }
        r.filter_rules.push(&[
            "-A",
            FORWARD,
            "-m",
            "comment",
            "--comment",
            &comment("kubernetes forwarding rules"),
            "-m",
            "mark",
            "--mark",
            &mark_mask,
            "-j",
            "ACCEPT",
        ]);
        r.filter_rules.push(&[
            "-A",
            FORWARD,
            "-m",
            "comment",
            "--comment",
            &comment("kubernetes forwarding conntrack rule"),
            "-m",
            "conntrack",
            "--ctstate",
            "RELATED,ESTABLISHED",
            "-j",
            "ACCEPT",
        ]);

        IptPlan {
            restore: r,
            full,
            active,
            deleted,
            no_local,
            large,
        }
    }

    /// Records the outcome of applying `plan`. After a failure the next sync is full.
    pub fn commit(&mut self, plan: IptPlan, applied: bool) {
        if !applied {
            self.need_full = true;
            return;
        }
        self.need_full = false;
        self.large = plan.large;
        self.kernel_chains = plan.active;
    }
}
