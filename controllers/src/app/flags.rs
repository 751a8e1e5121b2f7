//! The command line: upstream's flag names parsed with clap into [`KcmOptions`].
//! Flags upstream has but ferrokube does not implement are accepted with one warning
//! (component-base's [`FlagTable`]); anything else is an error with a suggestion.

use std::ffi::OsString;
use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Arg, ArgAction, ArgMatches, Command};
use component_base::duration::GoDuration;
use component_base::flags::{bool_flag, FlagTable};
use component_base::leader_election::LeaderElectionConfiguration;
use component_base::logging::LogFormat;

use crate::app::registry::Selection;
use crate::machinery::options::{Concurrency, KcmOptions, Serving};

/// Upstream 1.35's flag table (`kube-controller-manager --help`).
pub const UPSTREAM_FLAGS: &str = include_str!("upstream_flags.txt");

pub use crate::machinery::options::COMPONENT;

/// The upstream flag table.
pub fn table() -> FlagTable {
    FlagTable::parse(COMPONENT, UPSTREAM_FLAGS)
}

/// `--concurrent-*-syncs` flags: name, default, and the field they set.
/// Selects the field of the options a flag sets.
type Field<S, T> = fn(&mut S) -> &mut T;

const CONCURRENCY: &[(&str, Field<Concurrency, usize>)] = &[
    ("concurrent-deployment-syncs", |c| &mut c.deployment),
    ("concurrent-replicaset-syncs", |c| &mut c.replicaset),
    ("concurrent-rc-syncs", |c| &mut c.rc),
    ("concurrent-statefulset-syncs", |c| &mut c.statefulset),
    ("concurrent-daemonset-syncs", |c| &mut c.daemonset),
    ("concurrent-job-syncs", |c| &mut c.job),
    ("concurrent-cron-job-syncs", |c| &mut c.cron_job),
    ("concurrent-endpoint-syncs", |c| &mut c.endpoint),
    ("concurrent-service-endpoint-syncs", |c| {
        &mut c.service_endpoint
    }),
    ("mirroring-concurrent-service-endpoint-syncs", |c| {
        &mut c.mirroring_service_endpoint
    }),
    ("concurrent-gc-syncs", |c| &mut c.gc),
    ("concurrent-namespace-syncs", |c| &mut c.namespace),
    ("concurrent-resource-quota-syncs", |c| &mut c.resource_quota),
    ("concurrent-serviceaccount-token-syncs", |c| {
        &mut c.serviceaccount_token
    }),
    ("concurrent-ttl-after-finished-syncs", |c| {
        &mut c.ttl_after_finished
    }),
    ("concurrent-ephemeralvolume-syncs", |c| {
        &mut c.ephemeral_volume
    }),
    ("concurrent-horizontal-pod-autoscaler-syncs", |c| {
        &mut c.horizontal_pod_autoscaler
    }),
];

const DURATIONS: &[(&str, &str, Field<KcmOptions, std::time::Duration>)] = &[
    ("node-monitor-grace-period", "50s", |o| {
        &mut o.node_monitor_grace_period
    }),
    ("node-startup-grace-period", "1m0s", |o| {
        &mut o.node_startup_grace_period
    }),
    ("node-monitor-period", "5s", |o| &mut o.node_monitor_period),
    ("namespace-sync-period", "5m0s", |o| {
        &mut o.namespace_sync_period
    }),
    ("resource-quota-sync-period", "5m0s", |o| {
        &mut o.resource_quota_sync_period
    }),
    ("min-resync-period", "12h0m0s", |o| &mut o.min_resync_period),
    ("pvclaimbinder-sync-period", "15s", |o| {
        &mut o.pvclaimbinder_sync_period
    }),
    ("cluster-signing-duration", "8760h0m0s", |o| {
        &mut o.signing.duration
    }),
    ("mirroring-endpointslice-updates-batch-period", "0s", |o| {
        &mut o.mirroring_endpointslice_updates_batch_period
    }),
    ("attach-detach-reconcile-sync-period", "1m0s", |o| {
        &mut o.attach_detach_reconcile_sync_period
    }),
    (
        "legacy-service-account-token-clean-up-period",
        "8760h0m0s",
        |o| &mut o.legacy_service_account_token_clean_up_period,
    ),
    ("horizontal-pod-autoscaler-sync-period", "15s", |o| {
        &mut o.hpa.sync_period
    }),
    (
        "horizontal-pod-autoscaler-downscale-stabilization",
        "5m0s",
        |o| &mut o.hpa.downscale_stabilization,
    ),
    (
        "horizontal-pod-autoscaler-cpu-initialization-period",
        "5m0s",
        |o| &mut o.hpa.cpu_initialization_period,
    ),
    (
        "horizontal-pod-autoscaler-initial-readiness-delay",
        "30s",
        |o| &mut o.hpa.initial_readiness_delay,
    ),
];

