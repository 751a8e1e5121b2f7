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

/// How the node's bridge network is laid out, besides its podCIDR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeNetwork {
    /// The Linux bridge the pods' veths join (`$FERROKUBE_CNI_BRIDGE`, default `cni0`).
    pub bridge: String,
    /// Whether the bridge plugin masquerades traffic leaving the podCIDR
    /// (`$FERROKUBE_CNI_IP_MASQ`, default true). A multi-node cluster turns it off and
    /// masquerades only what leaves the cluster CIDR, so pods on other nodes see pod IPs.
    pub ip_masq: bool,
    /// host-local's allocation directory (`$FERROKUBE_CNI_IPAM_DIR`; unset: the plugin's
    /// `/var/lib/cni/networks`). Nodes sharing one filesystem each need their own.
    pub ipam_data_dir: Option<PathBuf>,
}

impl Default for BridgeNetwork {
    fn default() -> Self {
        BridgeNetwork {
            bridge: "cni0".into(),
            ip_masq: true,
            ipam_data_dir: None,
        }
    }
}

impl BridgeNetwork {
    /// The settings from the `FERROKUBE_CNI_*` environment, defaults for what is unset; a
    /// value that is not a boolean is an error naming the variable.
    pub fn from_env() -> Result<Self> {
        let mut net = BridgeNetwork::default();
        if let Ok(bridge) = std::env::var("FERROKUBE_CNI_BRIDGE") {
            net.bridge = bridge;
        }
        if let Ok(masq) = std::env::var("FERROKUBE_CNI_IP_MASQ") {
            net.ip_masq = masq.parse().map_err(|_| {
                anyhow::anyhow!("FERROKUBE_CNI_IP_MASQ: {masq:?} is not true or false")
            })?;
        }
        net.ipam_data_dir = std::env::var_os("FERROKUBE_CNI_IPAM_DIR").map(PathBuf::from);
        Ok(net)
    }

    /// The conflist for `pod_cidr`.
    pub fn conflist(&self, pod_cidr: &str) -> serde_json::Value {
        let mut ipam = serde_json::json!({
            "type": "host-local",
            "ranges": [[{"subnet": pod_cidr}]],
            "routes": [{"dst": if pod_cidr.contains(':') { "::/0" } else { "0.0.0.0/0" }}]
        });
        if let Some(dir) = &self.ipam_data_dir {
            ipam["dataDir"] = dir.display().to_string().into();
        }
        serde_json::json!({
            "cniVersion": "0.4.0",
            "name": "ferrokube",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": self.bridge,
                    "isGateway": true,
                    "ipMasq": self.ip_masq,
                    "hairpinMode": true,
                    "ipam": ipam
                },
                {"type": "portmap", "capabilities": {"portMappings": true}}
            ]
        })
    }

    /// Writes the conflist for `pod_cidr` into `dir` atomically (write + rename) unless it
    /// is already current.
    pub fn write_conflist(&self, dir: &Path, pod_cidr: &str) -> Result<PathBuf> {
        std::fs::create_dir_all(dir).with_context(|| format!("create {dir:?}"))?;
        let path = dir.join(CONFLIST);
        let text = serde_json::to_string_pretty(&self.conflist(pod_cidr))?;
        if std::fs::read_to_string(&path).is_ok_and(|t| t == text) {
            return Ok(path);
        }
        let tmp = dir.join(format!(".{CONFLIST}.tmp"));
        std::fs::write(&tmp, &text)?;
        std::fs::rename(&tmp, &path)?;
        Ok(path)
    }
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
        let p = BridgeNetwork::default()
            .write_conflist(dir.path(), "10.244.1.0/24")
            .unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
        assert_eq!(
            v["plugins"][0]["ipam"]["ranges"][0][0]["subnet"],
            "10.244.1.0/24"
        );
        assert_eq!(v["plugins"][0]["bridge"], "cni0");
        assert_eq!(v["plugins"][0]["ipMasq"], true);
        assert!(v["plugins"][0]["ipam"].get("dataDir").is_none());
        assert_eq!(v["plugins"][1]["type"], "portmap");
    }

    #[test]
    fn a_multi_node_network_keeps_pod_ips_and_its_own_ipam_dir() {
        let net = BridgeNetwork {
            bridge: "cni1".into(),
            ip_masq: false,
            ipam_data_dir: Some("/tmp/node-a/ipam".into()),
        };
        let v = net.conflist("10.244.2.0/24");
        assert_eq!(v["plugins"][0]["bridge"], "cni1");
        assert_eq!(v["plugins"][0]["ipMasq"], false);
        assert_eq!(v["plugins"][0]["ipam"]["dataDir"], "/tmp/node-a/ipam");
    }
}
