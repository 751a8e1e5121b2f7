//! The cert dir as client-go's certificate file store keeps it: each certificate issued
//! is written with its key as `<prefix>-<timestamp>.pem` (mode 0600), and the symlink
//! `<prefix>-current.pem` names the one in use. The link is replaced by renaming a fresh
//! `<prefix>-updated.pem` link over it, so it never dangles or is missing.

use super::pair::KeyedCertificate;
use super::template::CertificateKind;
use anyhow::{bail, Context, Result};
use chrono::{DateTime, TimeZone};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The timestamp in a stored file's name (Go's layout `2006-01-02-15-04-05`, local time).
pub const TIMESTAMP_FORMAT: &str = "%Y-%m-%d-%H-%M-%S";

/// The file of a pair stored at `when`: `<prefix>-<timestamp>.pem`.
pub fn pair_file_name<Tz: TimeZone>(prefix: &str, when: &DateTime<Tz>) -> String
where
    Tz::Offset: std::fmt::Display,
{
    format!("{prefix}-{}.pem", when.format(TIMESTAMP_FORMAT))
}

/// The pairs of one certificate kind in one directory.
#[derive(Debug, Clone)]
pub struct PairStore {
    dir: PathBuf,
    prefix: &'static str,
}

impl PairStore {
    /// The store of `kind` in `dir` (`--cert-dir`).
    pub fn new(dir: impl Into<PathBuf>, kind: CertificateKind) -> Self {
        PairStore {
            dir: dir.into(),
            prefix: kind.store_prefix(),
        }
    }

    /// `<dir>/<prefix>-current.pem`, the path kubeconfigs name.
    pub fn current_path(&self) -> PathBuf {
        self.dir.join(format!("{}-current.pem", self.prefix))
    }

    fn updated_path(&self) -> PathBuf {
        self.dir.join(format!("{}-updated.pem", self.prefix))
    }

    /// The pair `current` points at, `None` when there is none yet. An `updated` link
    /// left by an interrupted update without a `current` one is taken as current first.
    pub fn current(&self) -> Result<Option<KeyedCertificate>> {
        self.recover()?;
        let path = self.current_path();
        let pem = match std::fs::read(&path) {
            Ok(pem) => pem,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("read {}", path.display())),
        };
        KeyedCertificate::from_pem(&pem, &path.display().to_string()).map(Some)
    }

    fn recover(&self) -> Result<()> {
        let (current, updated) = (self.current_path(), self.updated_path());
        if current.exists() || !is_symlink(&updated)? {
            return Ok(());
        }
        std::fs::rename(&updated, &current)
            .with_context(|| format!("rename {} to {}", updated.display(), current.display()))
    }

    /// Writes `pair` as a new timestamped file and points `current` at it.
    pub fn update(&self, pair: &KeyedCertificate) -> Result<PathBuf> {
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("create the cert dir {}", self.dir.display()))?;
        let file = std::path::absolute(
            self.dir
                .join(pair_file_name(self.prefix, &chrono::Local::now())),
        )
        .context("absolute cert dir")?;
        write_private(&file, pair.combined_pem().as_bytes())?;
        let (current, updated) = (self.current_path(), self.updated_path());
        for link in [&current, &updated] {
            if link.exists() && !is_symlink(link)? {
                bail!(
                    "expected {} to be a symlink but it is a file",
                    link.display()
                );
            }
        }
        if is_symlink(&updated)? {
            std::fs::remove_file(&updated)
                .with_context(|| format!("remove {}", updated.display()))?;
        }
        std::os::unix::fs::symlink(&file, &updated)
            .with_context(|| format!("symlink {} to {}", updated.display(), file.display()))?;
        std::fs::rename(&updated, &current)
            .with_context(|| format!("rename {} to {}", updated.display(), current.display()))?;
        Ok(file)
    }
}

fn is_symlink(path: &Path) -> Result<bool> {
    match std::fs::symlink_metadata(path) {
        Ok(m) => Ok(m.file_type().is_symlink()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("stat {}", path.display())),
    }
}

/// Writes `data` to `path` readable by its owner only, synced to disk.
pub fn write_private(path: &Path, data: &[u8]) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("open {}", path.display()))?;
    // An existing file keeps its mode on open; tighten it.
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .and_then(|()| f.write_all(data))
        .and_then(|()| f.sync_all())
        .with_context(|| format!("write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certificate::pair::tests::pair;
    use chrono::Utc;

    fn keyed(cn: &str) -> KeyedCertificate {
        let now = Utc::now();
        let (c, k) = pair(cn, now, now + chrono::Duration::hours(1));
        KeyedCertificate::from_parts(c.as_bytes(), k.as_bytes(), cn).unwrap()
    }

    #[test]
    fn file_names_follow_gos_layout() {
        let t = chrono::Utc.with_ymd_and_hms(2026, 3, 4, 5, 6, 7).unwrap();
        assert_eq!(
            pair_file_name("kubelet-client", &t),
            "kubelet-client-2026-03-04-05-06-07.pem"
        );
    }

    #[test]
    fn update_writes_a_private_file_and_moves_the_current_link() {
        let dir = tempfile::tempdir().unwrap();
        let store = PairStore::new(dir.path().join("pki"), CertificateKind::Client);
        assert!(store.current().unwrap().is_none());
        let first = store.update(&keyed("a")).unwrap();
        let name = first.file_name().unwrap().to_str().unwrap().to_string();
        assert!(
            name.starts_with("kubelet-client-20") && name.ends_with(".pem"),
            "{name}"
        );
        let mode = std::fs::metadata(&first).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let link = store.current_path();
        assert!(link.ends_with("pki/kubelet-client-current.pem"));
        assert_eq!(std::fs::read_link(&link).unwrap(), first);
        assert_eq!(store.current().unwrap().unwrap().common_name, "a");
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let second = store.update(&keyed("b")).unwrap();
        assert_ne!(first, second);
        assert!(first.exists(), "old pairs are kept, as upstream");
        assert_eq!(std::fs::read_link(&link).unwrap(), second);
        assert_eq!(store.current().unwrap().unwrap().common_name, "b");
        assert!(!dir.path().join("pki/kubelet-client-updated.pem").exists());
    }

    #[test]
    fn an_interrupted_update_is_recovered_and_a_regular_file_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = PairStore::new(dir.path(), CertificateKind::Serving);
        let file = store.update(&keyed("s")).unwrap();
        std::fs::remove_file(store.current_path()).unwrap();
        std::os::unix::fs::symlink(&file, dir.path().join("kubelet-server-updated.pem")).unwrap();
        assert_eq!(store.current().unwrap().unwrap().common_name, "s");
        assert!(is_symlink(&store.current_path()).unwrap());
        std::fs::remove_file(store.current_path()).unwrap();
        std::fs::write(store.current_path(), "x").unwrap();
        let e = store.update(&keyed("t")).unwrap_err();
        assert!(format!("{e:#}").contains("to be a symlink"), "{e:#}");
    }
}
