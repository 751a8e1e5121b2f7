//! Observing the eviction signals on this host: memory from the root memory cgroup (v1)
//! or /proc/meminfo (v2), nodefs with statvfs of the kubelet's root dir, imagefs with
//! statvfs of the mount point the runtime reports in CRI's ImageFsInfo (containerd reports
//! usage there but no capacity, so capacity and free space come from the filesystem, as
//! cAdvisor does upstream), PIDs from the kernel's task count.

use super::threshold::Signal;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One observation: what is available out of what capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observed {
    /// Available amount.
    pub available: i64,
    /// Capacity.
    pub capacity: i64,
}

/// All the signals that could be read.
pub type Observations = BTreeMap<Signal, Observed>;

fn meminfo_field(meminfo: &str, key: &str) -> Option<i64> {
    meminfo
        .lines()
        .find(|l| l.starts_with(key) && l[key.len()..].starts_with(':'))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<i64>().ok())
        .map(|kb| kb * 1024)
}

/// The working set of a v1 memory cgroup directory: usage minus inactive file pages.
pub fn v1_working_set(dir: &Path) -> Option<i64> {
    let usage: i64 = std::fs::read_to_string(dir.join("memory.usage_in_bytes"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let stat = std::fs::read_to_string(dir.join("memory.stat")).ok()?;
    let inactive = stat
        .lines()
        .find_map(|l| l.strip_prefix("total_inactive_file "))
        .and_then(|v| v.trim().parse::<i64>().ok())
        .unwrap_or(0);
    Some((usage - inactive).max(0))
}

/// `memory.available` as upstream computes it: capacity minus the root working set.
fn memory() -> Option<Observed> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let capacity = meminfo_field(&meminfo, "MemTotal")?;
    let working_set = if crate::cgroups::is_v1() {
        v1_working_set(Path::new("/sys/fs/cgroup/memory"))?
    } else {
        capacity - meminfo_field(&meminfo, "MemAvailable")?
    };
    Some(Observed {
        available: capacity - working_set,
        capacity,
    })
}

/// Free bytes and inodes of the filesystem holding `path`.
pub fn filesystem(path: &Path) -> Option<(Observed, Observed)> {
    let s = nix::sys::statvfs::statvfs(path).ok()?;
    let frsize = s.fragment_size() as i64;
    Some((
        Observed {
            available: s.blocks_available() as i64 * frsize,
            capacity: s.blocks() as i64 * frsize,
        },
        Observed {
            available: s.files_free() as i64,
            capacity: s.files() as i64,
        },
    ))
}

/// `pid.available`: the kernel's limit (pid_max, threads-max) minus its running tasks.
fn pids() -> Option<Observed> {
    let read = |p: &str| std::fs::read_to_string(p).ok()?.trim().parse::<i64>().ok();
    let capacity = match (
        read("/proc/sys/kernel/pid_max"),
        read("/proc/sys/kernel/threads-max"),
    ) {
        (Some(a), Some(b)) => a.min(b),
        (a, b) => a.or(b)?,
    };
    // The fourth field of loadavg is runnable/total scheduling entities.
    let loadavg = std::fs::read_to_string("/proc/loadavg").ok()?;
    let total: i64 = loadavg
        .split_whitespace()
        .nth(3)?
        .split('/')
        .nth(1)?
        .parse()
        .ok()?;
    Some(Observed {
        available: capacity - total,
        capacity,
    })
}

/// The mount point of the runtime's image filesystem, from CRI's ImageFsInfo.
pub async fn imagefs_mountpoint(cri: &dyn crate::cri::CriService) -> Option<PathBuf> {
    let info = cri
        .image_fs_info(k8s_cri::v1::ImageFsInfoRequest {})
        .await
        .ok()?;
    info.image_filesystems
        .into_iter()
        .filter_map(|f| f.fs_id)
        .map(|id| PathBuf::from(id.mountpoint))
        .find(|p| !p.as_os_str().is_empty())
}

/// `imagefs.available` / `imagefs.inodesFree`: statvfs of the ImageFsInfo mount point, or
/// of `fallback` (the runtime's root) when the runtime reports none.
pub async fn imagefs(
    cri: &dyn crate::cri::CriService,
    fallback: &Path,
) -> Option<(Observed, Observed)> {
    let mount = imagefs_mountpoint(cri).await;
    mount
        .as_deref()
        .and_then(filesystem)
        .or_else(|| filesystem(fallback))
}

/// Whether two paths are on the same filesystem (no dedicated imagefs when they are).
pub fn same_filesystem(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev(),
        _ => true,
    }
}

/// Reads every signal; `nodefs` is the kubelet's root dir, `imagefs` the image
/// filesystem's observation (nodefs's when the runtime's cannot be read).
pub fn observe(nodefs: &Path, imagefs: Option<(Observed, Observed)>) -> Observations {
    let mut o = Observations::new();
    if let Some(m) = memory() {
        o.insert(Signal::MemoryAvailable, m);
    }
    let node = filesystem(nodefs);
    if let Some((bytes, inodes)) = node {
        o.insert(Signal::NodeFsAvailable, bytes);
        o.insert(Signal::NodeFsInodesFree, inodes);
    }
    if let Some((bytes, inodes)) = imagefs.or(node) {
        o.insert(Signal::ImageFsAvailable, bytes);
        o.insert(Signal::ImageFsInodesFree, inodes);
    }
    if let Some(p) = pids() {
        o.insert(Signal::PidAvailable, p);
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_host() {
        let o = observe(Path::new("/"), None);
        for s in [
            Signal::MemoryAvailable,
            Signal::NodeFsAvailable,
            Signal::ImageFsInodesFree,
            Signal::PidAvailable,
        ] {
            let v = o.get(&s).unwrap_or_else(|| panic!("{s:?} observed"));
            assert!(
                v.capacity > 0 && v.available > 0 && v.available <= v.capacity,
                "{s:?}: {v:?}"
            );
        }
        assert!(same_filesystem(Path::new("/"), Path::new("/bin/..")));
        assert!(!same_filesystem(Path::new("/"), Path::new("/proc")));
        assert_eq!(
            meminfo_field(
                "MemTotal:  2048 kB\nMemAvailable: 1024 kB\n",
                "MemAvailable"
            ),
            Some(1 << 20)
        );
    }
}
