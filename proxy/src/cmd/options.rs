//! kube-proxy's command line and its resolution, with the config file, into
//! [`ProxyOptions`]. As upstream: with `--config`, the file's values (filled in by
//! [`super::defaults`]) are used and only the logging flags and `--hostname-override` still
//! apply; without it, the flags are used.

use super::config::{self, KubeProxyConfiguration};
use super::defaults;
use clap::{Arg, ArgMatches, Command};
use component_base::duration::GoDuration;
use component_base::flags::{bool_flag, explicitly_set, FlagTable};
use component_base::logging::LogFormat;
use proxy::model::Cidr;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// The binary's name.
pub const COMPONENT: &str = "kube-proxy";
/// Upstream 1.35's flags.
pub const UPSTREAM_FLAGS: &str = include_str!("upstream_flags.txt");

/// Upstream's flag table.
pub fn table() -> FlagTable {
    FlagTable::parse(COMPONENT, UPSTREAM_FLAGS)
}

/// Which proxier programs the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    /// nftables.
    Nftables,
    /// iptables-restore (what an empty mode means on Linux, as upstream).
    Iptables,
}

/// Everything the proxy needs, resolved.
#[derive(Debug, Clone)]
pub struct ProxyOptions {
    /// The config file, if any.
    pub config_file: Option<PathBuf>,
    /// Client settings.
    pub kubeconfig: Option<PathBuf>,
    /// `--master`.
    pub master: Option<String>,
    /// Client qps.
    pub qps: f32,
    /// Client burst.
    pub burst: u32,
    /// Client content type.
    pub content_type: String,
    /// The Node's name (hostname unless overridden).
    pub hostname_override: Option<String>,
    /// The proxier.
    pub mode: ProxyMode,
    /// Pod CIDRs for the local-traffic detector.
    pub cluster_cidrs: Vec<Cidr>,
    /// SNAT all service traffic.
    pub masquerade_all: bool,
    /// SNAT mark bit.
    pub masquerade_bit: u32,
    /// Full resync period.
    pub sync_period: Duration,
    /// Minimum time between syncs.
    pub min_sync_period: Duration,
    /// `--nodeport-addresses`: CIDRs or `primary`; empty = all local IPs.
    pub nodeport_addresses: Vec<String>,
    /// `/healthz` server; `None` disables it.
    pub healthz_bind: Option<SocketAddr>,
    /// `/metrics` server; `None` disables it.
    pub metrics_bind: Option<SocketAddr>,
    /// The node's primary IP override (`--bind-address`), unspecified = from the Node.
    pub bind_address: Option<IpAddr>,
    /// `--cleanup`: remove our rules and exit.
    pub cleanup: bool,
    /// `--iptables-localhost-nodeports` (iptables mode, IPv4).
    pub localhost_nodeports: bool,
    /// `--logging-format`.
    pub log_format: LogFormat,
    /// `-v`.
    pub verbosity: u8,
}

/// The clap command with every implemented flag.
pub fn command() -> Command {
    let value = |name: &'static str, help: &'static str| Arg::new(name).long(name).help(help);
    Command::new(COMPONENT)
        .about("The Kubernetes network proxy (ferrokube): programs Services into nftables on each node.")
        .arg(value("config", "The path to the configuration file."))
        .arg(value("kubeconfig", "Path to kubeconfig file with authorization information."))
        .arg(value("master", "The address of the Kubernetes API server (overrides any value in kubeconfig)"))
        .arg(value("kube-api-qps", "QPS to use while talking with kubernetes apiserver").default_value("5").value_parser(clap::value_parser!(f32)))
        .arg(value("kube-api-burst", "Burst to use while talking with kubernetes apiserver").default_value("10").value_parser(clap::value_parser!(u32)))
        .arg(value("kube-api-content-type", "Content type of requests sent to apiserver.").default_value("application/vnd.kubernetes.protobuf"))
        .arg(value("hostname-override", "If non-empty, will be used as the name of the Node that kube-proxy is running on."))
        .arg(value("proxy-mode", "Which proxy mode to use: on Linux this can be 'iptables' (default) or 'nftables'.").default_value(""))
        .arg(value("cluster-cidr", "The CIDR range of the pods in the cluster (comma-separated for dual-stack)."))
        .arg(bool_flag("masquerade-all", false).help("SNAT all traffic sent via Service cluster IPs."))
        .arg(value("iptables-masquerade-bit", "The bit of the fwmark space to mark packets requiring SNAT with.").default_value("14").value_parser(clap::value_parser!(u32).range(0..=31)))
        .arg(value("iptables-sync-period", "How often rules are fully resynchronized.").default_value("30s").value_parser(clap::value_parser!(GoDuration)))
        .arg(value("iptables-min-sync-period", "The minimum period between rule resyncs.").default_value("1s").value_parser(clap::value_parser!(GoDuration)))
        .arg(value("config-sync-period", "How often configuration from the apiserver is refreshed.").default_value("15m0s").value_parser(clap::value_parser!(GoDuration)))
        .arg(value("nodeport-addresses", "CIDR ranges of node IPs that accept NodePorts, or 'primary'.").value_delimiter(',').action(clap::ArgAction::Append))
        .arg(value("healthz-bind-address", "The IP address and port for the health check server.").default_value("0.0.0.0:10256"))
        .arg(value("metrics-bind-address", "The IP address and port for the metrics server.").default_value("127.0.0.1:10249"))
        .arg(value("bind-address", "Overrides kube-proxy's idea of what its node's primary IP is.").default_value("0.0.0.0").value_parser(clap::value_parser!(IpAddr)))
        .arg(bool_flag("cleanup", false).help("If true cleanup rules and exit."))
        .arg(bool_flag("iptables-localhost-nodeports", true).help("If false, iptables mode does not accept NodePort connections on localhost (IPv4)."))
        .arg(value("logging-format", "Sets the log format: text or json.").default_value("text").value_parser(clap::value_parser!(LogFormat)))
        .arg(Arg::new("v").long("v").short('v').help("number for the log level verbosity").default_value("0").value_parser(clap::value_parser!(u8)))
}

