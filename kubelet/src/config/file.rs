//! `KubeletConfiguration` (kubelet.config.k8s.io/v1beta1), every field upstream 1.35 has,
//! read strictly: an unknown field is an error naming it and the file. Fields the kubelet
//! acts on are typed; the others are accepted as written (and ignored with one warning).
//! Generated from upstream's field list; keep in sync with `upstream_fields()`.

use component_base::duration::GoDuration;
use k8s_openapi::api::core::v1::Taint;
use serde::Deserialize;
use std::collections::BTreeMap;

/// The kubelet's component config file, as kubeadm and kind write it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubeletConfiguration {
    /// `kubelet.config.k8s.io/v1beta1`.
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    /// `KubeletConfiguration`.
    pub kind: String,
    /// `enableServer`: Serve the kubelet API (default true).
    #[serde(rename = "enableServer")]
    pub enable_server: Option<bool>,
    /// `staticPodPath`: Directory of static pod manifests.
    #[serde(rename = "staticPodPath")]
    pub static_pod_path: Option<String>,
    /// `podLogsDir`: Where container logs go (default /var/log/pods).
    #[serde(rename = "podLogsDir")]
    pub pod_logs_dir: Option<String>,
    /// `syncFrequency`: Max period between pod syncs (default 1m).
    #[serde(rename = "syncFrequency")]
    pub sync_frequency: Option<GoDuration>,
    /// `fileCheckFrequency`: How often static pod files are re-read (default 20s).
    #[serde(rename = "fileCheckFrequency")]
    pub file_check_frequency: Option<GoDuration>,
    /// `httpCheckFrequency`: Accepted for compatibility (a duration; zero means upstream\'s default); not implemented.
    #[serde(rename = "httpCheckFrequency")]
    pub http_check_frequency: Option<GoDuration>,
    /// `staticPodURL`: Accepted for compatibility; not implemented.
    #[serde(rename = "staticPodURL")]
    pub static_pod_url: Option<serde_yaml::Value>,
    /// `staticPodURLHeader`: Accepted for compatibility; not implemented.
    #[serde(rename = "staticPodURLHeader")]
    pub static_pod_url_header: Option<serde_yaml::Value>,
    /// `address`: Address of the kubelet API (default 0.0.0.0).
    #[serde(rename = "address")]
    pub address: Option<String>,
    /// `port`: Port of the kubelet API (default 10250).
    #[serde(rename = "port")]
    pub port: Option<u16>,
    /// `readOnlyPort`: Read-only port (default 0: disabled).
    #[serde(rename = "readOnlyPort")]
    pub read_only_port: Option<u16>,
    /// `tlsCertFile`: Serving certificate.
    #[serde(rename = "tlsCertFile")]
    pub tls_cert_file: Option<String>,
    /// `tlsPrivateKeyFile`: Serving key.
    #[serde(rename = "tlsPrivateKeyFile")]
    pub tls_private_key_file: Option<String>,
    /// `tlsCipherSuites`: Accepted for compatibility; not implemented.
    #[serde(rename = "tlsCipherSuites")]
    pub tls_cipher_suites: Option<serde_yaml::Value>,
    /// `tlsMinVersion`: Accepted for compatibility; not implemented.
    #[serde(rename = "tlsMinVersion")]
    pub tls_min_version: Option<serde_yaml::Value>,
    /// `rotateCertificates`: Renew the client certificate through the certificates API.
    #[serde(rename = "rotateCertificates")]
    pub rotate_certificates: Option<bool>,
    /// `serverTLSBootstrap`: Request the serving certificate from the certificates API.
    #[serde(rename = "serverTLSBootstrap")]
    pub server_tls_bootstrap: Option<bool>,
    /// `authentication`: Who may call the kubelet API (x509, webhook, anonymous).
    #[serde(rename = "authentication")]
    pub authentication: Option<super::auth::KubeletAuthentication>,
    /// `authorization`: `AlwaysAllow` or `Webhook` (SubjectAccessReview).
    #[serde(rename = "authorization")]
    pub authorization: Option<super::auth::KubeletAuthorization>,
    /// `registryPullQPS`: Accepted for compatibility; not implemented.
    #[serde(rename = "registryPullQPS")]
    pub registry_pull_qps: Option<serde_yaml::Value>,
    /// `registryBurst`: Accepted for compatibility; not implemented.
    #[serde(rename = "registryBurst")]
    pub registry_burst: Option<serde_yaml::Value>,
    /// `imagePullCredentialsVerificationPolicy`: Accepted for compatibility; not implemented.
    #[serde(rename = "imagePullCredentialsVerificationPolicy")]
    pub image_pull_credentials_verification_policy: Option<serde_yaml::Value>,
    /// `preloadedImagesVerificationAllowlist`: Accepted for compatibility; not implemented.
    #[serde(rename = "preloadedImagesVerificationAllowlist")]
    pub preloaded_images_verification_allowlist: Option<serde_yaml::Value>,
    /// `eventRecordQPS`: Accepted for compatibility; not implemented.
    #[serde(rename = "eventRecordQPS")]
    pub event_record_qps: Option<serde_yaml::Value>,
    /// `eventBurst`: Accepted for compatibility; not implemented.
    #[serde(rename = "eventBurst")]
    pub event_burst: Option<serde_yaml::Value>,
    /// `enableDebuggingHandlers`: Accepted for compatibility; not implemented.
    #[serde(rename = "enableDebuggingHandlers")]
    pub enable_debugging_handlers: Option<serde_yaml::Value>,
    /// `enableContentionProfiling`: Accepted for compatibility; not implemented.
    #[serde(rename = "enableContentionProfiling")]
    pub enable_contention_profiling: Option<serde_yaml::Value>,
    /// `healthzPort`: Healthz port (default 10248).
    #[serde(rename = "healthzPort")]
    pub healthz_port: Option<u16>,
    /// `healthzBindAddress`: Healthz address (default 127.0.0.1).
    #[serde(rename = "healthzBindAddress")]
    pub healthz_bind_address: Option<String>,
    /// `oomScoreAdj`: Accepted for compatibility; not implemented.
    #[serde(rename = "oomScoreAdj")]
    pub oom_score_adj: Option<serde_yaml::Value>,
    /// `clusterDomain`: Cluster DNS domain.
    #[serde(rename = "clusterDomain")]
    pub cluster_domain: Option<String>,
    /// `clusterDNS`: Cluster DNS server IPs.
    #[serde(rename = "clusterDNS")]
    pub cluster_dns: Option<Vec<String>>,
    /// `streamingConnectionIdleTimeout`: Accepted for compatibility (a duration; zero means upstream\'s default); not implemented.
    #[serde(rename = "streamingConnectionIdleTimeout")]
    pub streaming_connection_idle_timeout: Option<GoDuration>,
    /// `nodeStatusUpdateFrequency`: How often node status is computed and posted on change (default 10s).
    #[serde(rename = "nodeStatusUpdateFrequency")]
    pub node_status_update_frequency: Option<GoDuration>,
    /// `nodeStatusReportFrequency`: How often node status is posted without change (default 5m).
    #[serde(rename = "nodeStatusReportFrequency")]
    pub node_status_report_frequency: Option<GoDuration>,
    /// `nodeLeaseDurationSeconds`: Lease duration (default 40).
    #[serde(rename = "nodeLeaseDurationSeconds")]
    pub node_lease_duration_seconds: Option<i32>,
    /// `imageMinimumGCAge`: Minimum age of an unused image before it is collected (2m; 0 = default).
    #[serde(rename = "imageMinimumGCAge")]
    pub image_minimum_gc_age: Option<GoDuration>,
    /// `imageMaximumGCAge`: Unused images older than this are collected (0 = off).
    #[serde(rename = "imageMaximumGCAge")]
    pub image_maximum_gc_age: Option<GoDuration>,
    /// `imageGCHighThresholdPercent`: Image filesystem usage that starts collection (85).
    #[serde(rename = "imageGCHighThresholdPercent")]
    pub image_gc_high_threshold_percent: Option<i64>,
    /// `imageGCLowThresholdPercent`: Usage collection frees down to (80).
    #[serde(rename = "imageGCLowThresholdPercent")]
    pub image_gc_low_threshold_percent: Option<i64>,
    /// `volumeStatsAggPeriod`: Accepted for compatibility (a duration; zero means upstream\'s default); not implemented.
    #[serde(rename = "volumeStatsAggPeriod")]
    pub volume_stats_agg_period: Option<GoDuration>,
    /// `kubeletCgroups`: Accepted for compatibility; not implemented.
    #[serde(rename = "kubeletCgroups")]
    pub kubelet_cgroups: Option<serde_yaml::Value>,
    /// `systemCgroups`: Accepted for compatibility; not implemented.
    #[serde(rename = "systemCgroups")]
    pub system_cgroups: Option<serde_yaml::Value>,
    /// `cgroupRoot`: Root of the kubelet's cgroups.
    #[serde(rename = "cgroupRoot")]
    pub cgroup_root: Option<String>,
    /// `cgroupsPerQOS`: Create the QoS cgroup hierarchy (default true).
    #[serde(rename = "cgroupsPerQOS")]
    pub cgroups_per_qos: Option<bool>,
    /// `cgroupDriver`: cgroupfs or systemd.
    #[serde(rename = "cgroupDriver")]
    pub cgroup_driver: Option<String>,
    /// `cpuManagerPolicy`: Accepted for compatibility; not implemented.
    #[serde(rename = "cpuManagerPolicy")]
    pub cpu_manager_policy: Option<serde_yaml::Value>,
    /// `singleProcessOOMKill`: Accepted for compatibility; not implemented.
    #[serde(rename = "singleProcessOOMKill")]
    pub single_process_oom_kill: Option<serde_yaml::Value>,
    /// `cpuManagerPolicyOptions`: Accepted for compatibility; not implemented.
    #[serde(rename = "cpuManagerPolicyOptions")]
    pub cpu_manager_policy_options: Option<serde_yaml::Value>,
    /// `cpuManagerReconcilePeriod`: Accepted for compatibility (a duration; zero means upstream\'s default); not implemented.
    #[serde(rename = "cpuManagerReconcilePeriod")]
    pub cpu_manager_reconcile_period: Option<GoDuration>,
    /// `memoryManagerPolicy`: Accepted for compatibility; not implemented.
    #[serde(rename = "memoryManagerPolicy")]
    pub memory_manager_policy: Option<serde_yaml::Value>,
    /// `topologyManagerPolicy`: Accepted for compatibility; not implemented.
    #[serde(rename = "topologyManagerPolicy")]
    pub topology_manager_policy: Option<serde_yaml::Value>,
    /// `topologyManagerScope`: Accepted for compatibility; not implemented.
    #[serde(rename = "topologyManagerScope")]
    pub topology_manager_scope: Option<serde_yaml::Value>,
    /// `topologyManagerPolicyOptions`: Accepted for compatibility; not implemented.
    #[serde(rename = "topologyManagerPolicyOptions")]
    pub topology_manager_policy_options: Option<serde_yaml::Value>,
    /// `qosReserved`: Accepted for compatibility; not implemented.
    #[serde(rename = "qosReserved")]
    pub qos_reserved: Option<serde_yaml::Value>,
    /// `runtimeRequestTimeout`: Accepted for compatibility (a duration; zero means upstream\'s default); not implemented.
    #[serde(rename = "runtimeRequestTimeout")]
    pub runtime_request_timeout: Option<GoDuration>,
    /// `hairpinMode`: Accepted for compatibility; not implemented.
    #[serde(rename = "hairpinMode")]
    pub hairpin_mode: Option<serde_yaml::Value>,
    /// `maxPods`: Pod capacity (default 110).
    #[serde(rename = "maxPods")]
    pub max_pods: Option<i32>,
    /// `podCIDR`: Pod CIDR in standalone mode.
    #[serde(rename = "podCIDR")]
    pub pod_cidr: Option<String>,
    /// `podPidsLimit`: Accepted for compatibility; not implemented.
    #[serde(rename = "podPidsLimit")]
    pub pod_pids_limit: Option<serde_yaml::Value>,
    /// `resolvConf`: Host resolv.conf for dnsPolicy Default.
    #[serde(rename = "resolvConf")]
    pub resolv_conf: Option<String>,
    /// `runOnce`: Accepted for compatibility; not implemented.
    #[serde(rename = "runOnce")]
    pub run_once: Option<serde_yaml::Value>,
    /// `cpuCFSQuota`: Accepted for compatibility; not implemented.
    #[serde(rename = "cpuCFSQuota")]
    pub cpu_cfs_quota: Option<serde_yaml::Value>,
    /// `cpuCFSQuotaPeriod`: Accepted for compatibility; not implemented.
    #[serde(rename = "cpuCFSQuotaPeriod")]
    pub cpu_cfs_quota_period: Option<serde_yaml::Value>,
    /// `nodeStatusMaxImages`: Images reported in the node's status (50; -1: all).
    #[serde(rename = "nodeStatusMaxImages")]
    pub node_status_max_images: Option<i32>,
    /// `maxOpenFiles`: Accepted for compatibility; not implemented.
    #[serde(rename = "maxOpenFiles")]
    pub max_open_files: Option<serde_yaml::Value>,
    /// `contentType`: Accepted for compatibility; not implemented.
    #[serde(rename = "contentType")]
    pub content_type: Option<serde_yaml::Value>,
    /// `kubeAPIQPS`: Client QPS (default 50).
    #[serde(rename = "kubeAPIQPS")]
    pub kube_api_qps: Option<i32>,
    /// `kubeAPIBurst`: Client burst (default 100).
    #[serde(rename = "kubeAPIBurst")]
    pub kube_api_burst: Option<i32>,
    /// `serializeImagePulls`: Accepted for compatibility; not implemented.
    #[serde(rename = "serializeImagePulls")]
    pub serialize_image_pulls: Option<serde_yaml::Value>,
    /// `maxParallelImagePulls`: Accepted for compatibility; not implemented.
    #[serde(rename = "maxParallelImagePulls")]
    pub max_parallel_image_pulls: Option<serde_yaml::Value>,
    /// `evictionHard`: Hard eviction thresholds.
    #[serde(rename = "evictionHard")]
    pub eviction_hard: Option<BTreeMap<String, String>>,
    /// `evictionSoft`: Soft eviction thresholds (need a grace period each).
    #[serde(rename = "evictionSoft")]
    pub eviction_soft: Option<BTreeMap<String, String>>,
    /// `evictionSoftGracePeriod`: How long each soft threshold must hold before evicting.
    #[serde(rename = "evictionSoftGracePeriod")]
    pub eviction_soft_grace_period: Option<BTreeMap<String, String>>,
    /// `evictionPressureTransitionPeriod`: how long a pressure condition outlives its cause (5m).
    #[serde(rename = "evictionPressureTransitionPeriod")]
    pub eviction_pressure_transition_period: Option<GoDuration>,
    /// `evictionMaxPodGracePeriod`: the longest grace (seconds) a soft eviction gives a pod.
    #[serde(rename = "evictionMaxPodGracePeriod")]
    pub eviction_max_pod_grace_period: Option<i32>,
    /// `evictionMinimumReclaim`: How much more than a threshold must be free to end it.
    #[serde(rename = "evictionMinimumReclaim")]
    pub eviction_minimum_reclaim: Option<BTreeMap<String, String>>,
    /// `mergeDefaultEvictionSettings`: Fill the thresholds `evictionHard` leaves out with upstream\'s defaults (default false).
    #[serde(rename = "mergeDefaultEvictionSettings")]
    pub merge_default_eviction_settings: Option<bool>,
    /// `podsPerCore`: Accepted for compatibility; not implemented.
    #[serde(rename = "podsPerCore")]
    pub pods_per_core: Option<serde_yaml::Value>,
    /// `enableControllerAttachDetach`: Accepted for compatibility; not implemented.
    #[serde(rename = "enableControllerAttachDetach")]
    pub enable_controller_attach_detach: Option<serde_yaml::Value>,
    /// `protectKernelDefaults`: Accepted for compatibility; not implemented.
    #[serde(rename = "protectKernelDefaults")]
    pub protect_kernel_defaults: Option<serde_yaml::Value>,
    /// `makeIPTablesUtilChains`: Accepted for compatibility; not implemented.
    #[serde(rename = "makeIPTablesUtilChains")]
    pub make_ip_tables_util_chains: Option<serde_yaml::Value>,
    /// `iptablesMasqueradeBit`: Accepted for compatibility; not implemented.
    #[serde(rename = "iptablesMasqueradeBit")]
    pub iptables_masquerade_bit: Option<serde_yaml::Value>,
    /// `iptablesDropBit`: Accepted for compatibility; not implemented.
    #[serde(rename = "iptablesDropBit")]
    pub iptables_drop_bit: Option<serde_yaml::Value>,
    /// `featureGates`: Feature gates.
    #[serde(rename = "featureGates")]
    pub feature_gates: Option<BTreeMap<String, bool>>,
    /// `failSwapOn`: Fail when swap is on (default true).
    #[serde(rename = "failSwapOn")]
    pub fail_swap_on: Option<bool>,
    /// `memorySwap`: Accepted for compatibility; not implemented.
    #[serde(rename = "memorySwap")]
    pub memory_swap: Option<serde_yaml::Value>,
    /// `containerLogMaxSize`: Accepted for compatibility; not implemented.
    #[serde(rename = "containerLogMaxSize")]
    pub container_log_max_size: Option<serde_yaml::Value>,
    /// `containerLogMaxFiles`: Accepted for compatibility; not implemented.
    #[serde(rename = "containerLogMaxFiles")]
    pub container_log_max_files: Option<serde_yaml::Value>,
    /// `containerLogMaxWorkers`: Accepted for compatibility; not implemented.
    #[serde(rename = "containerLogMaxWorkers")]
    pub container_log_max_workers: Option<serde_yaml::Value>,
    /// `containerLogMonitorInterval`: Accepted for compatibility; not implemented.
    #[serde(rename = "containerLogMonitorInterval")]
    pub container_log_monitor_interval: Option<serde_yaml::Value>,
    /// `configMapAndSecretChangeDetectionStrategy`: Accepted for compatibility; not implemented.
    #[serde(rename = "configMapAndSecretChangeDetectionStrategy")]
    pub config_map_and_secret_change_detection_strategy: Option<serde_yaml::Value>,
    /// `systemReserved`: Resources reserved for the system.
    #[serde(rename = "systemReserved")]
    pub system_reserved: Option<BTreeMap<String, String>>,
    /// `kubeReserved`: Resources reserved for Kubernetes daemons.
    #[serde(rename = "kubeReserved")]
    pub kube_reserved: Option<BTreeMap<String, String>>,
    /// `reservedSystemCPUs`: Accepted for compatibility; not implemented.
    #[serde(rename = "reservedSystemCPUs")]
    pub reserved_system_cp_us: Option<serde_yaml::Value>,
    /// `showHiddenMetricsForVersion`: Accepted for compatibility; not implemented.
    #[serde(rename = "showHiddenMetricsForVersion")]
    pub show_hidden_metrics_for_version: Option<serde_yaml::Value>,
    /// `systemReservedCgroup`: Accepted for compatibility; not implemented.
    #[serde(rename = "systemReservedCgroup")]
    pub system_reserved_cgroup: Option<serde_yaml::Value>,
    /// `kubeReservedCgroup`: Accepted for compatibility; not implemented.
    #[serde(rename = "kubeReservedCgroup")]
    pub kube_reserved_cgroup: Option<serde_yaml::Value>,
    /// `enforceNodeAllocatable`: Enforcement levels (default [pods]).
    #[serde(rename = "enforceNodeAllocatable")]
    pub enforce_node_allocatable: Option<Vec<String>>,
    /// `allowedUnsafeSysctls`: Accepted for compatibility; not implemented.
    #[serde(rename = "allowedUnsafeSysctls")]
    pub allowed_unsafe_sysctls: Option<serde_yaml::Value>,
    /// `volumePluginDir`: Accepted for compatibility; not implemented.
    #[serde(rename = "volumePluginDir")]
    pub volume_plugin_dir: Option<serde_yaml::Value>,
    /// `providerID`: Node spec.providerID.
    #[serde(rename = "providerID")]
    pub provider_id: Option<String>,
    /// `kernelMemcgNotification`: Accepted for compatibility; not implemented.
    #[serde(rename = "kernelMemcgNotification")]
    pub kernel_memcg_notification: Option<serde_yaml::Value>,
    /// `logging`: Accepted for compatibility; not implemented.
    #[serde(rename = "logging")]
    pub logging: Option<serde_yaml::Value>,
    /// `enableSystemLogHandler`: Accepted for compatibility; not implemented.
    #[serde(rename = "enableSystemLogHandler")]
    pub enable_system_log_handler: Option<serde_yaml::Value>,
    /// `enableSystemLogQuery`: Accepted for compatibility; not implemented.
    #[serde(rename = "enableSystemLogQuery")]
    pub enable_system_log_query: Option<serde_yaml::Value>,
    /// `shutdownGracePeriod`: Accepted for compatibility (a duration; zero means upstream\'s default); not implemented.
    #[serde(rename = "shutdownGracePeriod")]
    pub shutdown_grace_period: Option<GoDuration>,
    /// `shutdownGracePeriodCriticalPods`: Accepted for compatibility (a duration; zero means upstream\'s default); not implemented.
    #[serde(rename = "shutdownGracePeriodCriticalPods")]
    pub shutdown_grace_period_critical_pods: Option<GoDuration>,
    /// `shutdownGracePeriodByPodPriority`: Accepted for compatibility; not implemented.
    #[serde(rename = "shutdownGracePeriodByPodPriority")]
    pub shutdown_grace_period_by_pod_priority: Option<serde_yaml::Value>,
    /// `crashLoopBackOff`: Accepted for compatibility; not implemented.
    #[serde(rename = "crashLoopBackOff")]
    pub crash_loop_back_off: Option<serde_yaml::Value>,
    /// `reservedMemory`: Accepted for compatibility; not implemented.
    #[serde(rename = "reservedMemory")]
    pub reserved_memory: Option<serde_yaml::Value>,
    /// `enableProfilingHandler`: Accepted for compatibility; not implemented.
    #[serde(rename = "enableProfilingHandler")]
    pub enable_profiling_handler: Option<serde_yaml::Value>,
    /// `enableDebugFlagsHandler`: Accepted for compatibility; not implemented.
    #[serde(rename = "enableDebugFlagsHandler")]
    pub enable_debug_flags_handler: Option<serde_yaml::Value>,
    /// `seccompDefault`: Accepted for compatibility; not implemented.
    #[serde(rename = "seccompDefault")]
    pub seccomp_default: Option<serde_yaml::Value>,
    /// `memoryThrottlingFactor`: Accepted for compatibility; not implemented.
    #[serde(rename = "memoryThrottlingFactor")]
    pub memory_throttling_factor: Option<serde_yaml::Value>,
    /// `registerWithTaints`: Taints the node registers with.
    #[serde(rename = "registerWithTaints")]
    pub register_with_taints: Option<Vec<Taint>>,
    /// `registerNode`: Register the node (default true).
    #[serde(rename = "registerNode")]
    pub register_node: Option<bool>,
    /// `tracing`: Accepted for compatibility; not implemented.
    #[serde(rename = "tracing")]
    pub tracing: Option<serde_yaml::Value>,
    /// `localStorageCapacityIsolation`: Accepted for compatibility; not implemented.
    #[serde(rename = "localStorageCapacityIsolation")]
    pub local_storage_capacity_isolation: Option<serde_yaml::Value>,
    /// `containerRuntimeEndpoint`: CRI endpoint.
    #[serde(rename = "containerRuntimeEndpoint")]
    pub container_runtime_endpoint: Option<String>,
    /// `imageServiceEndpoint`: Accepted for compatibility; not implemented.
    #[serde(rename = "imageServiceEndpoint")]
    pub image_service_endpoint: Option<serde_yaml::Value>,
    /// `failCgroupV1`: Refuse to start on cgroup v1 hosts (default false in this 1.35 tree).
    #[serde(rename = "failCgroupV1")]
    pub fail_cgroup_v1: Option<bool>,
    /// `userNamespaces`: Accepted for compatibility; not implemented.
    #[serde(rename = "userNamespaces")]
    pub user_namespaces: Option<serde_yaml::Value>,
}

