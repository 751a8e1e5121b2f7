//! Command-line flags and their validation. Every invalid value is reported naming its
//! flag; nothing here panics.

use crate::model::ServiceKey;
use crate::names;
use clap::Parser;
use component_base::duration::GoDuration;
use component_base::logging::LogFormat;
use hickory_proto::rr::Name;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// ferrokube-dns flags.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "ferrokube-dns",
    about = "The cluster DNS server: Kubernetes DNS-Based Service Discovery for the cluster zones (as CoreDNS's kubernetes plugin), other names forwarded to the resolv.conf upstreams with a cache.",
    disable_version_flag = true,
    args_override_self = true
)]
pub struct Options {
    /// Print the version and exit.
    #[arg(long)]
    pub version: bool,
    /// Kubeconfig to reach the apiserver; empty: the in-cluster service account.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// The apiserver URL, overriding the kubeconfig's.
    #[arg(long)]
    pub master: Option<String>,
    /// Client-side requests per second to the apiserver.
    #[arg(long, default_value_t = 50.0)]
    pub kube_api_qps: f32,
    /// Client-side burst to the apiserver.
    #[arg(long, default_value_t = 100)]
    pub kube_api_burst: u32,
    /// The address DNS is served on (UDP and TCP).
    #[arg(long, default_value = "0.0.0.0")]
    pub dns_bind_address: IpAddr,
    /// The DNS port (UDP and TCP); 0 picks a free one.
    #[arg(long, default_value_t = 53)]
    pub dns_port: u16,
    /// Cluster domain(s) served authoritatively; repeat or comma-separate for several.
    #[arg(long, default_value = "cluster.local", value_delimiter = ',')]
    pub cluster_domain: Vec<String>,
    /// The resolv.conf naming the upstream resolvers for all other names; empty disables
    /// forwarding (SERVFAIL).
    #[arg(long, default_value = "/etc/resolv.conf")]
    pub resolv_conf: String,
    /// TTL of cluster records and SOA minimum, seconds (0-3600; kubeadm's Corefile: 30).
    #[arg(long, default_value_t = 30)]
    pub ttl: u32,
    /// Maximum seconds forwarded answers are cached (0 disables the cache).
    #[arg(long, default_value_t = 30)]
    pub cache_ttl: u32,
    /// Maximum number of cached answers.
    #[arg(long, default_value_t = 9984)]
    pub cache_size: usize,
    /// How long to wait for one upstream (Go duration, e.g. 2s).
    #[arg(long, default_value = "2s")]
    pub forward_timeout: GoDuration,
    /// The cluster DNS Service (namespace/name); its ClusterIPs answer `ns.dns.<zone>`.
    #[arg(long, default_value = "kube-system/kube-dns")]
    pub dns_service: String,
    /// Stop with an error when a forwarding loop is detected (CoreDNS's loop plugin).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub loop_detection: bool,
    /// The address of the HTTP endpoints.
    #[arg(long, default_value = "0.0.0.0")]
    pub http_bind_address: IpAddr,
    /// Port of `/health` (0 disables).
    #[arg(long, default_value_t = 8080)]
    pub health_port: u16,
    /// Port of `/ready` (0 disables).
    #[arg(long, default_value_t = 8181)]
    pub ready_port: u16,
    /// Port of `/metrics` (0 disables).
    #[arg(long, default_value_t = 9153)]
    pub metrics_port: u16,
    /// UDP receive tasks (0: one per runtime worker).
    #[arg(long, default_value_t = 0)]
    pub udp_workers: usize,
    /// Runtime worker threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    pub workers: usize,
    /// Test only: serve the Services and EndpointSlices of this JSON List instead of
    /// watching an apiserver.
    #[arg(long, hide = true)]
    pub static_objects: Option<String>,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub logging_format: LogFormat,
    /// Log verbosity (klog's -v).
    #[arg(short = 'v', long = "v", default_value_t = 0)]
    pub verbosity: u8,
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// The raw options (client, logging).
    pub options: Options,
    /// The cluster zones.
    pub zones: Vec<Name>,
    /// The DNS listen address.
    pub dns_addr: SocketAddr,
    /// Upstream resolvers.
    pub upstreams: Vec<SocketAddr>,
    /// Per-upstream timeout.
    pub forward_timeout: Duration,
    /// The DNS Service.
    pub dns_service: ServiceKey,
}