const PATHS: &[(&str, Field<KcmOptions, Option<PathBuf>>)] = &[
    ("kubeconfig", |o| &mut o.kubeconfig),
    ("root-ca-file", |o| &mut o.root_ca_file),
    ("service-account-private-key-file", |o| {
        &mut o.service_account_private_key_file
    }),
    ("cluster-signing-cert-file", |o| &mut o.signing.cert_file),
    ("cluster-signing-key-file", |o| &mut o.signing.key_file),
    ("tls-cert-file", |o| &mut o.serving.tls_cert_file),
    ("tls-private-key-file", |o| {
        &mut o.serving.tls_private_key_file
    }),
    ("cert-dir", |o| &mut o.serving.cert_dir),
];

/// A signer's certificate and key files.
type CertKey = Option<(PathBuf, PathBuf)>;

const SIGNERS: &[(&str, Field<KcmOptions, CertKey>)] = &[
    ("kubelet-serving", |o| &mut o.signing.kubelet_serving),
    ("kubelet-client", |o| &mut o.signing.kubelet_client),
    ("kube-apiserver-client", |o| {
        &mut o.signing.kube_apiserver_client
    }),
    ("legacy-unknown", |o| &mut o.signing.legacy_unknown),
];

fn value(id: &'static str) -> Arg {
    Arg::new(id).long(id).action(ArgAction::Set)
}

