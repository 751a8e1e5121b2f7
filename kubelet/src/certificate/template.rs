//! What the kubelet asks for: the subject, names, usages and signer of its client and
//! serving certificates (upstream's `pkg/kubelet/certificate`), the PKCS#10 request built
//! from them, and the bootstrap request's digested name.

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::NodeAddress;
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, PublicKeyData, SanType};
use sha2::Digest;
use std::collections::BTreeSet;
use std::net::IpAddr;

/// The signer of the kubelet's client certificate.
pub const CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";
/// The signer of the kubelet's serving certificate.
pub const SERVING_SIGNER: &str = "kubernetes.io/kubelet-serving";
/// The group every node certificate names as its organization.
pub const NODES_GROUP: &str = "system:nodes";

/// Which of the kubelet's two certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertificateKind {
    /// The identity the kubelet talks to the apiserver with.
    Client,
    /// The certificate of the kubelet API on port 10250.
    Serving,
}

impl CertificateKind {
    /// The CSR's `spec.signerName`.
    pub fn signer_name(self) -> &'static str {
        match self {
            CertificateKind::Client => CLIENT_SIGNER,
            CertificateKind::Serving => SERVING_SIGNER,
        }
    }

    /// The file name prefix in the cert dir (`kubelet-client-current.pem`, ...).
    pub fn store_prefix(self) -> &'static str {
        match self {
            CertificateKind::Client => "kubelet-client",
            CertificateKind::Serving => "kubelet-server",
        }
    }

    /// The CSR's `spec.usages`: key encipherment only for RSA keys (the kubelet makes
    /// ECDSA keys, so never in practice), as client-go's `DefaultKubelet*GetUsages`.
    pub fn usages(self, rsa_key: bool) -> Vec<&'static str> {
        let mut usages = vec!["digital signature"];
        if rsa_key {
            usages.push("key encipherment");
        }
        usages.push(match self {
            CertificateKind::Client => "client auth",
            CertificateKind::Serving => "server auth",
        });
        usages
    }
}

/// The subject and names a certificate request carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// `system:node:<nodeName>`.
    pub common_name: String,
    /// `system:nodes`.
    pub organization: Vec<String>,
    /// DNS subject alternative names (serving only), sorted.
    pub dns_names: Vec<String>,
    /// IP subject alternative names (serving only), sorted.
    pub ips: Vec<IpAddr>,
}

/// The node's user name, `system:node:<nodeName>`.
pub fn node_user(node_name: &str) -> String {
    format!("system:node:{node_name}")
}

/// The client certificate's request: the node's user in the nodes group, no names.
pub fn client_template(node_name: &str) -> Template {
    Template {
        common_name: node_user(node_name),
        organization: vec![NODES_GROUP.into()],
        dns_names: Vec::new(),
        ips: Vec::new(),
    }
}

/// The serving certificate's request for a node with `addresses`: Hostname and DNS
/// addresses as DNS names (a Hostname that parses as an IP as an IP), Internal/External
/// IPs as IPs. `None` while the node has no IP address (upstream requires one unless the
/// deprecated AllowDNSOnlyNodeCSR gate is on).
pub fn serving_template(node_name: &str, addresses: &[NodeAddress]) -> Option<Template> {
    let mut dns = BTreeSet::new();
    let mut ips = BTreeSet::new();
    for a in addresses.iter().filter(|a| !a.address.is_empty()) {
        let ip = a.address.parse::<IpAddr>().ok();
        match (a.type_.as_str(), ip) {
            ("Hostname", Some(ip)) | ("InternalIP" | "ExternalIP", Some(ip)) => {
                ips.insert(ip);
            }
            ("Hostname" | "InternalDNS" | "ExternalDNS", _) => {
                dns.insert(a.address.clone());
            }
            _ => {}
        }
    }
    if ips.is_empty() {
        return None;
    }
    let mut ips: Vec<IpAddr> = ips.into_iter().collect();
    // Sorted by their text, as upstream sorts them.
    ips.sort_by_key(|ip| ip.to_string());
    Some(Template {
        common_name: node_user(node_name),
        organization: vec![NODES_GROUP.into()],
        dns_names: dns.into_iter().collect(),
        ips,
    })
}

impl Template {
    /// The PEM `CERTIFICATE REQUEST` for this template, signed by `key`: subject and SANs
    /// only (usages travel in the CSR object, not in the request).
    pub fn csr_pem(&self, key: &KeyPair) -> Result<String> {
        let mut params = CertificateParams::default();
        let mut subject = DistinguishedName::new();
        for o in &self.organization {
            subject.push(DnType::OrganizationName, o.as_str());
        }
        subject.push(DnType::CommonName, self.common_name.as_str());
        params.distinguished_name = subject;
        params.subject_alt_names = self
            .dns_names
            .iter()
            .map(|d| {
                d.as_str()
                    .try_into()
                    .map(SanType::DnsName)
                    .with_context(|| format!("invalid DNS name {d:?}"))
            })
            .chain(self.ips.iter().map(|ip| Ok(SanType::IpAddress(*ip))))
            .collect::<Result<_>>()?;
        params
            .serialize_request(key)
            .context("sign the certificate request")?
            .pem()
            .context("encode the certificate request")
    }

