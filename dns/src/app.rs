//! Putting the server together: the store and its source (apiserver watches, or a static
//! file in tests), the DNS listeners, the HTTP endpoints, loop detection, shutdown.

use crate::cache::Cache;
use crate::config::Config;
use crate::forward::Forwarder;
use crate::handler::Handler;
use crate::http::{self, HttpPorts};
use crate::loop_detect::LoopGuard;
use crate::metrics::{server_label, DnsMetrics};
use crate::server::{self, Listeners};
use crate::store::Store;
use component_base::metrics::Metrics;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// A started server.
pub struct Running {
    /// Where DNS is served (UDP and TCP).
    pub dns_addr: SocketAddr,
    /// HTTP port → bound address.
    pub http: BTreeMap<u16, SocketAddr>,
    /// Cancelled when a forwarding loop is detected.
    pub loop_detected: CancellationToken,
    /// The loop guard, for the probe.
    pub loop_guard: Arc<LoopGuard>,
}

/// Binds and starts serving `store` as `config` says, until `shutdown`.
pub async fn start(
    config: &Config,
    store: Arc<Store>,
    registry: Metrics,
    shutdown: CancellationToken,
) -> anyhow::Result<Running> {
    let listeners = Listeners::bind(config.dns_addr).await?;
    let dns_addr = listeners.local_addr()?;
    let label = server_label(config.dns_addr.ip(), dns_addr.port());
    let metrics = DnsMetrics::register(&registry, &label);
    let forwarder = Arc::new(Forwarder::new(
        config.upstreams.clone(),
        config.forward_timeout,
        Some(metrics.clone()),
    ));
    let loop_guard = Arc::new(LoopGuard::new());
    let handler = Arc::new(Handler::new(
        store.clone(),
        config.dns_service.clone(),
        forwarder,
        Cache::new(config.options.cache_size, config.options.cache_ttl),
        metrics,
        loop_guard.clone(),
        label,
    ));
    let workers = match config.options.udp_workers {
        0 => tokio::runtime::Handle::current().metrics().num_workers(),
        n => n,
    };
    server::spawn(listeners, handler, workers, shutdown.clone());
    let http = http::serve(
        config.options.http_bind_address,
        HttpPorts {
            health: config.options.health_port,
            ready: config.options.ready_port,
            metrics: config.options.metrics_port,
        },
        store,
        registry,
        shutdown,
    )
    .await?;
    tracing::info!(address = %dns_addr, zones = ?config.zones.iter().map(|z| z.to_ascii()).collect::<Vec<_>>(), upstreams = ?config.upstreams, "Serving DNS");
    Ok(Running {
        dns_addr,
        http,
        loop_detected: loop_guard.detected(),
        loop_guard,
    })
}

/// The process: build the client and store, start serving, probe for loops, and run until
/// a signal (or a detected loop, which is an error).
pub async fn run(config: Config) -> anyhow::Result<()> {
    let shutdown = component_base::shutdown::on_signal();
    let store = Arc::new(Store::new(config.zones.clone(), config.options.ttl));
    let registry = Metrics::new();
    match &config.options.static_objects {
        Some(path) => {
            let (services, slices) = crate::static_source::load(path, &store)?;
            tracing::info!(
                services,
                endpointslices = slices,
                "Loaded static objects (test mode)"
            );
        }
        None => {
            let mut opts = component_base::client::ClientOptions::new("ferrokube-dns");
            opts.kubeconfig = config.options.kubeconfig.clone();
            opts.master = config.options.master.clone();
            opts.qps = config.options.kube_api_qps;
            opts.burst = config.options.kube_api_burst;
            let client = component_base::client::client(&opts).await?;
            crate::watch::spawn(client, store.clone(), shutdown.clone());
        }
    }
    if config.upstreams.is_empty() {
        tracing::warn!(resolv_conf = %config.options.resolv_conf, "No upstream resolvers: names outside the cluster zones get SERVFAIL");
    }
    let running = start(&config, store, registry, shutdown.clone()).await?;
    if config.options.loop_detection && !config.upstreams.is_empty() {
        let guard = running.loop_guard.clone();
        let target = probe_target(running.dns_addr);
        let probe_shutdown = shutdown.clone();
        tokio::spawn(async move { guard.probe(target, probe_shutdown).await });
    }
    tokio::select! {
        _ = shutdown.cancelled() => Ok(()),
        _ = running.loop_detected.cancelled(), if config.options.loop_detection => {
            shutdown.cancel();
            anyhow::bail!("forwarding loop detected: the upstream resolvers send queries back to this server (see https://coredns.io/plugins/loop#troubleshooting)")
        }
    }
}

/// Where the server can send itself the loop probe.
fn probe_target(bound: SocketAddr) -> SocketAddr {
    let ip = match bound.ip() {
        ip if !ip.is_unspecified() => ip,
        std::net::IpAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
    };
    SocketAddr::new(ip, bound.port())
}
