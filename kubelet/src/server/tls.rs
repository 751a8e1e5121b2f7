//! TLS for the kubelet API: the certificate from the certificates API
//! (`serverTLSBootstrap`, swapped in at each rotation), `--tls-cert-file`/
//! `--tls-private-key-file`, or a self-signed pair kept in `<cert-dir>/kubelet.{crt,key}`
//! as upstream writes it; client certificates are requested (never required) and verified
//! against the client CA.

use crate::certificate::rotation::CurrentCertificate;
use anyhow::{Context, Result};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where the serving certificate comes from and who may present client certificates.
#[derive(Debug, Clone, Default)]
pub struct TlsSettings {
    /// `--tls-cert-file` and `--tls-private-key-file`.
    pub files: Option<(PathBuf, PathBuf)>,
    /// Where the self-signed pair is kept (`<root-dir>/pki`).
    pub cert_dir: PathBuf,
    /// Names and addresses the self-signed certificate covers besides `localhost`.
    pub names: Vec<String>,
    /// `authentication.x509.clientCAFile`.
    pub client_ca: Option<PathBuf>,
    /// `serverTLSBootstrap`: the current serving pair, served at each handshake (none
    /// until the first certificate is issued: handshakes fail, as upstream's do).
    pub bootstrapped: Option<CurrentCertificate>,
}

/// Serves whichever pair the serving certificate's rotation last published.
#[derive(Debug)]
struct CurrentServingCertificate(CurrentCertificate);

impl CurrentServingCertificate {
    /// The pair to present now.
    fn key(&self) -> Option<Arc<rustls::sign::CertifiedKey>> {
        let current = self.0.borrow().as_ref().map(|p| p.tls.clone());
        if current.is_none() {
            tracing::warn!(
                "TLS handshake refused: no serving certificate available for the kubelet yet"
            );
        }
        current
    }
}

impl rustls::server::ResolvesServerCert for CurrentServingCertificate {
    fn resolve(
        &self,
        _: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        self.key()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_pair(
    cert: &Path,
    key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .with_context(|| {
            format!(
                "--tls-cert-file {}: no readable PEM certificate",
                cert.display()
            )
        })?;
    anyhow::ensure!(
        !certs.is_empty(),
        "--tls-cert-file {}: no certificate",
        cert.display()
    );
    let key = PrivateKeyDer::from_pem_file(key).with_context(|| {
        format!(
            "--tls-private-key-file {}: no readable PEM private key",
            key.display()
        )
    })?;
    Ok((certs, key))
}

/// The self-signed pair in `dir`, made (and written) when absent, as upstream's kubelet
/// does when no serving certificate is configured.
pub fn self_signed(dir: &Path, names: &[String]) -> Result<(PathBuf, PathBuf)> {
    let (crt, key) = (dir.join("kubelet.crt"), dir.join("kubelet.key"));
    if crt.exists() && key.exists() {
        return Ok((crt, key));
    }
    let mut all = vec!["localhost".to_string()];
    all.extend(names.iter().filter(|n| !n.is_empty()).cloned());
    all.dedup();
    let certified = rcgen::generate_simple_self_signed(all)
        .context("generate the self-signed kubelet certificate")?;
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    std::fs::write(&crt, certified.cert.pem())?;
    std::fs::write(&key, certified.signing_key.serialize_pem())?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))?;
    tracing::info!(cert = %crt.display(), "Generated a self-signed serving certificate");
    Ok((crt, key))
}

/// The rustls configuration these settings describe (HTTP/2 and HTTP/1.1 offered).
pub fn server_config(s: &TlsSettings) -> Result<Arc<ServerConfig>> {
    let builder =
        ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let builder = match &s.client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            let cas = CertificateDer::pem_file_iter(ca)
                .and_then(|i| i.collect::<Result<Vec<_>, _>>())
                .with_context(|| {
                    format!(
                        "authentication.x509.clientCAFile {}: unreadable",
                        ca.display()
                    )
                })?;
            let (added, _) = roots.add_parsable_certificates(cas);
            anyhow::ensure!(
                added > 0,
                "authentication.x509.clientCAFile {}: no CA certificate",
                ca.display()
            );
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .allow_unauthenticated()
                .build()
                .context("client certificate verifier")?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = match &s.bootstrapped {
        Some(current) => {
            builder.with_cert_resolver(Arc::new(CurrentServingCertificate(current.clone())))
        }
        None => {
            let (cert, key) = match &s.files {
                Some((c, k)) => (c.clone(), k.clone()),
                None => self_signed(&s.cert_dir, &s.names)?,
            };
            let (certs, key) = read_pair(&cert, &key)?;
            builder
                .with_single_cert(certs, key)
                .context("serving certificate and key do not match")?
        }
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The user a verified client certificate names: CN as user, O as groups (as upstream's
/// x509 authenticator).
pub fn certificate_user(der: &[u8]) -> Option<(String, Vec<String>)> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let cn = subject
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_string))
        .collect();
    Some((cn, groups))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_pair_is_made_once_and_loads() {
        let dir = tempfile::tempdir().unwrap();
        let names = vec!["node-a".to_string(), "10.0.0.1".to_string()];
        let (c1, _) = self_signed(dir.path(), &names).unwrap();
        let first = std::fs::read(&c1).unwrap();
        let (c2, _) = self_signed(dir.path(), &names).unwrap();
        assert_eq!(first, std::fs::read(c2).unwrap(), "reused, not regenerated");
        let config = server_config(&TlsSettings {
            cert_dir: dir.path().into(),
            names,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(config.alpn_protocols[1], b"http/1.1");
    }

    #[test]
    fn bootstrapped_serving_certificate_is_swapped_in_without_a_new_config() {
        use crate::certificate::pair::KeyedCertificate;
        let pair = |name: &str| {
            let c = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
            let p = KeyedCertificate::from_parts(
                c.cert.pem().as_bytes(),
                c.signing_key.serialize_pem().as_bytes(),
                name,
            )
            .unwrap();
            Arc::new(p)
        };
        let (tx, rx) = tokio::sync::watch::channel(None);
        let config = server_config(&TlsSettings {
            bootstrapped: Some(rx.clone()),
            files: Some(("/nonexistent/ignored.crt".into(), "/nonexistent/k".into())),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(config.alpn_protocols[0], b"h2");
        let resolver = CurrentServingCertificate(rx);
        assert!(resolver.key().is_none(), "nothing to serve before issue");
        let first = pair("first");
        tx.send_replace(Some(first.clone()));
        assert!(Arc::ptr_eq(&resolver.key().unwrap(), &first.tls));
        let second = pair("second");
        tx.send_replace(Some(second.clone()));
        assert!(Arc::ptr_eq(&resolver.key().unwrap(), &second.tls));
    }

    #[test]
    fn certificate_subject_gives_user_and_groups() {
        let mut params = rcgen::CertificateParams::new(vec![]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "kube-apiserver-kubelet-client");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "system:masters");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let (user, groups) = certificate_user(cert.der()).unwrap();
        assert_eq!(user, "kube-apiserver-kubelet-client");
        assert_eq!(groups, vec!["system:masters"]);
    }

    #[test]
    fn missing_files_name_the_flag() {
        let e = server_config(&TlsSettings {
            files: Some(("/nonexistent/c.crt".into(), "/nonexistent/k.key".into())),
            ..Default::default()
        })
        .unwrap_err();
        assert!(format!("{e:#}").contains("--tls-cert-file"), "{e:#}");
    }
}
