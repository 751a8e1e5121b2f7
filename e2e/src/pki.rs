//! A throw-away PKI for one test cluster: a CA, the apiserver's serving certificate, client
//! certificates for each identity, and the service-account signing key pair.
//!
//! Made in-process with `rcgen` (ECDSA P-256) rather than by running `openssl`: no child
//! process per certificate, no dependency on the openssl binary for the harness, typed
//! errors, and a whole PKI in milliseconds. `hack/local-up.sh` makes the same files with the
//! openssl CLI for humans.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// A certificate and its private key, as PEM files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// The PEM certificate.
    pub cert: PathBuf,
    /// The PEM (PKCS#8) private key, mode 0600.
    pub key: PathBuf,
}

/// The service-account token signing key pair.
#[derive(Debug, Clone)]
pub struct ServiceAccountKeys {
    /// Private key (`--service-account-signing-key-file`, kcm's
    /// `--service-account-private-key-file`).
    pub private: PathBuf,
    /// Public key (`--service-account-key-file`).
    pub public: PathBuf,
}

/// A certificate authority writing its files into one directory.
pub struct Pki {
    dir: PathBuf,
    ca: CertifiedIssuer<'static, KeyPair>,
    ca_files: CertFiles,
}

impl Pki {
    /// Creates the cluster CA (`ca.crt`, `ca.key`) in `dir`.
    pub fn create(dir: &Path) -> Result<Pki> {
        Self::create_named(dir, "ca", "ferrokube-test-ca")
    }

    /// Creates a CA `<stem>.crt`/`<stem>.key` named `common_name` in `dir` (e.g. the
    /// front-proxy CA beside the cluster CA). Certificates it issues are written to `dir`.
    pub fn create_named(dir: &Path, stem: &str, common_name: &str) -> Result<Pki> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate()?;
        let key_pem = key.serialize_pem();
        let ca = CertifiedIssuer::self_signed(params, key)?;
        let ca_files = write_pair(dir, stem, &ca.pem(), &key_pem)?;
        Ok(Pki {
            dir: dir.to_path_buf(),
            ca,
            ca_files,
        })
    }

    /// The CA certificate (`--client-ca-file`, kubeconfigs' certificate-authority).
    pub fn ca_cert(&self) -> &Path {
        &self.ca_files.cert
    }

    /// The CA private key (kcm's `--cluster-signing-key-file`).
    pub fn ca_key(&self) -> &Path {
        &self.ca_files.key
    }

    /// Issues a serving certificate `<stem>.crt`/`<stem>.key` for the given DNS names and IP
    /// addresses.
    pub fn serving_cert(&self, stem: &str, common_name: &str, sans: &[&str]) -> Result<CertFiles> {
        let mut params = leaf_params(common_name, None, sans)?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(stem, params)
    }

    /// Issues a client certificate `<stem>.crt`/`<stem>.key` for user `user` (the subject
    /// CN) in group `group` (the subject O), as the apiserver's x509 authenticator reads them.
    pub fn client_cert(&self, stem: &str, user: &str, group: Option<&str>) -> Result<CertFiles> {
        let mut params = leaf_params(user, group, &[])?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(stem, params)
    }

    /// Writes a fresh service-account signing key pair `sa.key` / `sa.pub`.
    pub fn service_account_keys(&self) -> Result<ServiceAccountKeys> {
        let key = KeyPair::generate()?;
        let private = self.dir.join("sa.key");
        let public = self.dir.join("sa.pub");
        write_private(&private, &key.serialize_pem())?;
        std::fs::write(&public, key.public_key_pem())
            .with_context(|| format!("writing {}", public.display()))?;
        Ok(ServiceAccountKeys { private, public })
    }

    fn issue(&self, stem: &str, params: CertificateParams) -> Result<CertFiles> {
        let key = KeyPair::generate()?;
        let cert = params
            .signed_by(&key, &self.ca)
            .with_context(|| format!("signing certificate {stem}"))?;
        write_pair(&self.dir, stem, &cert.pem(), &key.serialize_pem())
    }
}

fn leaf_params(common_name: &str, group: Option<&str>, sans: &[&str]) -> Result<CertificateParams> {
    let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
    let mut params = CertificateParams::new(sans).context("certificate subject alt names")?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    if let Some(group) = group {
        params
            .distinguished_name
            .push(DnType::OrganizationName, group);
    }
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

fn write_pair(dir: &Path, stem: &str, cert_pem: &str, key_pem: &str) -> Result<CertFiles> {
    let files = CertFiles {
        cert: dir.join(format!("{stem}.crt")),
        key: dir.join(format!("{stem}.key")),
    };
    std::fs::write(&files.cert, cert_pem)
        .with_context(|| format!("writing {}", files.cert.display()))?;
    write_private(&files.key, key_pem)?;
    Ok(files)
}

fn write_private(path: &Path, pem: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(pem.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn writes_ca_leaves_and_service_account_keys() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::create(dir.path()).unwrap();
        let serving = pki
            .serving_cert("apiserver", "kube-apiserver", &["127.0.0.1", "localhost"])
            .unwrap();
        let client = pki
            .client_cert("admin", "kubernetes-admin", Some("system:masters"))
            .unwrap();
        let sa = pki.service_account_keys().unwrap();
        for file in [pki.ca_cert(), &serving.cert, &client.cert] {
            let pem = std::fs::read_to_string(file).unwrap();
            assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
        }
        for key in [pki.ca_key(), &serving.key, &client.key, &sa.private] {
            let mode = std::fs::metadata(key).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{}", key.display());
            assert!(std::fs::read_to_string(key)
                .unwrap()
                .contains("PRIVATE KEY"));
        }
        assert!(std::fs::read_to_string(&sa.public)
            .unwrap()
            .starts_with("-----BEGIN PUBLIC KEY-----"));
    }
}
