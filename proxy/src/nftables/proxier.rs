//! The nftables proxier of one family: turns the tracker's view into one transaction per
//! sync — a full rewrite on the first sync, after a failure or periodically, else a partial
//! one touching only changed services — and remembers what the kernel then holds.
//! Building ([`NftProxier::plan`]) is pure; the caller applies the text and reports back
//! with [`NftProxier::commit`].

use super::base::{write_base, write_cluster_ips_check, Stores};
use super::names::{is_affinity_set, is_service_chain};
use super::service::{write_service, SyncTally};
use super::tx::Transaction;
use super::NftConfig;
use crate::model::{ChangeTracker, Cidr, ServiceName};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

/// How long a flushed service chain waits before it is deleted (as upstream: deleting a
/// chain in the transaction that drops its last reference can race in older kernels).
pub const STALE_CHAIN_DELAY: Duration = Duration::from_secs(1);

/// Our table's chains and sets as found in the kernel (for full syncs after a restart).
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    /// Chain names.
    pub chains: BTreeSet<String>,
    /// Set names.
    pub sets: BTreeSet<String>,
}

/// One sync's transaction and what it will leave behind.
#[derive(Debug)]
pub struct Plan {
    /// The transaction text to apply atomically.
    pub tx: Transaction,
    /// Whether this is a full sync.
    pub full: bool,
    active_chains: BTreeSet<String>,
    active_sets: BTreeSet<String>,
    dropped_sets: Vec<String>,
    no_local: (usize, usize),
    newly_stale: Vec<String>,
    deleted_stale: Vec<String>,
    /// The Service CIDRs `cluster-ips-check` holds once this plan is applied.
    service_cidrs: Vec<Cidr>,
}

impl Plan {
    /// Services with endpoints elsewhere but none local (internal, external).
    pub fn no_local_endpoints(&self) -> (usize, usize) {
        self.no_local
    }
}

/// What one Service put into the table (so a partial sync can remove what it no longer
/// needs without looking at any other Service).
#[derive(Debug, Clone, Default)]
struct Owned {
    chains: BTreeSet<String>,
    sets: BTreeSet<String>,
    /// (store index in [`Stores::all_mut`] order, element key).
    elements: BTreeSet<(usize, String)>,
    no_local: (usize, usize),
}

/// The state of one family's nftables proxier.
#[derive(Debug)]
pub struct NftProxier {
    /// Settings.
    pub cfg: NftConfig,
    stores: Stores,
    owned: HashMap<ServiceName, Owned>,
    /// Service chains believed to exist in the kernel.
    chains: BTreeSet<String>,
    affinity_sets: BTreeSet<String>,
    stale: BTreeMap<String, Instant>,
    flushed_base_once: bool,
    need_full: bool,
    /// The Service CIDRs the kernel's `cluster-ips-check` drops (after a full sync).
    applied_cidrs: Option<Vec<Cidr>>,
}

