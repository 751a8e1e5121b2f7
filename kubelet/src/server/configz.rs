//! `/configz`: the effective KubeletConfiguration (flags resolved over the file over the
//! defaults) as `{"kubeletconfig": {...}}` with v1beta1 field names, as upstream registers
//! it with component-base's configz. Only the settings ferrokube resolves are reported;
//! TypeMeta is omitted as upstream's converted object has none.

use crate::config::Options;
use component_base::duration::GoDuration;
use serde_json::{json, Map, Value};
use std::time::Duration;

fn dur(d: Duration) -> Value {
    Value::String(GoDuration(d).to_string())
}

/// The `kubeletconfig` object of `opts`.
pub fn kubelet_configuration(opts: &Options) -> Value {
    let a = &opts.auth;
    let mut c = Map::new();
    let mut set = |k: &str, v: Value| {
        c.insert(k.to_string(), v);
    };
    set("enableServer", json!(opts.server.1 != 0));
    if let Some(p) = &opts.static_pod_path {
        set("staticPodPath", json!(p));
    }
    set("podLogsDir", json!(opts.pod_logs_dir));
    set("fileCheckFrequency", dur(opts.file_check_frequency));
    set("address", json!(opts.server.0.to_string()));
    set("port", json!(opts.server.1));
    if let Some((cert, key)) = &opts.tls {
        set("tlsCertFile", json!(cert));
        set("tlsPrivateKeyFile", json!(key));
    }
    // Upstream's omitempty: only when on.
    if opts.rotate_certificates {
        set("rotateCertificates", json!(true));
    }
    if opts.server_tls_bootstrap {
        set("serverTLSBootstrap", json!(true));
    }
    let mut x509 = Map::new();
    if let Some(ca) = &a.client_ca_file {
        x509.insert("clientCAFile".into(), json!(ca));
    }
    set(
        "authentication",
        json!({
            "x509": x509,
            "webhook": {"enabled": a.webhook_authn, "cacheTTL": GoDuration(a.authn_cache_ttl).to_string()},
            "anonymous": {"enabled": a.anonymous},
        }),
    );
    set(
        "authorization",
        json!({
            "mode": if a.webhook_authz { "Webhook" } else { "AlwaysAllow" },
            "webhook": {
                "cacheAuthorizedTTL": GoDuration(a.authorized_ttl).to_string(),
                "cacheUnauthorizedTTL": GoDuration(a.unauthorized_ttl).to_string(),
            },
        }),
    );
    set("healthzPort", json!(opts.healthz.1));
    set("healthzBindAddress", json!(opts.healthz.0.to_string()));
    if !opts.cluster_domain.is_empty() {
        set("clusterDomain", json!(opts.cluster_domain));
    }
    if !opts.cluster_dns.is_empty() {
        set("clusterDNS", json!(opts.cluster_dns));
    }
    set(
        "nodeStatusUpdateFrequency",
        dur(opts.node_status_update_frequency),
    );
    set(
        "nodeStatusReportFrequency",
        dur(opts.node_status_report_frequency),
    );
    set(
        "nodeLeaseDurationSeconds",
        json!(opts.node_lease_duration_seconds),
    );
    set("cgroupRoot", json!(opts.cgroup_root));
    set("cgroupsPerQOS", json!(opts.cgroups_per_qos));
    set("cgroupDriver", json!(opts.cgroup_driver.as_str()));
    set("maxPods", json!(opts.max_pods));
    set("nodeStatusMaxImages", json!(opts.node_status_max_images));
    if let Some(cidr) = &opts.pod_cidr {
        set("podCIDR", json!(cidr));
    }
    set("resolvConf", json!(opts.resolv_conf));
    set("kubeAPIQPS", json!(opts.api_qps_burst.0 as i64));
    set("kubeAPIBurst", json!(opts.api_qps_burst.1));
    if !opts.eviction_hard.is_empty() {
        set("evictionHard", json!(opts.eviction_hard));
    }
    set(
        "evictionMaxPodGracePeriod",
        json!(opts.eviction_max_pod_grace_period),
    );
    set(
        "evictionPressureTransitionPeriod",
        dur(opts.eviction_pressure_transition_period),
    );
    if !opts.kube_reserved.is_empty() {
        set("kubeReserved", json!(opts.kube_reserved));
    }
    if !opts.system_reserved.is_empty() {
        set("systemReserved", json!(opts.system_reserved));
    }
    set(
        "enforceNodeAllocatable",
        if opts.enforce_node_allocatable.is_empty() {
            json!(["none"])
        } else {
            json!(opts.enforce_node_allocatable)
        },
    );
    set("failSwapOn", json!(opts.fail_swap_on));
    set("failCgroupV1", json!(opts.fail_cgroup_v1));
    set("containerRuntimeEndpoint", json!(opts.runtime_endpoint));
    set("registerNode", json!(opts.register_node));
    if !opts.register_with_taints.is_empty() {
        set("registerWithTaints", json!(opts.register_with_taints));
    }
    if let Some(id) = &opts.provider_id {
        set("providerID", json!(id));
    }
    Value::Object(c)
}