/// The clap command for every implemented flag.
pub fn command() -> Command {
    let d = KcmOptions::default();
    let mut cmd = Command::new(COMPONENT)
        .about("The Kubernetes controller manager is a daemon that embeds the core control loops shipped with Kubernetes (ferrokube).")
        .arg(value("master").help("The address of the Kubernetes API server (overrides any value in kubeconfig)."))
        .arg(value("kube-api-qps").value_parser(clap::value_parser!(f32)).default_value("20").help("QPS to use while talking with kubernetes apiserver."))
        .arg(value("kube-api-burst").value_parser(clap::value_parser!(u32)).default_value("30").help("Burst to use while talking with kubernetes apiserver."))
        .arg(value("kube-api-content-type").default_value("application/vnd.kubernetes.protobuf").help("Content type of requests sent to apiserver (kube-rs sends JSON)."))
        .arg(Arg::new("controllers").long("controllers").action(ArgAction::Append).value_delimiter(',').default_value("*").help("A list of controllers to enable. '*' enables all on-by-default controllers, 'foo' enables the controller named 'foo', '-foo' disables the controller named 'foo'."))
        .arg(value("feature-gates").help("A set of key=value pairs that describe feature gates for alpha/experimental features (the gates controllers run under)."))
        .arg(bool_flag("use-service-account-credentials", false).help("If true, use individual service account credentials for each controller."))
        .arg(bool_flag("allocate-node-cidrs", false).help("Should CIDRs for Pods be allocated and set on the nodes. Requires --cluster-cidr."))
        .arg(value("cluster-cidr").help("CIDR Range for Pods in cluster."))
        .arg(value("node-cidr-mask-size").value_parser(clap::value_parser!(u8)).help("Mask size for node cidr in cluster. Default is 24 for IPv4 and 64 for IPv6."))
        .arg(value("node-cidr-mask-size-ipv4").value_parser(clap::value_parser!(u8)).help("Mask size for IPv4 node cidr in dual-stack cluster. Default is 24."))
        .arg(value("node-cidr-mask-size-ipv6").value_parser(clap::value_parser!(u8)).help("Mask size for IPv6 node cidr in dual-stack cluster. Default is 64."))
        .arg(value("service-cluster-ip-range").help("CIDR Range for Services in cluster."))
        .arg(value("node-eviction-rate").value_parser(clap::value_parser!(f32)).default_value("0.1").help("Number of nodes per second on which pods are deleted in case of node failure."))
        .arg(value("terminated-pod-gc-threshold").value_parser(clap::value_parser!(i32)).default_value(d.terminated_pod_gc_threshold.to_string()).help("Number of terminated pods that can exist before the terminated pod garbage collector starts deleting terminated pods. If <= 0, the terminated pod garbage collector is disabled."))
        .arg(bool_flag("enable-garbage-collector", true).help("Enables the generic garbage collector. MUST be synced with the corresponding flag of the kube-apiserver."))
        .arg(bool_flag("disable-attach-detach-reconcile-sync", false).help("Disable volume attach detach reconciler sync. Disabling this may cause volumes to be mismatched with pods. Use wisely."))
        .arg(bool_flag("disable-force-detach-on-timeout", false).help("Prevent force detaching volumes based on maximum unmount time and node status. If this flag is set to true, the non-graceful node shutdown feature must be used to recover from node failure. See https://k8s.io/docs/storage-disable-force-detach-on-timeout/."))
        .arg(value("mirroring-max-endpoints-per-subset").value_parser(clap::value_parser!(i64)).default_value("1000").help("The maximum number of endpoints that will be added to an EndpointSlice by the endpointslice-mirroring-controller."))
        .arg(value("horizontal-pod-autoscaler-tolerance").value_parser(clap::value_parser!(f64)).default_value("0.1").help("The minimum change (from 1.0) in the desired-to-actual metrics ratio for the horizontal pod autoscaler to consider scaling."))
        .arg(value("cluster-name").default_value("kubernetes").help("The instance prefix for the cluster."))
        .arg(value("bind-address").value_parser(clap::value_parser!(IpAddr)).default_value("0.0.0.0").help("The IP address on which to listen for the --secure-port port."))
        .arg(value("secure-port").value_parser(clap::value_parser!(u16)).default_value("10257").help("The port on which to serve HTTPS with authentication and authorization. If 0, don't serve HTTPS at all."))
        .arg(value("v").short('v').value_parser(clap::value_parser!(u8)).default_value("0").help("number for the log level verbosity"))
        .arg(value("logging-format").value_parser(["text", "json"]).default_value("text").help("Sets the log format. Permitted formats: \"json\", \"text\"."));
    for (id, _) in CONCURRENCY {
        let default = *(CONCURRENCY
            .iter()
            .find(|(n, _)| n == id)
            .map(|(_, f)| f)
            .expect("listed"))(&mut Concurrency::default());
        cmd = cmd.arg(
            value(id)
                .value_parser(clap::value_parser!(u32))
                .default_value(default.to_string())
                .help("Number of objects of this kind allowed to sync concurrently."),
        );
    }
    for (id, default, _) in DURATIONS {
        cmd = cmd.arg(
            value(id)
                .value_parser(clap::value_parser!(GoDuration))
                .default_value(*default),
        );
    }
    for (id, _) in PATHS {
        cmd = cmd.arg(value(id).value_parser(clap::value_parser!(PathBuf)));
    }
    for (signer, _) in SIGNERS {
        let cert: &'static str = format!("cluster-signing-{signer}-cert-file").leak();
        let key: &'static str = format!("cluster-signing-{signer}-key-file").leak();
        cmd = cmd
            .arg(value(cert).value_parser(clap::value_parser!(PathBuf)))
            .arg(value(key).value_parser(clap::value_parser!(PathBuf)));
    }
    cmd.args(LeaderElectionConfiguration::args())
}

