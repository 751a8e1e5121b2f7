//! The nftables proxier of one family: turns the tracker's view into one transaction per
//! sync — a full rewrite on the first sync, after a failure or periodically, else a partial
//! one touching only changed services — and remembers what the kernel then holds.
//! Building ([`NftProxier::plan`]) is pure; the caller applies the text and reports back
//! with [`NftProxier::commit`].

use super::base::{write_base, Stores};
use super::config::NftConfig;
use super::names::{is_affinity_set, is_service_chain};
use super::service::{write_service, SyncTally};
use super::tx::Transaction;
use crate::model::{ChangeTracker, ServiceName};
use std::collections::{BTreeMap, BTreeSet};
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
    tally: SyncTally,
    newly_stale: Vec<String>,
    deleted_stale: Vec<String>,
}

impl Plan {
    /// Services with endpoints elsewhere but none local (internal, external).
    pub fn no_local_endpoints(&self) -> (usize, usize) {
        (self.tally.no_local_internal, self.tally.no_local_external)
    }
}

/// The state of one family's nftables proxier.
#[derive(Debug)]
pub struct NftProxier {
    /// Settings.
    pub cfg: NftConfig,
    stores: Stores,
    chains: BTreeSet<String>,
    affinity_sets: BTreeSet<String>,
    stale: BTreeMap<String, Instant>,
    flushed_base_once: bool,
    need_full: bool,
}

impl NftProxier {
    /// A proxier that has not synced yet (its first sync is full).
    pub fn new(cfg: NftConfig) -> Self {
        NftProxier {
            cfg,
            stores: Stores::default(),
            chains: BTreeSet::new(),
            affinity_sets: BTreeSet::new(),
            stale: BTreeMap::new(),
            flushed_base_once: false,
            need_full: true,
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

    /// Builds the transaction for the tracker's applied view. `updated` are the Services
    /// changed since the last sync; `inventory` is what the kernel holds (used on full
    /// syncs; `None` trusts memory).
    pub fn plan(
        &mut self,
        tracker: &ChangeTracker,
        updated: &BTreeSet<ServiceName>,
        inventory: Option<&Inventory>,
        now: Instant,
    ) -> Plan {
        let full = self.need_full;
        let mut tx = Transaction::new(self.cfg.family);
        let mut deleted_stale = Vec::new();
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
        }
        for store in self.stores.all_mut() {
            store.begin();
        }
        let mut tally = SyncTally::default();
        let mut body = Transaction::new(self.cfg.family);
        for (name, svc) in &tracker.ports {
            let endpoints = tracker
                .endpoints
                .get(name)
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            let write = full || updated.contains(&name.service);
            write_service(
                &mut body,
                &mut self.stores,
                &self.cfg,
                svc,
                endpoints,
                write,
                &mut tally,
            );
        }
        // Chains flushed by an earlier successful sync and unused since can go now.
        for (chain, since) in &self.stale {
            if !tally.active_chains.contains(chain)
                && now.duration_since(*since) >= STALE_CHAIN_DELAY
            {
                tx.delete_chain(chain);
                deleted_stale.push(chain.clone());
            }
        }
        tx.append(&body);
        let mut newly_stale = Vec::new();
        for chain in &self.chains {
            if !tally.active_chains.contains(chain) && !self.stale.contains_key(chain) {
                tx.flush_chain(chain);
                newly_stale.push(chain.clone());
            }
        }
        for set in &self.affinity_sets {
            if !tally.active_sets.contains(set) {
                tx.delete_container("set", set);
            }
        }
        for store in self.stores.all_mut() {
            store.finish(&mut tx);
        }
        Plan {
            tx,
            full,
            tally,
            newly_stale,
            deleted_stale,
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
        for chain in plan.deleted_stale {
            self.stale.remove(&chain);
            self.chains.remove(&chain);
        }
        for chain in plan.newly_stale {
            self.stale.insert(chain, now);
        }
        self.stale
            .retain(|c, _| !plan.tally.active_chains.contains(c));
        self.chains.extend(plan.tally.active_chains);
        self.affinity_sets = plan.tally.active_sets;
    }

    /// Service chains flushed and waiting for deletion.
    pub fn stale_chains(&self) -> usize {
        self.stale.len()
    }
}
