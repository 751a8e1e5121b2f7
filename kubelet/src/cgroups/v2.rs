//! cgroup v2: one unified hierarchy; shares become `cpu.weight`, quota `cpu.max`,
//! memory limit `memory.max`.

use super::{join, read_trim, write, CgroupManager, Limits};
use crate::pod::qos::CPU_PERIOD_US;
use std::io;
use std::path::PathBuf;

/// The unified hierarchy mounted at one directory.
pub struct CgroupV2 {
    mount: PathBuf,
}

/// cpu.shares → cpu.weight, as upstream's `CpuSharesToCpuWeight` (runc's conversion).
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    1 + ((shares.saturating_sub(2)) * 9999) / 262142
}

/// cpu.weight → cpu.shares (inverse of [`shares_to_weight`], rounding up).
pub fn weight_to_shares(weight: u64) -> u64 {
    if weight == 0 {
        return 0;
    }
    2 + ((weight - 1) * 262142).div_ceil(9999)
}

impl CgroupV2 {
    /// The hierarchy mounted at `mount`.
    pub fn new(mount: PathBuf) -> Self {
        CgroupV2 { mount }
    }

    /// Enables the controllers the kubelet uses for children of every ancestor of `path`.
    fn enable_controllers(&self, path: &str) -> io::Result<()> {
        let mut dir = self.mount.clone();
        for part in path
            .trim_start_matches('/')
            .split('/')
            .filter(|p| !p.is_empty())
        {
            let ctl = dir.join("cgroup.subtree_control");
            if ctl.exists() {
                // Enabling may fail per controller (e.g. not available): keep what works.
                for c in ["+cpu", "+memory", "+pids", "+cpuset"] {
                    let _ = std::fs::write(&ctl, c);
                }
            }
            dir = dir.join(part);
        }
        Ok(())
    }
}

impl CgroupManager for CgroupV2 {
    fn version(&self) -> &'static str {
        "v2"
    }

    fn apply(&self, path: &str, limits: &Limits) -> io::Result<()> {
        let dir = join(&self.mount, path);
        std::fs::create_dir_all(&dir)?;
        self.enable_controllers(path)?;
        write(
            &dir,
            "cpu.weight",
            &shares_to_weight(limits.cpu_shares).to_string(),
        )?;
        let quota = limits
            .cpu_quota
            .map_or("max".to_string(), |q| q.to_string());
        write(&dir, "cpu.max", &format!("{quota} {CPU_PERIOD_US}"))?;
        let mem = limits
            .memory_limit
            .map_or("max".to_string(), |m| m.to_string());
        write(&dir, "memory.max", &mem)
    }

    fn read(&self, path: &str) -> io::Result<Limits> {
        let dir = join(&self.mount, path);
        let weight: u64 = read_trim(&dir, "cpu.weight")?.parse().unwrap_or(0);
        let max = read_trim(&dir, "cpu.max")?;
        let quota = max.split_whitespace().next().and_then(|q| q.parse().ok());
        let mem = read_trim(&dir, "memory.max")?.parse().ok();
        Ok(Limits {
            cpu_shares: weight_to_shares(weight),
            cpu_quota: quota,
            memory_limit: mem,
        })
    }

    fn remove(&self, path: &str) -> io::Result<()> {
        match std::fs::remove_dir(join(&self.mount, path)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    fn exists(&self, path: &str) -> bool {
        join(&self.mount, path).exists()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_conversion_matches_runc() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262144), 10000);
        assert_eq!(weight_to_shares(1), 2);
        assert_eq!(shares_to_weight(weight_to_shares(39)), 39);
    }

    /// The v2 code path cannot run on this (v1) host: exercise it against a directory
    /// laid out like a cgroup2 mount, where writes are plain files.
    #[test]
    fn writes_unified_files() {
        let mount = tempfile::tempdir().unwrap();
        std::fs::write(mount.path().join("cgroup.subtree_control"), "").unwrap();
        let m = CgroupV2::new(mount.path().to_path_buf());
        let limits = Limits {
            cpu_shares: 512,
            cpu_quota: Some(50_000),
            memory_limit: Some(64 << 20),
        };
        m.apply("/kubepods/burstable/podu", &limits).unwrap();
        let dir = mount.path().join("kubepods/burstable/podu");
        assert_eq!(
            std::fs::read_to_string(dir.join("cpu.max")).unwrap(),
            "50000 100000"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("memory.max")).unwrap(),
            "67108864"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("cpu.weight")).unwrap(),
            "20"
        );
        let back = m.read("/kubepods/burstable/podu").unwrap();
        assert_eq!(back.cpu_quota, Some(50_000));
        assert_eq!(back.memory_limit, Some(64 << 20));
        assert_eq!(shares_to_weight(back.cpu_shares), 20);
        m.apply(
            "/kubepods/besteffort",
            &Limits {
                cpu_shares: 2,
                ..Default::default()
            },
        )
        .unwrap();
        let be = mount.path().join("kubepods/besteffort");
        assert_eq!(
            std::fs::read_to_string(be.join("cpu.max")).unwrap(),
            "max 100000"
        );
        assert_eq!(
            std::fs::read_to_string(be.join("memory.max")).unwrap(),
            "max"
        );
    }
}
