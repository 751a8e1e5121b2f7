//! The kubelet's cgroup hierarchy: `kubepods`, `kubepods/burstable`, `kubepods/besteffort`
//! and one `pod<uid>` cgroup per pod, whose literal path is handed to CRI as the sandbox's
//! cgroup parent. Names are spelled per driver in [`name`] (cgroupfs, or systemd slices);
//! cgroup v1 and v2 sit behind one interface, detected from the mount; the systemd driver
//! ([`systemd`]) makes the cgroups through systemd and then writes the same files.

pub mod name;
pub mod systemd;
mod v1;
mod v2;

pub use name::{CgroupDriver, CgroupName};
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

/// The manager for `driver`: cgroupfs writes the files; systemd connects to systemd over
/// D-Bus first, and fails when it cannot (upstream refuses the systemd driver when systemd
/// is not running).
pub fn for_driver(driver: CgroupDriver) -> io::Result<Box<dyn CgroupManager>> {
    match driver {
        CgroupDriver::Cgroupfs => Ok(detect()),
        CgroupDriver::Systemd => {
            let bus = systemd::dbus::DbusSystemd::connect()?;
            Ok(Box::new(systemd::SystemdCgroups::new(
                Box::new(bus),
                detect(),
            )?))
        }
    }
}

/// Whether the host runs cgroup v1 (what `failCgroupV1` guards against).
pub fn is_v1() -> bool {
    !Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// The kubelet's names for its cgroups under `--cgroup-root`, spelled for its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    root: CgroupName,
    driver: CgroupDriver,
}

impl Hierarchy {
    /// The cgroupfs hierarchy under `cgroup_root` (`/` by default).
    pub fn new(cgroup_root: &str) -> Self {
        Self::with_driver(cgroup_root, CgroupDriver::Cgroupfs)
    }

    /// The hierarchy under `cgroup_root` (given in cgroupfs form, as upstream's
    /// `--cgroup-root` always is) for `driver`.
    pub fn with_driver(cgroup_root: &str, driver: CgroupDriver) -> Self {
        Hierarchy {
            root: CgroupName::parse_cgroupfs(cgroup_root),
            driver,
        }
    }

    /// The driver the names are spelled for.
    pub fn driver(&self) -> CgroupDriver {
        self.driver
    }

    /// The internal name of `kubepods` (the node allocatable cgroup).
    pub fn kubepods_name(&self) -> CgroupName {
        self.root.child_unchecked("kubepods")
    }

    /// The internal name of the QoS class's cgroup: guaranteed pods live directly under
    /// `kubepods`.
    pub fn qos_name(&self, qos: QosClass) -> CgroupName {
        match qos {
            QosClass::Guaranteed => self.kubepods_name(),
            QosClass::Burstable => self.kubepods_name().child_unchecked("burstable"),
            QosClass::BestEffort => self.kubepods_name().child_unchecked("besteffort"),
        }
    }

    /// The internal name of the pod's cgroup (`pod<uid>`).
    pub fn pod_name(&self, qos: QosClass, uid: &str) -> CgroupName {
        self.qos_name(qos).child_unchecked(&format!("pod{uid}"))
    }

    /// `kubepods`'s literal path: `/kubepods`, `/kubepods.slice`.
    pub fn kubepods(&self) -> String {
        self.driver.literal(&self.kubepods_name())
    }

    /// The QoS class's literal path.
    pub fn qos(&self, qos: QosClass) -> String {
        self.driver.literal(&self.qos_name(qos))
    }

    /// The pod's literal path, e.g. `/kubepods/burstable/pod<uid>` or
    /// `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_>.slice`. This
    /// is also the sandbox's CRI `cgroup_parent` with either driver, as upstream's
    /// `GetPodCgroupParent` (the runtime takes the slice from its last part).
    pub fn pod(&self, qos: QosClass, uid: &str) -> String {
        self.driver.literal(&self.pod_name(qos, uid))
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
    fn systemd_hierarchy_is_slices() {
        let h = Hierarchy::with_driver("/", CgroupDriver::Systemd);
        assert_eq!(h.kubepods(), "/kubepods.slice");
        assert_eq!(h.qos(QosClass::Guaranteed), "/kubepods.slice");
        assert_eq!(
            h.qos(QosClass::BestEffort),
            "/kubepods.slice/kubepods-besteffort.slice"
        );
        assert_eq!(
            h.pod(QosClass::Burstable, "1234-abcd"),
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234_abcd.slice"
        );
        assert_eq!(
            h.pod(QosClass::Guaranteed, "1234-abcd"),
            "/kubepods.slice/kubepods-pod1234_abcd.slice"
        );
        // kind: cgroupRoot /kubelet.
        let kind = Hierarchy::with_driver("/kubelet", CgroupDriver::Systemd);
        assert_eq!(kind.kubepods(), "/kubelet.slice/kubelet-kubepods.slice");
        assert_eq!(
            kind.pod(QosClass::BestEffort, "u-1"),
            "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-podu_1.slice"
        );
        assert_eq!(kind.driver(), CgroupDriver::Systemd);
        assert_eq!(
            Hierarchy::with_driver("/kubelet/", CgroupDriver::Cgroupfs).kubepods(),
            "/kubelet/kubepods"
        );
    }

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
