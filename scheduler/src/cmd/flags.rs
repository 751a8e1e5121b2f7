//! The command line: upstream's flag names parsed with clap. Upstream flags ferrokube does
//! not implement are accepted with one warning (component-base's FlagTable); anything else
//! is an error with a suggestion.

use std::ffi::OsString;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Arg, ArgAction, ArgMatches, Command};
use component_base::duration::GoDuration;
use component_base::flags::{explicitly_set, FlagTable};
use component_base::leader_election::LeaderElectionConfiguration;
use component_base::logging::LogFormat;

use crate::config::{self, KubeSchedulerConfiguration};

/// Upstream 1.35's flag table (`kube-scheduler --help`).
pub const UPSTREAM_FLAGS: &str = include_str!("upstream_flags.txt");
/// Binary, user agent and Lease name.
pub const COMPONENT: &str = "kube-scheduler";

/// The upstream flag table.
pub fn table() -> FlagTable {
    FlagTable::parse(COMPONENT, UPSTREAM_FLAGS)
}

/// Everything the scheduler needs from flags and the config file.
#[derive(Debug, Clone)]
pub struct Options {
    /// The (file or default) component config, with explicitly-set flags applied.
    pub config: KubeSchedulerConfiguration,
    /// `--config`.
    pub config_file: Option<PathBuf>,
    /// `--master`.
    pub master: Option<String>,
    /// `--kubeconfig` / clientConnection.kubeconfig.
    pub kubeconfig: Option<PathBuf>,
    /// `--kube-api-qps`.
    pub qps: f32,
    /// `--kube-api-burst`.
    pub burst: u32,
    /// `--kube-api-content-type`.
    pub content_type: String,
    /// Leader election.
    pub leader_election: LeaderElectionConfiguration,
    /// `--bind-address`.
    pub bind_address: IpAddr,
    /// `--secure-port`.
    pub secure_port: u16,
    /// `--tls-cert-file`.
    pub tls_cert_file: Option<PathBuf>,
    /// `--tls-private-key-file`.
    pub tls_private_key_file: Option<PathBuf>,
    /// `--cert-dir`.
    pub cert_dir: Option<PathBuf>,
    /// `--pod-max-in-unschedulable-pods-duration`.
    pub max_in_unschedulable: Duration,
    /// `-v`.
    pub verbosity: u8,
    /// `--logging-format`.
    pub logging_format: LogFormat,
}

fn value(id: &'static str) -> Arg {
    Arg::new(id).long(id).action(ArgAction::Set)
}

/// The clap command of the implemented flags.
pub fn command() -> Command {
    Command::new(COMPONENT)
        .about("The Kubernetes scheduler is a control plane process which assigns Pods to Nodes (ferrokube).")
        .arg(value("config").value_parser(clap::value_parser!(PathBuf)).help("The path to the configuration file."))
        .arg(value("master").help("The address of the Kubernetes API server (overrides any value in kubeconfig)"))
        .arg(value("kubeconfig").value_parser(clap::value_parser!(PathBuf)).help("Path to kubeconfig file with authorization and master location information."))
        .arg(value("kube-api-qps").value_parser(clap::value_parser!(f32)).default_value("50").help("QPS to use while talking with kubernetes apiserver."))
        .arg(value("kube-api-burst").value_parser(clap::value_parser!(u32)).default_value("100").help("Burst to use while talking with kubernetes apiserver."))
        .arg(value("kube-api-content-type").default_value("application/vnd.kubernetes.protobuf").help("Content type of requests sent to apiserver (kube-rs sends JSON)."))
        .arg(value("bind-address").value_parser(clap::value_parser!(IpAddr)).default_value("0.0.0.0").help("The IP address on which to listen for the --secure-port port."))
        .arg(value("secure-port").value_parser(clap::value_parser!(u16)).default_value("10259").help("The port on which to serve HTTPS with authentication and authorization. If 0, don't serve HTTPS at all."))
        .arg(value("tls-cert-file").value_parser(clap::value_parser!(PathBuf)).help("File containing the default x509 Certificate for HTTPS."))
        .arg(value("tls-private-key-file").value_parser(clap::value_parser!(PathBuf)).help("File containing the default x509 private key matching --tls-cert-file."))
        .arg(value("cert-dir").value_parser(clap::value_parser!(PathBuf)).help("The directory where the TLS certs are located."))
        .arg(value("pod-max-in-unschedulable-pods-duration").value_parser(clap::value_parser!(GoDuration)).default_value("5m0s").help("The maximum amount of time a pod can stay in unschedulablePods."))
        .arg(value("v").short('v').value_parser(clap::value_parser!(u8)).default_value("0").help("number for the log level verbosity"))
        .arg(value("logging-format").value_parser(["text", "json"]).default_value("text").help("Sets the log format. Permitted formats: \"json\", \"text\"."))
        .args(LeaderElectionConfiguration::args())
}

/// Why the command line was refused.
#[derive(Debug)]
pub enum ParseError {
    /// clap's error (unknown flag, bad value, --help).
    Clap(clap::Error),
    /// A bad config file or inconsistent values.
    Invalid(String),
}

