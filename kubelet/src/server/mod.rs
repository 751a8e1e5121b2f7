//! The kubelet's endpoints: the plain-HTTP healthz port (10248, localhost) and the HTTPS
//! kubelet API (10250) — `/healthz`, `/metrics`, `/pods`, `/runningpods/`,
//! `/containerLogs`, `/exec`, `/attach`, `/portForward`, `/stats/summary`,
//! `/metrics/resource`, `/metrics/cadvisor`, `/metrics/probes` and `/configz` — authenticated (client
//! certificate, bearer token, anonymous) and authorized per KubeletConfiguration.

pub mod auth;
pub mod configz;
pub mod handlers;
pub mod logs;
pub mod resources;
pub mod streaming;
pub mod tls;

use crate::config::auth::ServerAuth;
use crate::manager::Shared;
use anyhow::Context;
use axum::routing::get;
use axum::Router;
use component_base::metrics::Metrics;
use component_base::server::{self, Authorization, Health, ServingOptions};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// What the secure server is started with.
pub struct ServerSettings {
    /// Healthz address and port (port 0 disables).
    pub healthz: (IpAddr, u16),
    /// Kubelet API address and port (port 0 disables).
    pub api: (IpAddr, u16),
    /// Certificates.
    pub tls: tls::TlsSettings,
    /// Authentication and authorization.
    pub auth: ServerAuth,
    /// The node's name (authorization attributes).
    pub node_name: String,
    /// Stats and configz.
    pub resources: resources::Resources,
}

/// The kubelet API's routes (without authentication).
pub fn routes(
    shared: Arc<Shared>,
    health: Health,
    metrics: Metrics,
    resources: resources::Resources,
) -> Router {
    let api = Router::new()
        .route("/pods", get(handlers::pods))
        .route("/pods/", get(handlers::pods))
        .route("/runningpods/", get(handlers::running_pods))
        .route(
            "/containerLogs/{ns}/{pod}/{container}",
            get(handlers::container_logs),
        )
        .route(
            "/exec/{ns}/{pod}/{container}",
            get(handlers::exec).post(handlers::exec),
        )
        .route(
            "/exec/{ns}/{pod}/{uid}/{container}",
            get(handlers::exec_uid).post(handlers::exec_uid),
        )
        .route(
            "/attach/{ns}/{pod}/{container}",
            get(handlers::attach).post(handlers::attach),
        )
        .route(
            "/attach/{ns}/{pod}/{uid}/{container}",
            get(handlers::attach_uid).post(handlers::attach_uid),
        )
        .route(
            "/portForward/{ns}/{pod}",
            get(handlers::port_forward).post(handlers::port_forward),
        )
        .route(
            "/portForward/{ns}/{pod}/{uid}",
            get(handlers::port_forward_uid).post(handlers::port_forward_uid),
        )
        .with_state(shared);
    server::router(health, metrics)
        .merge(api)
        .merge(resources::routes(resources))
}

/// Starts both servers; returns the kubelet API's bound address when it serves.
pub async fn start(
    shared: Arc<Shared>,
    health: Health,
    metrics: Metrics,
    settings: ServerSettings,
    stop: CancellationToken,
) -> anyhow::Result<Option<SocketAddr>> {
    let plain = ServingOptions {
        bind_address: settings.healthz.0,
        port: settings.healthz.1,
        tls: None,
    };
    let health_app = server::router(health.clone(), metrics.clone());
    server::serve(
        "kubelet",
        &plain,
        health_app,
        Authorization::AlwaysAllow,
        stop.clone(),
    )
    .await?;
    if settings.api.1 == 0 {
        return Ok(None);
    }
    let gate = Arc::new(auth::Gate::new(
        settings.auth.clone(),
        shared.client.clone(),
        settings.node_name.clone(),
    ));
    let app = routes(shared, health, metrics, settings.resources)
        .layer(axum::middleware::from_fn_with_state(gate, auth::middleware));
    let config = tls::server_config(&settings.tls)?;
    let addr = SocketAddr::new(settings.api.0, settings.api.1);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("failed to listen on {addr}"))?;
    let bound = listener.local_addr()?;
    tracing::info!(address = %bound, "Starting to listen (kubelet API)");
    tokio::spawn(serve_tls(
        listener,
        tokio_rustls::TlsAcceptor::from(config),
        app,
        stop,
    ));
    Ok(Some(bound))
}

/// Accepts TLS connections and serves `app` on each (HTTP/1.1 with upgrades, or HTTP/2),
/// handing the verified client certificate's user to the handlers.
async fn serve_tls(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    app: Router,
    stop: CancellationToken,
) {
    loop {
        let (tcp, remote) = tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "Accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // Headers and body go out as separate writes: without TCP_NODELAY, Nagle's
        // algorithm holds the body until the client's delayed ACK (~40 ms per response).
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(%remote, error = %e, "TCP_NODELAY not set");
        }
        let (acceptor, app) = (acceptor.clone(), app.clone());
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(
                std::time::Duration::from_secs(10),
                acceptor.accept(tcp),
            )
            .await
            {
                Ok(Ok(t)) => t,
                Ok(Err(e)) => {
                    tracing::debug!(%remote, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let peer = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| tls::certificate_user(c.as_ref()))
                .map(|(name, groups)| auth::User {
                    name,
                    groups,
                    ..Default::default()
                });
            let peer = auth::PeerCertificate(peer);
            let service = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(peer.clone());
                    app.clone().oneshot(req.map(axum::body::Body::new))
                },
            );
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            if let Err(e) = builder
                .serve_connection_with_upgrades(TokioIo::new(tls), service)
                .await
            {
                tracing::debug!(%remote, error = %e, "Connection ended with an error");
            }
        });
    }
}
