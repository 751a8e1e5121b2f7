//! The controller manager's configuration as controllers read it (upstream's flags, parsed
//! by [`crate::app::flags`]), and the feature gates it knows.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use component_base::leader_election::LeaderElectionConfiguration;
use component_base::logging::LogFormat;

/// The component name (binary, user agent, Lease).
pub const COMPONENT: &str = "kube-controller-manager";

/// The feature gates the controller manager reads, with upstream 1.35's defaults.
pub const FEATURE_GATES: &[component_base::feature_gates::Gate] = &[
    ("APIServerIdentity", true),
    ("ClusterTrustBundle", false),
    ("DRAAdminAccess", true),
    ("DRADeviceTaints", false),
    ("DRAPrioritizedList", true),
    ("DynamicResourceAllocation", true),
    ("HPAConfigurableTolerance", false),
    ("MultiCIDRServiceAllocator", true),
    ("PodCertificateRequest", false),
    ("PodLevelResources", true),
    ("SELinuxChangePolicy", true),
    ("SeparateTaintEvictionController", true),
    ("StorageVersionAPI", false),
    ("StorageVersionMigrator", false),
    ("VolumeAttributesClass", true),
];

/// Parsed kube-controller-manager flags. Defaults are upstream 1.35's.
#[derive(Debug, Clone)]
pub struct KcmOptions {
    /// `--kubeconfig`: kubeconfig file with the apiserver's location and credentials.
    pub kubeconfig: Option<PathBuf>,
    /// `--master`: overrides the kubeconfig's server.
    pub master: Option<String>,
    /// `--controllers`: the selection as given (`*`, `foo`, `-foo`), aliases resolved.
    pub controllers: Vec<String>,
    /// `--feature-gates` over upstream's defaults (the gates some controllers run under).
    pub feature_gates: component_base::feature_gates::FeatureGates,
    /// `--use-service-account-credentials`: one service-account identity per controller.
    pub use_service_account_credentials: bool,
    /// `--concurrent-*-syncs`: workers per controller.
    pub concurrency: Concurrency,
    /// `--allocate-node-cidrs`: node-ipam assigns `spec.podCIDR`.
    pub allocate_node_cidrs: bool,
    /// `--cluster-cidr`: the pod CIDR(s), comma separated for dual-stack.
    pub cluster_cidr: Option<String>,
    /// `--node-cidr-mask-size`: prefix length of each node's pod CIDR (24 for IPv4 when unset).
    pub node_cidr_mask_size: Option<u8>,
    /// `--node-cidr-mask-size-ipv4` (dual-stack).
    pub node_cidr_mask_size_ipv4: Option<u8>,
    /// `--node-cidr-mask-size-ipv6` (dual-stack).
    pub node_cidr_mask_size_ipv6: Option<u8>,
    /// `--service-cluster-ip-range`: excluded from pod CIDR allocation.
    pub service_cluster_ip_range: Option<String>,
    /// `--cluster-signing-*`: CA material for the CSR signer.
    pub signing: SigningOptions,
    /// `--root-ca-file`: CA bundle published as `kube-root-ca.crt` and put into token Secrets.
    pub root_ca_file: Option<PathBuf>,
    /// `--service-account-private-key-file`: enables legacy token Secrets.
    pub service_account_private_key_file: Option<PathBuf>,
    /// `--node-monitor-grace-period` (50s in 1.35).
    pub node_monitor_grace_period: Duration,
    /// `--node-startup-grace-period` (1m).
    pub node_startup_grace_period: Duration,
    /// `--node-monitor-period` (5s).
    pub node_monitor_period: Duration,
    /// `--node-eviction-rate` (0.1 nodes/s).
    pub node_eviction_rate: f32,
    /// `--terminated-pod-gc-threshold` (12500; <= 0 disables terminated-pod GC).
    pub terminated_pod_gc_threshold: i32,
    /// `--enable-garbage-collector` (true).
    pub enable_garbage_collector: bool,
    /// `--namespace-sync-period` (5m).
    pub namespace_sync_period: Duration,
    /// `--resource-quota-sync-period` (5m).
    pub resource_quota_sync_period: Duration,
    /// `--pvclaimbinder-sync-period` (15s): how often the binder re-syncs every claim and
    /// volume.
    pub pvclaimbinder_sync_period: Duration,
    /// `--min-resync-period` (12h).
    pub min_resync_period: Duration,
    /// `--cluster-name` ("kubernetes").
    pub cluster_name: String,
    /// `--mirroring-max-endpoints-per-subset` (1000, at most 1000): endpoints per mirrored slice.
    pub mirroring_max_endpoints_per_subset: usize,
    /// `--mirroring-endpointslice-updates-batch-period` (0): delay before a mirrored
    /// EndpointSlice's change is acted on, to batch changes.
    pub mirroring_endpointslice_updates_batch_period: Duration,
    /// `--legacy-service-account-token-clean-up-period` (8760h): how long a legacy token
    /// must go unused before it is marked invalid, and then deleted.
    pub legacy_service_account_token_clean_up_period: Duration,
    /// `--attach-detach-reconcile-sync-period` (1m, at least 1s): how often the
    /// attach-detach controller re-reads every attachment even without events.
    pub attach_detach_reconcile_sync_period: Duration,
    /// `--disable-attach-detach-reconcile-sync`: no such periodic pass.
    pub disable_attach_detach_reconcile_sync: bool,
    /// `--disable-force-detach-on-timeout`: never detach a volume still mounted on an
    /// unhealthy node after the maximum wait for unmount (6m).
    pub disable_force_detach_on_timeout: bool,
    /// `--horizontal-pod-autoscaler-*`: the horizontal-pod-autoscaler's timing and tolerance.
    pub hpa: HpaOptions,
    /// `--kube-api-qps` (20).
    pub kube_api_qps: f32,
    /// `--kube-api-burst` (30).
    pub kube_api_burst: u32,
    /// `--kube-api-content-type` (kube-rs speaks JSON whatever this says).
    pub kube_api_content_type: String,
    /// `--leader-elect*`.
    pub leader_election: LeaderElectionConfiguration,
    /// `--bind-address`, `--secure-port`, `--tls-*`, `--cert-dir`.
    pub serving: Serving,
    /// `-v`.
    pub verbosity: u8,
    /// `--logging-format`.
    pub logging_format: LogFormat,
}

