//! This machine's hostname and the Node name derived from it (upstream's
//! `os.Hostname` and component-helpers' `nodeutil.GetHostname`), read in one place.

/// The kernel's hostname, trimmed; `localhost` when it cannot be read.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// The Node name: `override_` when set (trimmed, lower-cased), else the lower-cased
/// hostname, as the kubelet's `--hostname-override` and kube-proxy's `hostnameOverride`.
pub fn node_name(override_: Option<&str>) -> String {
    match override_.map(str::trim).filter(|h| !h.is_empty()) {
        Some(h) => h.to_lowercase(),
        None => hostname().to_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn override_wins_and_is_normalised() {
        assert_eq!(node_name(Some(" Node-A ")), "node-a");
        assert_eq!(node_name(Some("")), hostname().to_lowercase());
        assert_eq!(node_name(None), hostname().to_lowercase());
        assert!(!hostname().is_empty());
    }
}
