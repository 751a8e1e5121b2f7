//! Upstream's atomic writer for configMap, secret, downwardAPI and projected volumes: the
//! payload goes into a fresh `..<timestamp>` directory, `..data` is switched to it with one
//! rename of a symlink, and every visible file is a symlink through `..data` — so a running
//! container sees either the whole old payload or the whole new one, never a mix.

use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

/// The name of the symlink to the current payload directory.
pub const DATA_DIR: &str = "..data";

/// One file of a payload: contents and mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProjection {
    /// Contents.
    pub data: Vec<u8>,
    /// Permission bits.
    pub mode: u32,
}

/// Writes `payload` (relative path → file) into `dir` atomically. Unchanged payloads
/// are not rewritten.
pub fn write(dir: &Path, payload: &BTreeMap<String, FileProjection>) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let data_link = dir.join(DATA_DIR);
    if let Ok(current) = std::fs::read_link(&data_link) {
        if same_payload(&dir.join(&current), payload) {
            return Ok(());
        }
    }
    let old = std::fs::read_link(&data_link).ok();
    let stamp = chrono::Utc::now()
        .format("..%Y_%m_%d_%H_%M_%S.%f")
        .to_string();
    let ts_dir = dir.join(&stamp);
    std::fs::create_dir_all(&ts_dir)?;
    for (path, file) in payload {
        check_relative(path)?;
        let target = ts_dir.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&target, &file.data)?;
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(file.mode))?;
    }
    let tmp_link = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp_link);
    symlink(&stamp, &tmp_link)?;
    std::fs::rename(&tmp_link, &data_link)?;
    // User-visible entries: one symlink per top-level name through ..data.
    let mut top: Vec<String> = payload
        .keys()
        .map(|p| p.split('/').next().unwrap_or(p).to_string())
        .collect();
    top.dedup();
    for name in &top {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            symlink(Path::new(DATA_DIR).join(name), &link)?;
        }
    }
    // Remove entries no longer in the payload, and the old payload directory.
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name().to_string_lossy().to_string();
        if !name.starts_with("..") && !top.contains(&name) {
            let _ = std::fs::remove_file(dir.join(&name));
        }
    }
    if let Some(old) = old {
        let _ = std::fs::remove_dir_all(dir.join(old));
    }
    Ok(())
}

fn check_relative(path: &str) -> io::Result<()> {
    let bad = path.is_empty()
        || path.starts_with('/')
        || path.split('/').any(|p| p == ".." || p.starts_with(".."));
    if bad {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid payload path {path:?}"),
        ));
    }
    Ok(())
}

fn same_payload(dir: &Path, payload: &BTreeMap<String, FileProjection>) -> bool {
    payload.iter().all(|(p, f)| {
        let path = dir.join(p);
        std::fs::read(&path).is_ok_and(|d| d == f.data)
            && std::fs::metadata(&path).is_ok_and(|m| m.permissions().mode() & 0o7777 == f.mode)
    }) && count_files(dir) == payload.len()
}

fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| {
                    if e.path().is_dir() {
                        count_files(&e.path())
                    } else {
                        1
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(kv: &[(&str, &str)]) -> BTreeMap<String, FileProjection> {
        kv.iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    FileProjection {
                        data: v.as_bytes().to_vec(),
                        mode: 0o644,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn swaps_payloads_atomically_through_data_symlink() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &payload(&[("a", "1"), ("sub/b", "2")])).unwrap();
        assert_eq!(std::fs::read_to_string(dir.path().join("a")).unwrap(), "1");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("sub/b")).unwrap(),
            "2"
        );
        assert_eq!(
            std::fs::read_link(dir.path().join("a")).unwrap(),
            Path::new("..data/a")
        );
        let first = std::fs::read_link(dir.path().join(DATA_DIR)).unwrap();
        write(dir.path(), &payload(&[("a", "3")])).unwrap();
        let second = std::fs::read_link(dir.path().join(DATA_DIR)).unwrap();
        assert_ne!(first, second);
        assert!(!dir.path().join(&first).exists(), "old payload removed");
        assert_eq!(std::fs::read_to_string(dir.path().join("a")).unwrap(), "3");
        assert!(
            std::fs::symlink_metadata(dir.path().join("sub")).is_err(),
            "stale entry removed"
        );
        write(dir.path(), &payload(&[("a", "3")])).unwrap();
        assert_eq!(
            std::fs::read_link(dir.path().join(DATA_DIR)).unwrap(),
            second,
            "unchanged payload is not rewritten"
        );
    }

    #[test]
    fn rejects_escaping_paths() {
        let dir = tempfile::tempdir().unwrap();
        assert!(write(dir.path(), &payload(&[("../x", "1")])).is_err());
    }
}
