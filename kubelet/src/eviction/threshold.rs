//! Eviction thresholds (`evictionHard`, `evictionSoft` with `evictionSoftGracePeriod`,
//! `evictionMinimumReclaim`): a signal and a minimum amount of it, absolute (`100Mi`) or a
//! percentage of capacity (`10%`), as upstream parses them.

use anyhow::{bail, Result};
use api_helpers::quantity;
use std::collections::BTreeMap;
use std::time::Duration;

/// What a threshold watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Signal {
    /// `memory.available`: capacity minus the working set.
    MemoryAvailable,
    /// `nodefs.available`: free bytes on the kubelet's filesystem.
    NodeFsAvailable,
    /// `nodefs.inodesFree`.
    NodeFsInodesFree,
    /// `imagefs.available`: free bytes on the runtime's image filesystem.
    ImageFsAvailable,
    /// `imagefs.inodesFree`.
    ImageFsInodesFree,
    /// `pid.available`: process IDs left.
    PidAvailable,
}

impl Signal {
    /// The signal named `s`, as in the config.
    pub fn parse(s: &str) -> Option<Signal> {
        Some(match s {
            "memory.available" => Signal::MemoryAvailable,
            "nodefs.available" => Signal::NodeFsAvailable,
            "nodefs.inodesFree" => Signal::NodeFsInodesFree,
            "imagefs.available" => Signal::ImageFsAvailable,
            "imagefs.inodesFree" => Signal::ImageFsInodesFree,
            "pid.available" => Signal::PidAvailable,
            _ => return None,
        })
    }

    /// The config name.
    pub fn name(self) -> &'static str {
        match self {
            Signal::MemoryAvailable => "memory.available",
            Signal::NodeFsAvailable => "nodefs.available",
            Signal::NodeFsInodesFree => "nodefs.inodesFree",
            Signal::ImageFsAvailable => "imagefs.available",
            Signal::ImageFsInodesFree => "imagefs.inodesFree",
            Signal::PidAvailable => "pid.available",
        }
    }

    /// The node condition this signal drives.
    pub fn condition(self) -> &'static str {
        match self {
            Signal::MemoryAvailable => "MemoryPressure",
            Signal::PidAvailable => "PIDPressure",
            _ => "DiskPressure",
        }
    }

    /// The resource evictions under this signal reclaim (event and status messages).
    pub fn resource(self) -> &'static str {
        match self {
            Signal::MemoryAvailable => "memory",
            Signal::NodeFsAvailable | Signal::ImageFsAvailable => "ephemeral-storage",
            Signal::NodeFsInodesFree | Signal::ImageFsInodesFree => "inodes",
            Signal::PidAvailable => "pids",
        }
    }
}

/// How much of a signal must remain.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Amount {
    /// An absolute quantity (bytes, inodes, PIDs).
    Absolute(i64),
    /// A fraction of capacity (0.1 for `10%`).
    Fraction(f64),
}

impl Amount {
    /// In absolute units for a resource of `capacity`.
    pub fn of(self, capacity: i64) -> i64 {
        match self {
            Amount::Absolute(v) => v,
            Amount::Fraction(f) => (capacity as f64 * f) as i64,
        }
    }

    fn is_zero(self) -> bool {
        self == Amount::Absolute(0) || self == Amount::Fraction(0.0)
    }
}

/// One threshold: hard (`grace_period` zero, pods are killed at once) or soft.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Threshold {
    /// The signal.
    pub signal: Signal,
    /// The minimum that must remain.
    pub amount: Amount,
    /// How long the threshold must hold before pods are evicted (soft thresholds only).
    pub grace_period: Duration,
    /// Whether this is a hard threshold (`evictionHard`).
    pub hard: bool,
    /// `evictionMinimumReclaim`: once met, the threshold stays met until this much more
    /// than its minimum is available again.
    pub min_reclaim: Option<Amount>,
}

impl Threshold {
    /// A hard threshold without minimum reclaim.
    pub fn hard(signal: Signal, amount: Amount) -> Threshold {
        Threshold {
            signal,
            amount,
            grace_period: Duration::ZERO,
            hard: true,
            min_reclaim: None,
        }
    }

    /// The minimum in absolute units for a resource of `capacity`.
    pub fn minimum(&self, capacity: i64) -> i64 {
        self.amount.of(capacity)
    }

    /// Whether `available` out of `capacity` is below this threshold.
    pub fn met(&self, available: i64, capacity: i64) -> bool {
        available < self.minimum(capacity)
    }

