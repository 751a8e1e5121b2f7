//! The apiserver client whose certificate follows rotation. client-go reads the current
//! certificate at each TLS handshake and closes the connections made with the old one;
//! here each published pair builds a fresh kube-rs client (same kubeconfig, the new pair as
//! identity) that replaces the old one for every later request. The old client's idle
//! connections close with it; requests in flight (watches) finish on theirs and reconnect
//! with the new certificate.

use super::pair::KeyedCertificate;
use super::rotation::CurrentCertificate;
use anyhow::{Context, Result};
use component_base::client::ClientOptions;
use futures::future::BoxFuture;
use kube::client::Body;
use std::sync::{Arc, RwLock};
use tokio_util::sync::CancellationToken;

/// Builds the client of `opts` authenticating with `pair` instead of the kubeconfig's own
/// client certificate (when a pair is given).
pub async fn client_with(
    opts: &ClientOptions,
    pair: Option<&KeyedCertificate>,
) -> Result<kube::Client> {
    let mut cfg = component_base::client::config(opts)
        .await
        .context("build the apiserver client")?;
    if let Some(pair) = pair {
        use base64::Engine;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        cfg.auth_info.client_certificate = None;
        cfg.auth_info.client_key = None;
        cfg.auth_info.client_certificate_data = Some(b64(&pair.cert_pem));
        cfg.auth_info.client_key_data = Some(b64(&pair.key_pem).into());
    }
    component_base::client::client_from_config(cfg, opts.qps, opts.burst)
        .context("build the apiserver client")
}

/// Sends each request through whichever client is current.
#[derive(Clone)]
struct Current(Arc<RwLock<kube::Client>>);

impl tower::Service<hyper::Request<Body>> for Current {
    type Response = hyper::Response<Body>;
    type Error = kube::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: hyper::Request<Body>) -> Self::Future {
        let client = self.0.read().expect("client lock").clone();
        Box::pin(async move { client.send(req).await })
    }
}

/// How often the current client certificate is checked for expiry (upstream: 10 s).
const EXPIRY_CHECK_PERIOD: std::time::Duration = std::time::Duration::from_secs(10);

/// Whether the apiserver answers `/healthz` (to anyone: an expired certificate still
/// reaches it as anonymous).
async fn server_responsive(client: &kube::Client) -> bool {
    let req = hyper::Request::get("/healthz")
        .body(Vec::new())
        .expect("static request");
    client.request_text(req).await.is_ok()
}

/// A client that switches to each new pair `current` publishes, until `stop`. When the
/// pair in use has expired while the apiserver answers, the kubelet exits (as upstream's
/// does): rotation failed, and a restart bootstraps again with the bootstrap kubeconfig.
pub async fn rotating_client(
    opts: ClientOptions,
    mut current: CurrentCertificate,
    stop: CancellationToken,
) -> Result<kube::Client> {
    let first = current.borrow_and_update().clone();
    let inner = client_with(&opts, first.as_deref()).await?;
    let namespace = inner.default_namespace().to_string();
    let slot = Arc::new(RwLock::new(inner));
    let swap = slot.clone();
    let outer = kube::Client::new(Current(slot), namespace);
    let probe = outer.clone();
    tokio::spawn(async move {
        let mut expiry_check = tokio::time::interval(EXPIRY_CHECK_PERIOD);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = expiry_check.tick() => {
                    let expired = current
                        .borrow()
                        .as_ref()
                        .is_some_and(|p| p.expired(chrono::Utc::now()));
                    if expired {
                        if server_responsive(&probe).await {
                            tracing::error!("The currently active client certificate has expired and the server is responsive, exiting.");
                            std::process::exit(1);
                        }
                        tracing::error!("The currently active client certificate has expired, but the server is not responsive. A restart may be necessary to retrieve new initial credentials.");
                    }
                    continue;
                }
                changed = current.changed() => if changed.is_err() { return },
            }
            let pair = current.borrow_and_update().clone();
            match client_with(&opts, pair.as_deref()).await {
                Ok(c) => {
                    *swap.write().expect("client lock") = c;
                    tracing::info!("Certificate rotation detected, shutting down client connections to start using new credentials");
                }
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "Unable to use the rotated client certificate")
                }
            }
        }
    });
    Ok(outer)
}
