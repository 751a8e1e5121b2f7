//! `volumeMounts[].subPath` and `subPathExpr`, made safe as upstream's subpath package does:
//! the subdirectory is resolved inside the volume (a symlink may not lead out of it),
//! created if missing without following symlinks, opened segment by segment with
//! `O_NOFOLLOW`, and bind-mounted from that open descriptor to
//! `<pod dir>/volume-subpaths/<volume>/<container>/<mount index>` — the path CRI gets. A
//! user who swaps a directory for a symlink after the checks cannot redirect the mount.
//!
//! As upstream, a subPath mount of a configMap/secret/projected file is bound to the file
//! that existed when the container started and does not see later updates.

use k8s_openapi::api::core::v1::{Container, VolumeMount};
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{fchmod, fstat, mkdirat, Mode, SFlag};
use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

/// The directory under a pod's directory that holds the subPath bind mounts.
pub const SUBPATHS_DIR: &str = "volume-subpaths";

/// The host path of each of `c`'s volumeMounts, in order: the volume's directory, or for a
/// `subPath`/`subPathExpr` the safely prepared bind mount of the subdirectory. An error is
/// the message of the container's `CreateContainerConfigError`, worded as upstream's
/// `makeMounts` (details that would reveal the host's filesystem only go to the log).
pub fn mount_sources(
    pod_dir: &Path,
    c: &Container,
    volumes: &HashMap<String, PathBuf>,
    env: &[(String, String)],
) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for (index, m) in c.volume_mounts.iter().flatten().enumerate() {
        let Some(volume_path) = volumes.get(&m.name) else {
            return Err(format!(
                "cannot find volume {:?} to mount into container {:?}",
                m.name, c.name
            ));
        };
        let sub_path = sub_path_of(m, index, env)?;
        if sub_path.is_empty() {
            out.push(volume_path.clone());
            continue;
        }
        validate(&sub_path)?;
        let full = volume_path.join(&sub_path);
        if std::fs::metadata(&full).is_err() {
            let perm = std::fs::metadata(volume_path)
                .map(|m| m.mode() & 0o7777)
                .map_err(|e| format!("stat volume {:?}: {e}", m.name))?;
            if let Err(e) = safe_make_dir(Path::new(&sub_path), volume_path, perm) {
                tracing::error!(container = %c.name, volume_mount = %m.name, error = %e, "Failed to create subPath directory for volumeMount of the container");
                return Err(format!(
                    "failed to create subPath directory for volumeMount {:?} of container {:?}",
                    m.name, c.name
                ));
            }
        }
        let target = SubPath {
            pod_dir,
            volume: &m.name,
            container: &c.name,
            index,
            volume_path,
            path: &full,
        };
        match prepare(&target) {
            Ok(host) => out.push(host),
            Err(e) => {
                tracing::error!(container = %c.name, volume_mount = %m.name, error = %e, "Failed to prepare subPath for volumeMount of the container");
                return Err(format!(
                    "failed to prepare subPath for volumeMount {:?} of container {:?}",
                    m.name, c.name
                ));
            }
        }
    }
    Ok(out)
}

/// The mount's subPath: `subPathExpr` expanded from the container's environment, else
/// `subPath`; empty when neither is set.
fn sub_path_of(m: &VolumeMount, index: usize, env: &[(String, String)]) -> Result<String, String> {
    match m.sub_path_expr.as_deref().filter(|e| !e.is_empty()) {
        Some(expr) => expand_expr(expr, env).map_err(|e| {
            format!(
                "volumeMounts[{index}].subPathExpr {expr:?} (volume {:?}): {e}",
                m.name
            )
        }),
        None => Ok(m.sub_path.clone().unwrap_or_default()),
    }
}

