//! Finding the control-plane binaries (kube-apiserver, etcd, kubectl) the way
//! controller-runtime's envtest does, so one directory of binaries serves both.
//!
//! Order: a per-binary `TEST_ASSET_<NAME>` override, then the directory in
//! `$KUBEBUILDER_ASSETS` (only there when it is set), else `/usr/local/kubebuilder/bin`, else
//! `$PATH`. `hack/lib/assets.sh` implements the same rules for the scripts.

use std::fmt;
use std::path::{Path, PathBuf};

/// envtest's default asset directory.
pub const DEFAULT_ASSETS_DIR: &str = "/usr/local/kubebuilder/bin";

/// The control-plane binary names the harness needs.
pub const KUBE_APISERVER: &str = "kube-apiserver";
/// etcd, the apiserver's storage.
pub const ETCD: &str = "etcd";
/// kubectl, used by tests that check the generated kubeconfigs as a user would.
pub const KUBECTL: &str = "kubectl";

/// Paths of the control-plane binaries found.
#[derive(Debug, Clone)]
pub struct ControlPlaneAssets {
    /// The kube-apiserver binary.
    pub kube_apiserver: PathBuf,
    /// The etcd binary.
    pub etcd: PathBuf,
    /// kubectl, if present (only some tests need it).
    pub kubectl: Option<PathBuf>,
}

/// Some required binaries were not found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingAssets {
    /// Names of the binaries that were not found.
    pub missing: Vec<String>,
    /// Where they were looked for, in order.
    pub searched: String,
}

impl MissingAssets {
    /// Whether kube-apiserver is among the missing binaries.
    pub fn lacks_apiserver(&self) -> bool {
        self.missing.iter().any(|m| m == KUBE_APISERVER)
    }
}

impl fmt::Display for MissingAssets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "missing control-plane binaries: {} (searched {}); put kube-apiserver, etcd and \
             kubectl for your platform in one directory and set KUBEBUILDER_ASSETS to it",
            self.missing.join(", "),
            self.searched
        )
    }
}

impl std::error::Error for MissingAssets {}

/// Where a binary is looked for, as read from the environment once.
#[derive(Debug, Clone, Default)]
pub struct AssetSearch {
    /// `$KUBEBUILDER_ASSETS`, if set and non-empty.
    pub kubebuilder_assets: Option<PathBuf>,
    /// The default directory (`/usr/local/kubebuilder/bin`).
    pub default_dir: PathBuf,
    /// The directories of `$PATH`.
    pub path: Vec<PathBuf>,
}

impl AssetSearch {
    /// The search as configured by this process's environment.
    pub fn from_env() -> Self {
        AssetSearch {
            kubebuilder_assets: non_empty_env("KUBEBUILDER_ASSETS").map(PathBuf::from),
            default_dir: PathBuf::from(DEFAULT_ASSETS_DIR),
            path: std::env::var_os("PATH")
                .map(|p| std::env::split_paths(&p).collect())
                .unwrap_or_default(),
        }
    }

    /// Finds one binary, or `None`. A `TEST_ASSET_<NAME>` variable, when set, is the only
    /// place looked at for that binary, as `$KUBEBUILDER_ASSETS` is for all of them.
    pub fn find(&self, name: &str) -> Option<PathBuf> {
        if let Some(file) = non_empty_env(&override_var(name)) {
            let file = PathBuf::from(file);
            return is_executable(&file).then_some(file);
        }
        if let Some(dir) = &self.kubebuilder_assets {
            return executable_in(dir, name);
        }
        executable_in(&self.default_dir, name)
            .or_else(|| self.path.iter().find_map(|dir| executable_in(dir, name)))
    }

    /// Where [`AssetSearch::find`] looks, for error messages.
    pub fn describe(&self) -> String {
        match &self.kubebuilder_assets {
            Some(dir) => format!("$KUBEBUILDER_ASSETS ({})", dir.display()),
            None => format!(
                "$KUBEBUILDER_ASSETS (unset), {}, $PATH",
                self.default_dir.display()
            ),
        }
    }

