//! The version ferrokube reports wherever upstream reports its own.

/// The Kubernetes release whose API and behaviour ferrokube emulates.
pub const KUBERNETES_VERSION: &str = "v1.35.0";

/// ferrokube's own version (the workspace version).
pub const FERROKUBE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The full version string, e.g. `v1.35.0+ferrokube.0.1.0`: semver build metadata keeps it
/// ordered exactly like the Kubernetes version it emulates.
pub fn version() -> String {
    format!("{KUBERNETES_VERSION}+ferrokube.{FERROKUBE_VERSION}")
}

/// What `--version` prints, as upstream: `Kubernetes v1.35.0+ferrokube.0.1.0`.
pub fn version_line() -> String {
    format!("Kubernetes {}", version())
}

/// The user agent sent to the apiserver, in upstream's form
/// `<component>/<version> (<os>/<arch>) ferrokube`.
pub fn user_agent(component: &str) -> String {
    format!(
        "{component}/{} ({}/{}) ferrokube",
        version(),
        std::env::consts::OS,
        go_arch()
    )
}

/// The architecture as Kubernetes names it (GOARCH), e.g. `amd64`, `arm64`.
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "arm" => "arm",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_carries_kubernetes_and_ferrokube_versions() {
        assert_eq!(version(), format!("v1.35.0+ferrokube.{FERROKUBE_VERSION}"));
        assert!(version_line().starts_with("Kubernetes v1.35.0+ferrokube."));
    }

    #[test]
    fn user_agent_names_component_and_platform() {
        let ua = user_agent("kube-scheduler");
        assert!(ua.starts_with("kube-scheduler/v1.35.0+ferrokube."), "{ua}");
        assert!(ua.contains("(linux/"), "{ua}");
    }
}
