//! The systemd unit properties of the kubelet's slices, as runc's libcontainer systemd
//! managers (opencontainers/cgroups/systemd v1.go, v2.go, common.go) derive them: the ones a
//! slice is started with, and the resource ones set on it for given [`Limits`]. Pure
//! functions, so every name and value is unit-tested without systemd.

use crate::cgroups::v2::shares_to_weight;
use crate::cgroups::Limits;
use crate::pod::qos::CPU_PERIOD_US;

/// A D-Bus property value of the types systemd's transient units take here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PropertyValue {
    /// `b`.
    Bool(bool),
    /// `t`.
    U64(u64),
    /// `s`.
    Str(String),
    /// `as`.
    StrList(Vec<String>),
}

/// One `(sv)` entry of a unit's properties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitProperty {
    /// The property's name (`CPUWeight`, `Wants`, …).
    pub name: &'static str,
    /// Its value.
    pub value: PropertyValue,
}

impl UnitProperty {
    fn new(name: &'static str, value: PropertyValue) -> Self {
        UnitProperty { name, value }
    }
}

/// systemd's USEC_INFINITY: no CPU quota.
pub const USEC_INFINITY: u64 = u64::MAX;
/// The first systemd release with `CPUQuotaPeriodUSec`.
pub const CPU_QUOTA_PERIOD_MIN_VERSION: u32 = 242;
/// The largest cpu.shares; cpu.weight is 10000 from there on.
const MAX_SHARES: u64 = 262_144;

/// Which cgroup version the slice's resource properties are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    /// Legacy hierarchy: `CPUShares`, `MemoryLimit`, `BlockIOAccounting`.
    V1,
    /// Unified hierarchy: `CPUWeight`, `MemoryMax`, `IOAccounting`.
    V2,
}

/// What a slice is started with: a description, `Wants=` its parent slice, accounting on
/// and no default dependencies. Slices get no `Delegate=` (runc delegates scopes only).
pub fn start_properties(unit: &str, parent: &str, version: CgroupVersion) -> Vec<UnitProperty> {
    use PropertyValue::*;
    let io_accounting = match version {
        CgroupVersion::V1 => "BlockIOAccounting",
        CgroupVersion::V2 => "IOAccounting",
    };
    vec![
        UnitProperty::new("Description", Str(format!("libcontainer container {unit}"))),
        UnitProperty::new("Wants", StrList(vec![parent.to_string()])),
        UnitProperty::new("MemoryAccounting", Bool(true)),
        UnitProperty::new("CPUAccounting", Bool(true)),
        UnitProperty::new(io_accounting, Bool(true)),
        UnitProperty::new("TasksAccounting", Bool(true)),
        UnitProperty::new("DefaultDependencies", Bool(false)),
    ]
}

/// The resource properties for `limits`, and the limits to write to the cgroup files
/// afterwards (the CPU quota rounded up as systemd will apply it).
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceProperties {
    /// For `SetUnitProperties`.
    pub properties: Vec<UnitProperty>,
    /// For the cgroup files.
    pub limits: Limits,
}

/// Maps `limits` to unit properties as libcontainer does for the kubelet's resources:
/// v1 `CPUShares`, v2 `CPUWeight` (from shares); `MemoryLimit`/`MemoryMax` when limited;
/// `CPUQuotaPeriodUSec` (systemd ≥ 242) and `CPUQuotaPerSecUSec` when a quota is set.
/// Unset limits add no property, as upstream leaves zero values out. (`TasksMax` would come
/// from a pids limit, which ferrokube's limits do not carry: podPidsLimit is not implemented.)
pub fn resource_properties(
    limits: &Limits,
    version: CgroupVersion,
    systemd_version: u32,
) -> ResourceProperties {
    use PropertyValue::*;
    let mut properties = Vec::new();
    let mut written = *limits;
    if let Some(memory) = limits.memory_limit.filter(|m| *m > 0) {
        let name = match version {
            CgroupVersion::V1 => "MemoryLimit",
            CgroupVersion::V2 => "MemoryMax",
        };
        properties.push(UnitProperty::new(name, U64(memory as u64)));
    }
    if limits.cpu_shares != 0 {
        properties.push(match version {
            CgroupVersion::V1 => UnitProperty::new("CPUShares", U64(limits.cpu_shares)),
            CgroupVersion::V2 => UnitProperty::new(
                "CPUWeight",
                U64(shares_to_weight(limits.cpu_shares.min(MAX_SHARES))),
            ),
        });
    }
    if let Some(quota) = limits.cpu_quota {
        let period = CPU_PERIOD_US as u64;
        if systemd_version >= CPU_QUOTA_PERIOD_MIN_VERSION {
            properties.push(UnitProperty::new("CPUQuotaPeriodUSec", U64(period)));
        }
        let (per_sec, rounded) = cpu_quota_per_sec(quota, period);
        properties.push(UnitProperty::new("CPUQuotaPerSecUSec", U64(per_sec)));
        written.cpu_quota = Some(rounded);
    }
    ResourceProperties {
        properties,
        limits: written,
    }
}

/// `CPUQuotaPerSecUSec` for a CFS quota over `period` µs, and the quota as systemd will
/// apply it: systemd keeps whole percents of a CPU, so a fraction rounds up to the next
/// 10 ms per second (and the quota written to the files follows). A quota ≤ 0 is no limit.
pub fn cpu_quota_per_sec(quota: i64, period: u64) -> (u64, i64) {
    if quota <= 0 || period == 0 {
        return (USEC_INFINITY, quota);
    }
    let per_sec = quota as u64 * 1_000_000 / period;
    if per_sec.is_multiple_of(10_000) {
        return (per_sec, quota);
    }
    let per_sec = (per_sec / 10_000 + 1) * 10_000;
    (per_sec, (per_sec * period / 1_000_000) as i64)
}

#[cfg(test)]
mod tests;
