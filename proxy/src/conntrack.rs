//! Forgetting stale UDP flows with the `conntrack` CLI once new rules are in place, so a
//! client does not keep talking to a gone endpoint (or to a blackhole cached while the
//! service had none).

use crate::model::tracker::StaleUdp;
use crate::model::IpFamily;
use std::process::Command;

/// The `conntrack -D` arguments for one stale flow set.
pub fn delete_args(stale: &StaleUdp, family: IpFamily) -> Vec<String> {
    let fam = match family {
        IpFamily::V4 => "ipv4",
        IpFamily::V6 => "ipv6",
    };
    let mut args: Vec<String> = vec![
        "-D".into(),
        "-f".into(),
        fam.into(),
        "-p".into(),
        "udp".into(),
    ];
    let more: Vec<String> = match stale {
        StaleUdp::Endpoint {
            service_ip,
            endpoint,
        } => vec![
            "--orig-dst".into(),
            service_ip.to_string(),
            "--dst-nat".into(),
            endpoint.to_string(),
        ],
        StaleUdp::NodePortEndpoint {
            node_port,
            endpoint,
        } => vec![
            "--orig-port-dst".into(),
            node_port.to_string(),
            "--dst-nat".into(),
            endpoint.to_string(),
        ],
        StaleUdp::Service { service_ip, port } => vec![
            "--orig-dst".into(),
            service_ip.to_string(),
            "--orig-port-dst".into(),
            port.to_string(),
        ],
        StaleUdp::NodePort { node_port } => vec!["--orig-port-dst".into(), node_port.to_string()],
    };
    args.extend(more);
    args
}

/// Runs the deletions (optionally inside network namespace `netns`); returns how many
/// flows conntrack reported deleted. "0 flow entries" (exit status 1) is not an error.
pub fn clean(stale: &[StaleUdp], family: IpFamily, netns: Option<&str>) -> u64 {
    let mut deleted = 0;
    for s in stale {
        let args = delete_args(s, family);
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "conntrack"]);
                c
            }
            None => Command::new("conntrack"),
        };
        match cmd.args(&args).output() {
            Ok(out) => deleted += parse_deleted(&String::from_utf8_lossy(&out.stderr)),
            Err(e) => tracing::warn!(error = %e, "Cannot run conntrack; stale UDP flows remain"),
        }
    }
    deleted
}

/// Reads conntrack's "N flow entries have been deleted." summary.
pub fn parse_deleted(stderr: &str) -> u64 {
    stderr
        .lines()
        .find(|l| l.contains("flow entries have been deleted"))
        .and_then(|l| l.split_whitespace().find_map(|w| w.parse().ok()))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_conntrack_arguments() {
        let s = StaleUdp::Endpoint {
            service_ip: "10.96.0.10".parse().unwrap(),
            endpoint: "10.244.1.5".parse().unwrap(),
        };
        assert_eq!(
            delete_args(&s, IpFamily::V4).join(" "),
            "-D -f ipv4 -p udp --orig-dst 10.96.0.10 --dst-nat 10.244.1.5"
        );
        let s = StaleUdp::NodePort { node_port: 30053 };
        assert_eq!(
            delete_args(&s, IpFamily::V6).join(" "),
            "-D -f ipv6 -p udp --orig-port-dst 30053"
        );
        assert_eq!(
            parse_deleted(
                "conntrack v1.4.7 (conntrack-tools): 3 flow entries have been deleted.\n"
            ),
            3
        );
        assert_eq!(
            parse_deleted(
                "conntrack v1.4.7 (conntrack-tools): 0 flow entries have been deleted.\n"
            ),
            0
        );
    }
}
