//! The pod network. As upstream, the podCIDR is passed to the runtime (UpdateRuntimeConfig)
//! and the CNI config is the cluster's business (kind's kindnet, a network add-on): the
//! node stays NotReady with the runtime's `NetworkReady=false ... cni plugin not initialized`
//! until one exists. Only when opted in with `FERROKUBE_CNI_BRIDGE=<bridge>` (ferrokube's
//! local cluster, tests and benchmark) does the kubelet write its own bridge + host-local +
//! portmap conflist from the podCIDR — and never over or ahead of a config another party
//! put in the conf dir.

use crate::cri::CriService;
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
    /// The Linux bridge the pods' veths join (`$FERROKUBE_CNI_BRIDGE`, which opts in).
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
    /// The settings from the `FERROKUBE_CNI_*` environment: `None` (write no CNI config,
    /// as upstream) unless `FERROKUBE_CNI_BRIDGE` names a bridge; defaults for the rest. A
    /// value that is not a boolean is an error naming the variable.
    pub fn from_env() -> Result<Option<Self>> {
        let Some(bridge) = std::env::var("FERROKUBE_CNI_BRIDGE")
            .ok()
            .filter(|b| !b.trim().is_empty())
        else {
            return Ok(None);
        };
        let mut net = BridgeNetwork {
            bridge,
            ..BridgeNetwork::default()
        };
        if let Ok(masq) = std::env::var("FERROKUBE_CNI_IP_MASQ") {
            net.ip_masq = masq.parse().map_err(|_| {
                anyhow::anyhow!("FERROKUBE_CNI_IP_MASQ: {masq:?} is not true or false")
            })?;
        }
        net.ipam_data_dir = std::env::var_os("FERROKUBE_CNI_IPAM_DIR").map(PathBuf::from);
        Ok(Some(net))
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

/// Whether libcni (containerd's CNI loader) reads `file_name` as a network config.
pub fn is_network_config(file_name: &str) -> bool {
    [".conf", ".conflist", ".json"]
        .iter()
        .any(|ext| file_name.ends_with(ext))
}

/// What to do with the conf dir, decided from its file names and the opt-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfDirPlan {
    /// Not opted in: touch nothing (upstream's kubelet writes no CNI config).
    LeaveAlone,
    /// Opted in and the dir holds no other network config: write ours.
    WriteOurs,
    /// Opted in, but another party's configs are there (sorted names): leave them in charge,
    /// removing ours if an earlier run wrote it (it would sort ahead of theirs).
    YieldTo {
        /// The other configs' file names.
        foreign: Vec<String>,
        /// Whether our conflist is there and must go.
        remove_ours: bool,
    },
}

/// Decides what to do with a conf dir holding `file_names`, opted in or not.
pub fn plan(file_names: &[String], opted_in: bool) -> ConfDirPlan {
    if !opted_in {
        return ConfDirPlan::LeaveAlone;
    }
    let mut foreign: Vec<String> = file_names
        .iter()
        .filter(|n| n.as_str() != CONFLIST && is_network_config(n))
        .cloned()
        .collect();
    if foreign.is_empty() {
        return ConfDirPlan::WriteOurs;
    }
    foreign.sort();
    ConfDirPlan::YieldTo {
        foreign,
        remove_ours: file_names.iter().any(|n| n == CONFLIST),
    }
}

/// What [`configure`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Configured {
    /// Not opted in; nothing written.
    NotOptedIn,
    /// Our conflist is in place at this path.
    Written(PathBuf),
    /// Another party's configs are in charge; ours was removed if it was there.
    LeftToOthers {
        /// Their file names.
        foreign: Vec<String>,
        /// Whether a conflist of ours from an earlier run was removed.
        removed_ours: bool,
    },
}

/// Applies [`plan`] to `dir` for `pod_cidr`, with `bridge` the opt-in.
pub fn configure(dir: &Path, bridge: Option<&BridgeNetwork>, pod_cidr: &str) -> Result<Configured> {
    let Some(net) = bridge else {
        return Ok(Configured::NotOptedIn);
    };
    let names: Vec<String> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e).with_context(|| format!("read {dir:?}")),
    };
    match plan(&names, true) {
        ConfDirPlan::LeaveAlone => Ok(Configured::NotOptedIn),
        ConfDirPlan::WriteOurs => net.write_conflist(dir, pod_cidr).map(Configured::Written),
        ConfDirPlan::YieldTo {
            foreign,
            remove_ours,
        } => {
            if remove_ours {
                let ours = dir.join(CONFLIST);
                std::fs::remove_file(&ours).with_context(|| format!("remove {ours:?}"))?;
            }
            Ok(Configured::LeftToOthers {
                foreign,
                removed_ours: remove_ours,
            })
        }
    }
}

/// Tells the runtime the pod CIDR (CRI UpdateRuntimeConfig).
pub async fn update_runtime_config(cri: &dyn CriService, pod_cidr: &str) -> Result<()> {
    cri.update_runtime_config(k8s_cri::v1::UpdateRuntimeConfigRequest {
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

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn without_the_opt_in_nothing_is_written_whatever_the_dir_holds() {
        for dir in [&[][..], &["10-kindnet.conflist"][..], &[CONFLIST][..]] {
            assert_eq!(plan(&names(dir), false), ConfDirPlan::LeaveAlone, "{dir:?}");
        }
    }

    #[test]
    fn opted_in_ours_is_written_only_into_a_dir_without_other_configs() {
        assert_eq!(plan(&[], true), ConfDirPlan::WriteOurs);
        assert_eq!(
            plan(
                &names(&[
                    CONFLIST,
                    ".10-ferrokube-bridge.conflist.tmp",
                    "README",
                    "x.conf.bak"
                ]),
                true
            ),
            ConfDirPlan::WriteOurs,
            "our own file, our temp file and non-config files do not count"
        );
        assert_eq!(
            plan(&names(&["99-other.json", "10-kindnet.conflist"]), true),
            ConfDirPlan::YieldTo {
                foreign: names(&["10-kindnet.conflist", "99-other.json"]),
                remove_ours: false
            }
        );
        assert_eq!(
            plan(&names(&[CONFLIST, "87-podman.conf"]), true),
            ConfDirPlan::YieldTo {
                foreign: names(&["87-podman.conf"]),
                remove_ours: true
            },
            "ours from an earlier run would sort ahead of theirs"
        );
    }

    #[test]
    fn configure_writes_yields_and_never_touches_a_foreign_config() {
        let dir = tempfile::tempdir().unwrap();
        let net = BridgeNetwork::default();
        assert_eq!(
            configure(dir.path(), None, "10.244.1.0/24").unwrap(),
            Configured::NotOptedIn
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let ours = dir.path().join(CONFLIST);
        assert_eq!(
            configure(dir.path(), Some(&net), "10.244.1.0/24").unwrap(),
            Configured::Written(ours.clone())
        );
        let kindnet = dir.path().join("10-kindnet.conflist");
        std::fs::write(&kindnet, "{\"name\": \"kindnet\"}").unwrap();
        assert_eq!(
            configure(dir.path(), Some(&net), "10.244.1.0/24").unwrap(),
            Configured::LeftToOthers {
                foreign: names(&["10-kindnet.conflist"]),
                removed_ours: true
            }
        );
        assert!(!ours.exists());
        assert_eq!(
            std::fs::read_to_string(&kindnet).unwrap(),
            "{\"name\": \"kindnet\"}"
        );
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
