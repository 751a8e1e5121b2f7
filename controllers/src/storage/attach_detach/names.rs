//! The names the CSI plugin gives volumes and their VolumeAttachments.

/// The CSI volume plugin's name (the prefix of its unique volume names).
pub const CSI_PLUGIN: &str = "kubernetes.io/csi";

/// The unique volume name upstream's CSI plugin reports in `status.volumesAttached` and
/// `status.volumesInUse`: `kubernetes.io/csi/<driver>^<volumeHandle>`.
pub fn unique_volume_name(driver: &str, handle: &str) -> String {
    format!("{CSI_PLUGIN}/{driver}^{handle}")
}

/// The driver and volume handle of a CSI unique volume name, `None` for other plugins'.
pub fn parse_unique_volume_name(name: &str) -> Option<(&str, &str)> {
    name.strip_prefix(CSI_PLUGIN)?
        .strip_prefix('/')?
        .split_once('^')
}

/// The VolumeAttachment's name for `handle` of `driver` on `node`, as upstream's CSI
/// attacher: `csi-` and the hex SHA-256 of the three concatenated.
pub fn attachment_name(handle: &str, driver: &str, node: &str) -> String {
    let digest = ring::digest::digest(
        &ring::digest::SHA256,
        format!("{handle}{driver}{node}").as_bytes(),
    );
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("csi-{hex}")
}

/// The `plugin_name` label upstream's metrics give a CSI volume: `kubernetes.io/csi:<driver>`.
pub fn plugin_label(driver: &str) -> String {
    format!("{CSI_PLUGIN}:{driver}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attachment_names_are_upstreams() {
        // sha256("vol-1" "hostpath.csi.k8s.io" "node-a"), computed with sha256sum.
        assert_eq!(
            attachment_name("vol-1", "hostpath.csi.k8s.io", "node-a"),
            "csi-5a70c5de395ccad5e79daeb27c7c4f2634b675e6e1bb2a397999a016143bc9fb"
        );
    }

    #[test]
    fn unique_names_round_trip() {
        let n = unique_volume_name("d.example.com", "h^1");
        assert_eq!(n, "kubernetes.io/csi/d.example.com^h^1");
        assert_eq!(parse_unique_volume_name(&n), Some(("d.example.com", "h^1")));
        assert_eq!(parse_unique_volume_name("kubernetes.io/aws-ebs/vol"), None);
    }
}
