//! The long-running proxy: watch Services, EndpointSlices and the own Node, fold events
//! into one tracker per IP family, and sync — at most once per `--min-sync-period` after a
//! change, at least once per `--sync-period` — then clean stale UDP conntrack flows.

use super::healthz::{self, HealthState};
use super::node;
use super::options::{ProxyMode, ProxyOptions, COMPONENT};
use component_base::client::ClientOptions;
use component_base::server::{self, Authorization, Health, ServingOptions};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::ServiceCIDR;
use kube::runtime::watcher::{self, Event};
use kube::{Api, ResourceExt};
use proxy::config::ProxierConfig;
use proxy::healthcheck::{self, ServiceHealthServer};
use proxy::iptables::Iptables;
use proxy::metrics::ProxyMetrics;
use proxy::model::service_cidr::service_cidrs;
use proxy::model::{IpFamily, ServiceName};
use proxy::nftables::Nft;
use proxy::sync::{FamilySyncer, IptSyncer, Syncer};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Upstream's period of forced full syncs.
const FULL_SYNC_PERIOD: Duration = Duration::from_secs(3600);

/// Environment variable naming a network namespace where rules (and conntrack cleanup)
/// go instead of the host's: a test and benchmark hook, not an upstream flag.
pub const NETNS_ENV: &str = "FERROKUBE_PROXY_NETNS";

fn target_netns() -> Option<String> {
    std::env::var(NETNS_ENV).ok().filter(|s| !s.is_empty())
}

fn nft() -> Nft {
    match target_netns() {
        Some(ns) => Nft::in_netns(&ns),
        None => Nft::host(),
    }
}

/// Removes our rules in both families and both modes (`--cleanup`), as upstream cleans
/// up after every proxier.
pub fn cleanup() -> anyhow::Result<()> {
    let nft = nft();
    let netns = target_netns();
    for family in [IpFamily::V4, IpFamily::V6] {
        match Iptables::new(family, netns.as_deref()).cleanup() {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                family = family.api_name(),
                chains = n,
                "Deleted the kube-proxy iptables chains"
            ),
            // ip6tables may be unusable where IPv6 is off; not an error for cleanup.
            Err(e) => {
                tracing::warn!(family = family.api_name(), error = %e, "iptables cleanup failed")
            }
        }
        match nft.delete_table(family) {
            Ok(true) => tracing::info!(
                family = family.api_name(),
                "Deleted the kube-proxy nftables table"
            ),
            Ok(false) => {}
            Err(e) => anyhow::bail!("cleanup failed: {e}"),
        }
    }
    Ok(())
}

/// One watch event of the three watched kinds (boxed: the objects are large).
enum Watched {
    Service(Box<Event<Service>>),
    Slice(Box<Event<EndpointSlice>>),
    Node(Box<Event<Node>>),
    ServiceCidr(Box<Event<ServiceCIDR>>),
}

fn forward<K, F>(
    api: Api<K>,
    config: watcher::Config,
    tx: mpsc::UnboundedSender<Watched>,
    wrap: F,
    shutdown: CancellationToken,
) where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
    F: Fn(Event<K>) -> Watched + Send + 'static,
{
    tokio::spawn(async move {
        let stream = component_base::watch_backoff::backoff(watcher::watcher(api, config));
        let mut stream = std::pin::pin!(stream.take_until(shutdown.cancelled_owned()));
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(ev) => {
                    // managedFields are never read and can be most of an object's size.
                    let ev = ev.modify(|o| o.meta_mut().managed_fields = None);
                    if tx.send(wrap(ev)).is_err() {
                        return;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "Watch failed; retrying"),
            }
        }
    });
}

/// Follows one resource's list/watch events, remembering the objects so a re-list can
/// delete the ones that vanished meanwhile.
struct Mirror<K> {
    /// What is kept of each object: enough to report its deletion.
    keep: fn(&K) -> K,
    known: HashMap<(String, String), K>,
    relisting: Option<HashSet<(String, String)>>,
    synced: bool,
}

impl<K: kube::Resource + Clone> Mirror<K> {
    fn new(keep: fn(&K) -> K) -> Self {
        Mirror {
            keep,
            known: HashMap::new(),
            relisting: None,
            synced: false,
        }
    }

