//! Certificates and certificate requests: the CSR signer's reading (and, for a request
//! that verifies, signing) of `spec.request`, the kubelet's reading of its certificate and
//! key files, and key conversion of a signing key.

use controllers::certificates::{der, request, signer::Authority};
use kubelet::certificate::pair::{pem_block, KeyedCertificate};
use std::sync::OnceLock;
use std::time::Duration;

const CA_CERT: &str = include_str!("../../testdata/ca.crt");
const CA_KEY: &str = include_str!("../../testdata/ca.key");

fn authority() -> &'static Authority {
    static CA: OnceLock<Authority> = OnceLock::new();
    CA.get_or_init(|| Authority::from_pem(CA_CERT, CA_KEY).expect("the test CA loads"))
}

/// The first byte picks how the rest is read: even, as PEM text; odd, as DER wrapped into
/// a `CERTIFICATE REQUEST` and a `CERTIFICATE` block (so the mutations reach the ASN.1
/// parsers instead of breaking base64).
pub fn fuzz(data: &[u8]) {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let (csr_pem, cert_pem) = if mode % 2 == 0 {
        (body.to_vec(), body.to_vec())
    } else {
        (
            pem_block("CERTIFICATE REQUEST", body).into_bytes(),
            format!("{}{}", pem_block("CERTIFICATE", body), CA_KEY).into_bytes(),
        )
    };
    if let Ok(req) = request::parse(&csr_pem) {
        let usages: Vec<String> = ["digital signature", "client auth", "server auth"]
            .map(String::from)
            .to_vec();
        let _ = request::validate_kubelet_client(&req, &usages);
        let _ = request::validate_kubelet_serving(&req, &usages);
        let now = time::OffsetDateTime::from_unix_timestamp(1_700_000_000).expect("valid");
        let _ = authority().sign(&req, &usages, Duration::from_secs(3600), now);
    }
    let _ = KeyedCertificate::from_pem(&cert_pem, "fuzz");
    let _ = der::pkcs8_from_sec1(body);
}
