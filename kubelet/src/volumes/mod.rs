//! Pod volumes: emptyDir (disk or tmpfs), hostPath (type-checked), configMap, secret,
//! downwardAPI and projected (incl. serviceAccountToken and kube-root-ca.crt, i.e. the
//! kube-api-access volume), and persistentVolumeClaim of hostPath and local volumes
//! ([`claim`]). Contents are written with the [`atomic`] writer so updates
//! reach running pods. Container mounts with `subPath`/`subPathExpr` are prepared by
//! [`subpath`].

pub mod atomic;
pub mod claim;
pub mod ownership;
pub mod source;
pub mod subpath;

use crate::pod::resource_field::{resource_value, NodeAllocatable};
use atomic::FileProjection;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{
    DownwardAPIVolumeFile, KeyToPath, PersistentVolume, PersistentVolumeClaim, Pod, Volume,
};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

pub use source::{ApiVolumeSource, StaticVolumeSource};

/// Key → bytes of a ConfigMap or Secret, `None` when it does not exist.
pub type DataFuture<'a> = BoxFuture<'a, anyhow::Result<Option<BTreeMap<String, Vec<u8>>>>>;

/// Where volume contents come from: the apiserver, or fixed maps in tests.
pub trait VolumeSource: Send + Sync {
    /// A ConfigMap's data (binaryData included), `None` if it does not exist.
    fn config_map<'a>(&'a self, ns: &'a str, name: &'a str) -> DataFuture<'a>;
    /// A Secret's data, `None` if it does not exist.
    fn secret<'a>(&'a self, ns: &'a str, name: &'a str) -> DataFuture<'a>;
    /// A token for the pod's service account (TokenRequest bound to the pod).
    fn token<'a>(
        &'a self,
        pod: &'a Pod,
        audience: Option<&'a str>,
        expiration_seconds: i64,
    ) -> BoxFuture<'a, anyhow::Result<String>>;
    /// A PersistentVolumeClaim, `None` if it does not exist.
    fn claim<'a>(
        &'a self,
        ns: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<Option<PersistentVolumeClaim>>>;
    /// A PersistentVolume, `None` if it does not exist.
    fn persistent_volume<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<Option<PersistentVolume>>>;
}

/// A volume that cannot be set up: the pod waits (upstream reports `FailedMount`).
#[derive(Debug, thiserror::Error)]
#[error("MountVolume.SetUp failed for volume {volume:?}: {message}")]
pub struct MountError {
    /// The volume's name.
    pub volume: String,
    /// Why.
    pub message: String,
}

/// The directory of a volume of plugin `plugin` (e.g. `kubernetes.io~configmap`).
pub fn volume_dir(pod_dir: &Path, plugin: &str, name: &str) -> PathBuf {
    pod_dir.join("volumes").join(plugin).join(name)
}

fn mode_of(item_mode: Option<i32>, default_mode: Option<i32>) -> u32 {
    item_mode.or(default_mode).unwrap_or(0o644) as u32
}

/// Projects `data` by `items` (all keys when none); a missing listed key is an error
/// unless `optional`.
fn project(
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&Vec<KeyToPath>>,
    default_mode: Option<i32>,
    optional: bool,
) -> Result<BTreeMap<String, FileProjection>, String> {
    let mut out = BTreeMap::new();
    match items {
        None => {
            for (k, v) in data {
                out.insert(
                    k.clone(),
                    FileProjection {
                        data: v.clone(),
                        mode: mode_of(None, default_mode),
                    },
                );
            }
        }
        Some(items) => {
            for item in items {
                match data.get(&item.key) {
                    Some(v) => {
                        out.insert(
                            item.path.clone(),
                            FileProjection {
                                data: v.clone(),
                                mode: mode_of(item.mode, default_mode),
                            },
                        );
                    }
                    None if optional => {}
                    None => return Err(format!("configmap/secret key {:?} not found", item.key)),
                }
            }
        }
    }
    Ok(out)
}