/// The `/configz` document.
pub fn document(opts: &Options) -> Value {
    json!({ "kubeletconfig": kubelet_configuration(opts) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::flags::{command, table};

    fn options(args: &[&str], file: &str) -> Options {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.yaml");
        std::fs::write(&p, file).unwrap();
        let config = format!("--config={}", p.display());
        let argv: Vec<std::ffi::OsString> = ["kubelet", config.as_str()]
            .into_iter()
            .chain(args.iter().copied())
            .map(Into::into)
            .collect();
        let m = component_base::flags::try_parse(&table(), command(), argv)
            .unwrap()
            .unwrap()
            .matches;
        Options::resolve(&m).unwrap()
    }

    #[test]
    fn reports_the_effective_settings_with_v1beta1_names() {
        let o = options(
            &["--max-pods=42", "--port=10999"],
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nmaxPods: 7\n\
clusterDomain: cluster.local\nclusterDNS: [10.96.0.10]\nsyncFrequency: 30s\nevictionHard:\n  memory.available: 200Mi\n",
        );
        let doc = document(&o);
        let c = &doc["kubeletconfig"];
        // The flag wins over the file.
        assert_eq!(c["maxPods"], 42);
        assert_eq!(c["port"], 10999);
        assert_eq!(c["clusterDomain"], "cluster.local");
        assert_eq!(c["clusterDNS"], json!(["10.96.0.10"]));
        assert_eq!(c["evictionHard"], json!({"memory.available": "200Mi"}));
        // Defaults are filled in, in Go's duration format.
        assert_eq!(c["nodeStatusUpdateFrequency"], "10s");
        assert_eq!(c["nodeStatusReportFrequency"], "5m0s");
        assert_eq!(c["fileCheckFrequency"], "20s");
        // The v1beta1 file defaults: webhook authn/authz, no anonymous.
        assert_eq!(c["authentication"]["anonymous"]["enabled"], false);
        assert_eq!(c["authentication"]["webhook"]["enabled"], true);
        assert_eq!(c["authorization"]["mode"], "Webhook");
        assert_eq!(c["enforceNodeAllocatable"], json!(["pods"]));
        assert!(c.get("kind").is_none() && c.get("staticPodPath").is_none());
        assert_eq!(c["cgroupDriver"], "cgroupfs");
    }

    #[test]
    fn reports_the_cgroup_driver_in_use() {
        let kind = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n\
cgroupDriver: systemd\ncgroupRoot: /kubelet\n";
        let c = &document(&options(&[], kind))["kubeletconfig"];
        assert_eq!(c["cgroupDriver"], "systemd");
        assert_eq!(c["cgroupRoot"], "/kubelet");
        let c = &document(&options(&["--cgroup-driver=cgroupfs"], kind))["kubeletconfig"];
        assert_eq!(c["cgroupDriver"], "cgroupfs");
    }

    #[test]
    fn eviction_max_pod_grace_period_from_file_and_flag() {
        let file = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nevictionMaxPodGracePeriod: 45\n";
        assert_eq!(options(&[], file).eviction_max_pod_grace_period, 45);
        let o = options(&["--eviction-max-pod-grace-period=20"], file);
        assert_eq!(o.eviction_max_pod_grace_period, 20, "the flag wins");
        assert_eq!(
            document(&o)["kubeletconfig"]["evictionMaxPodGracePeriod"],
            20
        );
        let unset = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n";
        assert_eq!(options(&[], unset).eviction_max_pod_grace_period, 0);
    }
}
