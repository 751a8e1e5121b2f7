//! Static pod manifests from `staticPodPath`.

use std::path::Path;

/// Reads the bytes as a manifest file.
pub fn fuzz(data: &[u8]) {
    let file = Path::new("/etc/kubernetes/manifests/fuzz.yaml");
    let _ = kubelet::static_pods::source::parse_manifest(data, file, "Node-1");
}