    /// The name of the bootstrap CSR: `node-csr-` and a SHA-512/256 digest of the public
    /// key, subject and usages, so that a kubelet restarted with the same key finds the
    /// request it already made instead of making another (upstream's `digestedName`).
    pub fn bootstrap_csr_name(&self, key: &impl PublicKeyData, usages: &[&str]) -> String {
        use base64::Engine;
        let encode = |d: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d);
        let mut hash = sha2::Sha512_256::new();
        let mut write = |d: &[u8]| {
            hash.update(encode(d).as_bytes());
            hash.update(b"|");
        };
        write(&key.subject_public_key_info());
        write(self.common_name.as_bytes());
        for o in &self.organization {
            write(o.as_bytes());
        }
        for u in usages {
            write(u.as_bytes());
        }
        format!("node-csr-{}", encode(&hash.finalize()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(type_: &str, address: &str) -> NodeAddress {
        NodeAddress {
            type_: type_.into(),
            address: address.into(),
        }
    }

    #[test]
    fn usages_add_key_encipherment_only_for_rsa() {
        assert_eq!(
            CertificateKind::Client.usages(false),
            ["digital signature", "client auth"]
        );
        assert_eq!(
            CertificateKind::Client.usages(true),
            ["digital signature", "key encipherment", "client auth"]
        );
        assert_eq!(
            CertificateKind::Serving.usages(false),
            ["digital signature", "server auth"]
        );
        assert_eq!(CertificateKind::Serving.signer_name(), SERVING_SIGNER);
        assert_eq!(CertificateKind::Client.store_prefix(), "kubelet-client");
    }

    #[test]
    fn serving_names_come_from_the_node_addresses() {
        let t = serving_template(
            "n1",
            &[
                addr("InternalIP", "10.0.0.2"),
                addr("Hostname", "n1.example"),
                addr("ExternalIP", "1.2.3.4"),
                addr("InternalIP", "10.0.0.2"),
                addr("Hostname", "10.0.0.9"),
                addr("InternalDNS", "n1.internal"),
                addr("ExternalIP", "not-an-ip"),
                addr("InternalIP", ""),
            ],
        )
        .unwrap();
        assert_eq!(t.common_name, "system:node:n1");
        assert_eq!(t.organization, ["system:nodes"]);
        assert_eq!(t.dns_names, ["n1.example", "n1.internal"]);
        let ips: Vec<String> = t.ips.iter().map(|i| i.to_string()).collect();
        assert_eq!(ips, ["1.2.3.4", "10.0.0.2", "10.0.0.9"]);
        assert!(
            serving_template("n1", &[addr("Hostname", "n1")]).is_none(),
            "no IP yet: no request"
        );
    }

    #[test]
    fn csr_carries_subject_and_names() {
        let key = KeyPair::generate().unwrap();
        let t = serving_template(
            "n1",
            &[addr("InternalIP", "10.0.0.2"), addr("Hostname", "n1")],
        )
        .unwrap();
        let pem = t.csr_pem(&key).unwrap();
        let der = rustls_pki_types::pem::PemObject::from_pem_slice(pem.as_bytes())
            .map(|d: rustls_pki_types::CertificateSigningRequestDer| d.as_ref().to_vec())
            .unwrap();
        let (_, csr) =
            <x509_parser::certification_request::X509CertificationRequest as x509_parser::prelude::FromDer<_>>::from_der(&der)
                .unwrap();
        let subject = &csr.certification_request_info.subject;
        assert_eq!(
            subject.iter_common_name().next().unwrap().as_str().unwrap(),
            "system:node:n1"
        );
        assert_eq!(
            subject
                .iter_organization()
                .next()
                .unwrap()
                .as_str()
                .unwrap(),
            "system:nodes"
        );
        let sans = format!(
            "{:?}",
            csr.requested_extensions().unwrap().collect::<Vec<_>>()
        );
        assert!(
            sans.contains("DNSName(\"n1\")") && sans.contains("IPAddress([10, 0, 0, 2])"),
            "{sans}"
        );
        let client = client_template("n1").csr_pem(&key).unwrap();
        let der = rustls_pki_types::pem::PemObject::from_pem_slice(client.as_bytes())
            .map(|d: rustls_pki_types::CertificateSigningRequestDer| d.as_ref().to_vec())
            .unwrap();
        let (_, csr) =
            <x509_parser::certification_request::X509CertificationRequest as x509_parser::prelude::FromDer<_>>::from_der(&der)
                .unwrap();
        assert!(
            csr.requested_extensions()
                .is_none_or(|mut e| e.next().is_none()),
            "a client request has no extensions (the node-client approver refuses names)"
        );
    }

    #[test]
    fn bootstrap_name_is_stable_for_a_key_and_differs_between_keys() {
        let (a, b) = (KeyPair::generate().unwrap(), KeyPair::generate().unwrap());
        let t = client_template("n1");
        let usages = CertificateKind::Client.usages(false);
        let name = t.bootstrap_csr_name(&a, &usages);
        assert!(name.starts_with("node-csr-"), "{name}");
        // 32 bytes of digest in unpadded base64url.
        assert_eq!(name.len(), "node-csr-".len() + 43);
        assert_eq!(name, t.bootstrap_csr_name(&a, &usages));
        assert_ne!(name, t.bootstrap_csr_name(&b, &usages));
        assert_ne!(name, client_template("n2").bootstrap_csr_name(&a, &usages));
    }
}
