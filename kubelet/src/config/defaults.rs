//! Upstream's defaulting of `KubeletConfiguration` (v1beta1 `SetDefaults_KubeletConfiguration`
//! plus the loader's `evictionHard` rule), applied to the file right after it is parsed and
//! before flags are merged over it — the one place the kubelet's defaults live.
//!
//! As upstream, a field declared without a pointer (durations, ports, counts, strings) takes
//! its default when it holds Go's zero value (`0s`, `0`, `""`), which is how kubeadm writes
//! what it leaves unset; a field declared as a pointer takes its default only when absent,
//! so an explicit `0` or `false` there is kept (`healthzPort: 0` disables healthz).

use super::auth::{AnonymousAuthentication, WebhookAuthentication, WebhookAuthorization};
use super::file::KubeletConfiguration;
use component_base::duration::GoDuration;
use std::collections::BTreeMap;

/// Upstream's default `nodeStatusMaxImages`: how many images the node status lists.
pub const NODE_STATUS_MAX_IMAGES: i32 = 50;

/// Upstream's default `evictionHard` on Linux (pkg/kubelet/eviction/defaults_linux.go).
pub fn eviction_hard() -> BTreeMap<String, String> {
    [
        ("memory.available", "100Mi"),
        ("nodefs.available", "10%"),
        ("nodefs.inodesFree", "5%"),
        ("imagefs.available", "15%"),
        ("imagefs.inodesFree", "5%"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Sets a non-pointer duration that is absent or zero.
fn duration(field: &mut Option<GoDuration>, secs: u64) {
    if field.is_none_or(|d| d.0.is_zero()) {
        *field = Some(GoDuration::from_secs(secs));
    }
}

/// Sets a non-pointer string that is absent or empty.
fn string(field: &mut Option<String>, default: &str) {
    if field.as_deref().is_none_or(str::is_empty) {
        *field = Some(default.to_string());
    }
}

/// Sets a non-pointer number that is absent or zero.
fn number<T: Copy + Default + PartialEq>(field: &mut Option<T>, default: T) {
    if field.is_none_or(|v| v == T::default()) {
        *field = Some(default);
    }
}

/// Sets a pointer field that is absent (an explicit zero is kept).
fn pointer<T>(field: &mut Option<T>, default: T) {
    field.get_or_insert(default);
}

/// Fills every field the kubelet reads with upstream's default where the file leaves it
/// unset, field by field as `SetDefaults_KubeletConfiguration` does.
pub fn apply(c: &mut KubeletConfiguration) {
    pointer(&mut c.enable_server, true);
    duration(&mut c.sync_frequency, 60);
    duration(&mut c.file_check_frequency, 20);
    duration(&mut c.http_check_frequency, 20);
    string(&mut c.address, "0.0.0.0");
    number(&mut c.port, 10250);
    apply_auth(c);
    pointer(&mut c.healthz_port, 10248);
    string(&mut c.healthz_bind_address, "127.0.0.1");
    duration(&mut c.streaming_connection_idle_timeout, 4 * 3600);
    // Reported as often as it is updated when only the update frequency is set.
    if c.node_status_report_frequency.is_none_or(|d| d.0.is_zero()) {
        c.node_status_report_frequency = match c.node_status_update_frequency {
            Some(update) if !update.0.is_zero() => Some(update),
            _ => Some(GoDuration::from_secs(300)),
        };
    }
    duration(&mut c.node_status_update_frequency, 10);
    number(&mut c.node_lease_duration_seconds, 40);
    duration(&mut c.image_minimum_gc_age, 120);
    pointer(&mut c.image_gc_high_threshold_percent, 85);
    pointer(&mut c.image_gc_low_threshold_percent, 80);
    duration(&mut c.volume_stats_agg_period, 60);
    pointer(&mut c.cgroups_per_qos, true);
    string(&mut c.cgroup_driver, "cgroupfs");
    duration(&mut c.cpu_manager_reconcile_period, 10);
    duration(&mut c.runtime_request_timeout, 120);
    number(&mut c.max_pods, 110);
    pointer(&mut c.resolv_conf, "/etc/resolv.conf".to_string());
    pointer(&mut c.node_status_max_images, NODE_STATUS_MAX_IMAGES);
    pointer(&mut c.kube_api_qps, 50);
    number(&mut c.kube_api_burst, 100);
    duration(&mut c.eviction_pressure_transition_period, 300);
    pointer(&mut c.merge_default_eviction_settings, false);
    pointer(&mut c.fail_swap_on, true);
    pointer(&mut c.enforce_node_allocatable, vec!["pods".to_string()]);
    pointer(&mut c.fail_cgroup_v1, false);
    pointer(&mut c.register_node, true);
    string(
        &mut c.container_runtime_endpoint,
        crate::cri::DEFAULT_ENDPOINT,
    );
    string(&mut c.pod_logs_dir, "/var/log/pods");
    // The loader's rule: no `evictionHard` means the defaults; with
    // `mergeDefaultEvictionSettings` the defaults fill the signals it leaves out.
    match &mut c.eviction_hard {
        None => c.eviction_hard = Some(eviction_hard()),
        Some(hard) if c.merge_default_eviction_settings == Some(true) => {
            for (signal, value) in eviction_hard() {
                hard.entry(signal).or_insert(value);
            }
        }
        Some(_) => {}
    }
}

/// `authentication` and `authorization`: anonymous off, webhook on (2m cache), mode Webhook
/// (5m/30s caches).
fn apply_auth(c: &mut KubeletConfiguration) {
    let authn = c.authentication.get_or_insert_with(Default::default);
    let anonymous = authn
        .anonymous
        .get_or_insert_with(AnonymousAuthentication::default);
    pointer(&mut anonymous.enabled, false);
    let webhook = authn
        .webhook
        .get_or_insert_with(WebhookAuthentication::default);
    pointer(&mut webhook.enabled, true);
    duration(&mut webhook.cache_ttl, 120);
    let authz = c.authorization.get_or_insert_with(Default::default);
    string(&mut authz.mode, "Webhook");
    let webhook = authz
        .webhook
        .get_or_insert_with(WebhookAuthorization::default);
    duration(&mut webhook.cache_authorized_ttl, 300);
    duration(&mut webhook.cache_unauthorized_ttl, 30);
}

/// What the kubelet runs with when no `--config` is given: the defaults above, then
/// upstream's legacy overrides for flag-only kubelets (anonymous requests allowed, no
/// webhook, `AlwaysAllow`; upstream's read-only port 10255 is not served here).
pub fn without_file() -> KubeletConfiguration {
    let mut c = KubeletConfiguration::default();
    apply(&mut c);
    if let Some(authn) = c.authentication.as_mut() {
        authn.anonymous = Some(AnonymousAuthentication {
            enabled: Some(true),
        });
        if let Some(webhook) = authn.webhook.as_mut() {
            webhook.enabled = Some(false);
        }
    }
    if let Some(authz) = c.authorization.as_mut() {
        authz.mode = Some("AlwaysAllow".into());
    }
    c
}

#[cfg(test)]
mod tests;