    /// Whether `available` is below the threshold plus its minimum reclaim (upstream's
    /// `thresholdsMet(…, enforceMinReclaim=true)`).
    pub fn met_with_reclaim(&self, available: i64, capacity: i64) -> bool {
        let extra = self.min_reclaim.map_or(0, |m| m.of(capacity));
        available < self.minimum(capacity) + extra
    }

    /// Same signal and same kind (hard or soft): the identity upstream merges on.
    pub fn same(&self, other: &Threshold) -> bool {
        self.signal == other.signal && self.hard == other.hard
    }
}

fn signal_of(field: &str, k: &str) -> Result<Signal> {
    Signal::parse(k).ok_or_else(|| anyhow::anyhow!("{field}: unsupported eviction signal {k:?}"))
}

fn amount(field: &str, k: &str, v: &str) -> Result<Amount> {
    let v = v.trim();
    if let Some(p) = v.strip_suffix('%') {
        let p: f64 = p
            .parse()
            .map_err(|_| anyhow::anyhow!("{field}[{k}]: invalid percentage {v:?}"))?;
        if !(0.0..=100.0).contains(&p) {
            bail!("{field}[{k}]: percentage must be between 0% and 100%, got {v:?}");
        }
        Ok(Amount::Fraction(p / 100.0))
    } else {
        let q = quantity::value(v)
            .map_err(|e| anyhow::anyhow!("{field}[{k}]: invalid quantity {v:?}: {e}"))?;
        if q < 0 {
            bail!("{field}[{k}]: must be positive, got {v:?}");
        }
        Ok(Amount::Absolute(q))
    }
}

/// `containerfs.available` / `containerfs.inodesFree`: accepted and ignored, as upstream
/// overrides them with the nodefs (or, on a split filesystem, imagefs) thresholds — the
/// container filesystem is never a filesystem of its own here.
fn is_containerfs(k: &str) -> bool {
    matches!(k, "containerfs.available" | "containerfs.inodesFree")
}

fn parse_map(field: &str, map: &BTreeMap<String, String>, hard: bool) -> Result<Vec<Threshold>> {
    let mut out = Vec::new();
    for (k, v) in map {
        if is_containerfs(k) {
            tracing::warn!(field, signal = %k, "found {k} for eviction. ignoring");
            continue;
        }
        let signal = signal_of(field, k)?;
        let amount = amount(field, k, v)?;
        if amount.is_zero() {
            continue;
        }
        out.push(Threshold {
            hard,
            ..Threshold::hard(signal, amount)
        });
    }
    Ok(out)
}

/// Parses `evictionHard` (signal → `quantity` or `N%`), naming the entry on error. Zero
/// thresholds are dropped (a way to disable one), as upstream.
pub fn parse(map: &BTreeMap<String, String>) -> Result<Vec<Threshold>> {
    parse_map("evictionHard", map, true)
}

/// The eviction settings of the config, as written.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EvictionConfig {
    /// `evictionHard`.
    pub hard: BTreeMap<String, String>,
    /// `evictionSoft`.
    pub soft: BTreeMap<String, String>,
    /// `evictionSoftGracePeriod` (Go durations).
    pub soft_grace_period: BTreeMap<String, String>,
    /// `evictionMinimumReclaim`.
    pub minimum_reclaim: BTreeMap<String, String>,
}

/// Every threshold: hard ones, soft ones with their grace periods (a soft threshold
/// without one is an error, as upstream), and minimum reclaims applied to both.
pub fn parse_all(c: &EvictionConfig) -> Result<Vec<Threshold>> {
    let mut out = parse(&c.hard)?;
    let mut soft = parse_map("evictionSoft", &c.soft, false)?;
    let mut graces = BTreeMap::new();
    for (k, v) in c
        .soft_grace_period
        .iter()
        .filter(|(k, _)| !is_containerfs(k))
    {
        let signal = signal_of("evictionSoftGracePeriod", k)?;
        let d: component_base::duration::GoDuration = v.trim().parse().map_err(|e| {
            anyhow::anyhow!("evictionSoftGracePeriod[{k}]: invalid duration {v:?}: {e}")
        })?;
        graces.insert(signal, d.0);
    }
    for t in &mut soft {
        let Some(g) = graces.get(&t.signal) else {
            bail!(
                "grace period must be specified for the soft eviction threshold {}",
                t.signal.name()
            );
        };
        t.grace_period = *g;
    }
    out.append(&mut soft);
    for (k, v) in c.minimum_reclaim.iter().filter(|(k, _)| !is_containerfs(k)) {
        let signal = signal_of("evictionMinimumReclaim", k)?;
        let m = amount("evictionMinimumReclaim", k, v)?;
        for t in out.iter_mut().filter(|t| t.signal == signal) {
            t.min_reclaim = Some(m);
        }
    }
    Ok(out)
}

