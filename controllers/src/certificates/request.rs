//! The PKCS#10 request inside a CertificateSigningRequest, parsed once, and upstream's
//! per-signer checks of it (`pkg/apis/certificates` helpers).

use std::collections::BTreeSet;
use std::net::IpAddr;

use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

/// The PEM block type upstream accepts in `spec.request`.
pub const PEM_TYPE: &str = "CERTIFICATE REQUEST";

/// What the signer and the approver need from a certificate request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateRequest {
    /// The DER of the whole request (re-parsed when signing).
    pub der: Vec<u8>,
    /// Subject CN (the last one, as Go's `pkix.Name`), empty when absent.
    pub common_name: String,
    /// Subject O values, in order.
    pub organizations: Vec<String>,
    /// DNS SANs.
    pub dns_names: Vec<String>,
    /// IP SANs.
    pub ip_addresses: Vec<IpAddr>,
    /// E-mail SANs.
    pub email_addresses: Vec<String>,
    /// URI SANs.
    pub uris: Vec<String>,
}

/// Parses `spec.request` (PEM) as upstream's `ParseCSR`: the first PEM block must be a
/// `CERTIFICATE REQUEST`.
pub fn parse(pem: &[u8]) -> Result<CertificateRequest, String> {
    let block = match x509_parser::pem::parse_x509_pem(pem) {
        Ok((_, block)) if block.label == PEM_TYPE => block,
        _ => return Err(format!("PEM block type must be {PEM_TYPE}")),
    };
    let (_, csr) = X509CertificationRequest::from_der(&block.contents)
        .map_err(|e| format!("x509: malformed certificate request: {e}"))?;
    let subject = &csr.certification_request_info.subject;
    let text = |a: &x509_parser::x509::AttributeTypeAndValue| {
        a.as_str().map(str::to_string).unwrap_or_default()
    };
    let mut req = CertificateRequest {
        der: block.contents.clone(),
        common_name: subject
            .iter_common_name()
            .last()
            .map(text)
            .unwrap_or_default(),
        organizations: subject.iter_organization().map(text).collect(),
        dns_names: Vec::new(),
        ip_addresses: Vec::new(),
        email_addresses: Vec::new(),
        uris: Vec::new(),
    };
    for ext in csr.requested_extensions().into_iter().flatten() {
        let ParsedExtension::SubjectAlternativeName(san) = ext else {
            continue;
        };
        for name in &san.general_names {
            match name {
                GeneralName::DNSName(s) => req.dns_names.push(s.to_string()),
                GeneralName::RFC822Name(s) => req.email_addresses.push(s.to_string()),
                GeneralName::URI(s) => req.uris.push(s.to_string()),
                GeneralName::IPAddress(b) => match b.len() {
                    4 => req
                        .ip_addresses
                        .push(IpAddr::from(<[u8; 4]>::try_from(*b).unwrap_or_default())),
                    16 => req
                        .ip_addresses
                        .push(IpAddr::from(<[u8; 16]>::try_from(*b).unwrap_or_default())),
                    n => return Err(format!("x509: cannot parse IP address of length {n}")),
                },
                _ => {}
            }
        }
    }
    Ok(req)
}

/// Verifies the request's self-signature (proof of possession of the key).
pub fn verify_signature(der: &[u8]) -> Result<(), String> {
    let (_, csr) = X509CertificationRequest::from_der(der)
        .map_err(|e| format!("unable to parse certificate request: {e}"))?;
    csr.verify_signature()
        .map_err(|e| format!("unable to verify certificate request signature: {e}"))
}

fn usage_set(usages: &[String]) -> BTreeSet<&str> {
    usages.iter().map(String::as_str).collect()
}