/// Checks the options; errors name the flag.
pub fn validate(options: Options) -> Result<Config, String> {
    let mut zones = Vec::new();
    for domain in &options.cluster_domain {
        let domain = domain.trim().trim_end_matches('.');
        let zone = names::fqdn(domain)
            .filter(|z| !domain.is_empty() && z.num_labels() > 0)
            .ok_or_else(|| format!("invalid --cluster-domain {domain:?}: not a domain name"))?;
        if !zones.contains(&zone) {
            zones.push(zone);
        }
    }
    if zones.is_empty() {
        return Err("invalid --cluster-domain: at least one domain is required".into());
    }
    if options.ttl > 3600 {
        return Err(format!(
            "invalid --ttl {}: must be between 0 and 3600 seconds",
            options.ttl
        ));
    }
    if options.forward_timeout.0.is_zero() {
        return Err("invalid --forward-timeout 0: must be positive".into());
    }
    let upstreams = if options.resolv_conf.is_empty() {
        Vec::new()
    } else {
        crate::resolv_conf::read(&options.resolv_conf)
            .map_err(|e| format!("invalid --resolv-conf: {e}"))?
    };
    let dns_service = match options.dns_service.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            ServiceKey::new(ns, name)
        }
        _ => {
            return Err(format!(
                "invalid --dns-service {:?}: want namespace/name",
                options.dns_service
            ))
        }
    };
    if !(options.kube_api_qps.is_finite()) {
        return Err("invalid --kube-api-qps: not a number".into());
    }
    Ok(Config {
        dns_addr: SocketAddr::new(options.dns_bind_address, options.dns_port),
        forward_timeout: options.forward_timeout.0,
        zones,
        upstreams,
        dns_service,
        options,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, String> {
        let mut argv = vec!["ferrokube-dns", "--resolv-conf", ""];
        argv.extend_from_slice(args);
        let options = Options::try_parse_from(argv).map_err(|e| e.to_string())?;
        validate(options)
    }

    #[test]
    fn defaults_match_kubeadm_coredns() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.zones, vec![names::fqdn("cluster.local").unwrap()]);
        assert_eq!(c.dns_addr, "0.0.0.0:53".parse().unwrap());
        assert_eq!(c.options.ttl, 30);
        assert_eq!(c.options.health_port, 8080);
        assert_eq!(c.options.ready_port, 8181);
        assert_eq!(c.options.metrics_port, 9153);
        assert_eq!(c.dns_service, ServiceKey::new("kube-system", "kube-dns"));
    }

    #[test]
    fn several_cluster_domains() {
        let c = parse(&[
            "--cluster-domain",
            "cluster.local,example.internal.",
            "--cluster-domain=x.y",
        ])
        .unwrap();
        assert_eq!(c.zones.len(), 3);
    }

    #[test]
    fn bad_values_name_their_flag() {
        for (args, flag) in [
            (vec!["--ttl", "99999"], "--ttl"),
            (vec!["--cluster-domain", ""], "--cluster-domain"),
            (vec!["--cluster-domain", "bad..name"], "--cluster-domain"),
            (vec!["--dns-service", "nope"], "--dns-service"),
            (vec!["--dns-port", "70000"], "--dns-port"),
            (
                vec!["--dns-bind-address", "localhost"],
                "--dns-bind-address",
            ),
            (vec!["--forward-timeout", "soon"], "--forward-timeout"),
        ] {
            let err = parse(&args).unwrap_err();
            assert!(err.contains(flag), "{args:?}: {err}");
        }
        let mut argv = vec!["ferrokube-dns", "--resolv-conf", "/nonexistent/resolv.conf"];
        argv.truncate(3);
        let err = validate(Options::try_parse_from(argv).unwrap()).unwrap_err();
        assert!(err.contains("--resolv-conf"), "{err}");
    }
}
