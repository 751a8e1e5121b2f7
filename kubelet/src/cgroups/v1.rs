//! cgroup v1: one directory per controller (`cpu`, `memory`, `pids`, `cpuset`, …).

use super::{join, read_trim, write, CgroupManager, Limits};
use std::io;
use std::path::{Path, PathBuf};

/// Controllers the kubelet creates its cgroups in (runc joins these for containers).
const CONTROLLERS: &[&str] = &[
    "cpu", "cpuacct", "cpuset", "memory", "pids", "blkio", "devices", "freezer",
];

/// cgroup v1 mounted under one directory (`/sys/fs/cgroup` on a node).
pub struct CgroupV1 {
    mount: PathBuf,
}

impl CgroupV1 {
    /// The hierarchy mounted at `mount`.
    pub fn new(mount: PathBuf) -> Self {
        CgroupV1 { mount }
    }

    fn dir(&self, controller: &str, path: &str) -> PathBuf {
        join(&self.mount.join(controller), path)
    }

    /// A new cpuset cgroup starts empty: copy cpus and mems down from the nearest parent.
    fn init_cpuset(&self, path: &str) -> io::Result<()> {
        let mut missing = Vec::new();
        let mut p = Path::new(path).to_path_buf();
        loop {
            let dir = self.dir("cpuset", &p.to_string_lossy());
            if !dir.exists()
                || read_trim(&dir, "cpuset.cpus")
                    .unwrap_or_default()
                    .is_empty()
            {
                missing.push(dir);
            } else {
                break;
            }
            if !p.pop() || p.as_os_str().is_empty() || p == Path::new("/") {
                break;
            }
        }
        for dir in missing.into_iter().rev() {
            std::fs::create_dir_all(&dir)?;
            let parent = dir.parent().expect("cgroup dir has a parent");
            for f in ["cpuset.cpus", "cpuset.mems"] {
                if read_trim(&dir, f).unwrap_or_default().is_empty() {
                    write(&dir, f, &read_trim(parent, f)?)?;
                }
            }
        }
        Ok(())
    }
}

impl CgroupManager for CgroupV1 {
    fn version(&self) -> &'static str {
        "v1"
    }

    fn apply(&self, path: &str, limits: &Limits) -> io::Result<()> {
        for c in CONTROLLERS {
            if !self.mount.join(c).exists() {
                continue;
            }
            if *c == "cpuset" {
                self.init_cpuset(path)?;
            } else {
                std::fs::create_dir_all(self.dir(c, path))?;
            }
        }
        let cpu = self.dir("cpu", path);
        write(&cpu, "cpu.shares", &limits.cpu_shares.to_string())?;
        write(
            &cpu,
            "cpu.cfs_period_us",
            &crate::pod::qos::CPU_PERIOD_US.to_string(),
        )?;
        write(
            &cpu,
            "cpu.cfs_quota_us",
            &limits.cpu_quota.unwrap_or(-1).to_string(),
        )?;
        let memory = self.dir("memory", path);
        // -1 is unlimited; the kernel reports it back as a page-aligned maximum.
        write(
            &memory,
            "memory.limit_in_bytes",
            &limits.memory_limit.unwrap_or(-1).to_string(),
        )?;
        Ok(())
    }

    fn read(&self, path: &str) -> io::Result<Limits> {
        let cpu = self.dir("cpu", path);
        let quota: i64 = read_trim(&cpu, "cpu.cfs_quota_us")?.parse().unwrap_or(-1);
        let mem: i64 = read_trim(&self.dir("memory", path), "memory.limit_in_bytes")?
            .parse()
            .unwrap_or(i64::MAX);
        Ok(Limits {
            cpu_shares: read_trim(&cpu, "cpu.shares")?.parse().unwrap_or(0),
            cpu_quota: (quota > 0).then_some(quota),
            // Anything above 2^62 is the kernel's "unlimited".
            memory_limit: (mem < (1 << 62)).then_some(mem),
        })
    }

    fn remove(&self, path: &str) -> io::Result<()> {
        for c in CONTROLLERS {
            let dir = self.dir(c, path);
            match std::fs::remove_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io::Error::new(e.kind(), format!("remove {dir:?}: {e}"))),
            }
        }
        Ok(())
    }

    fn exists(&self, path: &str) -> bool {
        self.dir("memory", path).exists()
    }
}