fn set(items: &[&'static str]) -> BTreeSet<&'static str> {
    items.iter().copied().collect()
}

const NODE_PREFIX: &str = "system:node:";
const NODES_GROUP: &str = "system:nodes";

/// Upstream's `ValidateKubeletClientCSR`: `O=system:nodes`, `CN=system:node:*`, no SANs,
/// usages exactly {digital signature, [key encipherment,] client auth}.
pub fn validate_kubelet_client(req: &CertificateRequest, usages: &[String]) -> Result<(), String> {
    if req.organizations != [NODES_GROUP] {
        return Err("subject organization is not system:nodes".into());
    }
    if !req.dns_names.is_empty() {
        return Err("DNS subjectAltNames are not allowed".into());
    }
    if !req.email_addresses.is_empty() {
        return Err("Email subjectAltNames are not allowed".into());
    }
    if !req.ip_addresses.is_empty() {
        return Err("IP subjectAltNames are not allowed".into());
    }
    if !req.uris.is_empty() {
        return Err("URI subjectAltNames are not allowed".into());
    }
    if !req.common_name.starts_with(NODE_PREFIX) {
        return Err("subject common name does not begin with system:node:".into());
    }
    let got = usage_set(usages);
    let rsa = set(&["client auth", "digital signature", "key encipherment"]);
    if got != rsa && got != set(&["client auth", "digital signature"]) {
        return Err(format!(
            "usages did not match [{}]",
            rsa.into_iter().collect::<Vec<_>>().join(" ")
        ));
    }
    Ok(())
}

/// Upstream's `ValidateKubeletServingCSR`: `O=system:nodes`, a DNS or IP SAN and no other
/// kinds, usages exactly {digital signature, [key encipherment,] server auth},
/// `CN=system:node:*`.
pub fn validate_kubelet_serving(req: &CertificateRequest, usages: &[String]) -> Result<(), String> {
    if req.organizations != [NODES_GROUP] {
        return Err("subject organization is not system:nodes".into());
    }
    if req.dns_names.is_empty() && req.ip_addresses.is_empty() {
        return Err("DNS or IP subjectAltName is required".into());
    }
    if !req.email_addresses.is_empty() {
        return Err("Email subjectAltNames are not allowed".into());
    }
    if !req.uris.is_empty() {
        return Err("URI subjectAltNames are not allowed".into());
    }
    let got = usage_set(usages);
    let rsa = set(&["digital signature", "key encipherment", "server auth"]);
    if got != rsa && got != set(&["digital signature", "server auth"]) {
        return Err(format!(
            "usages did not match [{}]",
            rsa.into_iter().collect::<Vec<_>>().join(" ")
        ));
    }
    if !req.common_name.starts_with(NODE_PREFIX) {
        return Err("subject common name does not begin with system:node:".into());
    }
    Ok(())
}

/// Upstream's `validAPIServerClientUsages`: only digital signature, key encipherment and
/// client auth, and client auth is required.
pub fn validate_apiserver_client_usages(usages: &[String]) -> Result<(), String> {
    let mut client_auth = false;
    for u in usages {
        match u.as_str() {
            "digital signature" | "key encipherment" => {}
            "client auth" => client_auth = true,
            other => return Err(format!("invalid usage for client certificate: {other}")),
        }
    }
    if !client_auth {
        return Err("missing required usage for client certificate: client auth".into());
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rcgen::{CertificateParams, DnType, KeyPair, SanType};

    /// A PEM CSR with `cn`, `orgs` and DNS `sans`, and its key.
    pub fn make_csr(cn: &str, orgs: &[&str], sans: &[&str]) -> (String, KeyPair) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        for o in orgs {
            params.distinguished_name.push(DnType::OrganizationName, *o);
        }
        params.distinguished_name.push(DnType::CommonName, cn);
        params.subject_alt_names = sans
            .iter()
            .map(|s| match s.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName((*s).try_into().unwrap()),
            })
            .collect();
        let csr = params.serialize_request(&key).unwrap();
        (csr.pem().unwrap(), key)
    }

    fn u(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_subject_and_sans() {
        let (pem, _) = make_csr(
            "system:node:n1",
            &["system:nodes"],
            &["n1.example", "10.0.0.1"],
        );
        let req = parse(pem.as_bytes()).unwrap();
        assert_eq!(req.common_name, "system:node:n1");
        assert_eq!(req.organizations, ["system:nodes"]);
        assert_eq!(req.dns_names, ["n1.example"]);
        assert_eq!(req.ip_addresses, ["10.0.0.1".parse::<IpAddr>().unwrap()]);
        verify_signature(&req.der).unwrap();
    }

    #[test]
    fn rejects_wrong_pem_type() {
        let pem = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert_eq!(
            parse(pem.as_bytes()).unwrap_err(),
            "PEM block type must be CERTIFICATE REQUEST"
        );
        assert!(parse(b"junk").is_err());
    }

    #[test]
    fn kubelet_client_checks() {
        let client = u(&["digital signature", "key encipherment", "client auth"]);
        let (pem, _) = make_csr("system:node:n1", &["system:nodes"], &[]);
        let ok = parse(pem.as_bytes()).unwrap();
        assert_eq!(validate_kubelet_client(&ok, &client), Ok(()));
        assert_eq!(
            validate_kubelet_client(&ok, &u(&["digital signature", "client auth"])),
            Ok(())
        );
        assert_eq!(
            validate_kubelet_client(&ok, &u(&["client auth"])).unwrap_err(),
            "usages did not match [client auth digital signature key encipherment]"
        );
        let (pem, _) = make_csr("system:node:n1", &["system:nodes"], &["n1"]);
        assert_eq!(
            validate_kubelet_client(&parse(pem.as_bytes()).unwrap(), &client).unwrap_err(),
            "DNS subjectAltNames are not allowed"
        );
        let (pem, _) = make_csr("alice", &["system:nodes"], &[]);
        assert!(
            validate_kubelet_client(&parse(pem.as_bytes()).unwrap(), &client)
                .unwrap_err()
                .contains("common name")
        );
        let (pem, _) = make_csr("system:node:n1", &["system:nodes", "admins"], &[]);
        assert_eq!(
            validate_kubelet_client(&parse(pem.as_bytes()).unwrap(), &client).unwrap_err(),
            "subject organization is not system:nodes"
        );
    }

    #[test]
    fn kubelet_serving_checks() {
        let serving = u(&["digital signature", "key encipherment", "server auth"]);
        let (pem, _) = make_csr("system:node:n1", &["system:nodes"], &["10.0.0.1"]);
        assert_eq!(
            validate_kubelet_serving(&parse(pem.as_bytes()).unwrap(), &serving),
            Ok(())
        );
        let (pem, _) = make_csr("system:node:n1", &["system:nodes"], &[]);
        assert_eq!(
            validate_kubelet_serving(&parse(pem.as_bytes()).unwrap(), &serving).unwrap_err(),
            "DNS or IP subjectAltName is required"
        );
    }

    #[test]
    fn apiserver_client_usages() {
        assert!(validate_apiserver_client_usages(&u(&["client auth"])).is_ok());
        assert_eq!(
            validate_apiserver_client_usages(&u(&["digital signature"])).unwrap_err(),
            "missing required usage for client certificate: client auth"
        );
        assert_eq!(
            validate_apiserver_client_usages(&u(&["client auth", "server auth"])).unwrap_err(),
            "invalid usage for client certificate: server auth"
        );
    }
}
