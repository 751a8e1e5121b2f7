//! The kubelet's certificates from the certificates API: client TLS bootstrap
//! (`--bootstrap-kubeconfig`), client certificate rotation (`rotateCertificates`) and the
//! serving certificate (`serverTLSBootstrap`), kept in `--cert-dir` as upstream keeps them.

pub mod bootstrap;
pub mod client;
pub mod csr;
pub mod pair;
pub mod rotation;
pub mod store;
pub mod template;

use crate::config::Options;
use anyhow::{Context, Result};
use component_base::client::ClientOptions;
use k8s_openapi::api::core::v1::NodeAddress;
use rotation::{CurrentCertificate, Rotator};
use std::sync::Arc;
use store::PairStore;
use template::CertificateKind;
use tokio_util::sync::CancellationToken;

/// The apiserver client the kubelet runs with: bootstrapped first when
/// `--bootstrap-kubeconfig` is given and `--kubeconfig` has no valid certificate; with
/// `rotateCertificates`, one whose client certificate is renewed in the background.
pub async fn apiserver_client(
    opts: &Options,
    client_opts: &ClientOptions,
    stop: &CancellationToken,
) -> Result<kube::Client> {
    if let (Some(kubeconfig), Some(bootstrap)) = (&opts.kubeconfig, &opts.bootstrap_kubeconfig) {
        let files = bootstrap::ClientCertificateFiles {
            kubeconfig: kubeconfig.clone(),
            bootstrap_kubeconfig: bootstrap.clone(),
            cert_dir: opts.cert_dir.clone(),
        };
        bootstrap::ensure_client_certificate(
            &files,
            &opts.node_name,
            opts.rotate_certificates,
            client_opts,
        )
        .await?;
    }
    if !opts.rotate_certificates || opts.kubeconfig.is_none() {
        return client::client_with(client_opts, None).await;
    }
    let store = PairStore::new(&opts.cert_dir, CertificateKind::Client);
    let (rotator, current) = Rotator::new(
        CertificateKind::Client,
        template::client_template(&opts.node_name),
        store,
    )?;
    if current.borrow().is_none() {
        // The kubeconfig's own pair (kubeadm's control-plane nodes) is rotated from.
        match kubeconfig_pair(client_opts).await {
            Some(pair) => {
                rotator.current.send_replace(Some(Arc::new(pair)));
            }
            None => {
                tracing::warn!("Client certificate rotation is on but the kubeconfig has no client certificate; not rotating");
                return client::client_with(client_opts, None).await;
            }
        }
    }
    let client = client::rotating_client(client_opts.clone(), current, stop.clone()).await?;
    tracing::info!("Starting client certificate rotation");
    tokio::spawn(rotator.run(client.clone(), stop.clone()));
    Ok(client)
}

/// The client certificate and key the kubeconfig of `client_opts` names, if any.
async fn kubeconfig_pair(client_opts: &ClientOptions) -> Option<pair::KeyedCertificate> {
    let path = client_opts.kubeconfig.as_ref()?;
    let kc = kube::config::Kubeconfig::read_from(path).ok()?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .ok()?;
    let load = |data: &Option<String>, file: &Option<String>| -> Option<Vec<u8>> {
        use base64::Engine;
        match (data, file) {
            (Some(d), _) => base64::engine::general_purpose::STANDARD
                .decode(d.trim())
                .ok(),
            (None, Some(f)) => std::fs::read(f).ok(),
            _ => None,
        }
    };
    let a = &cfg.auth_info;
    let cert = load(&a.client_certificate_data, &a.client_certificate)?;
    let key_data = a.client_key_data.as_ref().map(|k| {
        use secrecy::ExposeSecret;
        k.expose_secret().to_string()
    });
    let key = load(&key_data, &a.client_key)?;
    pair::KeyedCertificate::from_parts(&cert, &key, &path.display().to_string()).ok()
}

/// `serverTLSBootstrap`: the serving certificate requested from the `kubelet-serving`
/// signer for the node's `addresses`, renewed in the background. Until a certificate is
/// issued (an administrator or an external approver must approve the CSR, as upstream's
/// kube-controller-manager does not) the kubelet API has none and refuses TLS handshakes.
pub fn serving_certificate(
    opts: &Options,
    addresses: &[NodeAddress],
    client: &kube::Client,
    stop: &CancellationToken,
) -> Result<CurrentCertificate> {
    let store = PairStore::new(&opts.cert_dir, CertificateKind::Serving);
    let Some(template) = template::serving_template(&opts.node_name, addresses) else {
        anyhow::bail!(
            "serverTLSBootstrap: the node has no IP address to request a serving certificate for"
        );
    };
    let (rotator, current) = Rotator::new(CertificateKind::Serving, template, store)
        .context("read the current serving certificate")?;
    tokio::spawn(rotator.run(client.clone(), stop.clone()));
    Ok(current)
}
