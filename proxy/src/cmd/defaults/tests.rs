use super::*;
use crate::cmd::options::{command, resolve, table, ProxyMode, ProxyOptions};
use proxy::testing::KUBEADM_CONFIG_CONF as KUBEADM;
use std::time::Duration;

fn parse_file(text: &str) -> KubeProxyConfiguration {
    component_base::config::parse_strict(
        std::path::Path::new("/var/lib/kube-proxy/config.conf"),
        text,
        crate::cmd::config::ACCEPTED,
    )
    .unwrap()
}

fn with_file(text: &str) -> Result<ProxyOptions, String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.conf");
    std::fs::write(&path, text).unwrap();
    let config = format!("--config={}", path.display());
    let parsed =
        component_base::flags::try_parse(&table(), command(), argv(&["kube-proxy", &config]))
            .map_err(|e| e.to_string())?
            .unwrap();
    resolve(&parsed.matches)
}

fn argv(args: &[&str]) -> Vec<std::ffi::OsString> {
    args.iter().map(Into::into).collect()
}

fn secs(s: u64) -> Option<GoDuration> {
    Some(GoDuration::from_secs(s))
}

#[test]
fn kubeadms_file_gets_upstreams_defaults_for_every_zero_and_empty_value() {
    let mut c = parse_file(KUBEADM);
    apply(&mut c);
    assert_eq!(c.bind_address, "0.0.0.0");
    assert_eq!(c.healthz_bind_address, "0.0.0.0:10256");
    assert_eq!(c.metrics_bind_address, "127.0.0.1:10249");
    assert_eq!(c.oom_score_adj, Some(-999));
    assert_eq!(
        (c.iptables.sync_period, c.iptables.min_sync_period),
        (secs(30), secs(1))
    );
    assert_eq!(
        (c.nftables.sync_period, c.nftables.min_sync_period),
        (secs(30), secs(1))
    );
    assert_eq!(c.iptables.masquerade_bit, Some(14));
    assert_eq!(c.nftables.masquerade_bit, Some(14));
    assert_eq!(c.iptables.localhost_node_ports, Some(true));
    assert_eq!(c.config_sync_period, secs(15 * 60));
    assert_eq!(c.client_connection.qps, Some(5.0));
    assert_eq!(c.client_connection.burst, Some(10));
    assert_eq!(
        c.client_connection.content_type,
        "application/vnd.kubernetes.protobuf"
    );
    assert_eq!(c.mode, "iptables", "Linux's default");
    assert_eq!(c.detect_local_mode, "ClusterCIDR");

    let o = with_file(KUBEADM).unwrap();
    assert_eq!(o.mode, ProxyMode::Iptables);
    assert_eq!(o.sync_period, Duration::from_secs(30));
    assert_eq!(o.min_sync_period, Duration::from_secs(1));
    assert_eq!(o.masquerade_bit, 14);
    assert!(o.localhost_nodeports && !o.masquerade_all);
    assert_eq!(o.healthz_bind.unwrap().to_string(), "0.0.0.0:10256");
    assert_eq!(o.metrics_bind.unwrap().to_string(), "127.0.0.1:10249");
    assert_eq!(o.bind_address, None, "0.0.0.0: the Node's own IP");
    assert_eq!((o.qps, o.burst), (5.0, 10));
    assert_eq!(o.content_type, "application/vnd.kubernetes.protobuf");
    assert_eq!(
        o.kubeconfig.as_deref(),
        Some(std::path::Path::new("/var/lib/kube-proxy/kubeconfig.conf"))
    );
    assert_eq!(o.cluster_cidrs.len(), 1);
    assert!(o.nodeport_addresses.is_empty());
    assert_eq!(o.hostname_override, None);
}

#[test]
fn explicit_values_and_pointer_zeros_are_kept() {
    let mut c = parse_file(
        "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nmode: nftables\n\
         bindAddress: \"::\"\nhealthzBindAddress: \"::1\"\nmetricsBindAddress: 10.0.0.1:9000\noomScoreAdj: 0\n\
         iptables: {masqueradeBit: 0, localhostNodePorts: false}\nnftables: {syncPeriod: 1m, minSyncPeriod: 5s}\n",
    );
    apply(&mut c);
    assert_eq!(c.mode, "nftables");
    assert_eq!(
        c.healthz_bind_address, "[::1]:10256",
        "a bare IP gets the port"
    );
    assert_eq!(c.metrics_bind_address, "10.0.0.1:9000");
    assert_eq!(c.oom_score_adj, Some(0));
    assert_eq!(c.iptables.masquerade_bit, Some(0));
    assert_eq!(c.iptables.localhost_node_ports, Some(false));
    assert_eq!(
        (c.nftables.sync_period, c.nftables.min_sync_period),
        (secs(60), secs(5))
    );
    let mut v6 = parse_file(
        "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nbindAddress: \"fd00::1\"\n",
    );
    apply(&mut v6);
    assert_eq!(v6.healthz_bind_address, "[::]:10256");
    assert_eq!(v6.metrics_bind_address, "[::1]:10249");
}

#[test]
fn an_empty_mode_flag_means_iptables_too() {
    let parsed = component_base::flags::try_parse(&table(), command(), argv(&["kube-proxy"]))
        .unwrap()
        .unwrap();
    assert_eq!(resolve(&parsed.matches).unwrap().mode, ProxyMode::Iptables);
    assert_eq!(mode(""), "iptables");
    assert_eq!(mode("nftables"), "nftables");
}

#[test]
fn invalid_values_are_errors_naming_the_field() {
    let header = "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n";
    for (text, field) in [
        ("iptables: {syncPeriod: -30s}\n", "iptables.syncPeriod"),
        (
            "iptables: {minSyncPeriod: often}\n",
            "iptables.minSyncPeriod",
        ),
        ("iptables: {masqueradeBit: 32}\n", "iptables.masqueradeBit"),
        ("clientConnection: {burst: -1}\n", "clientConnection.burst"),
        ("metricsBindAddress: localhost\n", "metricsBindAddress"),
        ("bindAddress: nowhere\n", "bindAddress"),
        ("mode: ipvs\n", "mode"),
    ] {
        let e = with_file(&format!("{header}{text}")).unwrap_err();
        assert!(e.contains(field), "{text:?}: {e}");
    }
}
