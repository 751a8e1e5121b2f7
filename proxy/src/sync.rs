//! One family's sync: fold pending changes, build the transaction, apply it (`nft -f` or
//! iptables-restore), record the outcome, and report timings (generation and kernel apply
//! separately).

use crate::config::ProxierConfig;
use crate::iptables::{IptProxier, Iptables};
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
    /// Time the kernel apply (`nft -f` / iptables-restore) took.
    pub apply: Duration,
    /// Commands (nft) or lines (iptables-restore) in the transaction.
    pub commands: usize,
    /// Bytes of transaction text.
    pub bytes: usize,
    /// The changes folded in (services, trigger times, stale UDP flows).
    pub update: UpdateResult,
    /// Services without local endpoints (internal, external).
    pub no_local_endpoints: (usize, usize),
    /// The tool's error, if applying failed.
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
    /// Whether the next full sync lists the kernel's chains and sets first: on the first
    /// sync (leftovers of an earlier process) and after a failed one; other full syncs
    /// trust what the proxier remembers (listing 110,000 chains takes seconds).
    list_kernel: bool,
}

impl FamilySyncer {
    /// A syncer for `cfg.family` that runs `nft` as `nft` says.
    pub fn new(cfg: NftConfig, nft: Nft) -> Self {
        FamilySyncer {
            tracker: ChangeTracker::new(cfg.family, &cfg.node_name),
            proxier: NftProxier::new(cfg),
            nft,
            list_kernel: true,
        }
    }

    /// The family.
    pub fn family(&self) -> IpFamily {
        self.tracker.family()
    }

    /// Syncs once. On the first full sync (and the one after a failure) the kernel's
    /// chains and sets are listed first so leftovers of an earlier process are cleaned up.
    pub fn sync(&mut self) -> SyncOutcome {
        let start = Instant::now();
        let update = self.tracker.apply();
        let inventory = if self.proxier.needs_full_sync() && self.list_kernel {
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
        self.list_kernel = result.is_err();
        self.proxier.commit(plan, result.is_ok(), Instant::now());
        outcome
    }
}

/// What the run loop needs from one family's syncer, whatever the mode.
pub trait Syncer: Send {
    /// The family.
    fn family(&self) -> IpFamily;
    /// Services and endpoints.
    fn tracker(&mut self) -> &mut ChangeTracker;
    /// The proxier's settings (node labels may change at run time).
    fn config(&mut self) -> &mut ProxierConfig;
    /// Forces the next sync to be full.
    fn force_full_sync(&mut self);
    /// Syncs once.
    fn sync(&mut self) -> SyncOutcome;
}

impl Syncer for FamilySyncer {
    fn family(&self) -> IpFamily {
        FamilySyncer::family(self)
    }
    fn tracker(&mut self) -> &mut ChangeTracker {
        &mut self.tracker
    }
    fn config(&mut self) -> &mut ProxierConfig {
        &mut self.proxier.cfg
    }
    fn force_full_sync(&mut self) {
        self.proxier.force_full_sync()
    }
    fn sync(&mut self) -> SyncOutcome {
        FamilySyncer::sync(self)
    }
}

/// The tracker, iptables proxier and tools of one family.
#[derive(Debug)]
pub struct IptSyncer {
    /// Services and endpoints.
    pub tracker: ChangeTracker,
    /// The rules' state.
    pub proxier: IptProxier,
    /// How the iptables tools are run.
    pub ipt: Iptables,
}

impl IptSyncer {
    /// A syncer for `cfg.family` using `ipt`.
    pub fn new(cfg: ProxierConfig, ipt: Iptables) -> Self {
        IptSyncer {
            tracker: ChangeTracker::new(cfg.family, &cfg.node_name),
            proxier: IptProxier::new(cfg),
            ipt,
        }
    }

    /// Syncs once. A full sync first ensures the jumps from the built-in chains and lists
    /// the nat table's chains, so leftovers of an earlier process are deleted.
    pub fn sync(&mut self) -> SyncOutcome {
        let start = Instant::now();
        let update = self.tracker.apply();
        let mut existing = None;
        let mut error = None;
        if self.proxier.needs_full_sync() {
            if let Err(e) = self.ipt.ensure_jumps() {
                error = Some(e.to_string());
            }
            match self.ipt.chains("nat") {
                Ok(chains) => existing = Some(chains),
                Err(e) => {
                    tracing::warn!(error = %e, "Cannot list the nat table; trusting memory")
                }
            }
        }
        let plan = self
            .proxier
            .plan(&self.tracker, &update.updated_services, existing.as_ref());
        let text = plan.restore.text();
        let generate = start.elapsed();
        let applied_at = Instant::now();
        let result = match error {
            Some(e) => Err(e),
            None => self.ipt.restore(&text).map_err(|e| e.to_string()),
        };
        let apply = applied_at.elapsed();
        if let Err(e) = &result {
            tracing::error!(error = %e, "iptables sync failed");
            if std::env::var_os("FERROKUBE_IPT_DUMP").is_some() {
                eprintln!("{text}");
            }
        }
        let outcome = SyncOutcome {
            full: plan.full,
            generate,
            apply,
            commands: plan.restore.lines(),
            bytes: text.len(),
            update,
            no_local_endpoints: plan.no_local,
            error: result.as_ref().err().cloned(),
        };
        self.proxier.commit(plan, result.is_ok());
        outcome
    }
}

impl Syncer for IptSyncer {
    fn family(&self) -> IpFamily {
        self.tracker.family()
    }
    fn tracker(&mut self) -> &mut ChangeTracker {
        &mut self.tracker
    }
    fn config(&mut self) -> &mut ProxierConfig {
        &mut self.proxier.cfg
    }
    fn force_full_sync(&mut self) {
        self.proxier.force_full_sync()
    }
    fn sync(&mut self) -> SyncOutcome {
        IptSyncer::sync(self)
    }
}
