//! Locating the ferrokube binaries a test runs.
//!
//! `$FERROKUBE_BIN_DIR` when set (hack/test.sh builds the workspace first and points here),
//! else the workspace's target directory (`$CARGO_TARGET_DIR` or `target/`, `debug` profile).
//! Without `FERROKUBE_BIN_DIR`, the binary is first brought up to date with
//! `cargo build --bin <name>`, so `cargo test -p e2e` alone never tests a stale build.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use anyhow::{bail, Context, Result};

/// The environment variable naming a directory of prebuilt ferrokube binaries.
pub const BIN_DIR_ENV: &str = "FERROKUBE_BIN_DIR";

/// The workspace root (the parent of this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("e2e sits inside the workspace")
        .to_path_buf()
}

/// The directory binaries are taken from.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(BIN_DIR_ENV).filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|t| {
            if t.is_absolute() {
                t
            } else {
                workspace_root().join(t)
            }
        })
        .unwrap_or_else(|| workspace_root().join("target"));
    target.join("debug")
}

/// The path of ferrokube binary `name` (e.g. `kube-scheduler`), built first if needed (see
/// the module docs). Fails naming the binary and directory when it is absent.
pub fn ferrokube_binary(name: &str) -> Result<PathBuf> {
    if std::env::var_os(BIN_DIR_ENV).is_none_or(|d| d.is_empty()) {
        build_once(name)?;
    }
    let path = bin_dir().join(name);
    if !path.is_file() {
        bail!(
            "ferrokube binary {name} not found in {} (build the workspace or set {BIN_DIR_ENV})",
            bin_dir().display()
        );
    }
    Ok(path)
}

fn build_once(name: &str) -> Result<()> {
    static BUILT: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let built = built.get_or_insert_with(HashSet::new);
    if built.contains(name) {
        return Ok(());
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .current_dir(workspace_root())
        .args(["build", "--quiet", "--bin", name])
        .output()
        .with_context(|| format!("running cargo build --bin {name}"))?;
    if !output.status.success() {
        bail!(
            "cargo build --bin {name} failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    built.insert(name.to_string());
    Ok(())
}