    /// Finds kube-apiserver and etcd (required) and kubectl (optional).
    pub fn control_plane(&self) -> Result<ControlPlaneAssets, MissingAssets> {
        let apiserver = self.find(KUBE_APISERVER);
        let etcd = self.find(ETCD);
        match (apiserver, etcd) {
            (Some(kube_apiserver), Some(etcd)) => Ok(ControlPlaneAssets {
                kube_apiserver,
                etcd,
                kubectl: self.find(KUBECTL),
            }),
            (apiserver, etcd) => Err(MissingAssets {
                missing: [
                    (KUBE_APISERVER, apiserver.is_none()),
                    (ETCD, etcd.is_none()),
                ]
                .into_iter()
                .filter(|(_, missing)| *missing)
                .map(|(name, _)| name.to_string())
                .collect(),
                searched: self.describe(),
            }),
        }
    }
}

/// Finds the control-plane binaries using this process's environment.
pub fn find_control_plane() -> Result<ControlPlaneAssets, MissingAssets> {
    AssetSearch::from_env().control_plane()
}

/// envtest's per-binary override variable, e.g. `TEST_ASSET_KUBE_APISERVER`.
pub fn override_var(name: &str) -> String {
    format!("TEST_ASSET_{}", name.to_ascii_uppercase().replace('-', "_"))
}

fn non_empty_env(var: &str) -> Option<std::ffi::OsString> {
    std::env::var_os(var).filter(|v| !v.is_empty())
}

fn executable_in(dir: &Path, name: &str) -> Option<PathBuf> {
    let file = dir.join(name);
    is_executable(&file).then_some(file)
}

fn is_executable(file: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    // metadata() follows symlinks: a dangling link (a binary not built yet) is absent.
    std::fs::metadata(file).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn touch_exe(dir: &Path, name: &str) {
        let file = dir.join(name);
        std::fs::write(&file, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn kubebuilder_assets_is_the_only_place_when_set() {
        let assets = tempfile::tempdir().unwrap();
        let default = tempfile::tempdir().unwrap();
        touch_exe(default.path(), ETCD);
        touch_exe(default.path(), KUBE_APISERVER);
        let search = AssetSearch {
            kubebuilder_assets: Some(assets.path().to_path_buf()),
            default_dir: default.path().to_path_buf(),
            path: vec![default.path().to_path_buf()],
        };
        let err = search.control_plane().unwrap_err();
        assert_eq!(err.missing, vec![KUBE_APISERVER, ETCD]);
        assert!(err.lacks_apiserver());
        assert!(err.to_string().contains("kube-apiserver, etcd"), "{err}");
        assert!(err
            .to_string()
            .contains(&assets.path().display().to_string()));
    }

    #[test]
    fn default_dir_then_path() {
        let default = tempfile::tempdir().unwrap();
        let on_path = tempfile::tempdir().unwrap();
        touch_exe(default.path(), KUBE_APISERVER);
        touch_exe(on_path.path(), ETCD);
        touch_exe(on_path.path(), KUBE_APISERVER);
        let search = AssetSearch {
            kubebuilder_assets: None,
            default_dir: default.path().to_path_buf(),
            path: vec![on_path.path().to_path_buf()],
        };
        let found = search.control_plane().unwrap();
        assert_eq!(found.kube_apiserver, default.path().join(KUBE_APISERVER));
        assert_eq!(found.etcd, on_path.path().join(ETCD));
        assert_eq!(found.kubectl, None);
    }

    #[test]
    fn non_executable_and_dangling_links_do_not_count() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(ETCD), "").unwrap();
        std::os::unix::fs::symlink(
            "/nonexistent/kube-apiserver",
            dir.path().join(KUBE_APISERVER),
        )
        .unwrap();
        let search = AssetSearch {
            kubebuilder_assets: Some(dir.path().to_path_buf()),
            ..AssetSearch::default()
        };
        assert_eq!(search.control_plane().unwrap_err().missing.len(), 2);
    }

    #[test]
    fn override_variable_names_follow_envtest() {
        assert_eq!(override_var("kube-apiserver"), "TEST_ASSET_KUBE_APISERVER");
        assert_eq!(override_var("etcd"), "TEST_ASSET_ETCD");
    }
}
