//! Filesystem figures: capacity and free space of the filesystem holding a path (statvfs,
//! as cAdvisor's `GetDirFsInfo`), and the disk usage and inode count of a file tree (as
//! upstream's `MetricsDu`: `du` and `find | wc -l`).

use super::types::{FsStats, Time};
use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// A filesystem's totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FsInfo {
    /// Size in bytes.
    pub capacity: u64,
    /// Bytes free for unprivileged users.
    pub available: u64,
    /// Bytes in use (size minus all free blocks).
    pub usage: u64,
    /// Inodes.
    pub inodes: u64,
    /// Free inodes.
    pub inodes_free: u64,
}

impl FsInfo {
    /// The filesystem holding `path`.
    pub fn of(path: &Path) -> Option<FsInfo> {
        let s = nix::sys::statvfs::statvfs(path).ok()?;
        let frsize = s.fragment_size() as u64;
        Some(FsInfo {
            capacity: s.blocks() as u64 * frsize,
            available: s.blocks_available() as u64 * frsize,
            usage: (s.blocks() as u64).saturating_sub(s.blocks_free() as u64) * frsize,
            inodes: s.files() as u64,
            inodes_free: s.files_free() as u64,
        })
    }

    /// The whole filesystem as FsStats (node `fs`): usage and used inodes included.
    pub fn whole(&self, time: Time) -> FsStats {
        FsStats {
            time,
            used_bytes: Some(self.usage),
            inodes_used: Some(self.inodes.saturating_sub(self.inodes_free)),
            ..self.totals(time)
        }
    }

    /// Only the filesystem's totals, for an object on it to add its own usage to.
    pub fn totals(&self, time: Time) -> FsStats {
        FsStats {
            time,
            available_bytes: Some(self.available),
            capacity_bytes: Some(self.capacity),
            inodes_free: Some(self.inodes_free),
            inodes: Some(self.inodes),
            ..Default::default()
        }
    }
}

/// Bytes allocated on disk and inodes under `path` (the path itself included), counting
/// hard-linked files once and not crossing into other filesystems.
pub fn disk_usage(path: &Path) -> std::io::Result<(u64, u64)> {
    let root = std::fs::symlink_metadata(path)?;
    let root_dev = root.dev();
    let mut seen = HashSet::new();
    let mut bytes = 0u64;
    let mut inodes = 0u64;
    let mut stack = vec![(path.to_path_buf(), root)];
    while let Some((p, meta)) = stack.pop() {
        if !seen.insert((meta.dev(), meta.ino())) {
            continue;
        }
        bytes += meta.blocks() * 512;
        inodes += 1;
        if meta.is_dir() {
            let Ok(entries) = std::fs::read_dir(&p) else {
                continue;
            };
            for e in entries.flatten() {
                if let Ok(m) = std::fs::symlink_metadata(e.path()) {
                    if m.dev() == root_dev {
                        stack.push((e.path(), m));
                    }
                }
            }
        }
    }
    Ok((bytes, inodes))
}

/// Usage of the regular files directly in `dir` (upstream's log stats: each log file is
/// measured, subdirectories are not), on top of the filesystem's totals.
pub fn files_usage(dir: &Path, fs: &FsInfo) -> std::io::Result<FsStats> {
    let mut stats = fs.totals(Time::now());
    let (mut bytes, mut inodes) = (0u64, 0u64);
    for e in std::fs::read_dir(dir)?.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        if let Ok((b, i)) = disk_usage(&e.path()) {
            bytes += b;
            inodes += i;
        }
    }
    stats.used_bytes = Some(bytes);
    stats.inodes_used = Some(inodes);
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statvfs_of_a_temp_dir() {
        let d = tempfile::tempdir().unwrap();
        let fs = FsInfo::of(d.path()).unwrap();
        assert!(fs.capacity > 0 && fs.available <= fs.capacity && fs.usage <= fs.capacity);
        let whole = fs.whole(Time::default());
        assert_eq!(whole.inodes_used, Some(fs.inodes - fs.inodes_free));
        let totals = fs.totals(Time::default());
        assert_eq!(totals.used_bytes, None);
        assert_eq!(totals.capacity_bytes, Some(fs.capacity));
    }

    #[test]
    fn du_counts_blocks_and_inodes_once() {
        let d = tempfile::tempdir().unwrap();
        let sub = d.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        std::fs::write(sub.join("a"), vec![1u8; 64 * 1024]).unwrap();
        std::fs::hard_link(sub.join("a"), d.path().join("b")).unwrap();
        let (bytes, inodes) = disk_usage(d.path()).unwrap();
        // root dir, sub dir and one file (linked twice).
        assert_eq!(inodes, 3);
        assert!(bytes >= 64 * 1024, "{bytes}");
        assert!(disk_usage(&d.path().join("missing")).is_err());
    }

    #[test]
    fn log_usage_counts_only_files() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("0.log"), vec![b'x'; 8192]).unwrap();
        std::fs::create_dir(d.path().join("nested")).unwrap();
        std::fs::write(d.path().join("nested/1.log"), vec![b'x'; 8192]).unwrap();
        let fs = FsInfo::of(d.path()).unwrap();
        let s = files_usage(d.path(), &fs).unwrap();
        assert_eq!(s.inodes_used, Some(1));
        assert!(s.used_bytes.unwrap() >= 8192);
        assert_eq!(s.capacity_bytes, Some(fs.capacity));
    }
}
