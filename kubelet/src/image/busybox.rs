//! Images built on this machine from busybox-static, since no registry is reachable: a
//! general-purpose busybox image, a pause image for pod sandboxes, and images that carry
//! given binaries (a control-plane component built from source, as kubeadm runs it).

use super::oci::OciImage;
use anyhow::{Context, Result};
use serde_json::json;
use std::path::Path;

/// Where Debian's busybox-static installs the binary.
pub const BUSYBOX_PATH: &str = "/bin/busybox";
/// The name the project's busybox image is imported as.
pub const BUSYBOX_IMAGE: &str = "docker.io/library/busybox:1.35";
/// The name the project's pause image is imported as (what `sandbox_image` names).
pub const PAUSE_IMAGE: &str = "registry.k8s.io/pause:3.10";

/// The pause process: PID 1 of the sandbox, exits cleanly on SIGTERM/SIGINT and otherwise
/// sleeps forever (each container has its own PID namespace, so it has nothing to reap).
const PAUSE_SCRIPT: &str =
    "trap 'exit 0' TERM INT; while true; do sleep 2147483647 & wait $!; done";

/// Builds the one-layer busybox image: `/bin/busybox` plus a symlink per applet.
pub fn busybox_image(busybox: &Path, name: &str) -> Result<OciImage> {
    let layer = rootfs_layer(busybox)?;
    OciImage::from_parts(name, &image_config(&["sh"], &[]), vec![layer])
}

/// Builds the pause image: the busybox rootfs running [`PAUSE_SCRIPT`].
pub fn pause_image(busybox: &Path, name: &str) -> Result<OciImage> {
    let layer = rootfs_layer(busybox)?;
    let config = image_config(&[], &["/bin/sh", "-c", PAUSE_SCRIPT]);
    OciImage::from_parts(name, &config, vec![layer])
}

/// Builds an image holding `binaries` in `/usr/local/bin` (under their file names, on the
/// PATH) over the busybox rootfs: what a static pod that names the binary as its command
/// (kubeadm's `kube-apiserver` manifest, say) needs from an image.
pub fn binary_image(busybox: &Path, name: &str, binaries: &[&Path]) -> Result<OciImage> {
    let mut tar = rootfs_tar(busybox)?;
    for dir in ["usr/local/", "usr/local/bin/"] {
        directory(&mut tar, dir, 0o755)?;
    }
    for binary in binaries {
        let file_name = binary
            .file_name()
            .and_then(|n| n.to_str())
            .with_context(|| format!("{binary:?} has no file name"))?;
        let data = std::fs::read(binary).with_context(|| format!("read {binary:?}"))?;
        file(
            &mut tar,
            &format!("usr/local/bin/{file_name}"),
            0o755,
            &data,
        )?;
    }
    OciImage::from_parts(name, &image_config(&[], &[]), vec![tar.into_inner()?])
}

fn image_config(cmd: &[&str], entrypoint: &[&str]) -> serde_json::Value {
    let mut config = json!({
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "WorkingDir": "/",
    });
    if !cmd.is_empty() {
        config["Cmd"] = json!(cmd);
    }
    if !entrypoint.is_empty() {
        config["Entrypoint"] = json!(entrypoint);
    }
    json!({
        "architecture": component_base::version::go_arch(),
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": []},
    })
}

/// The applets a busybox binary provides (`busybox --list`).
fn applets(busybox: &Path) -> Result<Vec<String>> {
    let out = std::process::Command::new(busybox)
        .arg("--list")
        .output()
        .with_context(|| format!("run {busybox:?} --list (is busybox-static installed?)"))?;
    anyhow::ensure!(out.status.success(), "{busybox:?} --list failed");
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|a| !a.is_empty() && *a != "busybox")
        .map(str::to_string)
        .collect())
}

/// An uncompressed layer tar holding a minimal busybox root filesystem.
fn rootfs_layer(busybox: &Path) -> Result<Vec<u8>> {
    Ok(rootfs_tar(busybox)?.into_inner()?)
}

fn directory(tar: &mut tar::Builder<Vec<u8>>, path: &str, mode: u32) -> Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(mode);
    h.set_size(0);
    h.set_mtime(0);
    h.set_cksum();
    tar.append_data(&mut h, path, std::io::empty())?;
    Ok(())
}

/// The busybox root filesystem, as a tar still open for more entries.
fn rootfs_tar(busybox: &Path) -> Result<tar::Builder<Vec<u8>>> {
    let binary = std::fs::read(busybox).with_context(|| format!("read {busybox:?}"))?;
    let mut tar = tar::Builder::new(Vec::new());
    for dir in [
        "bin", "dev", "etc", "proc", "root", "sys", "tmp", "var", "usr", "usr/bin",
    ] {
        let mode = if dir == "tmp" { 0o1777 } else { 0o755 };
        directory(&mut tar, &format!("{dir}/"), mode)?;
    }
    file(&mut tar, "bin/busybox", 0o755, &binary)?;
    file(
        &mut tar,
        "etc/passwd",
        0o644,
        b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
    )?;
    file(
        &mut tar,
        "etc/group",
        0o644,
        b"root:x:0:\nnogroup:x:65534:\n",
    )?;
    for applet in applets(busybox)? {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_size(0);
        h.set_mtime(0);
        tar.append_link(&mut h, format!("bin/{applet}"), "busybox")?;
    }
    Ok(tar)
}

fn file(tar: &mut tar::Builder<Vec<u8>>, path: &str, mode: u32, data: &[u8]) -> Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(mode);
    h.set_mtime(0);
    h.set_cksum();
    tar.append_data(&mut h, path, data)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_binary_image_carries_the_binary_on_the_path() {
        if !Path::new(BUSYBOX_PATH).exists() {
            eprintln!("SKIPPED: no {BUSYBOX_PATH} (busybox-static)");
            return;
        }
        let image = binary_image(
            Path::new(BUSYBOX_PATH),
            "registry.k8s.io/kube-apiserver:v1",
            &[Path::new("/bin/true")],
        )
        .unwrap();
        let layer = &image.blobs[&image.children[1].digest];
        let mut archive = tar::Archive::new(&layer[..]);
        let entry = archive
            .entries()
            .unwrap()
            .map(Result::unwrap)
            .find(|e| e.path().unwrap().to_str() == Some("usr/local/bin/true"))
            .expect("usr/local/bin/true in the layer");
        assert_eq!(entry.header().mode().unwrap(), 0o755);
        assert_eq!(
            entry.header().size().unwrap(),
            std::fs::metadata("/bin/true").unwrap().len()
        );
        assert_eq!(image.name, "registry.k8s.io/kube-apiserver:v1");
    }
}
