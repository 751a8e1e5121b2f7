//! Resource usage of the node, its pods and containers: the Summary API
//! (`/stats/summary`, `k8s.io/kubelet/pkg/apis/stats/v1alpha1`) and the resource metrics
//! (`/metrics/resource`) built from it, as metrics-server and `kubectl top` consume them,
//! and cAdvisor's per-cgroup metrics (`/metrics/cadvisor`).
//!
//! Containers and sandboxes come from CRI; CPU and memory from their cgroups (as upstream's
//! CRI provider takes them from cAdvisor), CRI's figures when a cgroup cannot be read;
//! filesystems from statvfs and du; the node from its root cgroup and /proc.

pub mod cadvisor;
pub mod cgroup;
pub mod cgroupfs;
pub mod cpu_rate;
pub mod exposition;
pub mod fs;
pub mod host;
pub mod provider;
pub mod resource_metrics;
pub mod summary;
pub mod types;
pub mod volumes;

pub use provider::StatsProvider;
pub use types::Summary;
