//! The per-Service health check servers: for each Service with
//! `externalTrafficPolicy: Local` and a `healthCheckNodePort`, an HTTP server on that
//! port answering upstream's JSON with the number of ready endpoints on this node —
//! 200 when there is at least one and kube-proxy is healthy, else 503 — so external
//! load balancers send traffic only to nodes that can serve it locally.

use crate::model::{ChangeTracker, ServiceName};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// What one Service's health check serves: its port and local ready endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthCheck {
    /// `spec.healthCheckNodePort`.
    pub port: u16,
    /// Distinct ready endpoint IPs on this node.
    pub local_endpoints: usize,
}

/// The health checks one family's applied view needs (upstream's `HealthCheckNodePorts`
/// and `LocalReadyEndpoints`).
pub fn health_checks(tracker: &ChangeTracker) -> BTreeMap<ServiceName, HealthCheck> {
    let mut out: BTreeMap<ServiceName, HealthCheck> = BTreeMap::new();
    for (name, port) in &tracker.ports {
        if port.health_check_node_port == 0 || !port.external_policy_local {
            continue;
        }
        out.insert(
            name.service.clone(),
            HealthCheck {
                port: port.health_check_node_port,
                local_endpoints: 0,
            },
        );
    }
    for (service, hc) in out.iter_mut() {
        let ips: BTreeSet<IpAddr> = tracker
            .endpoints
            .iter()
            .filter(|(k, _)| &k.service == service)
            .flat_map(|(_, eps)| eps.iter())
            .filter(|e| e.local && e.ready)
            .map(|e| e.ip())
            .collect();
        hc.local_endpoints = ips.len();
    }
    out
}

/// Merges the health checks of several families (dual-stack): a Service's local endpoint
/// count is the largest of its families'.
pub fn merge(
    families: impl IntoIterator<Item = BTreeMap<ServiceName, HealthCheck>>,
) -> BTreeMap<ServiceName, HealthCheck> {
    let mut out: BTreeMap<ServiceName, HealthCheck> = BTreeMap::new();
    for family in families {
        for (name, hc) in family {
            out.entry(name)
                .and_modify(|o| o.local_endpoints = o.local_endpoints.max(hc.local_endpoints))
                .or_insert(hc);
        }
    }
    out
}

/// The answer to a health check: (status, headers, body) as upstream's `hcHandler`.
pub fn answer(service: &ServiceName, local_endpoints: usize, proxy_healthy: bool) -> Response {
    let code = if local_endpoints != 0 && proxy_healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let quote = |s: &str| serde_json::Value::String(s.to_string()).to_string();
    let body = format!(
        "{{\n\t\"service\": {{\n\t\t\"namespace\": {},\n\t\t\"name\": {}\n\t}},\n\t\"localEndpoints\": {local_endpoints},\n\t\"serviceProxyHealthy\": {proxy_healthy}\n}}",
        quote(&service.namespace),
        quote(&service.name)
    );
    (
        code,
        [
            ("content-type", "application/json".to_string()),
            ("x-content-type-options", "nosniff".to_string()),
            (
                "x-load-balancing-endpoint-weight",
                local_endpoints.to_string(),
            ),
        ],
        body,
    )
        .into_response()
}

struct Instance {
    port: u16,
    endpoints: Arc<AtomicUsize>,
    stop: CancellationToken,
}

/// The running health check servers.
pub struct ServiceHealthServer {
    bind: Vec<IpAddr>,
    proxy_healthy: Arc<dyn Fn() -> bool + Send + Sync>,
    instances: HashMap<ServiceName, Instance>,
}

impl std::fmt::Debug for ServiceHealthServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceHealthServer")
            .field("bind", &self.bind)
            .field("services", &self.instances.len())
            .finish()
    }
}

impl ServiceHealthServer {
    /// Servers listening on each of `bind` (the NodePort addresses; all addresses when
    /// empty); `proxy_healthy` reports kube-proxy's own sync health.
    pub fn new(bind: Vec<IpAddr>, proxy_healthy: Arc<dyn Fn() -> bool + Send + Sync>) -> Self {
        let bind = if bind.is_empty() {
            vec![IpAddr::from([0, 0, 0, 0])]
        } else {
            bind
        };
        ServiceHealthServer {
            bind,
            proxy_healthy,
            instances: HashMap::new(),
        }
    }

    /// Opens servers for new Services, closes those of removed ones (or whose port
    /// changed) and updates endpoint counts. Must run inside a tokio runtime. Returns
    /// the Services whose port could not be opened, with the error.
    pub fn sync(
        &mut self,
        wanted: &BTreeMap<ServiceName, HealthCheck>,
    ) -> Vec<(ServiceName, String)> {
        self.instances.retain(|name, inst| {
            let keep = wanted.get(name).is_some_and(|hc| hc.port == inst.port);
            if !keep {
                tracing::info!(service = %name, port = inst.port, "Closing healthcheck");
                inst.stop.cancel();
            }
            keep
        });
        let mut failed = Vec::new();
        for (name, hc) in wanted {
            if let Some(inst) = self.instances.get(name) {
                inst.endpoints.store(hc.local_endpoints, Ordering::Relaxed);
                continue;
            }
            match self.open(name, hc) {
                Ok(inst) => {
                    tracing::info!(service = %name, port = hc.port, "Opening healthcheck");
                    self.instances.insert(name.clone(), inst);
                }
                Err(e) => {
                    tracing::error!(service = %name, port = hc.port, error = %e, "Failed to start healthcheck");
                    failed.push((name.clone(), e.to_string()));
                }
            }
        }
        failed
    }

    fn open(&self, name: &ServiceName, hc: &HealthCheck) -> std::io::Result<Instance> {
        let endpoints = Arc::new(AtomicUsize::new(hc.local_endpoints));
        let stop = CancellationToken::new();
        let mut listeners = Vec::new();
        for ip in &self.bind {
            let l = std::net::TcpListener::bind(SocketAddr::new(*ip, hc.port))?;
            l.set_nonblocking(true)?;
            listeners.push(l);
        }
        for l in listeners {
            let listener = tokio::net::TcpListener::from_std(l)?;
            let (name, count, healthy) =
                (name.clone(), endpoints.clone(), self.proxy_healthy.clone());
            let app = axum::Router::new().fallback(move || {
                let (name, count, healthy) = (name.clone(), count.clone(), healthy.clone());
                async move { answer(&name, count.load(Ordering::Relaxed), healthy()) }
            });
            let stop = stop.clone();
            tokio::spawn(async move {
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(stop.cancelled_owned())
                    .await;
            });
        }
        Ok(Instance {
            port: hc.port,
            endpoints,
            stop,
        })
    }

    /// The Services being served.
    pub fn services(&self) -> BTreeSet<ServiceName> {
        self.instances.keys().cloned().collect()
    }
}

impl Drop for ServiceHealthServer {
    fn drop(&mut self) {
        for inst in self.instances.values() {
            inst.stop.cancel();
        }
    }
}
