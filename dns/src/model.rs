//! What DNS needs of Services and EndpointSlices, read out of the API objects once per
//! change so that record synthesis is a pure function of plain data.

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use std::net::IpAddr;

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// A Service's namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceKey {
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
}

impl ServiceKey {
    /// A key from its parts.
    pub fn new(namespace: &str, name: &str) -> Self {
        ServiceKey {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl std::fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// How a Service is reached, which decides its records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceKind {
    /// A virtual IP per family (`spec.clusterIPs`): A/AAAA name the ClusterIPs.
    ClusterIp(Vec<IpAddr>),
    /// `clusterIP: None`: A/AAAA name the ready endpoints.
    Headless,
    /// `type: ExternalName`: a CNAME to `spec.externalName`.
    ExternalName(String),
}

/// One port of a Service or an EndpointSlice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortInfo {
    /// The port's name (`""` when unnamed).
    pub name: String,
    /// The protocol, lowercase (`tcp`, `udp`, `sctp`), as SRV names spell it.
    pub protocol: String,
    /// The port number.
    pub port: u16,
}

/// What DNS needs of a Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceInfo {
    /// Namespace and name.
    pub key: ServiceKey,
    /// ClusterIP, headless or ExternalName.
    pub kind: ServiceKind,
    /// `spec.ports`.
    pub ports: Vec<PortInfo>,
}

/// One endpoint of an EndpointSlice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointInfo {
    /// Its addresses (one for IP slices).
    pub addresses: Vec<IpAddr>,
    /// `hostname` (set for pods with `spec.hostname` and a matching `subdomain`).
    pub hostname: Option<String>,
    /// `conditions.ready`, unset counting as ready (as the API defines it).
    pub ready: bool,
}

/// What DNS needs of an EndpointSlice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SliceInfo {
    /// The slice's own name (several slices may serve one Service).
    pub name: String,
    /// The Service it belongs to (its `kubernetes.io/service-name` label).
    pub service: ServiceKey,
    /// The endpoints.
    pub endpoints: Vec<EndpointInfo>,
    /// The ports, named as the Service's ports are.
    pub ports: Vec<PortInfo>,
}

fn protocol(p: Option<&String>) -> String {
    p.map(|p| p.to_ascii_lowercase())
        .unwrap_or_else(|| "tcp".into())
}

/// Reads a Service; `None` when it has no name or namespace, or nothing DNS could serve
/// (a ClusterIP Service whose IPs are not yet allocated still gets SRV-less nothing).
pub fn service_info(svc: &Service) -> Option<ServiceInfo> {
    let namespace = svc.metadata.namespace.as_deref()?;
    let name = svc.metadata.name.as_deref()?;
    let spec = svc.spec.as_ref()?;
    let kind = if spec.type_.as_deref() == Some("ExternalName") {
        ServiceKind::ExternalName(spec.external_name.clone().unwrap_or_default())
    } else if spec.cluster_ip.as_deref() == Some("None") {
        ServiceKind::Headless
    } else {
        let ips: Vec<IpAddr> = match &spec.cluster_ips {
            Some(ips) if !ips.is_empty() => ips.iter().filter_map(|ip| ip.parse().ok()).collect(),
            _ => spec
                .cluster_ip
                .iter()
                .filter_map(|ip| ip.parse().ok())
                .collect(),
        };
        ServiceKind::ClusterIp(ips)
    };
    let ports = spec
        .ports
        .iter()
        .flatten()
        .filter_map(|p| {
            Some(PortInfo {
                name: p.name.clone().unwrap_or_default(),
                protocol: protocol(p.protocol.as_ref()),
                port: u16::try_from(p.port).ok()?,
            })
        })
        .collect();
    Some(ServiceInfo {
        key: ServiceKey::new(namespace, name),
        kind,
        ports,
    })
}

/// Reads an EndpointSlice; `None` without a Service label, or for FQDN slices (which DNS
/// does not serve).
pub fn slice_info(slice: &EndpointSlice) -> Option<SliceInfo> {
    let namespace = slice.metadata.namespace.as_deref()?;
    let name = slice.metadata.name.as_deref()?;
    let service = slice.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?;
    if slice.address_type == "FQDN" {
        return None;
    }
    let endpoints = slice
        .endpoints
        .iter()
        .map(|ep| EndpointInfo {
            addresses: ep.addresses.iter().filter_map(|a| a.parse().ok()).collect(),
            hostname: ep.hostname.clone().filter(|h| !h.is_empty()),
            ready: ep.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true),
        })
        .collect();
    let ports = slice
        .ports
        .iter()
        .flatten()
        .filter_map(|p| {
            Some(PortInfo {
                name: p.name.clone().unwrap_or_default(),
                protocol: protocol(p.protocol.as_ref()),
                port: u16::try_from(p.port?).ok()?,
            })
        })
        .collect();
    Some(SliceInfo {
        name: name.into(),
        service: ServiceKey::new(namespace, service),
        endpoints,
        ports,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_service_kinds() {
        let svc: Service = serde_json::from_value(json!({
            "metadata": {"namespace": "default", "name": "web"},
            "spec": {"clusterIP": "10.96.0.20", "clusterIPs": ["10.96.0.20", "fd00::20"],
                     "ports": [{"name": "http", "port": 80}, {"port": 53, "protocol": "UDP"}]}
        }))
        .unwrap();
        let info = service_info(&svc).unwrap();
        assert_eq!(
            info.kind,
            ServiceKind::ClusterIp(vec![
                "10.96.0.20".parse().unwrap(),
                "fd00::20".parse().unwrap()
            ])
        );
        assert_eq!(info.ports[0].protocol, "tcp");
        assert_eq!(info.ports[1].protocol, "udp");
        let headless: Service = serde_json::from_value(json!({
            "metadata": {"namespace": "default", "name": "db"}, "spec": {"clusterIP": "None"}
        }))
        .unwrap();
        assert_eq!(service_info(&headless).unwrap().kind, ServiceKind::Headless);
        let external: Service = serde_json::from_value(json!({
            "metadata": {"namespace": "default", "name": "ext"},
            "spec": {"type": "ExternalName", "externalName": "example.com"}
        }))
        .unwrap();
        assert_eq!(
            service_info(&external).unwrap().kind,
            ServiceKind::ExternalName("example.com".into())
        );
    }

    #[test]
    fn reads_slices_with_readiness_and_skips_unlabelled() {
        let slice: EndpointSlice = serde_json::from_value(json!({
            "metadata": {"namespace": "default", "name": "db-abc",
                         "labels": {"kubernetes.io/service-name": "db"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.1.0.1"], "hostname": "db-0"},
                          {"addresses": ["10.1.0.2"], "conditions": {"ready": false}}],
            "ports": [{"name": "sql", "port": 5432}]
        }))
        .unwrap();
        let info = slice_info(&slice).unwrap();
        assert_eq!(info.service, ServiceKey::new("default", "db"));
        assert!(info.endpoints[0].ready);
        assert!(!info.endpoints[1].ready);
        assert_eq!(info.endpoints[0].hostname.as_deref(), Some("db-0"));
        let mut unlabelled = slice.clone();
        unlabelled.metadata.labels = None;
        assert!(slice_info(&unlabelled).is_none());
    }
}
