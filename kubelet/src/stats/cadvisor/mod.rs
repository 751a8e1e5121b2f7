//! `/metrics/cadvisor`: per-cgroup usage with cAdvisor's metric names, help texts and
//! labels (`container`, `id`, `image`, `name`, `namespace`, `pod`), as upstream's kubelet
//! serves them from its embedded cAdvisor — for the root cgroup, the pods' cgroups, their
//! sandboxes and containers — plus the machine's cores and memory.
//!
//! [`read`] reads a cgroup's figures from cgroupfs, [`machine`] the machine's, and
//! [`render`] turns the collected [`Scrape`] into Prometheus text (a pure function).

pub mod machine;
pub mod read;
pub mod render;

use super::types::InterfaceStats;
use chrono::{DateTime, Utc};

pub use machine::Machine;
pub use read::{CgroupSpec, CgroupUsage, CpuSpec, CpuUsage, MemorySpec, MemoryUsage, ProcessUsage};

/// The labels upstream's `containerPrometheusLabelsFunc` gives a cgroup; empty strings for
/// what is unknown (every sample of a family carries the same label names).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupLabels {
    /// The cgroup's path (`/kubepods/burstable/pod<uid>/<container id>`).
    pub id: String,
    /// The runtime's container ID (cAdvisor's first alias); empty for plain cgroups.
    pub name: String,
    /// The container's image.
    pub image: String,
    /// The pod's name.
    pub pod: String,
    /// The pod's namespace.
    pub namespace: String,
    /// The container's name in the pod; empty for sandboxes and plain cgroups.
    pub container: String,
}

/// One cgroup as cAdvisor reports it: labels, spec, and the latest usage.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CgroupInfo {
    /// Labels.
    pub labels: CgroupLabels,
    /// When the container (or cgroup) was created.
    pub created: Option<DateTime<Utc>>,
    /// Limits and shares.
    pub spec: CgroupSpec,
    /// The latest reading; `None` when it could not be read.
    pub usage: Option<CgroupUsage>,
    /// Interfaces of the cgroup's network namespace (sandboxes and the root cgroup only).
    pub network: Vec<InterfaceStats>,
    /// Filesystems (the root cgroup only: cAdvisor's containerd handler reports none).
    pub filesystems: Vec<FsUsage>,
}

/// A filesystem as the root cgroup reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FsUsage {
    /// The mount's source device (`/dev/vda1`).
    pub device: String,
    /// Size in bytes.
    pub limit: u64,
    /// Bytes in use.
    pub usage: u64,
    /// Inodes.
    pub inodes: u64,
    /// Free inodes.
    pub inodes_free: u64,
}

/// Everything one scrape of `/metrics/cadvisor` reports.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scrape {
    /// When scraped (`container_last_seen`).
    pub time: DateTime<Utc>,
    /// The machine; `None` when it could not be read (`machine_scrape_error 1`).
    pub machine: Option<Machine>,
    /// The cgroups; `None` when they could not be listed (`container_scrape_error 1`).
    pub cgroups: Option<Vec<CgroupInfo>>,
}
