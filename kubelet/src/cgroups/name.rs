//! The one place cgroup names are spelled: the kubelet's internal name (a list of
//! components such as `["kubepods", "burstable", "pod1234-abcd"]`) and its literal form on
//! the host for each cgroup driver, as upstream's `CgroupName`:
//!
//! - cgroupfs: the components joined by `/` — `/kubepods/burstable/pod1234-abcd`;
//! - systemd: one slice per level, each named after all its ancestors joined by `-`, with
//!   `-` inside a component escaped to `_` — `/kubepods.slice/kubepods-burstable.slice/
//!   kubepods-burstable-pod1234_abcd.slice` (the slice unit is the last part).
//!
//! Both literal forms are cgroupfs paths (relative to the mount), which is what the cgroup
//! files, stats, eviction and the sandbox's CRI `cgroup_parent` use, as upstream's
//! `cgroupManager.Name`.

use std::fmt;

/// The suffix of a systemd slice unit.
pub const SLICE_SUFFIX: &str = ".slice";

/// Which driver manipulates cgroups (`cgroupDriver` / `--cgroup-driver`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CgroupDriver {
    /// The kubelet writes cgroupfs directly (upstream's default).
    #[default]
    Cgroupfs,
    /// systemd owns the hierarchy; the kubelet's cgroups are transient slices.
    Systemd,
}

impl CgroupDriver {
    /// Parses the configured value (`cgroupfs` or `systemd`); `field` names the setting in
    /// the error.
    pub fn parse(value: &str, field: &str) -> Result<Self, NameError> {
        match value {
            "cgroupfs" => Ok(CgroupDriver::Cgroupfs),
            "systemd" => Ok(CgroupDriver::Systemd),
            other => Err(NameError(format!(
                "{field}: invalid cgroup driver {other:?}: must be \"cgroupfs\" or \"systemd\""
            ))),
        }
    }

    /// The configuration value (`cgroupfs`, `systemd`).
    pub fn as_str(self) -> &'static str {
        match self {
            CgroupDriver::Cgroupfs => "cgroupfs",
            CgroupDriver::Systemd => "systemd",
        }
    }

    /// The name's literal cgroupfs path under this driver (upstream's `Name`).
    pub fn literal(self, name: &CgroupName) -> String {
        match self {
            CgroupDriver::Cgroupfs => name.to_cgroupfs(),
            CgroupDriver::Systemd => name.to_systemd(),
        }
    }

    /// The internal name of a literal path under this driver (upstream's `CgroupName`).
    pub fn parse_literal(self, literal: &str) -> CgroupName {
        match self {
            CgroupDriver::Cgroupfs => CgroupName::parse_cgroupfs(literal),
            CgroupDriver::Systemd => CgroupName::parse_systemd(literal),
        }
    }
}

impl fmt::Display for CgroupDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name or path that cannot be a cgroup; the message names what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NameError(pub String);

/// The kubelet's driver-independent cgroup name: its components from the root down.
/// Components are never empty and never hold `/`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Hash)]
pub struct CgroupName(Vec<String>);

impl CgroupName {
    /// The root cgroup (no components).
    pub fn root() -> Self {
        CgroupName(Vec::new())
    }

    /// The components, root first.
    pub fn components(&self) -> &[String] {
        &self.0
    }

    /// The child named `component`. As upstream's `NewCgroupName`, `_` is refused (the
    /// systemd form escapes `-` to `_`, so `_` would not map back) and so are `/` and "".
    pub fn child(&self, component: &str) -> Result<Self, NameError> {
        if component.is_empty() || component.contains('/') || component.contains('_') {
            return Err(NameError(format!(
                "invalid cgroup name component {component:?}: must be non-empty without '/' or '_'"
            )));
        }
        Ok(self.child_unchecked(component))
    }

    /// The child named `component`, known valid (the kubelet's own names).
    pub(super) fn child_unchecked(&self, component: &str) -> Self {
        let mut parts = self.0.clone();
        parts.push(component.to_string());
        CgroupName(parts)
    }

    /// Parses a cgroupfs path (`/a/b` → `["a", "b"]`); empty components (`//`, a trailing
    /// `/`) are dropped, as the joined path upstream produces from them is the same.
    pub fn parse_cgroupfs(path: &str) -> Self {
        CgroupName(
            path.split('/')
                .filter(|c| !c.is_empty())
                .map(str::to_string)
                .collect(),
        )
    }