/// Parses argv; `Ok(None)` means `--version` was printed-for.
pub fn parse(
    argv: impl IntoIterator<Item = OsString>,
) -> Result<Option<(Options, Vec<String>)>, ParseError> {
    let Some(parsed) =
        component_base::flags::try_parse(&table(), command(), argv).map_err(ParseError::Clap)?
    else {
        return Ok(None);
    };
    let opts = from_matches(&parsed.matches).map_err(ParseError::Invalid)?;
    Ok(Some((opts, parsed.ignored)))
}

/// Builds the options: the config file (if any) first, then explicitly-set flags on top.
pub fn from_matches(m: &ArgMatches) -> Result<Options, String> {
    let config_file = m.get_one::<PathBuf>("config").cloned();
    let cfg = match &config_file {
        Some(p) => config::load(p).map_err(|e| format!("{e:#}"))?,
        None => KubeSchedulerConfiguration::defaults(),
    };
    let set = |id: &str| explicitly_set(m, id);
    let cc = &cfg.client_connection;
    let kubeconfig = if set("kubeconfig") || cc.kubeconfig.is_empty() {
        m.get_one::<PathBuf>("kubeconfig").cloned()
    } else {
        Some(PathBuf::from(&cc.kubeconfig))
    };
    let qps = match (set("kube-api-qps"), cc.qps) {
        (false, Some(q)) => q,
        _ => *m.get_one::<f32>("kube-api-qps").expect("defaulted"),
    };
    let burst = match (set("kube-api-burst"), cc.burst) {
        (false, Some(b)) => b.max(0) as u32,
        _ => *m.get_one::<u32>("kube-api-burst").expect("defaulted"),
    };
    let mut le = cfg
        .leader_election
        .clone()
        .unwrap_or_else(|| LeaderElectionConfiguration::defaults_for(COMPONENT));
    if le.resource_name.is_empty() {
        le.resource_name = COMPONENT.into();
    }
    le.apply_flags(m, config_file.is_none());
    if le.resource_name.is_empty() {
        le.resource_name = COMPONENT.into();
    }
    let logging_format = match m.get_one::<String>("logging-format").map(String::as_str) {
        Some("json") => LogFormat::Json,
        _ => LogFormat::Text,
    };
    Ok(Options {
        config: cfg,
        config_file,
        master: m.get_one::<String>("master").cloned(),
        kubeconfig,
        qps,
        burst,
        content_type: m
            .get_one::<String>("kube-api-content-type")
            .cloned()
            .unwrap_or_default(),
        leader_election: le,
        bind_address: *m.get_one::<IpAddr>("bind-address").expect("defaulted"),
        secure_port: *m.get_one::<u16>("secure-port").expect("defaulted"),
        tls_cert_file: m.get_one::<PathBuf>("tls-cert-file").cloned(),
        tls_private_key_file: m.get_one::<PathBuf>("tls-private-key-file").cloned(),
        cert_dir: m.get_one::<PathBuf>("cert-dir").cloned(),
        max_in_unschedulable: m
            .get_one::<GoDuration>("pod-max-in-unschedulable-pods-duration")
            .expect("defaulted")
            .0,
        verbosity: *m.get_one::<u8>("v").expect("defaulted"),
        logging_format,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<OsString> {
        std::iter::once("kube-scheduler")
            .chain(a.iter().copied())
            .map(OsString::from)
            .collect()
    }

    #[test]
    fn implements_only_upstream_flags() {
        assert_eq!(table().not_upstream(&command()), Vec::<String>::new());
    }

    #[test]
    fn unknown_flag_is_an_error_and_known_unimplemented_is_ignored() {
        let Err(ParseError::Clap(e)) = parse(args(&["--kubeconfg=/x"])) else {
            panic!("expected an error")
        };
        assert!(e.to_string().contains("kubeconfig"), "{e}");
        let (o, ignored) = parse(args(&["--profiling=false", "--leader-elect=false"]))
            .unwrap()
            .unwrap();
        assert_eq!(ignored, vec!["profiling".to_string()]);
        assert!(!o.leader_election.leader_elect);
        assert_eq!(o.secure_port, 10259);
        assert_eq!(o.leader_election.resource_name, "kube-scheduler");
    }

    #[test]
    fn flags_override_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.yaml");
        std::fs::write(&p, "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\nclientConnection:\n  kubeconfig: /from/file\n  qps: 7\nleaderElection:\n  leaderElect: true\n").unwrap();
        let pa = p.to_str().unwrap();
        let (o, _) = parse(args(&["--config", pa])).unwrap().unwrap();
        assert_eq!(o.kubeconfig, Some(PathBuf::from("/from/file")));
        assert_eq!(o.qps, 7.0);
        assert!(o.leader_election.leader_elect);
        let (o, _) = parse(args(&[
            "--config",
            pa,
            "--kubeconfig",
            "/flag",
            "--leader-elect=false",
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(o.kubeconfig, Some(PathBuf::from("/flag")));
        assert!(!o.leader_election.leader_elect);
    }
}
