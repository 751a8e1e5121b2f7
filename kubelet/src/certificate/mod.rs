//! The kubelet's certificates from the certificates API: client TLS bootstrap
//! (`--bootstrap-kubeconfig`), client certificate rotation (`rotateCertificates`) and the
//! serving certificate (`serverTLSBootstrap`), kept in `--cert-dir` as upstream keeps them.

pub mod bootstrap;
pub mod client;
pub mod csr;
pub mod metrics;
pub mod pair;
pub mod rotation;
pub mod store;
pub mod template;

use crate::config::Options;
use anyhow::{Context, Result};
use component_base::client::ClientOptions;
use rotation::{CurrentCertificate, Rotator};
use std::sync::Arc;
use store::PairStore;
use template::CertificateKind;
use tokio_util::sync::CancellationToken;

/// The apiserver client the kubelet runs with: bootstrapped first when
/// `--bootstrap-kubeconfig` is given and `--kubeconfig` has no valid certificate; with
/// `rotateCertificates`, one whose client certificate is renewed in the background (its
/// current pair is returned too, for the metrics).
pub async fn apiserver_client(
    opts: &Options,
    client_opts: &ClientOptions,
    stop: &CancellationToken,
) -> Result<(kube::Client, Option<CurrentCertificate>)> {
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
        return Ok((client::client_with(client_opts, None).await?, None));
    }
    let store = PairStore::new(&opts.cert_dir, CertificateKind::Client);
    let (mut rotator, current) = Rotator::new(
        CertificateKind::Client,
        template::client_template(&opts.node_name),
        store,
    )?;
    if current.borrow().is_none() {
        // The kubeconfig's own pair (kubeadm's control-plane nodes) is rotated from. An
        // embedded one is put in the store and renewed at once, as upstream's bootstrap
        // certificate: `kubeadm init`'s kubelet-finalize phase then finds
        // kubelet-client-current.pem and points kubelet.conf at it.
        match kubeconfig_pair(client_opts).await {
            Some((pair, embedded)) => {
                if embedded {
                    let file = rotator.store.update(&pair)?;
                    tracing::info!(file = %file.display(), "Stored the kubeconfig's embedded client certificate; rotating it now");
                    rotator.rotate_now = true;
                }
                rotator.current.send_replace(Some(Arc::new(pair)));
            }
            None => {
                tracing::warn!("Client certificate rotation is on but the kubeconfig has no client certificate; not rotating");
                return Ok((client::client_with(client_opts, None).await?, None));
            }
        }
    }
    let client =
        client::rotating_client(client_opts.clone(), current.clone(), stop.clone()).await?;
    tracing::info!("Starting client certificate rotation");
    tokio::spawn(rotator.run(client.clone(), stop.clone()));
    Ok((client, Some(current)))
}

/// The client certificate and key the kubeconfig of `client_opts` names, if any, and
/// whether they are embedded (`client-certificate-data`) rather than files.
async fn kubeconfig_pair(client_opts: &ClientOptions) -> Option<(pair::KeyedCertificate, bool)> {
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
    let pair = pair::KeyedCertificate::from_parts(&cert, &key, &path.display().to_string()).ok()?;
    Some((pair, a.client_certificate_data.is_some()))
}

/// `serverTLSBootstrap`: the serving certificate requested from the `kubelet-serving`
/// signer for the node's addresses, renewed in the background. The request waits until
/// the Node has an IP address (as upstream's template does). Until a certificate is issued
/// (an administrator or an external approver must approve the CSR: upstream's
/// kube-controller-manager does not) the kubelet API has none and refuses TLS handshakes.
pub fn serving_certificate(
    opts: &Options,
    client: &kube::Client,
    stop: &CancellationToken,
) -> Result<CurrentCertificate> {
    let store = PairStore::new(&opts.cert_dir, CertificateKind::Serving);
    let initial = store
        .current()
        .context("read the current serving certificate")?
        .map(Arc::new);
    let (current, receiver) = tokio::sync::watch::channel(initial);
    let (node_name, client, stop) = (opts.node_name.clone(), client.clone(), stop.clone());
    tokio::spawn(async move {
        let Some(template) = serving_template_when_addressed(&client, &node_name, &stop).await
        else {
            return;
        };
        let rotator = Rotator {
            kind: CertificateKind::Serving,
            template,
            store,
            current,
            rotate_now: false,
        };
        rotator.run(client, stop).await
    });
    Ok(receiver)
}

/// How often a Node without an IP address is read again for its serving certificate.
const ADDRESS_POLL: std::time::Duration = std::time::Duration::from_secs(10);

/// The serving template of the Node's current addresses, once it has an IP (`None` when
/// stopped first).
async fn serving_template_when_addressed(
    client: &kube::Client,
    node_name: &str,
    stop: &CancellationToken,
) -> Option<template::Template> {
    let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client.clone());
    let mut logged = false;
    loop {
        let addresses = match nodes.get_opt(node_name).await {
            Ok(node) => node
                .and_then(|n| n.status)
                .and_then(|s| s.addresses)
                .unwrap_or_default(),
            Err(e) => {
                tracing::warn!(error = %e, "Unable to read the node's addresses for its serving certificate");
                Vec::new()
            }
        };
        if let Some(t) = template::serving_template(node_name, &addresses) {
            return Some(t);
        }
        if !std::mem::replace(&mut logged, true) {
            tracing::info!("Waiting for the node to have an IP address before requesting a serving certificate");
        }
        tokio::select! {
            _ = stop.cancelled() => return None,
            _ = tokio::time::sleep(ADDRESS_POLL) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certificate::pair::tests::pair;

    #[tokio::test]
    async fn kubeconfig_pair_tells_embedded_from_files() {
        use base64::Engine;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let dir = tempfile::tempdir().unwrap();
        let now = chrono::Utc::now();
        let (cert, key) = pair("system:node:cp", now, now + chrono::Duration::hours(1));
        std::fs::write(dir.path().join("c.pem"), format!("{cert}{key}")).unwrap();
        let kubeconfig = |user: String| {
            let path = dir.path().join("kubelet.conf");
            std::fs::write(&path, format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: k\n  cluster:\n    server: https://127.0.0.1:6443\ncontexts:\n- name: c\n  context:\n    cluster: k\n    user: u\ncurrent-context: c\nusers:\n- name: u\n  user:\n{user}"
            )).unwrap();
            let mut opts = ClientOptions::new("kubelet");
            opts.kubeconfig = Some(path);
            opts
        };
        let embedded = kubeconfig(format!(
            "    client-certificate-data: {}\n    client-key-data: {}\n",
            b64(&cert),
            b64(&key)
        ));
        let (p, is_embedded) = kubeconfig_pair(&embedded).await.unwrap();
        assert!(is_embedded);
        assert_eq!(p.common_name, "system:node:cp");
        let files = kubeconfig("    client-certificate: c.pem\n    client-key: c.pem\n".into());
        let (_, is_embedded) = kubeconfig_pair(&files).await.unwrap();
        assert!(!is_embedded);
        let token = kubeconfig("    token: abc\n".into());
        assert!(kubeconfig_pair(&token).await.is_none());
    }
}
