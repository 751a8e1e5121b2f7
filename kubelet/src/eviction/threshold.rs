//! Eviction thresholds (`evictionHard`, `--eviction-hard`): a signal and a minimum amount
//! of it, absolute (`100Mi`) or a percentage of capacity (`10%`), as upstream parses them.

use crate::pod::quantity;
use anyhow::{bail, Result};
use std::collections::BTreeMap;

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

/// One hard threshold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Threshold {
    /// The signal.
    pub signal: Signal,
    /// The minimum that must remain.
    pub amount: Amount,
}

impl Threshold {
    /// The minimum in absolute units for a resource of `capacity`.
    pub fn minimum(&self, capacity: i64) -> i64 {
        match self.amount {
            Amount::Absolute(v) => v,
            Amount::Fraction(f) => (capacity as f64 * f) as i64,
        }
    }

    /// Whether `available` out of `capacity` is below this threshold.
    pub fn met(&self, available: i64, capacity: i64) -> bool {
        available < self.minimum(capacity)
    }
}

/// Parses `evictionHard` (signal → `quantity` or `N%`), naming the entry on error. Zero
/// thresholds are dropped (a way to disable one), as upstream.
pub fn parse(map: &BTreeMap<String, String>) -> Result<Vec<Threshold>> {
    let mut out = Vec::new();
    for (k, v) in map {
        let Some(signal) = Signal::parse(k) else {
            bail!("evictionHard: unsupported eviction signal {k:?}");
        };
        let v = v.trim();
        let amount = if let Some(p) = v.strip_suffix('%') {
            let p: f64 = p
                .parse()
                .map_err(|_| anyhow::anyhow!("evictionHard[{k}]: invalid percentage {v:?}"))?;
            if !(0.0..=100.0).contains(&p) {
                bail!("evictionHard[{k}]: percentage must be between 0% and 100%, got {v:?}");
            }
            Amount::Fraction(p / 100.0)
        } else {
            let q = quantity::bytes(v)
                .map_err(|e| anyhow::anyhow!("evictionHard[{k}]: invalid quantity {v:?}: {e}"))?;
            if q < 0 {
                bail!("evictionHard[{k}]: must be positive, got {v:?}");
            }
            Amount::Absolute(q)
        };
        if amount == Amount::Absolute(0) || amount == Amount::Fraction(0.0) {
            continue;
        }
        out.push(Threshold { signal, amount });
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
        let t = parse(&crate::config::options::default_eviction_hard()).unwrap();
        assert_eq!(t.len(), 5);
        let mem = t
            .iter()
            .find(|t| t.signal == Signal::MemoryAvailable)
            .unwrap();
        assert_eq!(mem.amount, Amount::Absolute(100 << 20));
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
}