    /// Turns a watch event into (object, deleted) changes.
    fn changes(&mut self, ev: Event<K>) -> Vec<(K, bool)> {
        let key = |o: &K| {
            (
                o.meta().namespace.clone().unwrap_or_default(),
                o.meta().name.clone().unwrap_or_default(),
            )
        };
        match ev {
            Event::Apply(o) | Event::InitApply(o) => {
                if let Some(seen) = &mut self.relisting {
                    seen.insert(key(&o));
                }
                self.known.insert(key(&o), (self.keep)(&o));
                vec![(o, false)]
            }
            Event::Delete(o) => {
                self.known.remove(&key(&o));
                vec![(o, true)]
            }
            Event::Init => {
                self.relisting = Some(HashSet::new());
                Vec::new()
            }
            Event::InitDone => {
                self.synced = true;
                let seen = self.relisting.take().unwrap_or_default();
                let gone: Vec<_> = self
                    .known
                    .keys()
                    .filter(|k| !seen.contains(*k))
                    .cloned()
                    .collect();
                gone.into_iter()
                    .filter_map(|k| self.known.remove(&k))
                    .map(|o| (o, true))
                    .collect()
            }
        }
    }
}

fn families(opts: &ProxyOptions, node_ips: &[std::net::IpAddr]) -> Vec<IpFamily> {
    let mut out: Vec<IpFamily> = node_ips.iter().map(IpFamily::of).collect();
    out.extend(opts.cluster_cidrs.iter().map(|c| IpFamily::of(&c.addr)));
    let mut seen = Vec::new();
    for f in out {
        if !seen.contains(&f) {
            seen.push(f);
        }
    }
    if seen.is_empty() {
        seen.push(IpFamily::V4);
    }
    seen
}

async fn fetch_node(api: &Api<Node>, name: &str, shutdown: &CancellationToken) -> Option<Node> {
    for attempt in 0..6 {
        match api.get_opt(name).await {
            Ok(Some(n)) => return Some(n),
            Ok(None) => tracing::info!(node = name, attempt, "Node not found yet"),
            Err(e) => tracing::warn!(node = name, error = %e, "Cannot get the Node"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            _ = shutdown.cancelled() => return None,
        }
    }
    tracing::warn!(
        node = name,
        "Node not found; node IPs and topology labels are unknown"
    );
    None
}

/// The metadata a deletion needs (name, namespace, labels naming the Service, and the
/// annotations carrying the endpoints' trigger time), without the rest of the object.
fn identity(
    m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        name: m.name.clone(),
        namespace: m.namespace.clone(),
        labels: m.labels.clone(),
        annotations: m.annotations.clone(),
        ..Default::default()
    }
}

/// Upstream's Warning event when a healthCheckNodePort cannot be opened.
fn failed_health_check_event(
    node: &str,
    svc: &ServiceName,
    port: u16,
    error: &str,
) -> component_base::events::EventSpec {
    component_base::events::EventSpec {
        regarding: k8s_openapi::api::core::v1::ObjectReference {
            kind: Some("Service".into()),
            namespace: Some(svc.namespace.clone()),
            name: Some(svc.name.clone()),
            uid: Some(format!("{}/{}", svc.namespace, svc.name)),
            ..Default::default()
        },
        related: None,
        type_: component_base::events::EventType::Warning,
        reason: "FailedToStartServiceHealthcheck".into(),
        action: "Listen".into(),
        note: format!(
            "node {node} failed to start healthcheck \"{}/{}\" on port {port}: {error}",
            svc.namespace, svc.name
        ),
    }
}