/// The fields set in the file that ferrokube does not act on (for one warning), read
/// before defaulting: a Go zero value (`0s`, `0`, `""`, `{}`, a section of zeros) of a field
/// upstream declares without a pointer means "unset" there, as kubeadm writes them, so it is
/// not reported; an explicit value of an upstream pointer field always is.
pub fn unimplemented_fields_set(c: &KubeletConfiguration) -> Vec<&'static str> {
    let durations: [(&'static str, &Option<GoDuration>); 7] = [
        ("httpCheckFrequency", &c.http_check_frequency),
        (
            "streamingConnectionIdleTimeout",
            &c.streaming_connection_idle_timeout,
        ),
        ("volumeStatsAggPeriod", &c.volume_stats_agg_period),
        ("cpuManagerReconcilePeriod", &c.cpu_manager_reconcile_period),
        ("runtimeRequestTimeout", &c.runtime_request_timeout),
        ("shutdownGracePeriod", &c.shutdown_grace_period),
        (
            "shutdownGracePeriodCriticalPods",
            &c.shutdown_grace_period_critical_pods,
        ),
    ];
    let untyped: [(&'static str, &Option<serde_yaml::Value>); 65] = [
        ("staticPodURL", &c.static_pod_url),
        ("staticPodURLHeader", &c.static_pod_url_header),
        ("tlsCipherSuites", &c.tls_cipher_suites),
        ("tlsMinVersion", &c.tls_min_version),
        ("registryPullQPS", &c.registry_pull_qps),
        ("registryBurst", &c.registry_burst),
        (
            "imagePullCredentialsVerificationPolicy",
            &c.image_pull_credentials_verification_policy,
        ),
        (
            "preloadedImagesVerificationAllowlist",
            &c.preloaded_images_verification_allowlist,
        ),
        ("eventRecordQPS", &c.event_record_qps),
        ("eventBurst", &c.event_burst),
        ("enableDebuggingHandlers", &c.enable_debugging_handlers),
        ("enableContentionProfiling", &c.enable_contention_profiling),
        ("oomScoreAdj", &c.oom_score_adj),
        ("kubeletCgroups", &c.kubelet_cgroups),
        ("systemCgroups", &c.system_cgroups),
        ("cpuManagerPolicy", &c.cpu_manager_policy),
        ("singleProcessOOMKill", &c.single_process_oom_kill),
        ("cpuManagerPolicyOptions", &c.cpu_manager_policy_options),
        ("memoryManagerPolicy", &c.memory_manager_policy),
        ("topologyManagerPolicy", &c.topology_manager_policy),
        ("topologyManagerScope", &c.topology_manager_scope),
        (
            "topologyManagerPolicyOptions",
            &c.topology_manager_policy_options,
        ),
        ("qosReserved", &c.qos_reserved),
        ("hairpinMode", &c.hairpin_mode),
        ("podPidsLimit", &c.pod_pids_limit),
        ("runOnce", &c.run_once),
        ("cpuCFSQuota", &c.cpu_cfs_quota),
        ("cpuCFSQuotaPeriod", &c.cpu_cfs_quota_period),
        ("maxOpenFiles", &c.max_open_files),
        ("contentType", &c.content_type),
        ("serializeImagePulls", &c.serialize_image_pulls),
        ("maxParallelImagePulls", &c.max_parallel_image_pulls),
        ("podsPerCore", &c.pods_per_core),
        (
            "enableControllerAttachDetach",
            &c.enable_controller_attach_detach,
        ),
        ("protectKernelDefaults", &c.protect_kernel_defaults),
        ("makeIPTablesUtilChains", &c.make_ip_tables_util_chains),
        ("iptablesMasqueradeBit", &c.iptables_masquerade_bit),
        ("iptablesDropBit", &c.iptables_drop_bit),
        ("memorySwap", &c.memory_swap),
        ("containerLogMaxSize", &c.container_log_max_size),
        ("containerLogMaxFiles", &c.container_log_max_files),
        ("containerLogMaxWorkers", &c.container_log_max_workers),
        (
            "containerLogMonitorInterval",
            &c.container_log_monitor_interval,
        ),
        (
            "configMapAndSecretChangeDetectionStrategy",
            &c.config_map_and_secret_change_detection_strategy,
        ),
        ("reservedSystemCPUs", &c.reserved_system_cp_us),
        (
            "showHiddenMetricsForVersion",
            &c.show_hidden_metrics_for_version,
        ),
        ("systemReservedCgroup", &c.system_reserved_cgroup),
        ("kubeReservedCgroup", &c.kube_reserved_cgroup),
        ("allowedUnsafeSysctls", &c.allowed_unsafe_sysctls),
        ("volumePluginDir", &c.volume_plugin_dir),
        ("kernelMemcgNotification", &c.kernel_memcg_notification),
        ("logging", &c.logging),
        ("enableSystemLogHandler", &c.enable_system_log_handler),
        ("enableSystemLogQuery", &c.enable_system_log_query),
        (
            "shutdownGracePeriodByPodPriority",
            &c.shutdown_grace_period_by_pod_priority,
        ),
        ("crashLoopBackOff", &c.crash_loop_back_off),
        ("reservedMemory", &c.reserved_memory),
        ("enableProfilingHandler", &c.enable_profiling_handler),
        ("enableDebugFlagsHandler", &c.enable_debug_flags_handler),
        ("seccompDefault", &c.seccomp_default),
        ("memoryThrottlingFactor", &c.memory_throttling_factor),
        ("tracing", &c.tracing),
        (
            "localStorageCapacityIsolation",
            &c.local_storage_capacity_isolation,
        ),
        ("imageServiceEndpoint", &c.image_service_endpoint),
        ("userNamespaces", &c.user_namespaces),
    ];
    let durations_set = durations
        .into_iter()
        .filter(|(_, v)| v.is_some_and(|d| !d.0.is_zero()))
        .map(|(name, _)| name);
    let untyped_set = untyped
        .into_iter()
        .filter(|(name, v)| {
            v.as_ref()
                .is_some_and(|v| UPSTREAM_POINTER_FIELDS.contains(name) || !is_go_zero(v))
        })
        .map(|(name, _)| name);
    durations_set.chain(untyped_set).collect()
}

/// The not-implemented fields upstream declares as pointers: an explicit zero there is a
/// setting, not "unset".
pub const UPSTREAM_POINTER_FIELDS: &[&str] = &[
    "registryPullQPS",
    "eventRecordQPS",
    "enableDebuggingHandlers",
    "oomScoreAdj",
    "singleProcessOOMKill",
    "podPidsLimit",
    "cpuCFSQuota",
    "cpuCFSQuotaPeriod",
    "serializeImagePulls",
    "maxParallelImagePulls",
    "enableControllerAttachDetach",
    "makeIPTablesUtilChains",
    "iptablesMasqueradeBit",
    "iptablesDropBit",
    "containerLogMaxFiles",
    "containerLogMaxWorkers",
    "containerLogMonitorInterval",
    "enableSystemLogHandler",
    "enableSystemLogQuery",
    "enableProfilingHandler",
    "enableDebugFlagsHandler",
    "seccompDefault",
    "memoryThrottlingFactor",
    "tracing",
    "localStorageCapacityIsolation",
    "userNamespaces",
];

/// Whether `v` is what Go decodes to a zero value: null, false, 0, `""`, `"0"`, `"0s"`, an
/// empty list, or a mapping of zero values (kubeadm's `logging` and `memorySwap: {}`).
fn is_go_zero(v: &serde_yaml::Value) -> bool {
    use serde_yaml::Value;
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => matches!(s.as_str(), "" | "0" | "0s"),
        Value::Sequence(items) => items.is_empty(),
        Value::Mapping(m) => m.values().all(is_go_zero),
        Value::Tagged(t) => is_go_zero(&t.value),
    }
}
