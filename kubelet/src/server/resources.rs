//! The resource endpoints: `/stats/summary` (GET or POST; `only_cpu_and_memory=true`
//! limits it to CPU and memory), `/metrics/resource`, `/metrics/cadvisor`, `/metrics/probes`
//! and `/configz`.

use super::streaming::query_pairs;
use crate::stats::{cadvisor, resource_metrics, StatsProvider};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use std::sync::Arc;

/// Prometheus' text exposition format, as upstream's handler answers.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What the resource endpoints serve from.
#[derive(Clone)]
pub struct Resources {
    /// The stats provider.
    pub stats: Arc<StatsProvider>,
    /// The `/configz` document.
    pub configz: Arc<serde_json::Value>,
}

/// The routes of the resource endpoints.
pub fn routes(r: Resources) -> Router {
    let stats = Router::new()
        .route("/stats/summary", get(summary).post(summary))
        .route("/metrics/resource", get(resource))
        .route("/metrics/cadvisor", get(cadvisor_metrics))
        .with_state(r.stats);
    let configz = Router::new()
        .route("/configz", get(configz))
        .with_state(r.configz);
    let probes = Router::new().route("/metrics/probes", get(probes));
    stats.merge(configz).merge(probes)
}

/// Whether the query (or a form body's fields, for POST) asks for CPU and memory only.
pub fn only_cpu_and_memory(query: &str) -> bool {
    let values: Vec<String> = query_pairs(query)
        .into_iter()
        .filter(|(k, _)| k == "only_cpu_and_memory")
        .map(|(_, v)| v)
        .collect();
    values.len() == 1 && values[0] == "true"
}

async fn summary(State(p): State<Arc<StatsProvider>>, req: Request) -> Response {
    let mut query = req.uri().query().unwrap_or("").to_string();
    let form = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if form {
        if let Ok(body) = axum::body::to_bytes(req.into_body(), 64 << 10).await {
            query = format!("{query}&{}", String::from_utf8_lossy(&body));
        }
    }
    let result = if only_cpu_and_memory(&query) {
        p.cpu_and_memory().await
    } else {
        // External calls use the cached CPU rates, as upstream.
        p.summary(false).await
    };
    match result {
        Ok(s) => Json(s).into_response(),
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), request = "/stats/summary", "HTTP InternalServerError serving");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("Internal Error: {e:#}"),
            )
                .into_response()
        }
    }
}

async fn resource(State(p): State<Arc<StatsProvider>>) -> Response {
    let summary = match p.cpu_and_memory().await {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "Error getting summary for resourceMetric prometheus endpoint");
            None
        }
    };
    (
        [("content-type", PROMETHEUS_TEXT)],
        resource_metrics::render(summary.as_ref()),
    )
        .into_response()
}

/// cAdvisor's per-cgroup usage and the machine's capacity, as upstream serves them from
/// its embedded cAdvisor.
async fn cadvisor_metrics(State(p): State<Arc<StatsProvider>>) -> Response {
    let scrape = p.cadvisor().await;
    (
        [("content-type", PROMETHEUS_TEXT)],
        cadvisor::render::render(&scrape),
    )
        .into_response()
}

/// The prober's results and durations (upstream serves them apart from `/metrics`).
async fn probes() -> Response {
    (
        [("content-type", PROMETHEUS_TEXT)],
        crate::prober::metrics::render(),
    )
        .into_response()
}

async fn configz(State(doc): State<Arc<serde_json::Value>>) -> Response {
    Json(doc.as_ref().clone()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_cpu_and_memory_needs_exactly_true_once() {
        assert!(only_cpu_and_memory("only_cpu_and_memory=true"));
        assert!(only_cpu_and_memory("a=b&only_cpu_and_memory=true"));
        assert!(!only_cpu_and_memory("only_cpu_and_memory=1"));
        assert!(!only_cpu_and_memory(
            "only_cpu_and_memory=true&only_cpu_and_memory=true"
        ));
        assert!(!only_cpu_and_memory(""));
    }
}
