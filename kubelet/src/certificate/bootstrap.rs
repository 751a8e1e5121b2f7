//! Client TLS bootstrap (upstream's `pkg/kubelet/certificate/bootstrap`): when
//! `--kubeconfig` holds no usable client certificate and `--bootstrap-kubeconfig` is given,
//! the kubelet asks for one with the bootstrap credentials, keeps it in the cert dir and
//! writes `--kubeconfig` to name it.

use super::csr::{request_certificate, CertificateRequest, BOOTSTRAP_WAIT};
use super::pair::KeyedCertificate;
use super::store::{write_private, PairStore};
use super::template::{client_template, CertificateKind};
use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use kube::config::{Cluster, Kubeconfig};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The key of a request in flight, kept until its certificate is stored, so a restart
/// asks with the same key (and finds the same digested CSR).
pub const PENDING_KEY_FILE: &str = "kubelet-client.key.tmp";

/// The files client bootstrap reads and writes.
#[derive(Debug, Clone)]
pub struct ClientCertificateFiles {
    /// `--kubeconfig`: written after bootstrap.
    pub kubeconfig: PathBuf,
    /// `--bootstrap-kubeconfig`.
    pub bootstrap_kubeconfig: PathBuf,
    /// `--cert-dir`.
    pub cert_dir: PathBuf,
}

/// The current context's user and cluster of `kc`.
fn current(kc: &Kubeconfig) -> Result<(Option<kube::config::AuthInfo>, Cluster)> {
    let name = kc
        .current_context
        .as_deref()
        .context("no current-context")?;
    let context = kc
        .contexts
        .iter()
        .find(|c| c.name == name)
        .and_then(|c| c.context.as_ref())
        .with_context(|| format!("context {name:?} not found"))?;
    let cluster = kc
        .clusters
        .iter()
        .find(|c| c.name == context.cluster)
        .and_then(|c| c.cluster.clone())
        .with_context(|| format!("cluster {:?} not found", context.cluster))?;
    let user = context.user.as_ref().and_then(|u| {
        kc.auth_infos
            .iter()
            .find(|a| &a.name == u)
            .and_then(|a| a.auth_info.clone())
    });
    Ok((user, cluster))
}

/// The client certificate (PEM) a kubeconfig authenticates with, if any (its
/// `client-certificate-data`, else the file `client-certificate` names).
pub fn client_certificate_pem(kc: &Kubeconfig) -> Result<Option<Vec<u8>>> {
    let (user, _) = current(kc)?;
    let Some(user) = user else { return Ok(None) };
    if let Some(data) = &user.client_certificate_data {
        use base64::Engine;
        return base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .map(Some)
            .context("client-certificate-data is not base64");
    }
    match &user.client_certificate {
        Some(file) => std::fs::read(file)
            .map(Some)
            .with_context(|| format!("read client-certificate {file}")),
        None => Ok(None),
    }
}

/// Whether the kubeconfig at `path` can be used as it is: it exists and every client
/// certificate in it is unexpired at `now` (upstream's `isClientConfigStillValid`). A
/// missing, unparsable or certificate-less file is not valid (bootstrap replaces it); only
/// a file that exists but cannot be inspected is an error.
pub fn kubeconfig_still_valid(path: &Path, now: DateTime<Utc>) -> Result<bool> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => {
            return Err(e)
                .with_context(|| format!("error reading existing kubeconfig {}", path.display()))
        }
        Ok(_) => {}
    }
    let cert = Kubeconfig::read_from(path)
        .map_err(anyhow::Error::from)
        .and_then(|kc| client_certificate_pem(&kc));
    let pem = match cert {
        Ok(Some(pem)) => pem,
        Ok(None) => {
            tracing::warn!(path = %path.display(), "The existing kubeconfig has no client certificate; bootstrapping");
            return Ok(false);
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %format!("{e:#}"), "Unable to read the client certificate of the existing kubeconfig; bootstrapping");
            return Ok(false);
        }
    };
    let certs: Vec<_> = rustls_pki_types::pem::PemObject::pem_slice_iter(&pem)
        .collect::<Result<Vec<rustls_pki_types::CertificateDer>, _>>()
        .unwrap_or_default();
    if certs.is_empty() {
        tracing::warn!(path = %path.display(), "No certificate in the existing kubeconfig's client certificate; bootstrapping");
        return Ok(false);
    }
    for der in &certs {
        let not_after = x509_parser::parse_x509_certificate(der)
            .map(|(_, c)| c.validity().not_after.timestamp())
            .unwrap_or(i64::MIN);
        if now.timestamp() > not_after {
            tracing::warn!(path = %path.display(), not_after, "Part of the existing client certificate is expired; bootstrapping");
            return Ok(false);
        }
    }
    Ok(true)
}

