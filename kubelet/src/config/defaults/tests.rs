use super::*;
use crate::config::flags::{command, table};
use crate::config::options::{Options, CONFIG_TYPES};
use clap::ArgMatches;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::testing::KIND_NODE_CONFIG as KIND_NODE;

const HEADER: &str = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n";

fn parse(text: &str) -> Result<KubeletConfiguration, String> {
    component_base::config::parse_strict(
        Path::new("/var/lib/kubelet/config.yaml"),
        text,
        CONFIG_TYPES,
    )
    .map_err(|e| e.to_string())
}

fn no_flags() -> ArgMatches {
    component_base::flags::try_parse(&table(), command(), argv(&["kubelet"]))
        .unwrap()
        .unwrap()
        .matches
}

fn resolve(text: &str) -> anyhow::Result<Options> {
    Options::resolve_with(&no_flags(), Some(parse(text).map_err(anyhow::Error::msg)?))
}

fn argv(args: &[&str]) -> Vec<std::ffi::OsString> {
    args.iter().map(Into::into).collect()
}

fn secs(s: u64) -> Option<GoDuration> {
    Some(GoDuration::from_secs(s))
}

#[test]
fn a_kind_nodes_file_gets_upstreams_defaults_for_every_zero_and_empty_value() {
    let mut f = parse(KIND_NODE).unwrap();
    apply(&mut f);
    assert_eq!(f.sync_frequency, secs(60));
    assert_eq!(f.file_check_frequency, secs(20));
    assert_eq!(f.http_check_frequency, secs(20));
    assert_eq!(f.streaming_connection_idle_timeout, secs(4 * 3600));
    assert_eq!(f.node_status_update_frequency, secs(10));
    assert_eq!(f.node_status_report_frequency, secs(300));
    assert_eq!(f.image_minimum_gc_age, secs(120));
    assert_eq!(
        f.image_maximum_gc_age,
        Some(GoDuration::default()),
        "0s: off"
    );
    assert_eq!(f.volume_stats_agg_period, secs(60));
    assert_eq!(f.cpu_manager_reconcile_period, secs(10));
    assert_eq!(f.runtime_request_timeout, secs(120));
    assert_eq!(f.eviction_pressure_transition_period, secs(300));
    assert_eq!(
        f.shutdown_grace_period,
        Some(GoDuration::default()),
        "no default: off"
    );
    assert_eq!(f.cgroup_driver.as_deref(), Some("systemd"), "kept");
    assert_eq!(
        f.container_runtime_endpoint.as_deref(),
        Some("unix:///run/containerd/containerd.sock")
    );
    let authn = f.authentication.as_ref().unwrap();
    assert_eq!(authn.webhook.as_ref().unwrap().cache_ttl, secs(120));
    let authz = f.authorization.as_ref().unwrap().webhook.as_ref().unwrap();
    assert_eq!(authz.cache_authorized_ttl, secs(300));
    assert_eq!(authz.cache_unauthorized_ttl, secs(30));

    let o = resolve(KIND_NODE).unwrap();
    assert_eq!(o.node_status_update_frequency, Duration::from_secs(10));
    assert_eq!(o.node_status_report_frequency, Duration::from_secs(300));
    assert_eq!(o.file_check_frequency, Duration::from_secs(20));
    assert_eq!(
        o.eviction_pressure_transition_period,
        Duration::from_secs(300)
    );
    assert_eq!(o.image_gc.min_age, Duration::from_secs(120));
    assert_eq!(o.image_gc.max_age, Duration::ZERO);
    assert_eq!(o.image_gc.high_threshold_percent, 100, "kind's value");
    assert_eq!(o.image_gc.low_threshold_percent, 80);
    assert_eq!(o.runtime_endpoint, "unix:///run/containerd/containerd.sock");
    assert_eq!(o.server.0.to_string(), "0.0.0.0");
    assert_eq!(o.server.1, 10250);
    assert_eq!(o.healthz.1, 10248);
    assert_eq!(o.max_pods, 110);
    assert_eq!(o.node_lease_duration_seconds, 40);
    assert_eq!(o.api_qps_burst, (50.0, 100));
    assert_eq!(o.node_status_max_images, 50);
    assert_eq!(o.resolv_conf, PathBuf::from("/etc/resolv.conf"));
    assert_eq!(o.pod_logs_dir, PathBuf::from("/var/log/pods"));
    assert_eq!(o.cgroup_root, "/kubelet");
    assert!(o.cgroups_per_qos && o.register_node && !o.fail_swap_on && !o.fail_cgroup_v1);
    assert_eq!(o.enforce_node_allocatable, vec!["pods"]);
    assert_eq!(
        o.eviction_hard.keys().collect::<Vec<_>>(),
        ["imagefs.available", "nodefs.available", "nodefs.inodesFree"],
        "a file's evictionHard replaces the defaults (mergeDefaultEvictionSettings unset)"
    );
    assert_eq!(o.auth.authn_cache_ttl, Duration::from_secs(120));
    assert_eq!(o.auth.authorized_ttl, Duration::from_secs(300));
    assert_eq!(o.auth.unauthorized_ttl, Duration::from_secs(30));
    assert!(!o.auth.anonymous && o.auth.webhook_authn && o.auth.webhook_authz);
    // Nothing of what kubeadm writes for a kind node is left unimplemented.
    assert_eq!(
        o.unimplemented,
        Vec::<String>::new(),
        "zero durations, `logging` of zeros and `memorySwap: {{}}` are unset"
    );
}

