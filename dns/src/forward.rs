//! Forwarding to upstream resolvers, as CoreDNS's `forward` plugin: the question goes to
//! one upstream after another (starting at a random one) over UDP, retried over TCP when
//! the answer is truncated, each try bounded by a timeout.

use crate::metrics::DnsMetrics;
use hickory_proto::op::{Edns, Message, Query};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// The UDP buffer size advertised upstream (the DNS flag day 2020 value).
const UPSTREAM_UDP_SIZE: u16 = 1232;

/// Why no upstream answered.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// No upstreams are configured.
    #[error("no upstream resolvers")]
    NoUpstreams,
    /// Every upstream failed; the last error.
    #[error("all upstreams failed, last: {0}")]
    Failed(String),
}

/// The upstream resolvers and how long to wait for each.
#[derive(Debug)]
pub struct Forwarder {
    upstreams: Vec<SocketAddr>,
    timeout: Duration,
    metrics: Option<DnsMetrics>,
}

impl Forwarder {
    /// Forwards to `upstreams`, waiting `timeout` per try.
    pub fn new(upstreams: Vec<SocketAddr>, timeout: Duration, metrics: Option<DnsMetrics>) -> Self {
        Forwarder {
            upstreams,
            timeout,
            metrics,
        }
    }

    /// The upstreams.
    pub fn upstreams(&self) -> &[SocketAddr] {
        &self.upstreams
    }

    /// Asks the upstreams `query` (recursion desired); returns the first answer.
    pub async fn exchange(&self, query: &Query, dnssec_ok: bool) -> Result<Message, ForwardError> {
        if self.upstreams.is_empty() {
            return Err(ForwardError::NoUpstreams);
        }
        let mut request = Message::query();
        request.metadata.recursion_desired = true;
        request.add_query(query.clone());
        let mut edns = Edns::new();
        edns.set_max_payload(UPSTREAM_UDP_SIZE);
        edns.set_dnssec_ok(dnssec_ok);
        request.set_edns(edns);
        let start = rand::random_range(0..self.upstreams.len());
        let mut last = String::new();
        for i in 0..self.upstreams.len() {
            let upstream = self.upstreams[(start + i) % self.upstreams.len()];
            request.metadata.id = rand::random();
            let result =
                tokio::time::timeout(self.timeout, exchange_with(upstream, &request)).await;
            let outcome = match result {
                Ok(Ok(reply)) => Ok(reply),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(format!("{upstream}: timed out after {:?}", self.timeout)),
            };
            if let Some(m) = &self.metrics {
                m.forwarded(
                    &upstream.to_string(),
                    outcome.as_ref().ok().map(|r| r.response_code),
                );
            }
            match outcome {
                Ok(reply) => return Ok(reply),
                Err(e) => {
                    tracing::debug!(error = %e, "Upstream failed");
                    last = e;
                }
            }
        }
        Err(ForwardError::Failed(last))
    }
}

fn matches(request: &Message, reply: &Message) -> bool {
    reply.id == request.id
        && reply.queries.len() == 1
        && reply.queries[0]
            .name()
            .eq_ignore_root(request.queries[0].name())
        && reply.queries[0].query_type() == request.queries[0].query_type()
}

async fn exchange_with(upstream: SocketAddr, request: &Message) -> Result<Message, String> {
    let reply = udp_exchange(upstream, request).await?;
    if reply.truncation {
        return tcp_exchange(upstream, request).await;
    }
    Ok(reply)
}

async fn udp_exchange(upstream: SocketAddr, request: &Message) -> Result<Message, String> {
    let local: SocketAddr = if upstream.is_ipv6() {
        "[::]:0".parse().map_err(|e| format!("{e}"))?
    } else {
        "0.0.0.0:0".parse().map_err(|e| format!("{e}"))?
    };
    let socket = UdpSocket::bind(local)
        .await
        .map_err(|e| format!("{upstream}: {e}"))?;
    socket
        .connect(upstream)
        .await
        .map_err(|e| format!("{upstream}: {e}"))?;
    let bytes = request.to_vec().map_err(|e| format!("{e}"))?;
    socket
        .send(&bytes)
        .await
        .map_err(|e| format!("{upstream}: {e}"))?;
    let mut buf = vec![0u8; 65535];
    loop {
        let n = socket
            .recv(&mut buf)
            .await
            .map_err(|e| format!("{upstream}: {e}"))?;
        // Stray or spoofed datagrams are skipped; the timeout bounds the wait.
        if let Ok(reply) = Message::from_vec(&buf[..n]) {
            if matches(request, &reply) {
                return Ok(reply);
            }
        }
    }
}

async fn tcp_exchange(upstream: SocketAddr, request: &Message) -> Result<Message, String> {
    let err = |e: std::io::Error| format!("{upstream} (tcp): {e}");
    let mut stream = TcpStream::connect(upstream).await.map_err(err)?;
    let bytes = request.to_vec().map_err(|e| format!("{e}"))?;
    let len = u16::try_from(bytes.len()).map_err(|_| "request too long".to_string())?;
    let mut framed = len.to_be_bytes().to_vec();
    framed.extend_from_slice(&bytes);
    stream.write_all(&framed).await.map_err(err)?;
    let len = stream.read_u16().await.map_err(err)?;
    let mut buf = vec![0u8; usize::from(len)];
    stream.read_exact(&mut buf).await.map_err(err)?;
    let reply = Message::from_vec(&buf).map_err(|e| format!("{upstream} (tcp): {e}"))?;
    if !matches(request, &reply) {
        return Err(format!("{upstream} (tcp): mismatched reply"));
    }
    Ok(reply)
}