fn parse_mode(s: &str, source: &str) -> Result<ProxyMode, String> {
    match defaults::mode(s) {
        "nftables" => Ok(ProxyMode::Nftables),
        "iptables" => Ok(ProxyMode::Iptables),
        "ipvs" => Err(format!(
            "{source}: proxy mode \"ipvs\" is not supported by ferrokube (use nftables)"
        )),
        other => Err(format!(
            "{source}: invalid proxy mode {other:?}; must be iptables or nftables"
        )),
    }
}

fn parse_cidrs(list: &[String], source: &str) -> Result<Vec<Cidr>, String> {
    list.iter()
        .flat_map(|s| s.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<Cidr>().map_err(|e| format!("{source}: {e}")))
        .collect()
}

fn parse_bind(s: &str, source: &str) -> Result<Option<SocketAddr>, String> {
    if s.is_empty() {
        return Ok(None);
    }
    s.parse::<SocketAddr>()
        .map(|a| if a.port() == 0 { None } else { Some(a) })
        .map_err(|_| format!("{source}: {s:?} must be IP:port"))
}

fn validate_nodeport_addresses(list: &[String], source: &str) -> Result<(), String> {
    if list.iter().any(|s| s == "primary") && list.len() > 1 {
        return Err(format!(
            "{source}: \"primary\" cannot be combined with CIDRs"
        ));
    }
    parse_cidrs(
        &list
            .iter()
            .filter(|s| *s != "primary")
            .cloned()
            .collect::<Vec<_>>(),
        source,
    )
    .map(|_| ())
}