/// The secure health/metrics endpoint.
#[derive(Debug, Clone)]
pub struct Serving {
    /// `--bind-address` (0.0.0.0).
    pub bind_address: IpAddr,
    /// `--secure-port` (10257; 0 disables).
    pub secure_port: u16,
    /// `--tls-cert-file`.
    pub tls_cert_file: Option<PathBuf>,
    /// `--tls-private-key-file`.
    pub tls_private_key_file: Option<PathBuf>,
    /// `--cert-dir`: where a self-signed certificate goes.
    pub cert_dir: Option<PathBuf>,
}

/// Worker counts, one per `--concurrent-*-syncs` flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Concurrency {
    /// `--concurrent-deployment-syncs` (5).
    pub deployment: usize,
    /// `--concurrent-replicaset-syncs` (5).
    pub replicaset: usize,
    /// `--concurrent-rc-syncs` (5).
    pub rc: usize,
    /// `--concurrent-statefulset-syncs` (5).
    pub statefulset: usize,
    /// `--concurrent-daemonset-syncs` (2).
    pub daemonset: usize,
    /// `--concurrent-job-syncs` (5).
    pub job: usize,
    /// `--concurrent-cron-job-syncs` (5).
    pub cron_job: usize,
    /// `--concurrent-endpoint-syncs` (5).
    pub endpoint: usize,
    /// `--concurrent-service-endpoint-syncs` (5): the endpointslice controller.
    pub service_endpoint: usize,
    /// `--mirroring-concurrent-service-endpoint-syncs` (5).
    pub mirroring_service_endpoint: usize,
    /// `--concurrent-gc-syncs` (20).
    pub gc: usize,
    /// `--concurrent-namespace-syncs` (10).
    pub namespace: usize,
    /// `--concurrent-resource-quota-syncs` (5).
    pub resource_quota: usize,
    /// `--concurrent-serviceaccount-token-syncs` (5).
    pub serviceaccount_token: usize,
    /// `--concurrent-ttl-after-finished-syncs` (5).
    pub ttl_after_finished: usize,
    /// `--concurrent-ephemeralvolume-syncs` (5).
    pub ephemeral_volume: usize,
    /// `--concurrent-horizontal-pod-autoscaler-syncs` (5).
    pub horizontal_pod_autoscaler: usize,
}

impl Default for Concurrency {
    fn default() -> Self {
        Concurrency {
            deployment: 5,
            replicaset: 5,
            rc: 5,
            statefulset: 5,
            daemonset: 2,
            job: 5,
            cron_job: 5,
            endpoint: 5,
            service_endpoint: 5,
            mirroring_service_endpoint: 5,
            gc: 20,
            namespace: 10,
            resource_quota: 5,
            serviceaccount_token: 5,
            ttl_after_finished: 5,
            ephemeral_volume: 5,
            horizontal_pod_autoscaler: 5,
        }
    }
}