/// Builds validated options from clap's matches.
pub fn from_matches(m: &ArgMatches) -> Result<KcmOptions, String> {
    let mut o = KcmOptions {
        master: m.get_one::<String>("master").cloned(),
        ..KcmOptions::default()
    };
    o.kube_api_qps = *m.get_one::<f32>("kube-api-qps").expect("defaulted");
    o.kube_api_burst = *m.get_one::<u32>("kube-api-burst").expect("defaulted");
    o.kube_api_content_type = m
        .get_one::<String>("kube-api-content-type")
        .cloned()
        .unwrap_or_default();
    let controllers: Vec<String> = m
        .get_many::<String>("controllers")
        .map(|v| v.cloned().collect())
        .unwrap_or_default();
    Selection::parse(&controllers)?;
    o.controllers = controllers;
    o.feature_gates = component_base::feature_gates::FeatureGates::parse(
        m.get_one::<String>("feature-gates")
            .map(String::as_str)
            .unwrap_or_default(),
        crate::machinery::options::FEATURE_GATES,
    )?;
    o.use_service_account_credentials = *m
        .get_one::<bool>("use-service-account-credentials")
        .expect("defaulted");
    o.allocate_node_cidrs = *m.get_one::<bool>("allocate-node-cidrs").expect("defaulted");
    o.cluster_cidr = m
        .get_one::<String>("cluster-cidr")
        .cloned()
        .filter(|s| !s.is_empty());
    o.node_cidr_mask_size = m.get_one::<u8>("node-cidr-mask-size").copied();
    o.node_cidr_mask_size_ipv4 = m.get_one::<u8>("node-cidr-mask-size-ipv4").copied();
    o.node_cidr_mask_size_ipv6 = m.get_one::<u8>("node-cidr-mask-size-ipv6").copied();
    o.service_cluster_ip_range = m
        .get_one::<String>("service-cluster-ip-range")
        .cloned()
        .filter(|s| !s.is_empty());
    o.node_eviction_rate = *m.get_one::<f32>("node-eviction-rate").expect("defaulted");
    o.terminated_pod_gc_threshold = *m
        .get_one::<i32>("terminated-pod-gc-threshold")
        .expect("defaulted");
    o.enable_garbage_collector = *m
        .get_one::<bool>("enable-garbage-collector")
        .expect("defaulted");
    o.cluster_name = m
        .get_one::<String>("cluster-name")
        .cloned()
        .unwrap_or_default();
    o.serving.bind_address = *m.get_one::<IpAddr>("bind-address").expect("defaulted");
    o.serving.secure_port = *m.get_one::<u16>("secure-port").expect("defaulted");
    o.verbosity = *m.get_one::<u8>("v").expect("defaulted");
    o.logging_format = match m.get_one::<String>("logging-format").map(String::as_str) {
        Some("json") => LogFormat::Json,
        _ => LogFormat::Text,
    };
    for (id, field) in CONCURRENCY {
        let n = *m.get_one::<u32>(id).expect("defaulted");
        if n == 0 {
            return Err(format!("--{id}: must be greater than 0"));
        }
        *field(&mut o.concurrency) = n as usize;
    }
    for (id, _, field) in DURATIONS {
        *field(&mut o) = m.get_one::<GoDuration>(id).expect("defaulted").0;
    }
    mirroring(m, &mut o)?;
    o.disable_attach_detach_reconcile_sync = *m
        .get_one::<bool>("disable-attach-detach-reconcile-sync")
        .expect("defaulted");
    o.disable_force_detach_on_timeout = *m
        .get_one::<bool>("disable-force-detach-on-timeout")
        .expect("defaulted");
    if o.attach_detach_reconcile_sync_period < std::time::Duration::from_secs(1) {
        return Err(
            "--attach-detach-reconcile-sync-period: duration time must be greater than one second"
                .into(),
        );
    }
    o.hpa.tolerance = *m
        .get_one::<f64>("horizontal-pod-autoscaler-tolerance")
        .expect("defaulted");
    if !o.hpa.tolerance.is_finite() || o.hpa.tolerance < 0.0 {
        return Err(format!(
            "--horizontal-pod-autoscaler-tolerance: must be a non-negative number, but got {}",
            o.hpa.tolerance
        ));
    }
    for (id, field) in PATHS {
        *field(&mut o) = m
            .get_one::<PathBuf>(id)
            .cloned()
            .filter(|p| !p.as_os_str().is_empty());
    }
    for (signer, field) in SIGNERS {
        let cert = m
            .get_one::<PathBuf>(&format!("cluster-signing-{signer}-cert-file"))
            .cloned();
        let key = m
            .get_one::<PathBuf>(&format!("cluster-signing-{signer}-key-file"))
            .cloned();
        *field(&mut o) = match (cert, key) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => return Err(format!("--cluster-signing-{signer}-cert-file and --cluster-signing-{signer}-key-file must be set together")),
        };
        if field(&mut o).is_some()
            && (o.signing.cert_file.is_some() || o.signing.key_file.is_some())
        {
            return Err(format!("--cluster-signing-{signer}-*: cannot be combined with --cluster-signing-cert-file/--cluster-signing-key-file"));
        }
    }
    if o.signing.cert_file.is_some() != o.signing.key_file.is_some() {
        return Err(
            "--cluster-signing-cert-file and --cluster-signing-key-file must be set together"
                .into(),
        );
    }
    let mut le = LeaderElectionConfiguration::defaults_for(COMPONENT);
    le.apply_flags(m, true);
    le.validate()?;
    o.leader_election = le;
    if o.allocate_node_cidrs && o.cluster_cidr.is_none() {
        return Err("--cluster-cidr: required when --allocate-node-cidrs=true".into());
    }
    Ok(o)
}

