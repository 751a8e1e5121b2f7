//! Host ports a pod asks for and when two collide — the one rule the scheduler's NodePorts
//! plugin and the kubelet's admission (upstream's predicate admit handler) share.

use k8s_openapi::api::core::v1::Pod;

/// A host port a pod asks for: (protocol, hostIP, port).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    /// TCP, UDP or SCTP.
    pub protocol: String,
    /// The host IP; `0.0.0.0` means every address.
    pub ip: String,
    /// The host port number.
    pub port: i32,
}

impl HostPort {
    /// Whether two host ports collide: same protocol and port, and the same IP or a wildcard.
    pub fn conflicts(&self, o: &HostPort) -> bool {
        self.port == o.port
            && self.protocol == o.protocol
            && (self.ip == o.ip || self.ip == "0.0.0.0" || o.ip == "0.0.0.0")
    }
}

/// The host ports of every container of `pod`, init containers included (an empty hostIP
/// is `0.0.0.0`, an empty protocol `TCP`).
pub fn host_ports(pod: &Pod) -> Vec<HostPort> {
    let Some(spec) = pod.spec.as_ref() else {
        return Vec::new();
    };
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let port = p.host_port.filter(|p| *p > 0)?;
            Some(HostPort {
                protocol: p
                    .protocol
                    .clone()
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| "TCP".into()),
                ip: p
                    .host_ip
                    .clone()
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| "0.0.0.0".into()),
                port,
            })
        })
        .collect()
}

/// Whether any host port of `pod` collides with one of `used`.
pub fn conflicts_with(pod: &[HostPort], used: &[HostPort]) -> bool {
    pod.iter()
        .any(|want| used.iter().any(|u| want.conflicts(u)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(ports: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "spec": {"containers": [{"name": "c", "ports": ports}],
                "initContainers": [{"name": "i", "ports": [{"containerPort": 1, "hostPort": 9}]}]}
        }))
        .unwrap()
    }

    #[test]
    fn host_ports_default_protocol_and_ip() {
        let p = pod(serde_json::json!([
            {"containerPort": 80, "hostPort": 8080},
            {"containerPort": 53, "hostPort": 53, "protocol": "UDP", "hostIP": "10.0.0.1"},
            {"containerPort": 90}
        ]));
        let hp = |protocol: &str, ip: &str, port| HostPort {
            protocol: protocol.into(),
            ip: ip.into(),
            port,
        };
        assert_eq!(
            host_ports(&p),
            vec![
                hp("TCP", "0.0.0.0", 8080),
                hp("UDP", "10.0.0.1", 53),
                hp("TCP", "0.0.0.0", 9)
            ]
        );
    }

    #[test]
    fn conflicts_need_port_protocol_and_overlapping_ips() {
        let a = |protocol: &str, ip: &str| HostPort {
            protocol: protocol.into(),
            ip: ip.into(),
            port: 80,
        };
        assert!(a("TCP", "0.0.0.0").conflicts(&a("TCP", "10.0.0.1")));
        assert!(a("TCP", "10.0.0.1").conflicts(&a("TCP", "10.0.0.1")));
        assert!(!a("TCP", "10.0.0.1").conflicts(&a("TCP", "10.0.0.2")));
        assert!(!a("TCP", "0.0.0.0").conflicts(&a("UDP", "0.0.0.0")));
        assert!(conflicts_with(
            &[a("TCP", "0.0.0.0")],
            &[a("TCP", "10.0.0.2")]
        ));
        assert!(!conflicts_with(&[], &[a("TCP", "10.0.0.2")]));
    }
}
