//! The pod network: a bridge + host-local + portmap conflist written from the node's
//! podCIDR into the directory the runtime's CNI plugin watches (containerd adds loopback
//! itself), and the podCIDR passed to the runtime as upstream does (UpdateRuntimeConfig).

use crate::cri::Cri;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// Where the conflist goes: `$FERROKUBE_CNI_CONF_DIR`, else `/etc/cni/net.d` (the runtime's
/// CNI conf_dir; upstream's kubelet leaves this to a network add-on).
pub fn conf_dir() -> PathBuf {
    std::env::var_os("FERROKUBE_CNI_CONF_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/etc/cni/net.d".into())
}

/// The file name of the conflist.
pub const CONFLIST: &str = "10-ferrokube-bridge.conflist";

/// The conflist for `pod_cidr` on bridge `bridge`.
pub fn conflist(pod_cidr: &str, bridge: &str) -> serde_json::Value {
    serde_json::json!({
        "cniVersion": "0.4.0",
        "name": "ferrokube",
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge,
                "isGateway": true,
                "ipMasq": true,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": pod_cidr}]],
                    "routes": [{"dst": if pod_cidr.contains(':') { "::/0" } else { "0.0.0.0/0" }}]
                }
            },
            {"type": "portmap", "capabilities": {"portMappings": true}}
        ]
    })
}

/// Writes the conflist atomically (write + rename) unless it is already current.
pub fn write_conflist(dir: &Path, pod_cidr: &str, bridge: &str) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {dir:?}"))?;
    let path = dir.join(CONFLIST);
    let text = serde_json::to_string_pretty(&conflist(pod_cidr, bridge))?;
    if std::fs::read_to_string(&path).is_ok_and(|t| t == text) {
        return Ok(path);
    }
    let tmp = dir.join(format!(".{CONFLIST}.tmp"));
    std::fs::write(&tmp, &text)?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

/// Tells the runtime the pod CIDR (CRI UpdateRuntimeConfig).
pub async fn update_runtime_config(cri: &Cri, pod_cidr: &str) -> Result<()> {
    cri.runtime
        .clone()
        .update_runtime_config(k8s_cri::v1::UpdateRuntimeConfigRequest {
            runtime_config: Some(k8s_cri::v1::RuntimeConfig {
                network_config: Some(k8s_cri::v1::NetworkConfig {
                    pod_cidr: pod_cidr.to_string(),
                }),
            }),
        })
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflist_uses_the_pod_cidr() {
        let dir = tempfile::tempdir().unwrap();
        let p = write_conflist(dir.path(), "10.244.1.0/24", "cni0").unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
        assert_eq!(
            v["plugins"][0]["ipam"]["ranges"][0][0]["subnet"],
            "10.244.1.0/24"
        );
        assert_eq!(v["plugins"][1]["type"], "portmap");
    }
}
