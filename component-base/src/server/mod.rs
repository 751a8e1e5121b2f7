//! The one HTTP(S) server of a component: `/healthz`, `/livez`, `/readyz` (with named checks
//! and `?verbose`) and `/metrics`, on the upstream default port and `--bind-address`.
//! Secure ports (kube-scheduler 10259, kube-controller-manager 10257) serve TLS with a
//! self-signed certificate unless `--tls-cert-file` is given, and delegate authentication and
//! authorization of everything but the health paths to the apiserver, as upstream.

pub mod authz;
pub mod health;
pub mod tls;

pub use authz::Authorization;
pub use health::{CheckSet, Health};
pub use tls::TlsOptions;

use crate::metrics::Metrics;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use tokio_util::sync::CancellationToken;

/// Upstream's default ports, for reference by each component.
pub mod ports {
    /// kubelet's read-only health port.
    pub const KUBELET_HEALTHZ: u16 = 10248;
    /// kubelet's HTTPS API.
    pub const KUBELET: u16 = 10250;
    /// kube-proxy's metrics port.
    pub const PROXY_METRICS: u16 = 10249;
    /// kube-proxy's health port.
    pub const PROXY_HEALTHZ: u16 = 10256;
    /// kube-controller-manager's secure port.
    pub const CONTROLLER_MANAGER: u16 = 10257;
    /// kube-scheduler's secure port.
    pub const SCHEDULER: u16 = 10259;
}

/// Where and how to serve.
#[derive(Debug, Clone)]
pub struct ServingOptions {
    /// `--bind-address` (or the component's equivalent).
    pub bind_address: IpAddr,
    /// The port; 0 disables serving, as `--secure-port=0` does upstream.
    pub port: u16,
    /// TLS, for secure ports; `None` serves plain HTTP.
    pub tls: Option<TlsOptions>,
}

/// The shared state of the endpoints.
#[derive(Clone)]
struct AppState {
    health: Health,
    metrics: Metrics,
}

/// The health and metrics routes; a component may merge more routes into it.
pub fn router(health: Health, metrics: Metrics) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/healthz/{check}", get(healthz_one))
        .route("/livez/{check}", get(livez_one))
        .route("/readyz/{check}", get(readyz_one))
        .route("/metrics", get(metrics_text))
        .with_state(AppState { health, metrics })
}

fn answer((code, body): (u16, String)) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [
            ("content-type", "text/plain; charset=utf-8"),
            ("x-content-type-options", "nosniff"),
        ],
        body,
    )
        .into_response()
}

fn run(
    set: &CheckSet,
    endpoint: &str,
    query: &HashMap<String, String>,
    raw: Option<String>,
) -> Response {
    let verbose = query.contains_key("verbose");
    let exclude: HashSet<String> = raw
        .unwrap_or_default()
        .split('&')
        .filter_map(|kv| kv.strip_prefix("exclude="))
        .map(str::to_string)
        .collect();
    answer(set.evaluate(endpoint, verbose, &exclude))
}

async fn healthz(
    State(s): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
    uri: axum::http::Uri,
) -> Response {
    run(
        &s.health.healthz,
        "healthz",
        &q,
        uri.query().map(str::to_string),
    )
}

async fn livez(
    State(s): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
    uri: axum::http::Uri,
) -> Response {
    run(
        &s.health.livez,
        "livez",
        &q,
        uri.query().map(str::to_string),
    )
}

async fn readyz(
    State(s): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
    uri: axum::http::Uri,
) -> Response {
    run(
        &s.health.readyz,
        "readyz",
        &q,
        uri.query().map(str::to_string),
    )
}

fn one(set: &CheckSet, name: &str) -> Response {
    match set.evaluate_one(name) {
        Some(result) => answer(result),
        None => answer((404, "404 page not found\n".into())),
    }
}

async fn healthz_one(State(s): State<AppState>, Path(name): Path<String>) -> Response {
    one(&s.health.healthz, &name)
}

async fn livez_one(State(s): State<AppState>, Path(name): Path<String>) -> Response {
    one(&s.health.livez, &name)
}

async fn readyz_one(State(s): State<AppState>, Path(name): Path<String>) -> Response {
    one(&s.health.readyz, &name)
}

async fn metrics_text(State(s): State<AppState>) -> Response {
    (
        StatusCode::OK,
        [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
        s.metrics.render(),
    )
        .into_response()
}

/// Binds now (so a taken port fails start-up with a clear error) and serves `app` until
/// `shutdown` is cancelled. Returns the bound address (useful with port 0 in tests — note
/// that port 0 in `opts` disables serving, so tests pass an explicit free port) and the
/// serving task, or `None` when serving is disabled.
pub async fn serve(
    component: &str,
    opts: &ServingOptions,
    app: Router,
    authorization: Authorization,
    shutdown: CancellationToken,
) -> anyhow::Result<Option<(SocketAddr, tokio::task::JoinHandle<()>)>> {
    if opts.port == 0 {
        tracing::info!(component, "Serving disabled (port 0)");
        return Ok(None);
    }
    let addr = SocketAddr::new(opts.bind_address, opts.port);
    let listener = std::net::TcpListener::bind(addr)
        .map_err(|e| anyhow::anyhow!("failed to listen on {addr}: {e}"))?;
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    let app = authz::apply(app, authorization);
    let handle = match &opts.tls {
        None => {
            let listener = tokio::net::TcpListener::from_std(listener)?;
            tracing::info!(component, address = %bound, "Serving insecurely");
            tokio::spawn(async move {
                let served = axum::serve(listener, app)
                    .with_graceful_shutdown(shutdown.cancelled_owned())
                    .await;
                if let Err(e) = served {
                    tracing::error!(error = %e, "HTTP server failed");
                }
            })
        }
        Some(tls) => {
            let config = tls.rustls_config(component).await?;
            tracing::info!(component, address = %bound, "Serving securely");
            let handle = axum_server::Handle::new();
            let stopper = handle.clone();
            tokio::spawn(async move {
                shutdown.cancelled().await;
                stopper.graceful_shutdown(Some(std::time::Duration::from_secs(5)));
            });
            let server = axum_server::from_tcp_rustls(listener, config)?.handle(handle);
            tokio::spawn(async move {
                if let Err(e) = server.serve(app.into_make_service()).await {
                    tracing::error!(error = %e, "HTTPS server failed");
                }
            })
        }
    };
    Ok(Some((bound, handle)))
}
