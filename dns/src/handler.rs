//! One request, start to finish: read it, answer it from the cluster records or the cache,
//! or hand it to the forwarder; fit the response to the transport; count it in CoreDNS's
//! metrics. The in-memory part is synchronous so the UDP loop answers cluster names
//! without spawning; only forwarding awaits.

use crate::answer::{self, Authority, Outcome};
use crate::cache::{Cache, CacheKey};
use crate::forward::Forwarder;
use crate::loop_detect::LoopGuard;
use crate::metrics::{DnsMetrics, Plugin, Transport};
use crate::model::ServiceKey;
use crate::names;
use crate::store::Store;
use crate::wire::{self, Parsed};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// What the handler needs besides the request.
pub struct Handler {
    store: Arc<Store>,
    dns_service: ServiceKey,
    forwarder: Arc<Forwarder>,
    cache: Cache,
    metrics: DnsMetrics,
    loop_guard: Arc<LoopGuard>,
    server_label: String,
}

/// A request that needs an upstream answer.
#[derive(Debug)]
pub struct Pending {
    request: Message,
    transport: Transport,
    started: Instant,
    key: CacheKey,
}

/// The result of the synchronous part.
#[derive(Debug)]
pub enum Step {
    /// Send these bytes back.
    Reply(Vec<u8>),
    /// Forward, then reply (see [`Handler::forward`]).
    Forward(Pending),
    /// Send nothing.
    Drop,
}

impl Handler {
    /// A handler answering from `store` and forwarding through `forwarder`.
    pub fn new(
        store: Arc<Store>,
        dns_service: ServiceKey,
        forwarder: Arc<Forwarder>,
        cache: Cache,
        metrics: DnsMetrics,
        loop_guard: Arc<LoopGuard>,
        server_label: String,
    ) -> Self {
        Handler {
            store,
            dns_service,
            forwarder,
            cache,
            metrics,
            loop_guard,
            server_label,
        }
    }

    /// The loop guard (for the start-up probe).
    pub fn loop_guard(&self) -> &Arc<LoopGuard> {
        &self.loop_guard
    }

    /// Handles `bytes` from `peer` completely, forwarding if needed.
    pub async fn handle(
        &self,
        bytes: &[u8],
        transport: Transport,
        peer: SocketAddr,
    ) -> Option<Vec<u8>> {
        match self.handle_local(bytes, transport, peer) {
            Step::Reply(b) => Some(b),
            Step::Forward(pending) => Some(self.forward(pending).await),
            Step::Drop => None,
        }
    }

    /// Everything that needs no upstream: errors, cluster answers, cache hits.
    pub fn handle_local(&self, bytes: &[u8], transport: Transport, peer: SocketAddr) -> Step {
        let started = Instant::now();
        let request = match wire::parse(bytes) {
            Parsed::Drop => return Step::Drop,
            Parsed::Error(mut reply) => {
                let qtype = reply
                    .queries
                    .first()
                    .map(|q| q.query_type())
                    .unwrap_or(RecordType::Unknown(0));
                self.metrics.request(transport, qtype, bytes.len(), false);
                let limit = if transport.tcp {
                    wire::MAX_TCP_SIZE
                } else {
                    wire::CLASSIC_UDP_SIZE
                };
                let out = wire::encode(&mut reply, limit);
                self.metrics.response(
                    transport,
                    qtype,
                    reply.response_code,
                    Plugin::Server,
                    out.len(),
                    started.elapsed().as_secs_f64(),
                );
                return Step::Reply(out);
            }
            Parsed::Query(request) => request,
        };
        let query = &request.queries[0];
        let qtype = query.query_type();
        let dnssec_ok = request.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok);
        self.metrics
            .request(transport, qtype, bytes.len(), dnssec_ok);
        let qkey = names::key_of(query.name());
        self.loop_guard.observe(&qkey, peer, &self.server_label);

        let outcome = {
            let state = self.store.read();
            let ns_addresses = || state.cluster_ips(&self.dns_service);
            let auth = Authority {
                zones: self.store.zones(),
                zone_keys: self.store.zone_keys(),
                soa_names: self.store.soa_names(),
                ttl: self.store.ttl(),
                index: &state.index,
                serial: state.serial,
                ns_addresses: &ns_addresses,
            };
            answer::resolve_key(&auth, query.name(), &qkey, qtype)
        };
        match outcome {
            Outcome::Answer(a) => {
                let mut reply = wire::response(&request, a.rcode);
                reply.metadata.authoritative = true;
                reply.answers = a.answers;
                reply.authorities = a.authorities;
                reply.additionals = a.additionals;
                Step::Reply(self.finish(&request, reply, transport, Plugin::Kubernetes, started))
            }
            Outcome::Forward => {
                let key = CacheKey::from_key(qkey, qtype, dnssec_ok);
                if self.cache.enabled() {
                    let hit = self.cache.get(&key, started);
                    self.metrics
                        .cache_lookup(hit.as_ref().map(|(_, kind)| *kind));
                    if let Some((cached, _)) = hit {
                        let reply = from_upstream(&request, cached);
                        return Step::Reply(self.finish(
                            &request,
                            reply,
                            transport,
                            Plugin::Cache,
                            started,
                        ));
                    }
                }
                Step::Forward(Pending {
                    request,
                    transport,
                    started,
                    key,
                })
            }
        }
    }

    /// Asks the upstreams for a pending request and builds the reply (SERVFAIL when none
    /// answers).
    pub async fn forward(&self, pending: Pending) -> Vec<u8> {
        let Pending {
            request,
            transport,
            started,
            key,
        } = pending;
        let query = &request.queries[0];
        let dnssec_ok = request.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok);
        let reply = match self.forwarder.exchange(query, dnssec_ok).await {
            Ok(upstream) => {
                if self.cache.insert(key, &upstream, Instant::now()).is_some() {
                    let (success, denial) = self.cache.sizes();
                    self.metrics
                        .cache_size(crate::metrics::CacheKind::Success, success);
                    self.metrics
                        .cache_size(crate::metrics::CacheKind::Denial, denial);
                }
                from_upstream(&request, upstream)
            }
            Err(e) => {
                tracing::debug!(name = %query.name(), error = %e, "Forwarding failed");
                wire::response(&request, ResponseCode::ServFail)
            }
        };
        self.finish(&request, reply, transport, Plugin::Forward, started)
    }

    fn finish(
        &self,
        request: &Message,
        mut reply: Message,
        transport: Transport,
        plugin: Plugin,
        started: Instant,
    ) -> Vec<u8> {
        let limit = if transport.tcp {
            wire::MAX_TCP_SIZE
        } else {
            wire::udp_limit(request)
        };
        let bytes = wire::encode(&mut reply, limit);
        self.metrics.response(
            transport,
            request.queries[0].query_type(),
            reply.response_code,
            plugin,
            bytes.len(),
            started.elapsed().as_secs_f64(),
        );
        bytes
    }
}

/// The client's reply carrying an upstream's (or the cache's) answer.
fn from_upstream(request: &Message, upstream: Message) -> Message {
    let mut reply = wire::response(request, upstream.response_code);
    reply.metadata.authentic_data = upstream.authentic_data;
    reply.answers = upstream.answers;
    reply.authorities = upstream.authorities;
    reply.additionals = upstream.additionals;
    reply
}
