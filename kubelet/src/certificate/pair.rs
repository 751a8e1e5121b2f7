//! A certificate chain with its private key, parsed once: the PEM text the store writes,
//! the validity window rotation is timed by, and the rustls key TLS presents.

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::{PemObject, SectionKind};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;

/// A certificate (leaf first, then intermediates) and the private key it certifies.
#[derive(Debug, Clone)]
pub struct KeyedCertificate {
    /// The chain as PEM `CERTIFICATE` blocks.
    pub cert_pem: String,
    /// The private key as one PEM block.
    pub key_pem: String,
    /// The leaf's NotBefore.
    pub not_before: DateTime<Utc>,
    /// The leaf's NotAfter.
    pub not_after: DateTime<Utc>,
    /// The leaf's subject common name.
    pub common_name: String,
    /// The chain and signing key as rustls presents them.
    pub tls: Arc<CertifiedKey>,
}

/// One PEM block: base64 in 64-column lines between BEGIN/END `label` lines.
pub fn pem_block(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

impl KeyedCertificate {
    /// Parses the certificates and the (one) private key found in `pem`, in any order, as
    /// in the store's combined files; `what` names the source in errors.
    pub fn from_pem(pem: &[u8], what: &str) -> Result<Self> {
        let mut chain = Vec::new();
        let mut key = None;
        for section in <(SectionKind, Vec<u8>)>::pem_slice_iter(pem) {
            let (kind, der) = section.with_context(|| format!("{what}: invalid PEM"))?;
            match kind {
                SectionKind::Certificate => chain.push(CertificateDer::from(der)),
                SectionKind::PrivateKey
                | SectionKind::EcPrivateKey
                | SectionKind::RsaPrivateKey => key = Some((kind, der)),
                _ => {}
            }
        }
        let Some((key_kind, key_der)) = key else {
            bail!("{what}: no private key");
        };
        let Some(leaf) = chain.first() else {
            bail!("{what}: no certificate");
        };
        let (_, parsed) = x509_parser::parse_x509_certificate(leaf)
            .map_err(|e| anyhow::anyhow!("{what}: invalid certificate: {e}"))?;
        let time = |t: x509_parser::time::ASN1Time| {
            DateTime::from_timestamp(t.timestamp(), 0).unwrap_or_default()
        };
        let (not_before, not_after) = (
            time(parsed.validity().not_before),
            time(parsed.validity().not_after),
        );
        let common_name = parsed
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .unwrap_or_default()
            .to_string();
        let key_label = match key_kind {
            SectionKind::EcPrivateKey => "EC PRIVATE KEY",
            SectionKind::RsaPrivateKey => "RSA PRIVATE KEY",
            _ => "PRIVATE KEY",
        };
        let key_pem = pem_block(key_label, &key_der);
        let private = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .with_context(|| format!("{what}: unreadable private key"))?;
        let signing = rustls::crypto::ring::default_provider()
            .key_provider
            .load_private_key(private)
            .with_context(|| format!("{what}: unsupported private key"))?;
        let cert_pem = chain
            .iter()
            .map(|c| pem_block("CERTIFICATE", c))
            .collect::<String>();
        let tls = CertifiedKey::new(chain, signing);
        tls.keys_match()
            .with_context(|| format!("{what}: the private key does not match the certificate"))?;
        Ok(KeyedCertificate {
            cert_pem,
            key_pem,
            not_before,
            not_after,
            common_name,
            tls: Arc::new(tls),
        })
    }

    /// Parses a certificate and a key given apart (a CSR's issued certificate and the key
    /// the kubelet made for it).
    pub fn from_parts(cert_pem: &[u8], key_pem: &[u8], what: &str) -> Result<Self> {
        let mut both = cert_pem.to_vec();
        both.push(b'\n');
        both.extend_from_slice(key_pem);
        Self::from_pem(&both, what)
    }

    /// The chain then the key: the store's file content (upstream's layout).
    pub fn combined_pem(&self) -> String {
        format!("{}{}", self.cert_pem, self.key_pem)
    }

    /// Whether the certificate has expired at `now`.
    pub fn expired(&self, now: DateTime<Utc>) -> bool {
        now > self.not_after
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A self-signed pair with subject `cn`, valid from `nb` to `na`.
    pub(crate) fn pair(cn: &str, nb: DateTime<Utc>, na: DateTime<Utc>) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec![]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        params.not_before += std::time::Duration::from_secs((nb.timestamp() - 946_684_800) as u64);
        params.not_after = rcgen::date_time_ymd(2000, 1, 1);
        params.not_after += std::time::Duration::from_secs((na.timestamp() - 946_684_800) as u64);
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn parses_combined_and_separate_pem_in_any_order() {
        let nb = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let na = DateTime::from_timestamp(1_700_003_600, 0).unwrap();
        let (cert, key) = pair("system:node:n1", nb, na);
        let p = KeyedCertificate::from_parts(cert.as_bytes(), key.as_bytes(), "x").unwrap();
        assert_eq!((p.not_before, p.not_after), (nb, na));
        assert_eq!(p.common_name, "system:node:n1");
        let reversed = format!("{key}{cert}");
        let q = KeyedCertificate::from_pem(reversed.as_bytes(), "x").unwrap();
        assert_eq!(q.combined_pem(), p.combined_pem());
        assert!(p.combined_pem().starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(!p.expired(nb) && p.expired(na + chrono::Duration::seconds(1)));
    }

    #[test]
    fn missing_or_mismatched_parts_are_errors_naming_the_source() {
        let now = Utc::now();
        let (cert, key) = pair("a", now, now + chrono::Duration::hours(1));
        let (_, other_key) = pair("b", now, now + chrono::Duration::hours(1));
        let e = KeyedCertificate::from_pem(cert.as_bytes(), "/p/a.pem").unwrap_err();
        assert!(
            format!("{e:#}").contains("/p/a.pem: no private key"),
            "{e:#}"
        );
        let e = KeyedCertificate::from_pem(key.as_bytes(), "/p/a.pem").unwrap_err();
        assert!(format!("{e:#}").contains("no certificate"), "{e:#}");
        let e =
            KeyedCertificate::from_parts(cert.as_bytes(), other_key.as_bytes(), "f").unwrap_err();
        assert!(format!("{e:#}").contains("does not match"), "{e:#}");
    }
}