impl NftProxier {
    /// A proxier that has not synced yet (its first sync is full).
    pub fn new(cfg: NftConfig) -> Self {
        NftProxier {
            cfg,
            stores: Stores::default(),
            owned: HashMap::new(),
            chains: BTreeSet::new(),
            affinity_sets: BTreeSet::new(),
            stale: BTreeMap::new(),
            flushed_base_once: false,
            need_full: true,
            applied_cidrs: None,
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

    /// Writes every port of `service` and returns what it owns now.
    fn write_one(
        &mut self,
        tx: &mut Transaction,
        tracker: &ChangeTracker,
        service: &ServiceName,
    ) -> Owned {
        let mut tally = SyncTally::default();
        for svc in tracker.ports_of(service) {
            let endpoints = tracker
                .endpoints
                .get(&svc.name)
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            write_service(
                tx,
                &mut self.stores,
                &self.cfg,
                svc,
                endpoints,
                true,
                &mut tally,
            );
        }
        let mut elements = BTreeSet::new();
        for (i, store) in self.stores.all_mut().into_iter().enumerate() {
            elements.extend(store.take_touched().into_iter().map(|k| (i, k)));
        }
        Owned {
            chains: tally.active_chains,
            sets: tally.active_sets,
            elements,
            no_local: (tally.no_local_internal, tally.no_local_external),
        }
    }

    /// Builds the transaction for the tracker's applied view. `updated` are the Services
    /// changed since the last sync (a partial sync looks at nothing else); `inventory` is
    /// what the kernel holds (used on full syncs; `None` trusts memory).
    pub fn plan(
        &mut self,
        tracker: &ChangeTracker,
        updated: &BTreeSet<ServiceName>,
        inventory: Option<&Inventory>,
        now: Instant,
    ) -> Plan {
        let full = self.need_full;
        let mut body = Transaction::sectioned(self.cfg.family);
        let mut tx = Transaction::new(self.cfg.family);
        let mut newly_stale = Vec::new();
        let mut dropped_sets = Vec::new();
        if full {
            write_base(
                &mut tx,
                &self.cfg,
                &mut self.stores,
                !self.flushed_base_once,
            );
            if let Some(inv) = inventory {
                self.chains = inv
                    .chains
                    .iter()
                    .filter(|c| is_service_chain(c))
                    .cloned()
                    .collect();
                self.affinity_sets = inv
                    .sets
                    .iter()
                    .filter(|s| is_affinity_set(s))
                    .cloned()
                    .collect();
            }
            for store in self.stores.all_mut() {
                store.take_touched();
            }
            let services: BTreeSet<&ServiceName> =
                tracker.ports.keys().map(|k| &k.service).collect();
            self.owned.clear();
            for service in services {
                let owned = self.write_one(&mut body, tracker, service);
                self.owned.insert(service.clone(), owned);
            }
            let active: BTreeSet<&String> =
                self.owned.values().flat_map(|o| o.chains.iter()).collect();
            newly_stale.extend(
                self.chains
                    .iter()
                    .filter(|c| !active.contains(c) && !self.stale.contains_key(*c))
                    .cloned(),
            );
            let sets: BTreeSet<&String> = self.owned.values().flat_map(|o| o.sets.iter()).collect();
            dropped_sets.extend(
                self.affinity_sets
                    .iter()
                    .filter(|s| !sets.contains(s))
                    .cloned(),
            );
        } else {
            if self.applied_cidrs.as_ref() != Some(&self.cfg.service_cidrs) {
                // Only the ServiceCIDRs changed in the fixed part: rewrite that chain.
                tx.flush_chain("cluster-ips-check");
                write_cluster_ips_check(&mut tx, &self.cfg);
            }
            for service in updated {
                let old = self.owned.remove(service).unwrap_or_default();
                let new = self.write_one(&mut body, tracker, service);
                for (i, key) in old.elements.difference(&new.elements) {
                    if let Some(store) = self.stores.all_mut().into_iter().nth(*i) {
                        store.remove(&mut body, key);
                    }
                }
                newly_stale.extend(old.chains.difference(&new.chains).cloned());
                dropped_sets.extend(old.sets.difference(&new.sets).cloned());
                if !new.chains.is_empty() || !new.elements.is_empty() {
                    self.owned.insert(service.clone(), new);
                }
            }
        }
        // Chains and sets (re)written by this plan: those of every Service on a full sync,
        // of the updated ones on a partial sync (names are per Service, so no other
        // Service can own them).
        let written: Vec<&Owned> = if full {
            self.owned.values().collect()
        } else {
            updated.iter().filter_map(|s| self.owned.get(s)).collect()
        };
        let active_chains: BTreeSet<String> = written
            .iter()
            .flat_map(|o| o.chains.iter().cloned())
            .collect();
        let active_sets: BTreeSet<String> = written
            .iter()
            .flat_map(|o| o.sets.iter().cloned())
            .collect();
        // Chains flushed by an earlier successful sync and unused since can go now.
        let deleted_stale: Vec<String> = self
            .stale
            .iter()
            .filter(|(c, since)| {
                !active_chains.contains(*c) && now.duration_since(**since) >= STALE_CHAIN_DELAY
            })
            .map(|(c, _)| c.clone())
            .collect();
        for chain in &deleted_stale {
            tx.delete_chain(chain);
        }
        tx.append(&body);
        newly_stale.retain(|c| !active_chains.contains(c));
        for chain in &newly_stale {
            tx.flush_chain(chain);
        }
        dropped_sets.retain(|s| !active_sets.contains(s));
        for set in &dropped_sets {
            tx.delete_container("set", set);
        }
        let no_local = self
            .owned
            .values()
            .fold((0, 0), |a, o| (a.0 + o.no_local.0, a.1 + o.no_local.1));
        Plan {
            tx,
            full,
            active_chains,
            active_sets,
            dropped_sets,
            no_local,
            newly_stale,
            deleted_stale,
            service_cidrs: self.cfg.service_cidrs.clone(),
        }
    }

    /// Records the outcome of applying `plan`. After a failure the stores no longer match
    /// the kernel, so the next sync is full.
    pub fn commit(&mut self, plan: Plan, applied: bool, now: Instant) {
        if !applied {
            self.need_full = true;
            return;
        }
        if plan.full {
            self.flushed_base_once = true;
        }
        self.need_full = false;
        self.applied_cidrs = Some(plan.service_cidrs);
        for chain in plan.deleted_stale {
            self.stale.remove(&chain);
            self.chains.remove(&chain);
        }
        for chain in plan.newly_stale {
            self.stale.insert(chain, now);
        }
        self.stale.retain(|c, _| !plan.active_chains.contains(c));
        self.chains.extend(plan.active_chains);
        for set in &plan.dropped_sets {
            self.affinity_sets.remove(set);
        }
        self.affinity_sets.extend(plan.active_sets);
    }

    /// Service chains flushed and waiting for deletion.
    pub fn stale_chains(&self) -> usize {
        self.stale.len()
    }
}
