//! The kubelet's endpoints: the plain-HTTP healthz port (10248, localhost) and the HTTPS
//! kubelet API (10250) with `/healthz`, `/pods` and `/metrics`, authorized by the apiserver
//! (SubjectAccessReview) as upstream's webhook mode.

use crate::manager::Shared;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use component_base::metrics::Metrics;
use component_base::server::{self, Authorization, Health, ServingOptions, TlsOptions};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

async fn pods(State(shared): State<Arc<Shared>>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "kind": "PodList",
        "apiVersion": "v1",
        "metadata": {},
        "items": shared.pod_list(),
    }))
}

/// Starts both servers.
#[allow(clippy::too_many_arguments)]
pub async fn start(
    shared: Arc<Shared>,
    health: Health,
    metrics: Metrics,
    healthz: (IpAddr, u16),
    api: (IpAddr, u16),
    tls: Option<(PathBuf, PathBuf)>,
    cert_dir: PathBuf,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let plain = ServingOptions {
        bind_address: healthz.0,
        port: healthz.1,
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
    let (cert_file, key_file) = tls.map_or((None, None), |(c, k)| (Some(c), Some(k)));
    let secure = ServingOptions {
        bind_address: api.0,
        port: api.1,
        tls: Some(TlsOptions {
            cert_file,
            key_file,
            cert_dir: Some(cert_dir),
            alternate_names: Vec::new(),
        }),
    };
    let app = server::router(health, metrics).merge(
        Router::new()
            .route("/pods", get(pods))
            .with_state(shared.clone()),
    );
    let authz = Authorization::Delegated {
        client: shared.client.clone(),
        always_allow_paths: vec!["/healthz".into()],
    };
    server::serve("kubelet", &secure, app, authz, stop).await?;
    Ok(())
}