/// Resolves the parsed flags (and the config file they name) into options.
pub fn resolve(m: &ArgMatches) -> Result<ProxyOptions, String> {
    let s = |id: &str| m.get_one::<String>(id).cloned();
    let d = |id: &str| m.get_one::<GoDuration>(id).map(|d| d.0).unwrap_or_default();
    let mut o = ProxyOptions {
        config_file: s("config").map(PathBuf::from),
        kubeconfig: s("kubeconfig").filter(|k| !k.is_empty()).map(PathBuf::from),
        master: s("master").filter(|k| !k.is_empty()),
        qps: *m.get_one::<f32>("kube-api-qps").unwrap_or(&5.0),
        burst: *m.get_one::<u32>("kube-api-burst").unwrap_or(&10),
        content_type: s("kube-api-content-type").unwrap_or_default(),
        hostname_override: None,
        mode: parse_mode(&s("proxy-mode").unwrap_or_default(), "--proxy-mode")?,
        cluster_cidrs: parse_cidrs(
            &s("cluster-cidr").into_iter().collect::<Vec<_>>(),
            "--cluster-cidr",
        )?,
        masquerade_all: m.get_flag_bool("masquerade-all"),
        masquerade_bit: *m.get_one::<u32>("iptables-masquerade-bit").unwrap_or(&14),
        sync_period: d("iptables-sync-period"),
        min_sync_period: d("iptables-min-sync-period"),
        nodeport_addresses: m
            .get_many::<String>("nodeport-addresses")
            .into_iter()
            .flatten()
            .filter(|s| !s.is_empty())
            .cloned()
            .collect(),
        healthz_bind: parse_bind(
            &s("healthz-bind-address").unwrap_or_default(),
            "--healthz-bind-address",
        )?,
        metrics_bind: parse_bind(
            &s("metrics-bind-address").unwrap_or_default(),
            "--metrics-bind-address",
        )?,
        bind_address: m
            .get_one::<IpAddr>("bind-address")
            .copied()
            .filter(|a| !a.is_unspecified()),
        cleanup: m.get_flag_bool("cleanup"),
        localhost_nodeports: m.get_flag_bool("iptables-localhost-nodeports"),
        log_format: m
            .get_one::<LogFormat>("logging-format")
            .copied()
            .unwrap_or_default(),
        verbosity: *m.get_one::<u8>("v").unwrap_or(&0),
    };
    validate_nodeport_addresses(&o.nodeport_addresses, "--nodeport-addresses")?;
    if let Some(path) = o.config_file.clone() {
        let mut file = config::load(&path).map_err(|e| e.to_string())?;
        defaults::apply(&mut file);
        apply_file(&mut o, &file, &path.display().to_string())?;
        // Logging flags given on the command line win over the file, as upstream.
        if explicitly_set(m, "v") {
            o.verbosity = *m.get_one::<u8>("v").unwrap_or(&0);
        }
        if explicitly_set(m, "logging-format") {
            o.log_format = m
                .get_one::<LogFormat>("logging-format")
                .copied()
                .unwrap_or_default();
        }
    }
    if let Some(h) = s("hostname-override") {
        let h = h.trim().to_lowercase();
        if h.is_empty() {
            return Err("empty hostname-override is invalid".into());
        }
        o.hostname_override = Some(h);
    }
    if o.sync_period.is_zero() {
        return Err("syncPeriod (--iptables-sync-period) must be greater than 0".into());
    }
    if o.min_sync_period > o.sync_period {
        return Err(format!(
            "minSyncPeriod ({:?}) must be less than or equal to syncPeriod ({:?})",
            o.min_sync_period, o.sync_period
        ));
    }
    Ok(o)
}

/// Replaces the flag-derived values with the (defaulted) file's: upstream, the file wins.
fn apply_file(o: &mut ProxyOptions, f: &KubeProxyConfiguration, path: &str) -> Result<(), String> {
    let field = |name: &str| format!("config file {path:?}: field {name:?}");
    o.mode = parse_mode(&f.mode, &field("mode"))?;
    let (bit, all, sync, min) = match o.mode {
        ProxyMode::Nftables => (
            f.nftables.masquerade_bit,
            f.nftables.masquerade_all,
            f.nftables.sync_period,
            f.nftables.min_sync_period,
        ),
        ProxyMode::Iptables => (
            f.iptables.masquerade_bit,
            f.iptables.masquerade_all,
            f.iptables.sync_period,
            f.iptables.min_sync_period,
        ),
    };
    let section = if o.mode == ProxyMode::Nftables {
        "nftables"
    } else {
        "iptables"
    };
    o.masquerade_bit = match bit.unwrap_or_default() {
        b if (0..=31).contains(&b) => b as u32,
        b => {
            return Err(format!(
                "{}: {b} must be within [0, 31]",
                field(&format!("{section}.masqueradeBit"))
            ))
        }
    };
    o.masquerade_all = all;
    o.localhost_nodeports = f.iptables.localhost_node_ports.unwrap_or_default();
    o.sync_period = sync.unwrap_or_default().0;
    o.min_sync_period = min.unwrap_or_default().0;
    let cidrs: Vec<String> = if f.detect_local.cluster_cidrs.is_empty() {
        vec![f.cluster_cidr.clone()]
    } else {
        f.detect_local.cluster_cidrs.clone()
    };
    o.cluster_cidrs = parse_cidrs(&cidrs, &field("detectLocal.clusterCIDRs"))?;
    o.nodeport_addresses = f.node_port_addresses.clone().unwrap_or_default();
    validate_nodeport_addresses(&o.nodeport_addresses, &field("nodePortAddresses"))?;
    o.healthz_bind = parse_bind(&f.healthz_bind_address, &field("healthzBindAddress"))?;
    o.metrics_bind = parse_bind(&f.metrics_bind_address, &field("metricsBindAddress"))?;
    let bind = f.bind_address.as_str();
    o.bind_address = Some(
        bind.parse::<IpAddr>()
            .map_err(|_| format!("{}: {bind:?} is not an IP", field("bindAddress")))?,
    )
    .filter(|a| !a.is_unspecified());
    let cc = &f.client_connection;
    o.kubeconfig = Some(cc.kubeconfig.clone())
        .filter(|k| !k.is_empty())
        .map(PathBuf::from);
    o.qps = cc.qps.unwrap_or_default();
    o.burst = match cc.burst.unwrap_or_default() {
        b if b < 0 => {
            return Err(format!(
                "{}: {b} must not be negative",
                field("clientConnection.burst")
            ))
        }
        b => b as u32,
    };
    o.content_type = cc.content_type.clone();
    if !f.hostname_override.is_empty() {
        o.hostname_override = Some(f.hostname_override.to_lowercase());
    }
    if f.logging.format == "json" {
        o.log_format = LogFormat::Json;
    }
    if let Some(v) = f.logging.verbosity {
        o.verbosity = v;
    }
    Ok(())
}

