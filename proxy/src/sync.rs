//! One family's sync: fold pending changes, build the transaction, apply it with `nft`,
//! record the outcome, and report timings (generation and kernel apply separately).

use crate::model::{ChangeTracker, IpFamily, UpdateResult};
use crate::nftables::{Nft, NftConfig, NftProxier};
use std::time::{Duration, Instant};

/// What a sync did.
#[derive(Debug)]
pub struct SyncOutcome {
    /// Whether it was a full sync.
    pub full: bool,
    /// Time to fold changes and build the transaction.
    pub generate: Duration,
    /// Time `nft -f` took.
    pub apply: Duration,
    /// Commands in the transaction.
    pub commands: usize,
    /// Bytes of transaction text.
    pub bytes: usize,
    /// The changes folded in (services, trigger times, stale UDP flows).
    pub update: UpdateResult,
    /// Services without local endpoints (internal, external).
    pub no_local_endpoints: (usize, usize),
    /// The `nft` error, if applying failed.
    pub error: Option<String>,
}

/// The tracker, proxier and `nft` of one family.
#[derive(Debug)]
pub struct FamilySyncer {
    /// Services and endpoints.
    pub tracker: ChangeTracker,
    /// The rules' state.
    pub proxier: NftProxier,
    /// How `nft` is run.
    pub nft: Nft,
}

impl FamilySyncer {
    /// A syncer for `cfg.family` that runs `nft` as `nft` says.
    pub fn new(cfg: NftConfig, nft: Nft) -> Self {
        FamilySyncer {
            tracker: ChangeTracker::new(cfg.family, &cfg.node_name),
            proxier: NftProxier::new(cfg),
            nft,
        }
    }

    /// The family.
    pub fn family(&self) -> IpFamily {
        self.tracker.family()
    }

    /// Syncs once. On a full sync the kernel's chains and sets are listed first so
    /// leftovers of an earlier process are cleaned up.
    pub fn sync(&mut self) -> SyncOutcome {
        let start = Instant::now();
        let update = self.tracker.apply();
        let inventory = if self.proxier.needs_full_sync() {
            match self.nft.inventory(self.family()) {
                Ok(inv) => inv,
                Err(e) => {
                    tracing::warn!(error = %e, "Cannot list the kube-proxy table; trusting memory");
                    None
                }
            }
        } else {
            None
        };
        let plan = self.proxier.plan(
            &self.tracker,
            &update.updated_services,
            inventory.as_ref(),
            Instant::now(),
        );
        let generate = start.elapsed();
        let applied_at = Instant::now();
        let result = self.nft.apply(&plan.tx);
        let apply = applied_at.elapsed();
        let outcome = SyncOutcome {
            full: plan.full,
            generate,
            apply,
            commands: plan.tx.len(),
            bytes: plan.tx.text().len(),
            update,
            no_local_endpoints: plan.no_local_endpoints(),
            error: result.as_ref().err().map(|e| e.to_string()),
        };
        if let Err(e) = &result {
            tracing::error!(error = %e, "nftables sync failed");
            if std::env::var_os("FERROKUBE_NFT_DUMP").is_some() {
                eprintln!("{}", plan.tx.text());
            }
        }
        self.proxier.commit(plan, result.is_ok(), Instant::now());
        outcome
    }
}