/// The kubeconfig the kubelet runs with after bootstrap: the bootstrap kubeconfig's server
/// and CA (its file when it names one, else its data) and the store's current pair as
/// client certificate and key (upstream's `writeKubeconfigFromBootstrapping`).
pub fn kubeconfig_yaml(cluster: &Cluster, pem_path: &Path) -> Result<String> {
    let mut c = serde_json::json!({ "server": cluster.server });
    if let Some(file) = &cluster.certificate_authority {
        c["certificate-authority"] = file.clone().into();
    } else if let Some(data) = &cluster.certificate_authority_data {
        c["certificate-authority-data"] = data.clone().into();
    }
    if cluster.insecure_skip_tls_verify == Some(true) {
        c["insecure-skip-tls-verify"] = true.into();
    }
    let pem = pem_path.display().to_string();
    let doc = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "default-cluster", "cluster": c}],
        "contexts": [{"name": "default-context", "context": {
            "cluster": "default-cluster", "namespace": "default", "user": "default-auth"}}],
        "current-context": "default-context",
        "preferences": {},
        "users": [{"name": "default-auth", "user": {
            "client-certificate": pem, "client-key": pem}}],
    });
    serde_yaml::to_string(&doc).context("encode the kubeconfig")
}

/// Writes `data` to `path` (mode 0600) by renaming a complete temporary file over it.
fn replace_file(path: &Path, data: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    let tmp = path.with_extension("tmp-ferrokube");
    write_private(&tmp, data)?;
    std::fs::rename(&tmp, path).with_context(|| format!("write {}", path.display()))
}

/// The key to request with: the pending one when readable, else a new ECDSA P-256 key,
/// saved as pending first.
fn load_or_generate_pending_key(path: &Path) -> Result<rcgen::KeyPair> {
    if let Ok(pem) = std::fs::read_to_string(path) {
        match rcgen::KeyPair::from_pem(&pem) {
            Ok(key) => return Ok(key),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "Unusable pending private key; making a new one")
            }
        }
    }
    let key = rcgen::KeyPair::generate().context("generate a private key")?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("create the cert dir {}", dir.display()))?;
    }
    write_private(path, key.serialize_pem().as_bytes())?;
    Ok(key)
}

/// Polls `/healthz` with the bootstrap client for up to `limit` (upstream's
/// `waitForServer`); a server still down is logged, and the request tried anyway.
async fn wait_for_server(client: &kube::Client, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let req = hyper::Request::get("/healthz")
            .body(Vec::new())
            .expect("static request");
        match client.request_text(req).await {
            Ok(_) => return,
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::info!(error = %e, "Failed to connect to apiserver");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "Timed out waiting to connect to apiserver");
                return;
            }
        }
    }
}