/// `get_one::<bool>` with a false default.
trait FlagBool {
    fn get_flag_bool(&self, id: &str) -> bool;
}

impl FlagBool for ArgMatches {
    fn get_flag_bool(&self, id: &str) -> bool {
        self.get_one::<bool>(id).copied().unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use component_base::flags::try_parse;
    use std::ffi::OsString;

    fn parse(args: &[&str]) -> Result<ProxyOptions, String> {
        let argv: Vec<OsString> = std::iter::once("kube-proxy")
            .chain(args.iter().copied())
            .map(OsString::from)
            .collect();
        let parsed = try_parse(&table(), command(), argv)
            .map_err(|e| e.to_string())?
            .expect("not --version");
        resolve(&parsed.matches)
    }

    #[test]
    fn every_implemented_flag_is_an_upstream_flag() {
        assert!(
            table().not_upstream(&command()).is_empty(),
            "{:?}",
            table().not_upstream(&command())
        );
    }

    #[test]
    fn defaults_match_upstream() {
        let o = parse(&[]).unwrap();
        assert_eq!(
            o.mode,
            ProxyMode::Iptables,
            "an empty --proxy-mode on Linux"
        );
        assert_eq!(
            (o.sync_period, o.min_sync_period),
            (Duration::from_secs(30), Duration::from_secs(1))
        );
        assert_eq!(o.masquerade_bit, 14);
        assert_eq!(o.healthz_bind.unwrap().port(), 10256);
        assert_eq!(o.metrics_bind.unwrap().to_string(), "127.0.0.1:10249");
    }

    #[test]
    fn flags_act_unknown_errors_unimplemented_accepted() {
        let o = parse(&[
            "--proxy-mode=nftables",
            "--cluster-cidr=10.244.0.0/16,fd00:10::/64",
            "--masquerade-all",
            "--iptables-min-sync-period=5s",
            "--nodeport-addresses",
            "10.0.0.0/8",
            "--conntrack-max-per-core=0",
            "--hostname-override=Node-A",
        ])
        .unwrap();
        assert_eq!(o.cluster_cidrs.len(), 2);
        assert!(o.masquerade_all);
        assert_eq!(o.min_sync_period, Duration::from_secs(5));
        assert_eq!(o.nodeport_addresses, vec!["10.0.0.0/8"]);
        assert_eq!(o.hostname_override.as_deref(), Some("node-a"));
        let e = parse(&["--proxy-mdoe=nftables"]).unwrap_err();
        assert!(e.contains("did you mean --proxy-mode"), "{e}");
        assert!(parse(&["--proxy-mode=ipvs"]).unwrap_err().contains("ipvs"));
        assert!(parse(&["--cluster-cidr=10.0.0.0/99"]).is_err());
        assert!(parse(&["--iptables-min-sync-period=1m"])
            .unwrap_err()
            .contains("minSyncPeriod"));
    }

    #[test]
    fn config_file_wins_except_logging_and_hostname() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kp.yaml");
        std::fs::write(&path, "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nmode: nftables\n\
            clusterCIDR: 10.244.0.0/16\nnftables:\n  minSyncPeriod: 3s\nmetricsBindAddress: 127.0.0.1:20249\nlogging:\n  verbosity: 2\n").unwrap();
        let p = path.to_str().unwrap();
        let o = parse(&[
            "--config",
            p,
            "--masquerade-all",
            "--v=4",
            "--hostname-override=n1",
        ])
        .unwrap();
        assert!(
            !o.masquerade_all,
            "file wins over non-logging flags, as upstream"
        );
        assert_eq!(o.min_sync_period, Duration::from_secs(3));
        assert_eq!(o.sync_period, Duration::from_secs(30));
        assert_eq!(o.metrics_bind.unwrap().port(), 20249);
        assert_eq!(o.verbosity, 4);
        assert_eq!(o.hostname_override.as_deref(), Some("n1"));
        std::fs::write(&path, "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nbogus: 1\n").unwrap();
        let e = parse(&["--config", p]).unwrap_err();
        assert!(e.contains("bogus") && e.contains("kp.yaml"), "{e}");
    }
}