/// Expands `$(VAR)` in a `subPathExpr` from the container's environment (the last value of
/// a name wins); a variable that is undefined or empty is an error, as upstream's
/// `ExpandContainerVolumeMounts`.
pub fn expand_expr(expr: &str, env: &[(String, String)]) -> Result<String, String> {
    let map: HashMap<&str, &str> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let missing = std::cell::RefCell::new(std::collections::BTreeSet::new());
    let expanded = crate::pod::env::expand(expr, &|name| match map.get(name) {
        Some(v) if !v.is_empty() => Some(v.to_string()),
        _ => {
            missing.borrow_mut().insert(name.to_string());
            Some(String::new())
        }
    });
    let missing = missing.into_inner();
    if missing.is_empty() {
        Ok(expanded)
    } else {
        Err(format!(
            "missing value for {}",
            missing.into_iter().collect::<Vec<_>>().join(", ")
        ))
    }
}

/// Rejects an absolute subPath and one with a `..` element, with upstream's messages.
pub fn validate(sub_path: &str) -> Result<(), String> {
    if sub_path.starts_with('/') {
        return Err(format!(
            "error SubPath `{sub_path}` must not be an absolute path"
        ));
    }
    if sub_path.split('/').any(|p| p == "..") {
        return Err(format!(
            "unable to provision SubPath `{sub_path}`: must not contain '..'"
        ));
    }
    Ok(())
}

/// Whether `path` is `base` or below it, element by element (both already clean).
pub fn within(path: &Path, base: &Path) -> bool {
    path.starts_with(base)
}

fn err(kind: io::ErrorKind, msg: String) -> io::Error {
    io::Error::new(kind, msg)
}

/// The elements of `rel` (a clean relative path).
fn segments(rel: &Path) -> Vec<&std::ffi::OsStr> {
    rel.components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s),
            _ => None,
        })
        .collect()
}

/// Opens `path` (symlinks already resolved) inside `base` one element at a time with
/// `O_NOFOLLOW`, failing on any symlink: what is opened is certainly inside `base`.
fn safe_open(path: &Path, base: &Path) -> io::Result<OwnedFd> {
    let rel = path.strip_prefix(base).map_err(|_| {
        err(
            io::ErrorKind::PermissionDenied,
            format!(
                "path {} is outside of allowed base {}",
                path.display(),
                base.display()
            ),
        )
    })?;
    let nofollow = OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let mut fd = nix::fcntl::open(base, OFlag::O_RDONLY | nofollow, Mode::empty())
        .map_err(|e| io::Error::other(format!("cannot open directory {}: {e}", base.display())))?;
    let mut current = base.to_path_buf();
    for seg in segments(rel) {
        current.push(seg);
        let child = openat(&fd, seg, OFlag::O_PATH | nofollow, Mode::empty())
            .map_err(|e| io::Error::other(format!("cannot open {}: {e}", current.display())))?;
        let st = fstat(&child)?;
        if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFLNK {
            return Err(err(
                io::ErrorKind::PermissionDenied,
                format!("unexpected symlink found {}", current.display()),
            ));
        }
        fd = child;
    }
    Ok(fd)
}