fn downward(
    pod: &Pod,
    items: &[DownwardAPIVolumeFile],
    default_mode: Option<i32>,
    alloc: &NodeAllocatable,
) -> Result<BTreeMap<String, FileProjection>, String> {
    let mut out = BTreeMap::new();
    for item in items {
        let text = if let Some(f) = &item.field_ref {
            match f.field_path.as_str() {
                "metadata.labels" => format_map(pod.metadata.labels.as_ref()),
                "metadata.annotations" => format_map(pod.metadata.annotations.as_ref()),
                path => {
                    crate::pod::env::field_ref(pod, path, &Default::default()).map_err(|e| e.0)?
                }
            }
        } else if let Some(r) = &item.resource_field_ref {
            resource_value(pod, None, r, alloc)?
        } else {
            continue;
        };
        out.insert(
            item.path.clone(),
            FileProjection {
                data: text.into_bytes(),
                mode: mode_of(item.mode, default_mode),
            },
        );
    }
    Ok(out)
}

/// `key="value"` lines, sorted, as upstream's downward API formats labels/annotations.
fn format_map(m: Option<&BTreeMap<String, String>>) -> String {
    m.into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Sets up every volume of `pod` under `pod_dir`; returns the host path of each by name.
/// `alloc` is the node's allocatable, the limits of containers without any in the
/// downward API.
pub async fn setup(
    pod: &Pod,
    pod_dir: &Path,
    source: &dyn VolumeSource,
    alloc: &NodeAllocatable,
) -> Result<HashMap<String, PathBuf>, MountError> {
    let mut paths = HashMap::new();
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let path = setup_one(pod, pod_dir, &ns, v, source, alloc)
            .await
            .map_err(|message| MountError {
                volume: v.name.clone(),
                message,
            })?;
        paths.insert(v.name.clone(), path);
    }
    Ok(paths)
}