/// Makes sure `files.kubeconfig` holds a valid client certificate, bootstrapping one when
/// it does not. With rotation on (`rotate`), a valid pair already in the store is reused
/// and the request gets a generated name (`csr-…`, as upstream's certificate manager
/// makes it); without, the request has upstream's digested `node-csr-…` name.
pub async fn ensure_client_certificate(
    files: &ClientCertificateFiles,
    node_name: &str,
    rotate: bool,
    client_opts: &component_base::client::ClientOptions,
) -> Result<()> {
    if kubeconfig_still_valid(&files.kubeconfig, Utc::now())? {
        tracing::info!(path = %files.kubeconfig.display(), "Kubeconfig exists and is valid, skipping bootstrap");
        return Ok(());
    }
    let bootstrap = &files.bootstrap_kubeconfig;
    let (_, cluster) = Kubeconfig::read_from(bootstrap)
        .map_err(anyhow::Error::from)
        .and_then(|kc| current(&kc))
        .with_context(|| {
            format!(
                "unable to load bootstrap kubeconfig {}",
                bootstrap.display()
            )
        })?;
    if cluster.server.as_deref().unwrap_or_default().is_empty() {
        bail!(
            "unable to load bootstrap kubeconfig {}: its cluster has no server",
            bootstrap.display()
        );
    }
    let store = PairStore::new(&files.cert_dir, CertificateKind::Client);
    let existing = store.current().unwrap_or_else(|e| {
        tracing::warn!(error = %format!("{e:#}"), "Unusable current client certificate");
        None
    });
    if rotate && existing.as_ref().is_some_and(|c| !c.expired(Utc::now())) {
        tracing::info!(path = %store.current_path().display(), "Using the current client certificate; writing the kubeconfig");
        return replace_file(
            &files.kubeconfig,
            kubeconfig_yaml(&cluster, &store.current_path())?.as_bytes(),
        );
    }
    tracing::info!(bootstrap = %bootstrap.display(), "Using bootstrap kubeconfig to generate TLS client cert, key and kubeconfig file");
    let pending = files.cert_dir.join(PENDING_KEY_FILE);
    let key = match existing.and_then(|c| rcgen::KeyPair::from_pem(&c.key_pem).ok()) {
        Some(key) => key,
        None => load_or_generate_pending_key(&pending)?,
    };
    let mut opts = client_opts.clone();
    opts.kubeconfig = Some(bootstrap.clone());
    let client = component_base::client::client(&opts)
        .await
        .with_context(|| {
            format!(
                "unable to create certificates signing request client from {}",
                bootstrap.display()
            )
        })?;
    wait_for_server(&client, Duration::from_secs(60)).await;
    let template = client_template(node_name);
    let request = CertificateRequest {
        kind: CertificateKind::Client,
        template: &template,
        digested_name: !rotate,
        expiration_seconds: None,
        wait: BOOTSTRAP_WAIT,
    };
    let cert = request_certificate(&client, &request, &key).await?;
    let pair = KeyedCertificate::from_parts(
        &cert,
        key.serialize_pem().as_bytes(),
        "the issued client certificate",
    )?;
    let file = store.update(&pair)?;
    if let Err(e) = std::fs::remove_file(&pending) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(path = %pending.display(), error = %e, "Failed cleaning up private key file");
        }
    }
    tracing::info!(file = %file.display(), expiration = %pair.not_after, "Client certificate bootstrapped");
    replace_file(
        &files.kubeconfig,
        kubeconfig_yaml(&cluster, &store.current_path())?.as_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certificate::pair::tests::pair;

    fn kubeconfig_with(dir: &Path, cert_pem: Option<&str>) -> PathBuf {
        let user = match cert_pem {
            Some(pem) => {
                std::fs::write(dir.join("c.pem"), pem).unwrap();
                "client-certificate: c.pem\n    client-key: c.pem"
            }
            None => "token: abcdef.0123456789abcdef",
        };
        let path = dir.join("kubelet.conf");
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: k\n  cluster:\n    server: https://10.0.0.1:6443\n    certificate-authority: ca.crt\ncontexts:\n- name: c\n  context:\n    cluster: k\n    user: u\ncurrent-context: c\nusers:\n- name: u\n  user:\n    {user}\n"
            ),
        )
        .unwrap();
        path
    }

    #[test]
    fn kubeconfig_validity_follows_the_client_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let now = Utc::now();
        let hour = chrono::Duration::hours(1);
        assert!(!kubeconfig_still_valid(&dir.path().join("missing"), now).unwrap());
        let (c, _) = pair("system:node:n1", now - hour, now + hour);
        let path = kubeconfig_with(dir.path(), Some(&c));
        assert!(kubeconfig_still_valid(&path, now).unwrap());
        assert!(
            !kubeconfig_still_valid(&path, now + hour * 2).unwrap(),
            "expired"
        );
        let path = kubeconfig_with(dir.path(), None);
        assert!(!kubeconfig_still_valid(&path, now).unwrap(), "token only");
        std::fs::write(&path, "{not yaml").unwrap();
        assert!(!kubeconfig_still_valid(&path, now).unwrap(), "unparsable");
    }

    #[test]
    fn written_kubeconfig_names_server_ca_and_current_pair() {
        let dir = tempfile::tempdir().unwrap();
        let bootstrap = kubeconfig_with(dir.path(), None);
        let (_, cluster) = current(&Kubeconfig::read_from(&bootstrap).unwrap()).unwrap();
        let pem = Path::new("/var/lib/kubelet/pki/kubelet-client-current.pem");
        let out = dir.path().join("out/kubelet.conf");
        replace_file(&out, kubeconfig_yaml(&cluster, pem).unwrap().as_bytes()).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let kc = Kubeconfig::read_from(&out).unwrap();
        let (user, cluster) = current(&kc).unwrap();
        let user = user.unwrap();
        assert_eq!(
            user.client_certificate.as_deref(),
            Some(pem.to_str().unwrap())
        );
        assert_eq!(user.client_key.as_deref(), Some(pem.to_str().unwrap()));
        assert_eq!(cluster.server.as_deref(), Some("https://10.0.0.1:6443"));
        let ca = dir.path().join("ca.crt");
        assert_eq!(
            cluster.certificate_authority.as_deref(),
            Some(ca.to_str().unwrap()),
            "absolute, from the bootstrap file's directory"
        );
    }

    #[tokio::test]
    async fn unreadable_bootstrap_kubeconfig_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let files = ClientCertificateFiles {
            kubeconfig: dir.path().join("kubelet.conf"),
            bootstrap_kubeconfig: dir.path().join("bootstrap-kubelet.conf"),
            cert_dir: dir.path().join("pki"),
        };
        let opts = component_base::client::ClientOptions::new("kubelet");
        let e = ensure_client_certificate(&files, "n1", false, &opts)
            .await
            .unwrap_err();
        let msg = format!("{e:#}");
        assert!(
            msg.contains("unable to load bootstrap kubeconfig")
                && msg.contains("bootstrap-kubelet.conf"),
            "{msg}"
        );
        std::fs::write(
            &files.bootstrap_kubeconfig,
            "apiVersion: v1\nkind: Config\n",
        )
        .unwrap();
        let e = ensure_client_certificate(&files, "n1", false, &opts)
            .await
            .unwrap_err();
        assert!(format!("{e:#}").contains("no current-context"), "{e:#}");
    }

    #[test]
    fn pending_key_is_kept_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pki").join(PENDING_KEY_FILE);
        let a = load_or_generate_pending_key(&path).unwrap();
        let b = load_or_generate_pending_key(&path).unwrap();
        assert_eq!(a.serialize_der(), b.serialize_der());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}