/// Creates directory `sub` (relative) inside `base` with mode `perm`, as upstream's
/// `SafeMakeDir`: the part that exists must resolve inside `base`; the rest is created
/// with `mkdirat` and entered with `O_NOFOLLOW`, so nobody can slip a symlink in between.
pub fn safe_make_dir(sub: &Path, base: &Path, perm: u32) -> io::Result<()> {
    let base = std::fs::canonicalize(base)?;
    let full = base.join(sub);
    if !within(&full, &base) {
        return Err(err(
            io::ErrorKind::PermissionDenied,
            format!(
                "path {} is outside of allowed base {}",
                full.display(),
                base.display()
            ),
        ));
    }
    if let Ok(m) = std::fs::metadata(&full) {
        return if m.is_dir() {
            Ok(())
        } else {
            Err(err(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a directory", full.display()),
            ))
        };
    }
    // The longest prefix that exists (following symlinks, as the kernel would).
    let parts = segments(sub);
    let mut existing = base.clone();
    let mut to_create = &parts[..];
    for (i, seg) in parts.iter().enumerate() {
        if std::fs::metadata(existing.join(seg)).is_err() {
            to_create = &parts[i..];
            break;
        }
        existing.push(seg);
    }
    let real = std::fs::canonicalize(&existing)?;
    if !within(&real, &base) {
        return Err(err(
            io::ErrorKind::PermissionDenied,
            format!(
                "path {} is outside of allowed base {}",
                real.display(),
                base.display()
            ),
        ));
    }
    let mut parent = safe_open(&real, &base)?;
    let mode = Mode::from_bits_truncate(perm);
    let mut current = real;
    for seg in to_create {
        current.push(seg);
        mkdirat(&parent, *seg, mode).map_err(|e| {
            io::Error::other(format!(
                "cannot create directory {}: {e}",
                current.display()
            ))
        })?;
        let child = openat(
            &parent,
            *seg,
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io::Error::other(format!("cannot open {}: {e}", current.display())))?;
        // mkdirat's mode went through the umask; the container must get `perm` exactly.
        fchmod(&child, mode)?;
        parent = child;
    }
    Ok(())
}

/// One subPath mount to prepare.
#[derive(Debug, Clone, Copy)]
pub struct SubPath<'a> {
    /// The pod's directory (`<root>/pods/<uid>`).
    pub pod_dir: &'a Path,
    /// The volume's name.
    pub volume: &'a str,
    /// The container's name.
    pub container: &'a str,
    /// The index of the mount in the container's volumeMounts.
    pub index: usize,
    /// The volume's host directory.
    pub volume_path: &'a Path,
    /// `volume_path` joined with the subPath.
    pub path: &'a Path,
}

/// Where the subPath is bind-mounted for CRI.
pub fn bind_target(s: &SubPath) -> PathBuf {
    s.pod_dir
        .join(SUBPATHS_DIR)
        .join(s.volume)
        .join(s.container)
        .join(s.index.to_string())
}

/// Resolves the subPath inside its volume, opens it without following symlinks and
/// bind-mounts that open file to [`bind_target`], which it returns. A mount already there
/// of the same file is kept (a restarted container reuses it).
pub fn prepare(s: &SubPath) -> io::Result<PathBuf> {
    let volume = std::fs::canonicalize(s.volume_path)
        .map_err(|e| io::Error::other(format!("resolve {}: {e}", s.volume_path.display())))?;
    let path = std::fs::canonicalize(s.path)
        .map_err(|e| io::Error::other(format!("resolve {}: {e}", s.path.display())))?;
    if !within(&path, &volume) {
        return Err(err(
            io::ErrorKind::PermissionDenied,
            format!(
                "subpath {} not within volume path {}",
                path.display(),
                volume.display()
            ),
        ));
    }
    let fd = safe_open(&path, &volume)?;
    let target = bind_target(s);
    if super::is_mountpoint(&target) {
        let same = std::fs::symlink_metadata(&target)
            .ok()
            .zip(std::fs::symlink_metadata(&path).ok())
            .is_some_and(|(t, p)| t.dev() == p.dev() && t.ino() == p.ino());
        if same {
            return Ok(target);
        }
        nix::mount::umount2(&target, nix::mount::MntFlags::MNT_DETACH)
            .map_err(|e| io::Error::other(format!("unmount {}: {e}", target.display())))?;
    }
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent)?;
    }
    if std::fs::symlink_metadata(&path)?.is_dir() {
        match std::fs::create_dir(&target) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
    } else if std::fs::symlink_metadata(&target).is_err() {
        std::fs::write(&target, b"")?;
    }
    let source = format!("/proc/self/fd/{}", fd.as_raw_fd());
    nix::mount::mount(
        Some(source.as_str()),
        &target,
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| io::Error::other(format!("bind-mount {}: {e}", path.display())))?;
    Ok(target)
}

#[cfg(test)]
mod tests;
