//! `KubeProxyConfiguration` (kubeproxy.config.k8s.io/v1alpha1), read strictly: every
//! upstream field is known, anything else is an error naming the field and the file.

use component_base::duration::GoDuration;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// The accepted `apiVersion`/`kind`.
pub const ACCEPTED: &[(&str, &str)] =
    &[("kubeproxy.config.k8s.io/v1alpha1", "KubeProxyConfiguration")];

/// The file's top level (fields as upstream names them; absent fields keep defaults).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct KubeProxyConfiguration {
    /// Always `kubeproxy.config.k8s.io/v1alpha1`.
    pub api_version: String,
    /// Always `KubeProxyConfiguration`.
    pub kind: String,
    /// Feature gates (accepted; ferrokube has none to switch).
    pub feature_gates: BTreeMap<String, bool>,
    /// How to reach the apiserver.
    pub client_connection: ClientConnection,
    /// Logging (format and verbosity are honoured).
    pub logging: Logging,
    /// The Node's name instead of the hostname.
    pub hostname_override: String,
    /// The node's primary IP (historical name).
    pub bind_address: String,
    /// `/healthz` address, `ip:port`.
    pub healthz_bind_address: String,
    /// `/metrics` address, `ip:port`.
    pub metrics_bind_address: String,
    /// Exit if a port cannot be bound.
    pub bind_address_hard_fail: bool,
    /// Profiling handlers (not implemented).
    pub enable_profiling: bool,
    /// Hidden metrics (accepted).
    pub show_hidden_metrics_for_version: String,
    /// `iptables`, `ipvs` or `nftables`.
    pub mode: String,
    /// iptables mode settings.
    pub iptables: IptablesConfig,
    /// IPVS settings (accepted; no IPVS here).
    pub ipvs: serde_json::Value,
    /// nftables mode settings.
    pub nftables: NftablesConfig,
    /// Windows settings (accepted).
    pub winkernel: serde_json::Value,
    /// `ClusterCIDR`, `NodeCIDR`, `BridgeInterface`, `InterfaceNamePrefix`.
    pub detect_local_mode: String,
    /// Settings of the detect-local modes.
    pub detect_local: DetectLocal,
    /// Comma-separated pod CIDRs.
    #[serde(rename = "clusterCIDR")]
    pub cluster_cidr: String,
    /// CIDRs (or `primary`) whose node IPs accept NodePorts.
    pub node_port_addresses: Option<Vec<String>>,
    /// OOM score of the process.
    pub oom_score_adj: Option<i32>,
    /// conntrack sysctls (accepted).
    pub conntrack: serde_json::Value,
    /// Informer resync period.
    pub config_sync_period: Option<GoDuration>,
    /// Obsolete userspace proxy range (accepted).
    pub port_range: String,
    /// Windows only (accepted).
    pub windows_run_as_service: bool,
}

/// `clientConnection`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct ClientConnection {
    /// Path of the kubeconfig.
    pub kubeconfig: String,
    /// Accept header.
    pub accept_content_types: String,
    /// Content type of requests.
    pub content_type: String,
    /// Steady requests per second.
    pub qps: Option<f32>,
    /// Burst above qps.
    pub burst: Option<i32>,
}

/// `logging` (component-base's LoggingConfiguration).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Logging {
    /// `text` or `json`.
    pub format: String,
    /// Flush frequency.
    pub flush_frequency: Option<serde_json::Value>,
    /// klog verbosity.
    pub verbosity: Option<u8>,
    /// Per-module verbosity (accepted).
    pub vmodule: Option<serde_json::Value>,
    /// Format options (accepted).
    pub options: Option<serde_json::Value>,
}

/// `iptables`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct IptablesConfig {
    /// SNAT mark bit.
    pub masquerade_bit: Option<i32>,
    /// SNAT all service traffic.
    pub masquerade_all: bool,
    /// NodePorts on localhost (IPv4; default true).
    pub localhost_node_ports: Option<bool>,
    /// Full resync period.
    pub sync_period: Option<GoDuration>,
    /// Minimum time between syncs.
    pub min_sync_period: Option<GoDuration>,
}

/// `nftables`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct NftablesConfig {
    /// SNAT mark bit.
    pub masquerade_bit: Option<i32>,
    /// SNAT all service traffic.
    pub masquerade_all: bool,
    /// Full resync period.
    pub sync_period: Option<GoDuration>,
    /// Minimum time between syncs.
    pub min_sync_period: Option<GoDuration>,
}

/// `detectLocal`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct DetectLocal {
    /// Bridge for `BridgeInterface` mode.
    pub bridge_interface: String,
    /// Prefix for `InterfaceNamePrefix` mode.
    pub interface_name_prefix: String,
    /// Pod CIDRs for `ClusterCIDR` mode.
    #[serde(rename = "clusterCIDRs")]
    pub cluster_cidrs: Vec<String>,
}

/// Reads `path` strictly.
pub fn load(path: &Path) -> Result<KubeProxyConfiguration, component_base::config::ConfigError> {
    component_base::config::load_strict(path, ACCEPTED)
}

#[cfg(test)]
mod tests {
    use super::*;
    use component_base::config::parse_strict;

    fn parse(text: &str) -> Result<KubeProxyConfiguration, String> {
        parse_strict(Path::new("/etc/kube-proxy.yaml"), text, ACCEPTED).map_err(|e| e.to_string())
    }

    #[test]
    fn reads_a_kubeadm_style_file() {
        let c = parse(
            "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nmode: nftables\n\
             clusterCIDR: 10.244.0.0/16\nclientConnection:\n  kubeconfig: /var/lib/kube-proxy/kubeconfig.conf\n  qps: 50\n\
             nftables:\n  minSyncPeriod: 2s\n  syncPeriod: 1m\n  masqueradeBit: 15\nconntrack:\n  maxPerCore: 0\n\
             detectLocal:\n  clusterCIDRs: [10.244.0.0/16]\nnodePortAddresses: [primary]\n",
        )
        .unwrap();
        assert_eq!(c.mode, "nftables");
        assert_eq!(c.nftables.min_sync_period, Some(GoDuration::from_secs(2)));
        assert_eq!(c.nftables.masquerade_bit, Some(15));
        assert_eq!(c.client_connection.qps, Some(50.0));
        assert_eq!(
            c.node_port_addresses.as_deref(),
            Some(&["primary".to_string()][..])
        );
    }

    #[test]
    fn unknown_field_wrong_kind_and_bad_value_name_the_field_and_file() {
        let e = parse("apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nnftables:\n  syncPeriodd: 1s\n").unwrap_err();
        assert!(
            e.contains("/etc/kube-proxy.yaml") && e.contains("nftables.syncPeriodd"),
            "{e}"
        );
        let e = parse("apiVersion: v1\nkind: KubeProxyConfiguration\n").unwrap_err();
        assert!(
            e.contains("apiVersion") || e.contains("version \"v1\""),
            "{e}"
        );
        let e = parse("apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nnftables:\n  minSyncPeriod: soon\n").unwrap_err();
        assert!(e.contains("nftables.minSyncPeriod"), "{e}");
    }
}