#[test]
fn an_empty_file_and_no_file_resolve_to_the_same_defaults_but_the_api_auth() {
    let file = resolve(HEADER).unwrap();
    let none = Options::resolve_with(&no_flags(), None).unwrap();
    assert_eq!(
        file.node_status_update_frequency,
        none.node_status_update_frequency
    );
    assert_eq!(file.eviction_hard, eviction_hard());
    assert_eq!(none.eviction_hard, eviction_hard());
    assert_eq!((file.max_pods, none.max_pods), (110, 110));
    assert!(file.auth.webhook_authz && !file.auth.anonymous);
    assert!(
        !none.auth.webhook_authz && none.auth.anonymous,
        "legacy flag defaults"
    );
}

#[test]
fn pointer_fields_keep_an_explicit_zero_and_empty() {
    let o = resolve(&format!(
        "{HEADER}healthzPort: 0\nnodeStatusMaxImages: 0\nkubeAPIQPS: 0\nresolvConf: \"\"\n\
         enforceNodeAllocatable: []\nregisterNode: false\nenableServer: false\n"
    ))
    .unwrap();
    assert_eq!(o.healthz.1, 0, "healthzPort 0 disables healthz");
    assert_eq!(o.node_status_max_images, 0);
    assert_eq!(o.api_qps_burst.0, 0.0);
    assert_eq!(
        o.resolv_conf,
        PathBuf::from(""),
        "no host DNS for dnsPolicy Default"
    );
    assert!(o.enforce_node_allocatable.is_empty());
    assert!(!o.register_node);
    assert_eq!(o.server.1, 0);
    // Non-pointer zeros are unset.
    let o = resolve(&format!(
        "{HEADER}port: 0\nmaxPods: 0\nkubeAPIBurst: 0\naddress: \"\"\n"
    ))
    .unwrap();
    assert_eq!(
        (o.server.1, o.max_pods, o.api_qps_burst.1),
        (10250, 110, 100)
    );
}

#[test]
fn report_frequency_follows_an_explicit_update_frequency() {
    let o = resolve(&format!(
        "{HEADER}nodeStatusUpdateFrequency: 20s\nnodeStatusReportFrequency: 0s\n"
    ))
    .unwrap();
    assert_eq!(o.node_status_update_frequency, Duration::from_secs(20));
    assert_eq!(o.node_status_report_frequency, Duration::from_secs(20));
}

#[test]
fn merge_default_eviction_settings_fills_the_missing_signals() {
    let o = resolve(&format!(
        "{HEADER}mergeDefaultEvictionSettings: true\nevictionHard: {{memory.available: 1Gi}}\n"
    ))
    .unwrap();
    assert_eq!(o.eviction_hard["memory.available"], "1Gi");
    assert_eq!(o.eviction_hard["imagefs.available"], "15%");
    assert_eq!(o.eviction_hard.len(), 5);
}

#[test]
fn invalid_values_are_errors_naming_the_field() {
    for (text, field) in [
        (
            "nodeStatusUpdateFrequency: -10s\n",
            "nodeStatusUpdateFrequency",
        ),
        ("syncFrequency: soon\n", "syncFrequency"),
        (
            "runtimeRequestTimeout: 2 minutes\n",
            "runtimeRequestTimeout",
        ),
        ("port: -1\n", "port"),
        ("maxPods: -1\n", "maxPods"),
        ("kubeAPIBurst: -5\n", "kubeAPIBurst"),
        ("nodeLeaseDurationSeconds: -1\n", "nodeLeaseDurationSeconds"),
        ("nodeStatusMaxImages: -2\n", "nodeStatusMaxImages"),
    ] {
        let e = resolve(&format!("{HEADER}{text}")).unwrap_err().to_string();
        assert!(e.contains(field), "{text:?}: {e}");
    }
    let m = component_base::flags::try_parse(
        &table(),
        command(),
        argv(&["kubelet", "--node-status-update-frequency=0s"]),
    )
    .unwrap()
    .unwrap()
    .matches;
    let e = Options::resolve_with(&m, Some(parse(KIND_NODE).unwrap()))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("nodeStatusUpdateFrequency (--node-status-update-frequency)"),
        "{e}"
    );
}

#[test]
fn every_pointer_field_named_for_the_warning_is_an_untyped_field() {
    let mut everything = String::from(HEADER);
    for name in crate::config::file::UPSTREAM_POINTER_FIELDS {
        everything.push_str(&format!("{name}: 0\n"));
    }
    let f = parse(&everything).unwrap();
    let set = crate::config::file::unimplemented_fields_set(&f);
    assert_eq!(
        set.len(),
        crate::config::file::UPSTREAM_POINTER_FIELDS.len(),
        "{set:?}"
    );
}
