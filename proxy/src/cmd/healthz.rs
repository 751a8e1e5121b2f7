//! kube-proxy's own health server (default `0.0.0.0:10256`): `/healthz` and `/livez`
//! answer upstream's JSON (`lastUpdated`, `currentTime`, `nodeEligible`) and turn 503 when
//! a queued sync has not completed within twice the sync period.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// Sync timestamps the health server judges.
#[derive(Debug, Clone)]
pub struct HealthState {
    inner: Arc<Mutex<Times>>,
    timeout: Duration,
}

#[derive(Debug)]
struct Times {
    last_updated: SystemTime,
    last_queued: Option<SystemTime>,
    node_eligible: bool,
}

impl HealthState {
    /// Healthy as of now; unhealthy once a queued update waits longer than `timeout`.
    pub fn new(timeout: Duration) -> Self {
        HealthState {
            inner: Arc::new(Mutex::new(Times {
                last_updated: SystemTime::now(),
                last_queued: None,
                node_eligible: true,
            })),
            timeout,
        }
    }

    fn times(&self) -> std::sync::MutexGuard<'_, Times> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A sync was queued.
    pub fn queued(&self) {
        let mut t = self.times();
        if t.last_queued.is_none() {
            t.last_queued = Some(SystemTime::now());
        }
    }

    /// A sync succeeded.
    pub fn updated(&self) {
        let mut t = self.times();
        t.last_updated = SystemTime::now();
        t.last_queued = None;
    }

    /// Whether the Node may receive traffic (false while it is being deleted).
    pub fn set_node_eligible(&self, eligible: bool) {
        self.times().node_eligible = eligible;
    }

    /// (healthy, JSON body) at `now`.
    pub fn report(&self, now: SystemTime, check_node: bool) -> (bool, String) {
        let t = self.times();
        let stale = t
            .last_queued
            .is_some_and(|q| now.duration_since(q).unwrap_or_default() > self.timeout);
        let healthy = !stale && (!check_node || t.node_eligible);
        let fmt = |s: SystemTime| {
            chrono::DateTime::<chrono::Utc>::from(s)
                .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
        };
        let mut body =
            serde_json::json!({"lastUpdated": fmt(t.last_updated), "currentTime": fmt(now)});
        if check_node {
            body["nodeEligible"] = serde_json::Value::Bool(t.node_eligible);
        }
        (healthy, body.to_string())
    }
}

fn answer((healthy, body): (bool, String)) -> Response {
    let code = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        [
            ("content-type", "application/json"),
            ("x-content-type-options", "nosniff"),
        ],
        body,
    )
        .into_response()
}

/// The routes.
pub fn router(state: HealthState) -> Router {
    let h = state.clone();
    Router::new()
        .route(
            "/healthz",
            get(move || async move { answer(h.report(SystemTime::now(), true)) }),
        )
        .route(
            "/livez",
            get(move || async move { answer(state.report(SystemTime::now(), false)) }),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_queued_update_is_unhealthy() {
        let s = HealthState::new(Duration::from_secs(60));
        let now = SystemTime::now();
        assert!(s.report(now, true).0);
        s.queued();
        assert!(s.report(now + Duration::from_secs(30), true).0);
        let (ok, body) = s.report(now + Duration::from_secs(61), true);
        assert!(!ok && body.contains("lastUpdated") && body.contains("nodeEligible"));
        s.updated();
        assert!(s.report(SystemTime::now(), true).0);
        s.set_node_eligible(false);
        assert!(!s.report(SystemTime::now(), true).0);
        assert!(
            s.report(SystemTime::now(), false).0,
            "livez ignores node eligibility"
        );
    }
}