/// endpointslice-mirroring-controller's flags, validated as upstream's options.
fn mirroring(m: &ArgMatches, o: &mut KcmOptions) -> Result<(), String> {
    let workers = o.concurrency.mirroring_service_endpoint;
    if workers > 50 {
        return Err(format!(
            "--mirroring-concurrent-service-endpoint-syncs: must not be more than 50, but got {workers}"
        ));
    }
    let max = *m
        .get_one::<i64>("mirroring-max-endpoints-per-subset")
        .expect("defaulted");
    if !(1..=1000).contains(&max) {
        return Err(format!(
            "--mirroring-max-endpoints-per-subset: must be between 1 and 1000, but got {max}"
        ));
    }
    o.mirroring_max_endpoints_per_subset = max as usize;
    Ok(())
}

/// Why the command line was not turned into options.
#[derive(Debug)]
pub enum ParseError {
    /// clap's outcome: a syntax error, or `--help` (print with [`clap::Error::exit`]).
    Clap(clap::Error),
    /// The flags parsed but their values are invalid; the message names the flag.
    Invalid(String),
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParseError::Clap(e) => write!(f, "{}", e.render()),
            ParseError::Invalid(m) => f.write_str(m),
        }
    }
}

/// Parses `argv` (program name first). `Ok(None)` means `--version` was asked for.
pub fn parse(
    argv: impl IntoIterator<Item = OsString>,
) -> Result<Option<(KcmOptions, Vec<String>)>, ParseError> {
    let parsed = match component_base::flags::try_parse(&table(), command(), argv) {
        Ok(Some(p)) => p,
        Ok(None) => return Ok(None),
        Err(e) => return Err(ParseError::Clap(e)),
    };
    let opts = from_matches(&parsed.matches).map_err(ParseError::Invalid)?;
    Ok(Some((opts, parsed.ignored)))
}

