//! Upstream's defaulting of `KubeProxyConfiguration` (v1alpha1
//! `SetDefaults_KubeProxyConfiguration`, then Linux's `platformApplyDefaults`), applied to
//! the file right after it is parsed — the one place kube-proxy's file defaults live.
//!
//! As upstream, a field declared without a pointer (durations, `qps`, `burst`, strings)
//! takes its default when it holds Go's zero value (`0s`, `0`, `""`), which is how kubeadm
//! writes what it leaves unset; a pointer field (`masqueradeBit`, `localhostNodePorts`,
//! `oomScoreAdj`) takes its default only when absent, so an explicit `0` is kept.

use super::config::KubeProxyConfiguration;
use component_base::duration::GoDuration;
use std::net::IpAddr;

/// The mode an empty `mode` (or `--proxy-mode`) means on Linux, as upstream.
pub const LINUX_DEFAULT_MODE: &str = "iptables";

/// `healthzBindAddress`'s port.
const HEALTHZ_PORT: u16 = 10256;
/// `metricsBindAddress`'s port.
const METRICS_PORT: u16 = 10249;

/// `mode` as kube-proxy runs it: empty means [`LINUX_DEFAULT_MODE`].
pub fn mode(mode: &str) -> &str {
    if mode.is_empty() {
        LINUX_DEFAULT_MODE
    } else {
        mode
    }
}

/// Sets a non-pointer duration that is absent or zero.
fn duration(field: &mut Option<GoDuration>, secs: u64) {
    if field.is_none_or(|d| d.0.is_zero()) {
        *field = Some(GoDuration::from_secs(secs));
    }
}

/// Sets a non-pointer string that is empty.
fn string(field: &mut String, default: &str) {
    if field.is_empty() {
        *field = default.to_string();
    }
}

/// `addr` with `port` appended when it is a bare IP (`[ip]:port` for IPv6); anything else
/// is left for validation to report.
fn with_port(addr: &str, port: u16) -> String {
    match addr.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => format!("{ip}:{port}"),
        Ok(IpAddr::V6(ip)) => format!("[{ip}]:{port}"),
        Err(_) => addr.to_string(),
    }
}

/// Fills every field kube-proxy reads with upstream's default where the file leaves it
/// unset, field by field as upstream does.
pub fn apply(c: &mut KubeProxyConfiguration) {
    string(&mut c.bind_address, "0.0.0.0");
    // The servers listen on the bind address's family by default.
    let ipv4 = c
        .bind_address
        .parse::<IpAddr>()
        .is_ok_and(|ip| ip.is_ipv4());
    let (healthz_ip, metrics_ip) = if ipv4 {
        ("0.0.0.0", "127.0.0.1")
    } else {
        ("::", "::1")
    };
    for (addr, default_ip, port) in [
        (&mut c.healthz_bind_address, healthz_ip, HEALTHZ_PORT),
        (&mut c.metrics_bind_address, metrics_ip, METRICS_PORT),
    ] {
        let ip = if addr.is_empty() {
            default_ip.to_string()
        } else {
            addr.clone()
        };
        *addr = with_port(&ip, port);
    }
    c.oom_score_adj.get_or_insert(-999);
    duration(&mut c.iptables.sync_period, 30);
    duration(&mut c.iptables.min_sync_period, 1);
    c.iptables.localhost_node_ports.get_or_insert(true);
    c.iptables.masquerade_bit.get_or_insert(14);
    duration(&mut c.nftables.sync_period, 30);
    duration(&mut c.nftables.min_sync_period, 1);
    c.nftables.masquerade_bit.get_or_insert(14);
    duration(&mut c.config_sync_period, 15 * 60);
    let cc = &mut c.client_connection;
    string(&mut cc.content_type, "application/vnd.kubernetes.protobuf");
    if cc.qps.is_none_or(|q| q == 0.0) {
        cc.qps = Some(5.0);
    }
    if cc.burst.is_none_or(|b| b == 0) {
        cc.burst = Some(10);
    }
    // Linux's platform defaults.
    string(&mut c.mode, LINUX_DEFAULT_MODE);
    string(&mut c.detect_local_mode, "ClusterCIDR");
}

#[cfg(test)]
mod tests;