/// Runs the proxy until SIGTERM/SIGINT.
pub async fn run(opts: ProxyOptions) -> anyhow::Result<()> {
    let shutdown = component_base::shutdown::on_signal();
    let mut copts = ClientOptions::new(COMPONENT);
    copts.kubeconfig = opts.kubeconfig.clone();
    copts.master = opts.master.clone();
    copts.qps = opts.qps;
    copts.burst = opts.burst;
    copts.content_type = opts.content_type.clone();
    let client = component_base::client::client(&copts).await?;
    let node_name = component_base::hostname::node_name(opts.hostname_override.as_deref());
    let nodes: Api<Node> = Api::all(client.clone());
    let this_node = fetch_node(&nodes, &node_name, &shutdown).await;
    let mut node_ips = this_node.as_ref().map(node::node_ips).unwrap_or_default();
    if let Some(ip) = opts.bind_address {
        node_ips.insert(0, ip);
    }
    let labels: BTreeMap<String, String> = this_node
        .as_ref()
        .map(|n| n.labels().clone())
        .unwrap_or_default();
    let local = node::local_addresses();
    let netns = target_netns();
    let mut syncers: Vec<Box<dyn Syncer>> = families(&opts, &node_ips)
        .into_iter()
        .map(|family| {
            let mut cfg = ProxierConfig::new(family, &node_name);
            cfg.masquerade_bit = opts.masquerade_bit;
            cfg.masquerade_all = opts.masquerade_all;
            cfg.cluster_cidr = opts
                .cluster_cidrs
                .iter()
                .find(|c| IpFamily::of(&c.addr) == family)
                .copied();
            cfg.nodeport_ips =
                node::nodeport_ips(&opts.nodeport_addresses, family, &node_ips, &local);
            cfg.node_ip = node_ips
                .iter()
                .find(|ip| IpFamily::of(ip) == family)
                .copied();
            cfg.node_labels = labels.clone();
            cfg.localhost_nodeports = opts.localhost_nodeports;
            match opts.mode {
                ProxyMode::Nftables => {
                    tracing::info!(family = family.api_name(), node = %node_name, "Using nftables proxier");
                    Box::new(FamilySyncer::new(cfg, nft())) as Box<dyn Syncer>
                }
                ProxyMode::Iptables => {
                    tracing::info!(family = family.api_name(), node = %node_name, "Using iptables proxier");
                    let ipt = Iptables::new(family, netns.as_deref());
                    let loopback_nodeports = cfg
                        .nodeport_ips
                        .as_ref()
                        .is_none_or(|ips| ips.iter().any(|ip| ip.is_loopback()));
                    if family == IpFamily::V4 && cfg.localhost_nodeports && loopback_nodeports {
                        if let Err(e) = ipt.enable_route_localnet() {
                            tracing::warn!(error = %e, "Cannot enable route_localnet; localhost NodePorts will not work");
                        }
                    }
                    Box::new(IptSyncer::new(cfg, ipt))
                }
            }
        })
        .collect();
    let mode_name = match opts.mode {
        ProxyMode::Nftables => "nftables",
        ProxyMode::Iptables => "iptables",
    };

    let registry = component_base::metrics::Metrics::new();
    let metrics = ProxyMetrics::register(&registry);
    let health = HealthState::new(2 * opts.sync_period);
    health.set_node_eligible(healthz::node_eligible(this_node.as_ref()));
    // healthCheckNodePorts listen on the NodePort addresses (all addresses by default).
    let mut hc_bind: Vec<std::net::IpAddr> = Vec::new();
    let mut hc_all = false;
    for s in syncers.iter_mut() {
        match &s.config().nodeport_ips {
            Some(ips) => hc_bind.extend(ips.iter().copied()),
            None => hc_all = true,
        }
    }
    if hc_all {
        hc_bind.clear();
    }
    let hc_health = health.clone();
    let mut service_health = ServiceHealthServer::new(
        hc_bind,
        std::sync::Arc::new(move || hc_health.healthy(std::time::SystemTime::now())),
    );
    let recorder =
        component_base::events::EventRecorder::new(client.clone(), COMPONENT, &node_name);
    let mut servers = Vec::new();
    if let Some(addr) = opts.healthz_bind {
        let serving = ServingOptions {
            bind_address: addr.ip(),
            port: addr.port(),
            tls: None,
        };
        servers.push(
            server::serve(
                COMPONENT,
                &serving,
                healthz::router(health.clone(), Some(metrics.clone())),
                Authorization::AlwaysAllow,
                shutdown.clone(),
            )
            .await?,
        );
    }
    if let Some(addr) = opts.metrics_bind {
        let app = server::router(Health::default(), registry.clone()).route(
            "/proxyMode",
            axum::routing::get(move || async move { mode_name }),
        );
        let serving = ServingOptions {
            bind_address: addr.ip(),
            port: addr.port(),
            tls: None,
        };
        servers.push(
            server::serve(
                COMPONENT,
                &serving,
                app,
                Authorization::AlwaysAllow,
                shutdown.clone(),
            )
            .await?,
        );
    }

    let (tx, mut rx) = mpsc::unbounded_channel();
    let not_ours = "!service.kubernetes.io/service-proxy-name";
    forward(
        Api::<Service>::all(client.clone()),
        watcher::Config::default().labels(not_ours),
        tx.clone(),
        |e| Watched::Service(Box::new(e)),
        shutdown.clone(),
    );
    forward(
        Api::<EndpointSlice>::all(client.clone()),
        watcher::Config::default().labels(&format!("{not_ours},!service.kubernetes.io/headless")),
        tx.clone(),
        |e| Watched::Slice(Box::new(e)),
        shutdown.clone(),
    );
    forward(
        nodes,
        watcher::Config::default().fields(&format!("metadata.name={node_name}")),
        tx.clone(),
        |e| Watched::Node(Box::new(e)),
        shutdown.clone(),
    );
    // MultiCIDRServiceAllocator is GA and locked on: upstream always watches ServiceCIDRs.
    forward(
        Api::<ServiceCIDR>::all(client.clone()),
        watcher::Config::default(),
        tx,
        |e| Watched::ServiceCidr(Box::new(e)),
        shutdown.clone(),
    );

    let mut services = Mirror::<Service>::new(|s| Service {
        metadata: identity(&s.metadata),
        ..Default::default()
    });
    let mut slices = Mirror::<EndpointSlice>::new(|s| EndpointSlice {
        metadata: identity(&s.metadata),
        address_type: s.address_type.clone(),
        endpoints: Vec::new(),
        ports: None,
    });
    let mut node_mirror = Mirror::<Node>::new(Node::clone);
    let mut service_cidr_mirror = Mirror::<ServiceCIDR>::new(ServiceCIDR::clone);
    let mut dirty = false;
    let mut initial_done = false;
    let mut last_sync = Instant::now();
    let mut last_full = Instant::now();
    loop {
        let ready = services.synced && slices.synced;
        let deadline = if !ready {
            Instant::now() + Duration::from_secs(3600)
        } else if !initial_done {
            Instant::now()
        } else if dirty {
            last_sync + opts.min_sync_period
        } else {
            last_sync + opts.sync_period
        };
        tokio::select! {
            _ = shutdown.cancelled() => break,
            ev = rx.recv() => {
                let Some(ev) = ev else { break };
                let changed = match ev {
                    Watched::Service(ev) => services.changes(*ev).into_iter().fold(false, |acc, (svc, deleted)| {
                        let name = ServiceName::new(&svc.namespace().unwrap_or_default(), &svc.name_any());
                        syncers.iter_mut().fold(acc, |acc, s| s.tracker().update_service(name.clone(), (!deleted).then_some(&svc)) | acc)
                    }),
                    Watched::Slice(ev) => slices.changes(*ev).into_iter().fold(false, |acc, (slice, deleted)| {
                        syncers.iter_mut().fold(acc, |acc, s| s.tracker().update_slice(&slice, deleted) | acc)
                    }),
                    Watched::Node(ev) => {
                        for (n, deleted) in node_mirror.changes(*ev) {
                            health.set_node_eligible(!deleted && healthz::node_eligible(Some(&n)));
                            let new_labels = n.labels().clone();
                            for s in syncers.iter_mut() {
                                if s.config().node_labels == new_labels {
                                    continue;
                                }
                                tracing::info!("Node labels changed; full resync");
                                s.config().node_labels = new_labels.clone();
                                s.force_full_sync();
                                dirty = true;
                            }
                        }
                        false
                    }
                    Watched::ServiceCidr(ev) => {
                        service_cidr_mirror.changes(*ev);
                        for s in syncers.iter_mut() {
                            let cidrs = service_cidrs(service_cidr_mirror.known.values(), s.family());
                            if s.config().service_cidrs != cidrs {
                                tracing::info!(family = s.family().api_name(), cidrs = ?cidrs.iter().map(ToString::to_string).collect::<Vec<_>>(), "ServiceCIDRs changed");
                                s.config().service_cidrs = cidrs;
                                dirty = true;
                            }
                        }
                        false
                    }
                };
                if changed {
                    dirty = true;
                    for s in syncers.iter_mut() {
                        if s.tracker().has_pending() {
                            health.queued(s.family());
                        }
                        let (svc, eps) = s.tracker().pending_changes();
                        metrics.queued(s.family(), svc, eps);
                    }
                }
            }
            _ = tokio::time::sleep_until(deadline.into()) => {
                if last_full.elapsed() >= FULL_SYNC_PERIOD {
                    syncers.iter_mut().for_each(|s| s.force_full_sync());
                    last_full = Instant::now();
                }
                let mut all_ok = true;
                for s in syncers.iter_mut() {
                    let start = Instant::now();
                    let out = tokio::task::block_in_place(|| s.sync());
                    metrics.synced(s.family(), &out, start.elapsed());
                    tracing::debug!(family = s.family().api_name(), full = out.full, commands = out.commands,
                        generate = ?out.generate, apply = ?out.apply, "SyncProxyRules complete");
                    if out.error.is_some() {
                        all_ok = false;
                    } else {
                        health.updated(s.family());
                    }
                    if out.error.is_none() && !out.update.stale_udp.is_empty() {
                        let family = s.family();
                        let n = tokio::task::block_in_place(|| proxy::conntrack::clean(&out.update.stale_udp, family, netns.as_deref()));
                        metrics.conntrack_deleted(family, n);
                    }
                }
                let wanted = healthcheck::merge(syncers.iter_mut().map(|s| healthcheck::health_checks(s.tracker())));
                for (svc, error) in service_health.sync(&wanted) {
                    let port = wanted.get(&svc).map_or(0, |hc| hc.port);
                    let event = failed_health_check_event(&node_name, &svc, port, &error);
                    let recorder = recorder.clone();
                    tokio::spawn(async move { recorder.record(event).await });
                }
                initial_done = true;
                dirty = !all_ok;
                last_sync = Instant::now();
            }
        }
    }
    for (_, handle) in servers.into_iter().flatten() {
        let _ = handle.await;
    }
    Ok(())
}
