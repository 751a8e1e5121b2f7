//! TLS material for secure ports: `--tls-cert-file`/`--tls-private-key-file`, or a
//! self-signed certificate (kept in `--cert-dir` when given), as upstream's secure serving.

use axum_server::tls_rustls::RustlsConfig;
use std::path::PathBuf;

/// Where the serving certificate comes from.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// `--tls-cert-file`.
    pub cert_file: Option<PathBuf>,
    /// `--tls-private-key-file`.
    pub key_file: Option<PathBuf>,
    /// `--cert-dir`: where a self-signed pair is written when no files are given.
    pub cert_dir: Option<PathBuf>,
    /// Extra names for the self-signed certificate (besides localhost and 127.0.0.1).
    pub alternate_names: Vec<String>,
}

impl TlsOptions {
    /// The rustls server config these options describe.
    pub async fn rustls_config(&self, component: &str) -> anyhow::Result<RustlsConfig> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => RustlsConfig::from_pem_file(cert, key).await.map_err(|e| {
                anyhow::anyhow!(
                    "invalid --tls-cert-file {cert:?} / --tls-private-key-file {key:?}: {e}"
                )
            }),
            (Some(_), None) | (None, Some(_)) => {
                anyhow::bail!("--tls-cert-file and --tls-private-key-file must be given together")
            }
            (None, None) => {
                let (cert, key) = self.self_signed(component)?;
                Ok(RustlsConfig::from_pem(cert.into_bytes(), key.into_bytes()).await?)
            }
        }
    }

    /// A self-signed pair for `component`, reused from `cert_dir` when present there.
    fn self_signed(&self, component: &str) -> anyhow::Result<(String, String)> {
        if let Some(dir) = &self.cert_dir {
            let (crt, key) = (
                dir.join(format!("{component}.crt")),
                dir.join(format!("{component}.key")),
            );
            if let (Ok(c), Ok(k)) = (std::fs::read_to_string(&crt), std::fs::read_to_string(&key)) {
                return Ok((c, k));
            }
        }
        let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        names.push(crate::hostname::hostname());
        names.extend(self.alternate_names.iter().cloned());
        let certified = rcgen::generate_simple_self_signed(names)?;
        let (cert, key) = (certified.cert.pem(), certified.signing_key.serialize_pem());
        if let Some(dir) = &self.cert_dir {
            std::fs::create_dir_all(dir)?;
            std::fs::write(dir.join(format!("{component}.crt")), &cert)?;
            std::fs::write(dir.join(format!("{component}.key")), &key)?;
        }
        Ok((cert, key))
    }
}
