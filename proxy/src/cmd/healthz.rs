//! kube-proxy's own health server (default `0.0.0.0:10256`), as upstream's
//! `ProxyHealthServer`: each family's proxier is healthy unless an update has been queued
//! for longer than the health timeout without a sync. `/livez` reports exactly that;
//! `/healthz` (KEP-3836, what load balancers probe) is also 503 while this Node is being
//! deleted, carries the `ToBeDeletedByClusterAutoscaler` taint, or is unknown. Both answer
//! upstream's JSON (`lastUpdated`, `currentTime`, [`nodeEligible`], `healthy`, `status`).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use k8s_openapi::api::core::v1::Node;
use proxy::metrics::ProxyMetrics;
use proxy::model::IpFamily;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// The taint the cluster autoscaler puts on a Node it is about to delete.
pub const TO_BE_DELETED_TAINT: &str = "ToBeDeletedByClusterAutoscaler";

/// Sync timestamps and node eligibility the health server judges.
#[derive(Debug, Clone)]
pub struct HealthState {
    inner: Arc<Mutex<Times>>,
    timeout: Duration,
}

#[derive(Debug, Default)]
struct Times {
    last_updated: BTreeMap<IpFamily, SystemTime>,
    oldest_queued: BTreeMap<IpFamily, SystemTime>,
    node_eligible: bool,
}

/// Whether `node` may receive load-balancer traffic: not being deleted and not tainted
/// for deletion by the cluster autoscaler (`None`: the Node is unknown, not eligible).
pub fn node_eligible(node: Option<&Node>) -> bool {
    let Some(node) = node else { return false };
    if node.metadata.deletion_timestamp.is_some() {
        return false;
    }
    let taints = node.spec.as_ref().and_then(|s| s.taints.as_ref());
    !taints
        .into_iter()
        .flatten()
        .any(|t| t.key == TO_BE_DELETED_TAINT)
}

fn rfc3339(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

impl HealthState {
    /// Healthy until an update queued for some family waits longer than `timeout`.
    pub fn new(timeout: Duration) -> Self {
        HealthState {
            inner: Arc::new(Mutex::new(Times::default())),
            timeout,
        }
    }

    fn times(&self) -> std::sync::MutexGuard<'_, Times> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A change was queued for `family`'s proxier.
    pub fn queued(&self, family: IpFamily) {
        self.times()
            .oldest_queued
            .entry(family)
            .or_insert_with(SystemTime::now);
    }

    /// `family`'s proxier synced successfully.
    pub fn updated(&self, family: IpFamily) {
        let mut t = self.times();
        t.oldest_queued.remove(&family);
        t.last_updated.insert(family, SystemTime::now());
    }

    /// Records this Node's eligibility (see [`node_eligible`]).
    pub fn set_node_eligible(&self, eligible: bool) {
        self.times().node_eligible = eligible;
    }

    /// Whether every proxier is healthy at `now` (node eligibility not considered).
    pub fn healthy(&self, now: SystemTime) -> bool {
        self.report(now, false).0
    }

    /// (healthy, JSON body) at `now`; `healthz` adds node eligibility.
    pub fn report(&self, now: SystemTime, healthz: bool) -> (bool, String) {
        let t = self.times();
        let mut healthy = true;
        let mut status = serde_json::Map::new();
        let mut last = None::<SystemTime>;
        for (family, updated) in &t.last_updated {
            last = Some(last.map_or(*updated, |l| l.max(*updated)));
            // A proxier is healthy while starting up or fully synced, or while its
            // oldest queued update is younger than the timeout.
            let ok = t
                .oldest_queued
                .get(family)
                .is_none_or(|q| now.duration_since(*q).unwrap_or_default() < self.timeout);
            healthy &= ok;
            status.insert(
                family.api_name().into(),
                serde_json::json!({"lastUpdated": rfc3339(*updated), "healthy": ok}),
            );
        }
        let eligible = t.node_eligible;
        let ok = healthy && (!healthz || eligible);
        // As upstream: a healthy answer reports "now" as lastUpdated.
        let last_updated = if ok {
            rfc3339(now)
        } else {
            last.map(rfc3339)
                .unwrap_or_else(|| "0001-01-01T00:00:00Z".into())
        };
        let mut body = serde_json::Map::new();
        body.insert("lastUpdated".into(), last_updated.into());
        body.insert("currentTime".into(), rfc3339(now).into());
        if healthz {
            body.insert("nodeEligible".into(), eligible.into());
        }
        body.insert("healthy".into(), healthy.into());
        if !status.is_empty() {
            body.insert("status".into(), status.into());
        }
        (ok, serde_json::Value::Object(body).to_string())
    }
}

fn answer(
    (healthy, body): (bool, String),
    metrics: Option<&ProxyMetrics>,
    livez: bool,
) -> Response {
    let code = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    if let Some(m) = metrics {
        m.health_answered(livez, code.as_u16());
    }
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

/// The routes; answers are counted in `kubeproxy_proxy_{healthz,livez}_total{code}`.
pub fn router(state: HealthState, metrics: Option<ProxyMetrics>) -> Router {
    let (h, m) = (state.clone(), metrics.clone());
    Router::new()
        .route(
            "/healthz",
            get(
                move || async move { answer(h.report(SystemTime::now(), true), m.as_ref(), false) },
            ),
        )
        .route(
            "/livez",
            get(move || async move {
                answer(
                    state.report(SystemTime::now(), false),
                    metrics.as_ref(),
                    true,
                )
            }),
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stale_queued_update_is_unhealthy_per_family() {
        let s = HealthState::new(Duration::from_secs(60));
        s.set_node_eligible(true);
        let now = SystemTime::now();
        assert!(s.report(now, true).0, "healthy while starting up");
        s.updated(IpFamily::V4);
        s.updated(IpFamily::V6);
        s.queued(IpFamily::V6);
        assert!(s.report(now + Duration::from_secs(30), true).0);
        let (ok, body) = s.report(now + Duration::from_secs(61), true);
        assert!(!ok, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["healthy"], false);
        assert_eq!(v["nodeEligible"], true);
        assert_eq!(v["status"]["IPv4"]["healthy"], true);
        assert_eq!(v["status"]["IPv6"]["healthy"], false);
        s.updated(IpFamily::V6);
        assert!(s.report(SystemTime::now(), true).0);
    }

    #[test]
    fn healthz_but_not_livez_follows_node_eligibility() {
        let s = HealthState::new(Duration::from_secs(60));
        s.updated(IpFamily::V4);
        let (ok, body) = s.report(SystemTime::now(), true);
        assert!(!ok, "unknown node is not eligible: {body}");
        assert!(s.report(SystemTime::now(), false).0);
        let livez: serde_json::Value =
            serde_json::from_str(&s.report(SystemTime::now(), false).1).unwrap();
        assert!(livez.get("nodeEligible").is_none());

        let node = |extra: serde_json::Value| -> Node {
            let mut v = json!({"metadata": {"name": "n"}});
            for (k, x) in extra.as_object().unwrap() {
                v[k] = x.clone();
            }
            serde_json::from_value(v).unwrap()
        };
        assert!(node_eligible(Some(&node(json!({})))));
        assert!(!node_eligible(Some(&node(json!({"spec": {"taints": [
            {"key": TO_BE_DELETED_TAINT, "value": "123", "effect": "NoSchedule"}]}})))));
        let deleting = node(json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}}));
        assert!(!node_eligible(Some(&deleting)));
        assert!(!node_eligible(None));
    }
}
