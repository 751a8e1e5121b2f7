//! cgroupfs as the stats read it: where a cgroup's files are (v1: one directory per
//! controller; v2: the unified tree), and the small readers both the summary's samples
//! ([`super::cgroup`]) and cAdvisor's figures ([`super::cadvisor::read`]) use.

use chrono::{DateTime, Utc};
use std::path::{Path, PathBuf};

/// A file holding one number.
pub fn read_u64(p: &Path) -> Option<u64> {
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

/// Counts the PIDs in `cgroup.procs` of `dir` and every cgroup below it.
pub fn count_procs(dir: &Path) -> Option<u64> {
    let own = std::fs::read_to_string(dir.join("cgroup.procs")).ok()?;
    let mut n = own.lines().filter(|l| !l.trim().is_empty()).count() as u64;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                n += count_procs(&e.path()).unwrap_or(0);
            }
        }
    }
    Some(n)
}

/// cgroupfs mounted at one place, v1 or v2.
#[derive(Debug, Clone)]
pub struct CgroupFs {
    mount: PathBuf,
    v2: bool,
}

impl CgroupFs {
    /// The hierarchy at `mount` (`/sys/fs/cgroup`); v2 when `cgroup.controllers` is there.
    pub fn new(mount: PathBuf) -> Self {
        let v2 = mount.join("cgroup.controllers").exists();
        CgroupFs { mount, v2 }
    }

    /// The host's hierarchy.
    pub fn host() -> Self {
        Self::new(PathBuf::from("/sys/fs/cgroup"))
    }

    pub(crate) fn dir(&self, controller: &str, path: &str) -> PathBuf {
        let rel = path.trim_start_matches('/');
        if self.v2 {
            self.mount.join(rel)
        } else {
            self.mount.join(controller).join(rel)
        }
    }

    /// Whether this is the unified (v2) hierarchy.
    pub fn is_v2(&self) -> bool {
        self.v2
    }

    /// The directory of cgroup `path` under `controller` (v1); the unified directory (v2).
    pub fn controller_dir(&self, controller: &str, path: &str) -> PathBuf {
        self.dir(controller, path)
    }

    /// Whether the cgroup exists.
    pub fn exists(&self, path: &str) -> bool {
        self.dir("memory", path).is_dir()
    }

    /// When the cgroup was created (its memory directory's birth or change time).
    pub fn created(&self, path: &str) -> Option<DateTime<Utc>> {
        let meta = std::fs::metadata(self.dir("memory", path)).ok()?;
        let t = meta.created().or_else(|_| meta.modified()).ok()?;
        Some(t.into())
    }

    /// The cgroup of container `id` in the pod cgroup `pod_cgroup`: `<pod>/<id>` as the
    /// runtime makes it with cgroupfs, or the runtime's `<prefix>-<id>.scope` with systemd
    /// (found among the pod cgroup's children; see [`crate::cgroups::name::is_container_cgroup`]).
    pub fn container(&self, pod_cgroup: &str, id: &str) -> String {
        let pod = pod_cgroup.trim_end_matches('/');
        let plain = format!("{pod}/{id}");
        if self.exists(&plain) {
            return plain;
        }
        std::fs::read_dir(self.dir("memory", pod))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().is_dir())
            .find_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                crate::cgroups::name::is_container_cgroup(&name, id)
                    .then(|| format!("{pod}/{name}"))
            })
            .unwrap_or(plain)
    }

    /// The first PID in the cgroup (the sandbox's pause process, for its network).
    pub fn first_pid(&self, path: &str) -> Option<u32> {
        let procs = std::fs::read_to_string(self.dir("pids", path).join("cgroup.procs"))
            .or_else(|_| std::fs::read_to_string(self.dir("memory", path).join("cgroup.procs")))
            .ok()?;
        procs.lines().find_map(|l| l.trim().parse().ok())
    }

    /// The cgroup of process `pid` (its memory controller's path on v1).
    pub fn of_pid(&self, pid: u32) -> Option<String> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        cgroup_of(&text, self.v2)
    }
}

/// The path in `/proc/<pid>/cgroup` of the memory controller (v1) or the unified entry (v2).
pub fn cgroup_of(proc_cgroup: &str, v2: bool) -> Option<String> {
    proc_cgroup.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let hit = if v2 {
            controllers.is_empty()
        } else {
            controllers.split(',').any(|c| c == "memory")
        };
        hit.then(|| path.to_string())
    })
}