async fn setup_one(
    pod: &Pod,
    pod_dir: &Path,
    ns: &str,
    v: &Volume,
    source: &dyn VolumeSource,
    alloc: &NodeAllocatable,
) -> Result<PathBuf, String> {
    let e = |e: std::io::Error| e.to_string();
    if let Some(ed) = &v.empty_dir {
        let dir = volume_dir(pod_dir, "kubernetes.io~empty-dir", &v.name);
        std::fs::create_dir_all(&dir).map_err(e)?;
        if ed.medium.as_deref() == Some("Memory") {
            let size = ed
                .size_limit
                .as_ref()
                .and_then(|q| api_helpers::quantity::value(&q.0).ok());
            mount_tmpfs(&dir, size)?;
        }
        let fs_group = ownership::fs_group(pod);
        let mode = if fs_group.is_some() {
            ownership::owned_mode(0o777, true, false)
        } else {
            0o777
        };
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(mode))
            .map_err(e)?;
        if let Some((gid, _)) = fs_group {
            // Walked once (the root then matches): afterwards the setgid root makes what
            // containers create inherit the group.
            ownership::set_volume_ownership(&dir, gid, false, true).map_err(e)?;
        }
        return Ok(dir);
    }
    if let Some(hp) = &v.host_path {
        let path = PathBuf::from(&hp.path);
        check_host_path(&path, hp.type_.as_deref().unwrap_or(""))?;
        return Ok(path);
    }
    // A generic ephemeral volume is the claim `<pod>-<volume>` the ephemeral-volume
    // controller created for the pod.
    let claim_ref = match (&v.persistent_volume_claim, &v.ephemeral) {
        (Some(pvc), _) => Some((
            pvc.claim_name.clone(),
            pvc.read_only.unwrap_or(false),
            false,
        )),
        (None, Some(_)) => Some((
            api_helpers::volumes::ephemeral_claim_name(pod, &v.name),
            false,
            true,
        )),
        _ => None,
    };
    if let Some((claim_name, read_only, ephemeral)) = claim_ref {
        let fetched = source.claim(ns, &claim_name).await.map_err(|e| {
            format!(
                "error processing PVC {ns}/{claim_name}: failed to fetch PVC from API server: {e}"
            )
        })?;
        let volume = claim::bound_volume_name(ns, &claim_name, fetched.as_ref())?;
        let Some(c) = fetched else {
            return Err(format!("error processing PVC {ns}/{claim_name}: not found"));
        };
        if ephemeral {
            claim::check_owned_by(pod, &c)?;
        }
        let pv = source
            .persistent_volume(&volume)
            .await
            .map_err(|e| format!("failed to fetch PV {volume} from API server: {e}"))?;
        let m = claim::claim_mount(&volume, pv.as_ref(), &c, read_only)?;
        if m.plugin == "kubernetes.io~host-path" {
            check_host_path(&m.path, &m.host_path_type)?;
        }
        let dir = volume_dir(pod_dir, m.plugin, &m.volume);
        claim::mount(&m, &dir)?;
        return Ok(dir);
    }
    let (plugin, mut payload, tmpfs) = if let Some(cm) = &v.config_map {
        let optional = cm.optional.unwrap_or(false);
        let data = match source
            .config_map(ns, &cm.name)
            .await
            .map_err(|e| e.to_string())?
        {
            Some(d) => d,
            None if optional => BTreeMap::new(),
            None => return Err(format!("configmap {:?} not found", cm.name)),
        };
        (
            "kubernetes.io~configmap",
            project(&data, cm.items.as_ref(), cm.default_mode, optional)?,
            false,
        )
    } else if let Some(s) = &v.secret {
        let name = s.secret_name.clone().unwrap_or_default();
        let optional = s.optional.unwrap_or(false);
        let data = match source.secret(ns, &name).await.map_err(|e| e.to_string())? {
            Some(d) => d,
            None if optional => BTreeMap::new(),
            None => return Err(format!("secret {name:?} not found")),
        };
        (
            "kubernetes.io~secret",
            project(&data, s.items.as_ref(), s.default_mode, optional)?,
            true,
        )
    } else if let Some(d) = &v.downward_api {
        (
            "kubernetes.io~downward-api",
            downward(
                pod,
                d.items.as_deref().unwrap_or_default(),
                d.default_mode,
                alloc,
            )?,
            false,
        )
    } else if let Some(p) = &v.projected {
        let mut payload = BTreeMap::new();
        for s in p.sources.iter().flatten() {
            if let Some(cm) = &s.config_map {
                let optional = cm.optional.unwrap_or(false);
                match source
                    .config_map(ns, &cm.name)
                    .await
                    .map_err(|e| e.to_string())?
                {
                    Some(data) => {
                        payload.extend(project(&data, cm.items.as_ref(), p.default_mode, optional)?)
                    }
                    None if optional => {}
                    None => return Err(format!("configmap {:?} not found", cm.name)),
                }
            }
            if let Some(sec) = &s.secret {
                let optional = sec.optional.unwrap_or(false);
                match source
                    .secret(ns, &sec.name)
                    .await
                    .map_err(|e| e.to_string())?
                {
                    Some(data) => payload.extend(project(
                        &data,
                        sec.items.as_ref(),
                        p.default_mode,
                        optional,
                    )?),
                    None if optional => {}
                    None => return Err(format!("secret {:?} not found", sec.name)),
                }
            }
            if let Some(d) = &s.downward_api {
                payload.extend(downward(
                    pod,
                    d.items.as_deref().unwrap_or_default(),
                    p.default_mode,
                    alloc,
                )?);
            }
            if let Some(t) = &s.service_account_token {
                let token = source
                    .token(
                        pod,
                        t.audience.as_deref(),
                        t.expiration_seconds.unwrap_or(3600),
                    )
                    .await
                    .map_err(|e| format!("failed to fetch token: {e}"))?;
                payload.insert(
                    t.path.clone(),
                    FileProjection {
                        data: token.into_bytes(),
                        mode: mode_of(None, p.default_mode),
                    },
                );
            }
        }
        ("kubernetes.io~projected", payload, true)
    } else {
        return Err("unsupported volume type".to_string());
    };
    let dir = volume_dir(pod_dir, plugin, &v.name);
    std::fs::create_dir_all(&dir).map_err(e)?;
    if tmpfs {
        mount_tmpfs(&dir, None)?;
    }
    let fs_group = ownership::fs_group(pod);
    if fs_group.is_some() {
        // The group bits are part of the payload, so an unchanged payload is not rewritten.
        for f in payload.values_mut() {
            f.mode = ownership::owned_mode(f.mode, false, true);
        }
    }
    atomic::write(&dir, &payload).map_err(e)?;
    if let Some((gid, _)) = fs_group {
        ownership::set_volume_ownership(&dir, gid, true, false).map_err(e)?;
    }
    Ok(dir)
}