/// What the hard thresholds take from allocatable, per resource (upstream's
/// hardEvictionReservation: `memory.available` → memory, `nodefs.available` →
/// ephemeral-storage).
pub fn reservation(thresholds: &[Threshold], memory: i64, ephemeral_storage: i64) -> (i64, i64) {
    let find = |s: Signal, cap: i64| {
        thresholds
            .iter()
            .find(|t| t.signal == s)
            .map_or(0, |t| t.minimum(cap))
    };
    (
        find(Signal::MemoryAvailable, memory),
        find(Signal::NodeFsAvailable, ephemeral_storage),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn upstream_defaults_parse() {
        let t = parse(&crate::config::defaults::eviction_hard()).unwrap();
        assert_eq!(t.len(), 5);
        let mem = t
            .iter()
            .find(|t| t.signal == Signal::MemoryAvailable)
            .unwrap();
        assert_eq!(mem.amount, Amount::Absolute(100 << 20));
        assert!(mem.hard && mem.grace_period.is_zero());
        assert!(mem.met(99 << 20, 1 << 30) && !mem.met(100 << 20, 1 << 30));
        let nodefs = t
            .iter()
            .find(|t| t.signal == Signal::NodeFsAvailable)
            .unwrap();
        assert_eq!(nodefs.minimum(1000), 100);
        assert_eq!(reservation(&t, 1 << 30, 1000), (100 << 20, 100));
    }

    #[test]
    fn bad_entries_name_the_key_and_zero_disables() {
        for (k, v) in [
            ("memory.avail", "1Gi"),
            ("memory.available", "lots"),
            ("nodefs.available", "120%"),
            ("pid.available", "x%"),
        ] {
            let e = parse(&map(&[(k, v)])).unwrap_err().to_string();
            assert!(e.contains(k), "{e}");
        }
        assert!(parse(&map(&[
            ("memory.available", "0"),
            ("nodefs.available", "0%")
        ]))
        .unwrap()
        .is_empty());
        let pid = parse(&map(&[("pid.available", "1000")])).unwrap();
        assert_eq!(
            (pid[0].signal.condition(), pid[0].minimum(0)),
            ("PIDPressure", 1000)
        );
    }

    #[test]
    fn soft_thresholds_need_grace_periods_and_minimum_reclaim_applies() {
        let c = EvictionConfig {
            hard: map(&[("nodefs.available", "10%")]),
            soft: map(&[("nodefs.available", "15%"), ("imagefs.available", "2Gi")]),
            soft_grace_period: map(&[("nodefs.available", "1m30s"), ("imagefs.available", "10s")]),
            minimum_reclaim: map(&[("nodefs.available", "500Mi")]),
        };
        let t = parse_all(&c).unwrap();
        assert_eq!(t.len(), 3);
        let soft = t
            .iter()
            .find(|t| !t.hard && t.signal == Signal::NodeFsAvailable)
            .unwrap();
        assert_eq!(soft.grace_period, Duration::from_secs(90));
        assert_eq!(soft.min_reclaim, Some(Amount::Absolute(500 << 20)));
        let hard = t.iter().find(|t| t.hard).unwrap();
        assert_eq!(hard.min_reclaim, Some(Amount::Absolute(500 << 20)));
        // 10% of 10Gi is 1Gi: met below it; with reclaim, met until 1Gi + 500Mi is free.
        let cap = 10 << 30;
        assert!(!hard.met(1200 << 20, cap) && hard.met_with_reclaim(1200 << 20, cap));
        assert!(!hard.met_with_reclaim(1600 << 20, cap));

        let mut with_containerfs = c.clone();
        with_containerfs
            .hard
            .insert("containerfs.available".into(), "10%".into());
        with_containerfs
            .minimum_reclaim
            .insert("containerfs.inodesFree".into(), "5%".into());
        assert_eq!(
            parse_all(&with_containerfs).unwrap(),
            t,
            "containerfs.* ignored"
        );

        let mut missing = c.clone();
        missing.soft_grace_period.remove("imagefs.available");
        let e = parse_all(&missing).unwrap_err().to_string();
        assert!(
            e.contains("grace period must be specified") && e.contains("imagefs.available"),
            "{e}"
        );
        let mut bad = c;
        bad.minimum_reclaim = map(&[("nodefs.available", "-1")]);
        assert!(parse_all(&bad)
            .unwrap_err()
            .to_string()
            .contains("evictionMinimumReclaim[nodefs.available]"));
    }
}
