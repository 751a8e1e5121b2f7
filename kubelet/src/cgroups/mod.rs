//! The kubelet's cgroup hierarchy (cgroupfs driver): `kubepods`, `kubepods/burstable`,
//! `kubepods/besteffort` and one `pod<uid>` cgroup per pod, whose path is handed to CRI as
//! the sandbox's cgroup parent. cgroup v1 and v2 sit behind one interface; which one is in
//! use is detected from the mount.

mod v1;
mod v2;

pub use v1::CgroupV1;
pub use v2::CgroupV2;

use crate::pod::qos::{PodCgroupConfig, QosClass};
use std::io;
use std::path::{Path, PathBuf};

/// Limits written to one cgroup.
pub type Limits = PodCgroupConfig;

/// A cgroup hierarchy the kubelet can create cgroups in, set limits on and remove.
pub trait CgroupManager: Send + Sync {
    /// `v1` or `v2`.
    fn version(&self) -> &'static str;
    /// Creates `path` (and its parents) and writes `limits`.
    fn apply(&self, path: &str, limits: &Limits) -> io::Result<()>;
    /// Reads the limits back (what the cgroup files hold).
    fn read(&self, path: &str) -> io::Result<Limits>;
    /// Removes `path` (which must hold no processes); missing is fine.
    fn remove(&self, path: &str) -> io::Result<()>;
    /// Whether `path` exists.
    fn exists(&self, path: &str) -> bool;
}

/// Detects the cgroup version mounted at `/sys/fs/cgroup`.
pub fn detect() -> Box<dyn CgroupManager> {
    let root = Path::new("/sys/fs/cgroup");
    if root.join("cgroup.controllers").exists() {
        Box::new(CgroupV2::new(root.to_path_buf()))
    } else {
        Box::new(CgroupV1::new(root.to_path_buf()))
    }
}

/// Whether the host runs cgroup v1 (what `failCgroupV1` guards against).
pub fn is_v1() -> bool {
    !Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// The kubelet's names for its cgroups under `--cgroup-root`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    root: String,
}

impl Hierarchy {
    /// The hierarchy under `cgroup_root` (`/` by default).
    pub fn new(cgroup_root: &str) -> Self {
        let root = cgroup_root.trim_end_matches('/').to_string();
        Hierarchy { root }
    }

    /// `<root>/kubepods`.
    pub fn kubepods(&self) -> String {
        format!("{}/kubepods", self.root)
    }

    /// The QoS class's cgroup: guaranteed pods live directly under `kubepods`.
    pub fn qos(&self, qos: QosClass) -> String {
        match qos {
            QosClass::Guaranteed => self.kubepods(),
            QosClass::Burstable => format!("{}/burstable", self.kubepods()),
            QosClass::BestEffort => format!("{}/besteffort", self.kubepods()),
        }
    }

    /// The pod's cgroup, e.g. `/kubepods/burstable/pod<uid>`.
    pub fn pod(&self, qos: QosClass, uid: &str) -> String {
        format!("{}/pod{uid}", self.qos(qos))
    }

    /// Creates kubepods (shares from allocatable CPU) and the QoS cgroups (besteffort at
    /// the minimum share, burstable unlimited as upstream's QoS manager starts them).
    pub fn ensure_top(
        &self,
        m: &dyn CgroupManager,
        allocatable_milli_cpu: i64,
        allocatable_memory: Option<i64>,
    ) -> io::Result<()> {
        m.apply(
            &self.kubepods(),
            &Limits {
                cpu_shares: crate::pod::qos::milli_cpu_to_shares(allocatable_milli_cpu),
                cpu_quota: None,
                memory_limit: allocatable_memory,
            },
        )?;
        m.apply(
            &self.qos(QosClass::Burstable),
            &Limits {
                cpu_shares: 1024,
                ..Default::default()
            },
        )?;
        m.apply(
            &self.qos(QosClass::BestEffort),
            &Limits {
                cpu_shares: 2,
                ..Default::default()
            },
        )
    }
}

fn write(dir: &Path, file: &str, value: &str) -> io::Result<()> {
    std::fs::write(dir.join(file), value).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("write {value:?} to {:?}: {e}", dir.join(file)),
        )
    })
}

fn read_trim(dir: &Path, file: &str) -> io::Result<String> {
    Ok(std::fs::read_to_string(dir.join(file))?.trim().to_string())
}

fn join(mount: &Path, path: &str) -> PathBuf {
    mount.join(path.trim_start_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hierarchy_names_follow_upstream() {
        let h = Hierarchy::new("/");
        assert_eq!(h.kubepods(), "/kubepods");
        assert_eq!(h.pod(QosClass::Burstable, "u"), "/kubepods/burstable/podu");
        assert_eq!(h.pod(QosClass::Guaranteed, "u"), "/kubepods/podu");
        assert_eq!(
            Hierarchy::new("/test").qos(QosClass::BestEffort),
            "/test/kubepods/besteffort"
        );
    }
}
