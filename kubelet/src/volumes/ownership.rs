//! `securityContext.fsGroup` on volumes, as upstream's `SetVolumeOwnership`: every file and
//! directory of the volume is group-owned by the fsGroup, files gain group read (and write
//! for writable volumes: emptyDir), directories also group execute and setgid so what is
//! created inside inherits the group. Symlinks are re-owned, never chmod-ed (that would
//! change their target). With `fsGroupChangePolicy: OnRootMismatch` a volume whose root
//! already has the group and setgid is left alone.

use k8s_openapi::api::core::v1::Pod;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// Upstream's `rwMask`.
const RW_MASK: u32 = 0o660;
/// Upstream's `roMask`.
const RO_MASK: u32 = 0o440;
/// Upstream's `execMask`.
const EXEC_MASK: u32 = 0o110;
/// setgid.
const SETGID: u32 = 0o2000;

/// The pod's fsGroup and whether only a mismatching root triggers the walk.
pub fn fs_group(pod: &Pod) -> Option<(u32, bool)> {
    let sc = pod.spec.as_ref()?.security_context.as_ref()?;
    let gid = u32::try_from(sc.fs_group?).ok()?;
    let on_root_mismatch = sc.fs_group_change_policy.as_deref() == Some("OnRootMismatch");
    Some((gid, on_root_mismatch))
}

/// The mode an entry gets (permission bits and setgid): `mode` plus the group bits.
pub fn owned_mode(mode: u32, is_dir: bool, read_only: bool) -> u32 {
    let mut mask = if read_only { RO_MASK } else { RW_MASK };
    if is_dir {
        mask |= SETGID | EXEC_MASK;
    }
    (mode & 0o7777) | mask
}

/// Applies the ownership to `dir` and everything under it.
pub fn set_volume_ownership(
    dir: &Path,
    gid: u32,
    read_only: bool,
    on_root_mismatch: bool,
) -> io::Result<()> {
    if on_root_mismatch {
        let root = std::fs::metadata(dir)?;
        if root.gid() == gid && root.mode() & SETGID != 0 {
            return Ok(());
        }
    }
    walk(dir, gid, read_only)
}

fn walk(path: &Path, gid: u32, read_only: bool) -> io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    std::os::unix::fs::lchown(path, None, Some(gid))?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    let mode = owned_mode(meta.mode(), meta.is_dir(), read_only);
    if meta.mode() & 0o7777 != mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    }
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)? {
            walk(&entry?.path(), gid, read_only)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_gain_group_bits_as_upstream() {
        assert_eq!(owned_mode(0o644, false, true), 0o644);
        assert_eq!(owned_mode(0o400, false, true), 0o440);
        assert_eq!(owned_mode(0o600, false, false), 0o660);
        assert_eq!(owned_mode(0o755, true, true), 0o2755);
        assert_eq!(owned_mode(0o700, true, false), 0o2770);
        assert_eq!(owned_mode(0o40777, true, false), 0o2777);
    }

    #[test]
    fn fs_group_and_policy_come_from_the_pod() {
        let pod: Pod = serde_json::from_value(serde_json::json!({"spec": {"containers": [],
            "securityContext": {"fsGroup": 2000, "fsGroupChangePolicy": "OnRootMismatch"}}}))
        .unwrap();
        assert_eq!(fs_group(&pod), Some((2000, true)));
        let none: Pod =
            serde_json::from_value(serde_json::json!({"spec": {"containers": []}})).unwrap();
        assert_eq!(fs_group(&none), None);
    }

    #[test]
    fn the_whole_tree_is_group_owned_and_symlinks_keep_their_target_mode() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("vol");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/key"), "v").unwrap();
        std::fs::set_permissions(root.join("sub/key"), std::fs::Permissions::from_mode(0o400))
            .unwrap();
        std::os::unix::fs::symlink("sub/key", root.join("link")).unwrap();
        set_volume_ownership(&root, 4321, true, false).unwrap();
        let meta = |p: &str| std::fs::symlink_metadata(root.join(p)).unwrap();
        assert_eq!(meta("sub/key").gid(), 4321);
        assert_eq!(meta("sub/key").mode() & 0o7777, 0o440);
        assert_eq!(meta("sub").mode() & 0o7777 & SETGID, SETGID);
        assert_eq!(meta("link").gid(), 4321);
        assert_eq!(std::fs::metadata(&root).unwrap().gid(), 4321);
        // OnRootMismatch: a matching root is not walked again.
        std::fs::set_permissions(root.join("sub/key"), std::fs::Permissions::from_mode(0o400))
            .unwrap();
        set_volume_ownership(&root, 4321, true, true).unwrap();
        assert_eq!(meta("sub/key").mode() & 0o7777, 0o400);
        set_volume_ownership(&root, 4321, true, false).unwrap();
        assert_eq!(meta("sub/key").mode() & 0o7777, 0o440);
    }
}