impl Default for Serving {
    fn default() -> Self {
        Serving {
            bind_address: IpAddr::from([0, 0, 0, 0]),
            secure_port: 10257,
            tls_cert_file: None,
            tls_private_key_file: None,
            cert_dir: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(args: &[&str]) -> (KcmOptions, Vec<String>) {
        let argv = std::iter::once(COMPONENT)
            .chain(args.iter().copied())
            .map(OsString::from);
        parse(argv).unwrap().unwrap()
    }

    fn parse_err(args: &[&str]) -> String {
        let argv = std::iter::once(COMPONENT)
            .chain(args.iter().copied())
            .map(OsString::from);
        parse(argv).expect_err("should fail").to_string()
    }

    #[test]
    fn defaults_are_upstreams() {
        let (o, ignored) = parse_ok(&[]);
        assert!(ignored.is_empty());
        assert_eq!(
            o.node_monitor_grace_period,
            std::time::Duration::from_secs(50)
        );
        assert_eq!(o.terminated_pod_gc_threshold, 12500);
        assert_eq!(o.concurrency, Concurrency::default());
        assert_eq!(o.controllers, vec!["*"]);
        assert_eq!(o.serving.secure_port, 10257);
        assert_eq!(o.kube_api_qps, 20.0);
        assert_eq!(o.kube_api_burst, 30);
        assert!(o.leader_election.leader_elect);
        assert_eq!(o.leader_election.resource_name, "kube-controller-manager");
        assert_eq!(
            o.signing.duration,
            std::time::Duration::from_secs(8760 * 3600)
        );
    }

    #[test]
    fn implemented_flags_act() {
        let (o, _) = parse_ok(&[
            "--concurrent-gc-syncs=3",
            "--controllers=*,-namespace",
            "--controllers",
            "tokencleaner",
            "--node-monitor-grace-period=40s",
            "--allocate-node-cidrs",
            "--cluster-cidr=10.244.0.0/16",
            "--node-cidr-mask-size=26",
            "--leader-elect=false",
            "--cluster-signing-cert-file=/ca.crt",
            "--cluster-signing-key-file=/ca.key",
        ]);
        assert_eq!(o.concurrency.gc, 3);
        assert_eq!(o.controllers, vec!["*", "-namespace", "tokencleaner"]);
        assert_eq!(
            o.node_monitor_grace_period,
            std::time::Duration::from_secs(40)
        );
        assert_eq!(o.cluster_cidr.as_deref(), Some("10.244.0.0/16"));
        assert_eq!(o.node_cidr_mask_size, Some(26));
        assert!(!o.leader_election.leader_elect);
        assert_eq!(o.signing.cert_file, Some(PathBuf::from("/ca.crt")));
    }

    #[test]
    fn unimplemented_upstream_flags_are_accepted_and_listed() {
        let (_, ignored) = parse_ok(&["--profiling", "--flex-volume-plugin-dir=/x"]);
        assert_eq!(ignored, vec!["profiling", "flex-volume-plugin-dir"]);
    }

    #[test]
    fn hpa_flags_have_upstreams_defaults_and_act() {
        let (d, ignored) = parse_ok(&[]);
        assert!(ignored.is_empty());
        assert_eq!(d.hpa, crate::machinery::options::HpaOptions::default());
        assert_eq!(d.hpa.sync_period, std::time::Duration::from_secs(15));
        assert_eq!(d.hpa.tolerance, 0.1);
        let (o, ignored) = parse_ok(&[
            "--horizontal-pod-autoscaler-sync-period=2s",
            "--horizontal-pod-autoscaler-downscale-stabilization=1m",
            "--horizontal-pod-autoscaler-tolerance=0.25",
            "--horizontal-pod-autoscaler-cpu-initialization-period=10s",
            "--horizontal-pod-autoscaler-initial-readiness-delay=5s",
        ]);
        assert!(ignored.is_empty(), "{ignored:?}");
        assert_eq!(o.hpa.sync_period, std::time::Duration::from_secs(2));
        assert_eq!(
            o.hpa.downscale_stabilization,
            std::time::Duration::from_secs(60)
        );
        assert_eq!(o.hpa.tolerance, 0.25);
        assert_eq!(
            o.hpa.cpu_initialization_period,
            std::time::Duration::from_secs(10)
        );
        assert_eq!(
            o.hpa.initial_readiness_delay,
            std::time::Duration::from_secs(5)
        );
        assert!(parse_err(&["--horizontal-pod-autoscaler-tolerance=-1"])
            .contains("--horizontal-pod-autoscaler-tolerance"));
    }

    #[test]
    fn unknown_flags_and_bad_values_are_errors_naming_the_flag() {
        assert!(parse_err(&["--kubeconfg=/k"]).contains("did you mean --kubeconfig?"));
        assert!(parse_err(&["--controllers=replicaste"]).contains("did you mean \"replicaset\""));
        assert!(parse_err(&["--concurrent-gc-syncs=0"]).contains("--concurrent-gc-syncs"));
        assert!(parse_err(&["--allocate-node-cidrs"]).contains("--cluster-cidr"));
        assert!(
            parse_err(&["--cluster-signing-cert-file=/x"]).contains("--cluster-signing-key-file")
        );
    }

    #[test]
    fn mirroring_and_legacy_token_flags_are_plumbed_and_validated() {
        let (d, _) = parse_ok(&[]);
        assert_eq!(d.concurrency.mirroring_service_endpoint, 5);
        assert_eq!(d.mirroring_max_endpoints_per_subset, 1000);
        assert_eq!(
            d.mirroring_endpointslice_updates_batch_period,
            std::time::Duration::ZERO
        );
        assert_eq!(
            d.legacy_service_account_token_clean_up_period,
            std::time::Duration::from_secs(8760 * 3600)
        );
        let (o, ignored) = parse_ok(&[
            "--mirroring-concurrent-service-endpoint-syncs=7",
            "--mirroring-max-endpoints-per-subset=250",
            "--mirroring-endpointslice-updates-batch-period=2s",
            "--legacy-service-account-token-clean-up-period=720h",
        ]);
        assert!(ignored.is_empty(), "{ignored:?}");
        assert_eq!(o.concurrency.mirroring_service_endpoint, 7);
        assert_eq!(o.mirroring_max_endpoints_per_subset, 250);
        assert_eq!(
            o.mirroring_endpointslice_updates_batch_period,
            std::time::Duration::from_secs(2)
        );
        assert_eq!(
            o.legacy_service_account_token_clean_up_period,
            std::time::Duration::from_secs(720 * 3600)
        );
        assert!(parse_err(&["--mirroring-max-endpoints-per-subset=0"])
            .contains("--mirroring-max-endpoints-per-subset"));
        assert!(parse_err(&["--mirroring-max-endpoints-per-subset=1001"])
            .contains("--mirroring-max-endpoints-per-subset"));
        assert!(
            parse_err(&["--mirroring-concurrent-service-endpoint-syncs=51"])
                .contains("--mirroring-concurrent-service-endpoint-syncs")
        );
        assert!(
            parse_err(&["--legacy-service-account-token-clean-up-period=soon"])
                .contains("legacy-service-account-token-clean-up-period")
        );
    }

    #[test]
    fn every_implemented_flag_is_an_upstream_flag() {
        assert_eq!(table().not_upstream(&command()), Vec::<String>::new());
    }

    #[test]
    fn attach_detach_flags_are_plumbed_and_validated() {
        let (d, _) = parse_ok(&[]);
        assert_eq!(
            d.attach_detach_reconcile_sync_period,
            std::time::Duration::from_secs(60)
        );
        assert!(!d.disable_attach_detach_reconcile_sync);
        assert!(!d.disable_force_detach_on_timeout);
        let (o, ignored) = parse_ok(&[
            "--attach-detach-reconcile-sync-period=5s",
            "--disable-attach-detach-reconcile-sync",
            "--disable-force-detach-on-timeout=true",
        ]);
        assert!(ignored.is_empty(), "{ignored:?}");
        assert_eq!(
            o.attach_detach_reconcile_sync_period,
            std::time::Duration::from_secs(5)
        );
        assert!(o.disable_attach_detach_reconcile_sync && o.disable_force_detach_on_timeout);
        assert!(parse_err(&["--attach-detach-reconcile-sync-period=500ms"])
            .contains("--attach-detach-reconcile-sync-period"));
    }
}