fn check_host_path(path: &Path, kind: &str) -> Result<(), String> {
    use std::os::unix::fs::FileTypeExt;
    let meta = std::fs::metadata(path);
    let bad = |what: &str| {
        Err(format!(
            "hostPath type check failed: {} is not a {what}",
            path.display()
        ))
    };
    match kind {
        "" => Ok(()),
        "DirectoryOrCreate" => std::fs::create_dir_all(path).map_err(|e| e.to_string()),
        "FileOrCreate" => {
            if meta.is_err() {
                if let Some(p) = path.parent() {
                    std::fs::create_dir_all(p).map_err(|e| e.to_string())?;
                }
                std::fs::write(path, b"").map_err(|e| e.to_string())?;
            }
            Ok(())
        }
        "Directory" if meta.as_ref().is_ok_and(|m| m.is_dir()) => Ok(()),
        "Directory" => bad("directory"),
        "File" if meta.as_ref().is_ok_and(|m| m.is_file()) => Ok(()),
        "File" => bad("file"),
        "Socket" if meta.as_ref().is_ok_and(|m| m.file_type().is_socket()) => Ok(()),
        "Socket" => bad("socket"),
        "CharDevice" if meta.as_ref().is_ok_and(|m| m.file_type().is_char_device()) => Ok(()),
        "CharDevice" => bad("character device"),
        "BlockDevice" if meta.as_ref().is_ok_and(|m| m.file_type().is_block_device()) => Ok(()),
        "BlockDevice" => bad("block device"),
        other => Err(format!("unknown hostPath type {other:?}")),
    }
}

/// The mount points listed in `/proc/self/mounts` (octal escapes decoded).
fn mount_points() -> Vec<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .map(|p| PathBuf::from(unescape_mount_path(p)))
        .collect()
}

/// Undoes the `\ooo` escapes of space, tab, newline and backslash in a mounts line.
fn unescape_mount_path(p: &str) -> String {
    let b = p.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) if b[i] == b'\\' => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            _ => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether something is mounted on `dir` (compared by its resolved path, as the kernel
/// lists it).
pub(crate) fn is_mountpoint(dir: &Path) -> bool {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    mount_points().contains(&dir)
}

fn mount_tmpfs(dir: &Path, size: Option<i64>) -> Result<(), String> {
    if is_mountpoint(dir) {
        return Ok(());
    }
    let opts = size.map(|s| format!("size={s}"));
    nix::mount::mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        opts.as_deref(),
    )
    .map_err(|e| format!("mount tmpfs on {}: {e}", dir.display()))
}

/// Unmounts everything mounted below the pod's directory (subPath bind mounts, tmpfs
/// volumes; deepest first) and then removes the directory. Nothing is removed while a
/// mount remains, so a volume's contents are never deleted through a bind mount.
pub fn teardown_pod_dir(pod_dir: &Path) -> std::io::Result<()> {
    let real = match std::fs::canonicalize(pod_dir) {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut below: Vec<PathBuf> = mount_points()
        .into_iter()
        .filter(|m| m.starts_with(&real) && *m != real)
        .collect();
    below.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    below.dedup();
    for m in &below {
        // A path mounted over more than once is listed once per mount.
        while is_mountpoint(m) {
            nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH)
                .map_err(|e| std::io::Error::other(format!("unmount {}: {e}", m.display())))?;
        }
    }
    match std::fs::remove_dir_all(pod_dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;
