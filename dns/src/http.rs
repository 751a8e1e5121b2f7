//! CoreDNS's HTTP endpoints: `/health` (the `health` plugin, :8080), `/ready` (the
//! `ready` plugin, :8181: 200 once the first lists are synced, else 503 naming
//! `kubernetes`) and `/metrics` (the `prometheus` plugin, :9153). Endpoints configured on
//! the same port share one server.

use crate::store::Store;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use component_base::metrics::Metrics;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Which endpoint goes on which port (0: off).
#[derive(Debug, Clone, Copy)]
pub struct HttpPorts {
    /// `/health`.
    pub health: u16,
    /// `/ready`.
    pub ready: u16,
    /// `/metrics`.
    pub metrics: u16,
}

/// Binds and serves the endpoints on `bind`; returns the bound address of each port.
pub async fn serve(
    bind: IpAddr,
    ports: HttpPorts,
    store: Arc<Store>,
    metrics: Metrics,
    shutdown: CancellationToken,
) -> anyhow::Result<BTreeMap<u16, SocketAddr>> {
    let mut routers: BTreeMap<u16, Router> = BTreeMap::new();
    let mut add = |port: u16, router: Router| {
        if port != 0 {
            let merged = routers.remove(&port).unwrap_or_default().merge(router);
            routers.insert(port, merged);
        }
    };
    add(
        ports.health,
        Router::new().route("/health", get(|| async { "OK" })),
    );
    let ready_store = store.clone();
    add(
        ports.ready,
        Router::new().route(
            "/ready",
            get(move || {
                let store = ready_store.clone();
                async move {
                    if store.is_synced() {
                        (StatusCode::OK, "OK".to_string())
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "kubernetes".to_string())
                    }
                }
            }),
        ),
    );
    add(
        ports.metrics,
        Router::new().route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move {
                    (
                        [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
                        metrics.render(),
                    )
                }
            }),
        ),
    );
    let mut bound = BTreeMap::new();
    for (port, router) in routers {
        let addr = SocketAddr::new(bind, port);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("failed to listen on {addr}: {e}"))?;
        bound.insert(port, listener.local_addr()?);
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router)
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await
            {
                tracing::error!(error = %e, "HTTP server failed");
            }
        });
    }
    Ok(bound)
}