/// The horizontal-pod-autoscaler's flags (upstream's `HPAControllerConfiguration`).
#[derive(Debug, Clone, PartialEq)]
pub struct HpaOptions {
    /// `--horizontal-pod-autoscaler-sync-period` (15s): how often each HPA is reconciled.
    pub sync_period: Duration,
    /// `--horizontal-pod-autoscaler-downscale-stabilization` (5m): the look-back window of
    /// scale-down recommendations (and the default of `behavior.scaleDown`'s window).
    pub downscale_stabilization: Duration,
    /// `--horizontal-pod-autoscaler-tolerance` (0.1): the least change of the usage ratio
    /// from 1.0 that scales.
    pub tolerance: f64,
    /// `--horizontal-pod-autoscaler-cpu-initialization-period` (5m): after a pod starts, CPU
    /// samples may be skipped.
    pub cpu_initialization_period: Duration,
    /// `--horizontal-pod-autoscaler-initial-readiness-delay` (30s): after a pod starts,
    /// readiness changes count as initial readiness.
    pub initial_readiness_delay: Duration,
}

impl Default for HpaOptions {
    fn default() -> Self {
        HpaOptions {
            sync_period: Duration::from_secs(15),
            downscale_stabilization: Duration::from_secs(300),
            tolerance: 0.1,
            cpu_initialization_period: Duration::from_secs(300),
            initial_readiness_delay: Duration::from_secs(30),
        }
    }
}

/// `--cluster-signing-*`: the default CA and the per-signer overrides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SigningOptions {
    /// `--cluster-signing-cert-file`.
    pub cert_file: Option<PathBuf>,
    /// `--cluster-signing-key-file`.
    pub key_file: Option<PathBuf>,
    /// `--cluster-signing-duration` (8760h): the longest certificate issued.
    pub duration: Duration,
    /// `--cluster-signing-kubelet-serving-{cert,key}-file`.
    pub kubelet_serving: Option<(PathBuf, PathBuf)>,
    /// `--cluster-signing-kubelet-client-{cert,key}-file`.
    pub kubelet_client: Option<(PathBuf, PathBuf)>,
    /// `--cluster-signing-kube-apiserver-client-{cert,key}-file`.
    pub kube_apiserver_client: Option<(PathBuf, PathBuf)>,
    /// `--cluster-signing-legacy-unknown-{cert,key}-file`.
    pub legacy_unknown: Option<(PathBuf, PathBuf)>,
}

impl KcmOptions {
    /// How the manager's clients reach the apiserver: `--kubeconfig`, `--master`,
    /// `--kube-api-qps/-burst/-content-type`.
    pub fn client_options(&self) -> component_base::client::ClientOptions {
        component_base::client::ClientOptions {
            kubeconfig: self.kubeconfig.clone(),
            master: self.master.clone(),
            qps: self.kube_api_qps,
            burst: self.kube_api_burst,
            content_type: self.kube_api_content_type.clone(),
            component: COMPONENT.to_string(),
        }
    }
}

impl Default for KcmOptions {
    fn default() -> Self {
        KcmOptions {
            kubeconfig: None,
            master: None,
            controllers: vec!["*".to_string()],
            feature_gates: component_base::feature_gates::FeatureGates::with_defaults(
                FEATURE_GATES,
            ),
            use_service_account_credentials: false,
            concurrency: Concurrency::default(),
            allocate_node_cidrs: false,
            cluster_cidr: None,
            node_cidr_mask_size: None,
            node_cidr_mask_size_ipv4: None,
            node_cidr_mask_size_ipv6: None,
            service_cluster_ip_range: None,
            signing: SigningOptions {
                duration: Duration::from_secs(8760 * 3600),
                ..SigningOptions::default()
            },
            root_ca_file: None,
            service_account_private_key_file: None,
            node_monitor_grace_period: Duration::from_secs(50),
            node_startup_grace_period: Duration::from_secs(60),
            node_monitor_period: Duration::from_secs(5),
            node_eviction_rate: 0.1,
            terminated_pod_gc_threshold: 12500,
            enable_garbage_collector: true,
            namespace_sync_period: Duration::from_secs(300),
            resource_quota_sync_period: Duration::from_secs(300),
            pvclaimbinder_sync_period: Duration::from_secs(15),
            min_resync_period: Duration::from_secs(12 * 3600),
            cluster_name: "kubernetes".to_string(),
            mirroring_max_endpoints_per_subset: 1000,
            mirroring_endpointslice_updates_batch_period: Duration::ZERO,
            legacy_service_account_token_clean_up_period: Duration::from_secs(8760 * 3600),
            attach_detach_reconcile_sync_period: Duration::from_secs(60),
            disable_attach_detach_reconcile_sync: false,
            disable_force_detach_on_timeout: false,
            hpa: HpaOptions::default(),
            kube_api_qps: 20.0,
            kube_api_burst: 30,
            kube_api_content_type: "application/vnd.kubernetes.protobuf".to_string(),
            leader_election: LeaderElectionConfiguration::defaults_for(COMPONENT),
            serving: Serving::default(),
            verbosity: 0,
            logging_format: LogFormat::Text,
        }
    }
}
