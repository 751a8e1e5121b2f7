//! The command line: upstream's flag names (clap). Upstream flags ferrokube does not
//! implement are accepted with one warning (component-base's FlagTable); anything else is
//! an error with a suggestion.

use clap::{Arg, ArgAction, Command};
use component_base::flags::{bool_flag, FlagTable};
use std::path::PathBuf;

/// Upstream 1.35's flag table (`kubelet --help`).
pub const UPSTREAM_FLAGS: &str = include_str!("upstream_flags.txt");
/// Binary and user agent name.
pub const COMPONENT: &str = "kubelet";

/// The upstream flag table.
pub fn table() -> FlagTable {
    FlagTable::parse(COMPONENT, UPSTREAM_FLAGS)
}

fn value(id: &'static str, help: &'static str) -> Arg {
    Arg::new(id).long(id).action(ArgAction::Set).help(help)
}

fn path(id: &'static str, help: &'static str) -> Arg {
    value(id, help).value_parser(clap::value_parser!(PathBuf))
}

/// The clap command of the implemented flags (defaults live in [`super::options`], so that
/// "set on the command line" is distinguishable from "defaulted").
pub fn command() -> Command {
    Command::new(COMPONENT)
        .about("The kubelet is the primary node agent that runs on each node (ferrokube).")
        .arg(path("config", "The Kubelet will load its initial configuration from this file."))
        .arg(path("kubeconfig", "Path to a kubeconfig file, specifying how to connect to the API server."))
        .arg(path("bootstrap-kubeconfig", "Path to a kubeconfig file that will be used to get client certificate for kubelet. If the file specified by --kubeconfig does not exist, the bootstrap kubeconfig is used to request a client certificate from the API server; on success the kubeconfig is written, referencing the certificate and key in --cert-dir."))
        .arg(path("cert-dir", "The directory where the TLS certs are located (default <root-dir>/pki: /var/lib/kubelet/pki)."))
        .arg(bool_flag("rotate-certificates", false).help("Auto rotate the kubelet client certificates by requesting new certificates from the kube-apiserver when the certificate expiration approaches."))
        .arg(bool_flag("rotate-server-certificates", false).help("Auto-request and rotate the kubelet serving certificates by requesting new certificates from the kube-apiserver (serverTLSBootstrap)."))
        .arg(value("container-runtime-endpoint", "The endpoint of the remote runtime service (unix socket)."))
        .arg(value("node-ip", "IP address (or comma-separated dual-stack IP addresses) of the node."))
        .arg(value("node-labels", "Labels to add when registering the node in the cluster (key=value pairs, comma separated)."))
        .arg(value("provider-id", "Unique identifier for identifying the node in a machine database."))
        .arg(value("pod-infra-container-image", "The image whose network/ipc namespaces containers in each pod will use (the runtime's sandbox image wins)."))
        .arg(bool_flag("fail-swap-on", true).help("Makes the Kubelet fail to start if swap is enabled on the node."))
        .arg(bool_flag("fail-cgroupv1", false).help("Prevent the kubelet from starting on the host using cgroup v1."))
        .arg(value("cgroup-root", "Optional root cgroup to use for pods."))
        .arg(value("cgroup-driver", "Driver that the kubelet uses to manipulate cgroups on the host. Possible values: 'cgroupfs', 'systemd' (default \"cgroupfs\")."))
        .arg(bool_flag("cgroups-per-qos", true).help("Enable creation of QoS cgroup hierarchy."))
        .arg(path("root-dir", "Directory path for managing kubelet files (volume mounts, etc)."))
        .arg(value("hostname-override", "If non-empty, will use this string as identification instead of the actual hostname."))
        .arg(value("register-with-taints", "Register the node with the given list of taints (\"<key>=<value>:<effect>\", comma separated)."))
        .arg(bool_flag("register-node", true).help("Register the node with the apiserver."))
        .arg(value("cluster-dns", "Comma-separated list of DNS server IP addresses."))
        .arg(value("cluster-domain", "Domain for this cluster."))
        .arg(value("max-pods", "Number of Pods that can run on this Kubelet.").value_parser(clap::value_parser!(i32)))
        .arg(value("node-status-max-images", "The maximum number of images to report in Node.Status.Images (-1: no cap).").value_parser(clap::value_parser!(i32)))
        .arg(value("pod-cidr", "The CIDR to use for pod IP addresses (standalone mode)."))
        .arg(value("healthz-port", "The port of the localhost healthz endpoint (0 disables).").value_parser(clap::value_parser!(u16)))
        .arg(value("healthz-bind-address", "The IP address for the healthz server to serve on."))
        .arg(value("port", "The port for the Kubelet to serve on.").value_parser(clap::value_parser!(u16)))
        .arg(value("address", "The IP address for the Kubelet to serve on."))
        .arg(path("tls-cert-file", "File containing x509 Certificate used for serving HTTPS."))
        .arg(path("tls-private-key-file", "File containing x509 private key matching --tls-cert-file."))
        .arg(path("pod-manifest-path", "Path to the directory containing static pod files to run."))
        .arg(value("resolv-conf", "Resolver configuration file used as the basis for the container DNS resolution configuration."))
        .arg(value("kube-api-qps", "QPS to use while talking with kubernetes apiserver.").value_parser(clap::value_parser!(i32)))
        .arg(value("kube-api-burst", "Burst to use while talking with kubernetes apiserver.").value_parser(clap::value_parser!(i32)))
        .arg(value("node-status-update-frequency", "How often kubelet posts node status to master."))
        .arg(value("file-check-frequency", "Duration between checking config files for new data."))
        .arg(bool_flag("anonymous-auth", true).help("Enables anonymous requests to the Kubelet server."))
        .arg(bool_flag("authentication-token-webhook", false).help("Use the TokenReview API to determine authentication for bearer tokens."))
        .arg(value("client-ca-file", "Authenticate any request presenting a client certificate signed by one of the authorities in this bundle."))
        .arg(value("authorization-mode", "Authorization mode for Kubelet server (AlwaysAllow or Webhook)."))
        .arg(value("kube-reserved", "Resources reserved for kubernetes system components (e.g. cpu=200m,memory=500Mi)."))
        .arg(value("system-reserved", "Resources reserved for non-kubernetes components (e.g. cpu=200m,memory=500Mi)."))
        .arg(value("eviction-hard", "Hard eviction thresholds (e.g. memory.available<1Gi)."))
        .arg(value("eviction-soft", "Soft eviction thresholds (e.g. memory.available<1.5Gi); each needs a grace period."))
        .arg(value("eviction-soft-grace-period", "Grace periods of the soft eviction thresholds (e.g. memory.available=1m30s)."))
        .arg(value("eviction-minimum-reclaim", "Minimum reclaims once a threshold is met (e.g. imagefs.available=2Gi)."))
        .arg(value("eviction-pressure-transition-period", "How long the kubelet waits before leaving an eviction pressure condition."))
        .arg(value("eviction-max-pod-grace-period", "Maximum allowed grace period (in seconds) to use when terminating pods in response to a soft eviction threshold being met.").value_parser(clap::value_parser!(i32)))
        .arg(value("image-gc-high-threshold", "The percent of disk usage after which image garbage collection is always run.").value_parser(clap::value_parser!(i64)))
        .arg(value("image-gc-low-threshold", "The percent of disk usage before which image garbage collection is never run.").value_parser(clap::value_parser!(i64)))
        .arg(value("minimum-image-ttl-duration", "Minimum age for an unused image before it is garbage collected."))
        .arg(value("enforce-node-allocatable", "Levels of node allocatable enforcement (none, pods, system-reserved, kube-reserved)."))
        .arg(value("v", "number for the log level verbosity").short('v').value_parser(clap::value_parser!(u8)))
        .arg(value("logging-format", "Sets the log format (text or json)."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_parses_and_no_flag_is_invented() {
        let t = table();
        assert!(t.flags().len() > 140, "the whole upstream table");
        assert_eq!(t.get("register-with-taints").unwrap().kind, "[]v1.Taint");
        assert!(
            t.not_upstream(&command()).is_empty(),
            "{:?}",
            t.not_upstream(&command())
        );
    }

    #[test]
    fn unknown_flags_fail_with_a_suggestion_and_known_ones_are_accepted() {
        let argv = |a: &[&str]| {
            a.iter()
                .map(|s| s.into())
                .collect::<Vec<std::ffi::OsString>>()
        };
        let err = component_base::flags::try_parse(
            &table(),
            command(),
            argv(&["kubelet", "--node-lables=a=b"]),
        )
        .err()
        .expect("unknown flag")
        .to_string();
        assert!(err.contains("did you mean --node-labels"), "{err}");
        let ok = component_base::flags::try_parse(
            &table(),
            command(),
            argv(&[
                "kubelet",
                "--volume-stats-agg-period",
                "1m",
                "--node-ip=10.0.0.1",
            ]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(ok.ignored, vec!["volume-stats-agg-period"]);
        assert_eq!(ok.matches.get_one::<String>("node-ip").unwrap(), "10.0.0.1");
    }
}