    /// Parses a systemd name, expanded or not (`/a.slice/a-b_c.slice` or `a-b_c.slice` →
    /// `["a", "b-c"]`): the last part, without `.slice`, split at `-`, `_` unescaped.
    pub fn parse_systemd(name: &str) -> Self {
        let base = name.trim_end_matches('/').rsplit('/').next().unwrap_or("");
        let base = base.strip_suffix(SLICE_SUFFIX).unwrap_or(base);
        if base.is_empty() || base == "-" {
            return CgroupName::root();
        }
        CgroupName(base.split('-').map(unescape_systemd).collect())
    }

    /// The cgroupfs form: `/` for the root, else `/a/b`.
    pub fn to_cgroupfs(&self) -> String {
        format!("/{}", self.0.join("/"))
    }

    /// The slice unit's name (`a-b_c.slice`); `-.slice` for the root.
    pub fn to_slice_unit(&self) -> String {
        if self.0.is_empty() {
            return format!("-{SLICE_SUFFIX}");
        }
        let escaped: Vec<String> = self.0.iter().map(|c| escape_systemd(c)).collect();
        format!("{}{SLICE_SUFFIX}", escaped.join("-"))
    }

    /// The systemd form expanded to its cgroupfs path: `/` for the root, else one slice
    /// per level (`/a.slice/a-b.slice`), as upstream's `ToSystemd`.
    pub fn to_systemd(&self) -> String {
        if self.0.is_empty() {
            return "/".to_string();
        }
        // The components are non-empty and hold no '/', so the slice always expands.
        expand_slice(&self.to_slice_unit()).unwrap_or_else(|_| "/".to_string())
    }
}

impl fmt::Display for CgroupName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// `-` within a component becomes `_` in systemd names.
pub fn escape_systemd(component: &str) -> String {
    component.replace('-', "_")
}

/// The inverse of [`escape_systemd`].
pub fn unescape_systemd(part: &str) -> String {
    part.replace('_', "-")
}

/// Expands a slice unit name to its cgroupfs path, as systemd lays slices out:
/// `a-b-c.slice` → `/a.slice/a-b.slice/a-b-c.slice`; `-.slice` → `/`. Refuses names
/// without the suffix, with `/`, or with an empty component (`a--b.slice`, `-a.slice`).
pub fn expand_slice(slice: &str) -> Result<String, NameError> {
    let invalid = || NameError(format!("invalid slice name: {slice}"));
    let stem = slice.strip_suffix(SLICE_SUFFIX).ok_or_else(invalid)?;
    if slice.contains('/') {
        return Err(invalid());
    }
    if stem == "-" {
        return Ok("/".to_string());
    }
    let mut path = String::new();
    let mut prefix = String::new();
    for component in stem.split('-') {
        if component.is_empty() {
            return Err(invalid());
        }
        path.push('/');
        path.push_str(&prefix);
        path.push_str(component);
        path.push_str(SLICE_SUFFIX);
        prefix.push_str(component);
        prefix.push('-');
    }
    Ok(path)
}

/// The slice unit at the end of a systemd-driver cgroupfs path and the slice it sits in
/// (`-.slice` directly under the root), as upstream splits `ToSystemd()` into libcontainer's
/// Name and Parent.
pub fn slice_of_path(path: &str) -> Result<(String, String), NameError> {
    let mut parts = path.split('/').filter(|p| !p.is_empty()).rev();
    let unit = parts
        .next()
        .filter(|u| u.ends_with(SLICE_SUFFIX))
        .ok_or_else(|| {
            NameError(format!(
                "cgroup {path:?} is not a systemd slice (its last part must end in {SLICE_SUFFIX})"
            ))
        })?;
    expand_slice(unit)?;
    let parent = parts.next().unwrap_or("-.slice");
    Ok((unit.to_string(), parent.to_string()))
}

/// Whether `child` (a directory name under a pod cgroup) is the cgroup of container `id`:
/// `<id>` with cgroupfs; a `<runtime prefix>-<id>.scope` with systemd (containerd's
/// `cri-containerd-<id>.scope`, CRI-O's `crio-<id>.scope`, but not CRI-O's conmon scope).
pub fn is_container_cgroup(child: &str, id: &str) -> bool {
    if id.is_empty() {
        return false;
    }
    if child == id {
        return true;
    }
    child
        .strip_suffix(".scope")
        .and_then(|s| s.strip_suffix(id))
        .is_some_and(|prefix| prefix.ends_with('-') && !prefix.contains("conmon"))
}

#[cfg(test)]
mod tests;
