//! Forwarding-loop detection, as CoreDNS's `loop` plugin: at start-up the server sends
//! itself a query for a random name (`<n>.<m>.` HINFO) that only the upstreams can
//! answer. Seeing that name arrive more than twice means the upstreams send our own
//! queries back to us (a node resolv.conf pointing at the cluster DNS), and the server
//! stops with an error saying so, rather than melting down.

use crate::names;
use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RecordType};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How many times the probe is sent at most (once a second), as CoreDNS.
const PROBE_ATTEMPTS: u32 = 30;

/// The probe name and how often it was seen.
#[derive(Debug)]
pub struct LoopGuard {
    probe: Name,
    probe_key: String,
    seen: AtomicU32,
    detected: CancellationToken,
}

impl Default for LoopGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl LoopGuard {
    /// A guard with a fresh random probe name.
    pub fn new() -> Self {
        let text = format!("{}.{}.", rand::random::<u64>(), rand::random::<u64>());
        let probe = Name::from_ascii(&text).unwrap_or_else(|_| Name::root());
        LoopGuard {
            probe_key: names::key_of(&probe),
            probe,
            seen: AtomicU32::new(0),
            detected: CancellationToken::new(),
        }
    }

    /// The probe name.
    pub fn probe_name(&self) -> &Name {
        &self.probe
    }

    /// Notes a query for `key` from `peer`; the third sighting of the probe name is a loop.
    pub fn observe(&self, key: &str, peer: SocketAddr, server: &str) {
        if key != self.probe_key {
            return;
        }
        let seen = self.seen.fetch_add(1, Ordering::AcqRel) + 1;
        if seen > 2 && !self.detected.is_cancelled() {
            tracing::error!(
                "Loop ({peer} -> {server}) detected for zone \".\", see https://coredns.io/plugins/loop#troubleshooting. Query: \"HINFO {}\"",
                self.probe
            );
            self.detected.cancel();
        }
    }

    /// Cancelled once a loop is detected.
    pub fn detected(&self) -> CancellationToken {
        self.detected.clone()
    }

    /// Whether a loop was detected.
    pub fn is_detected(&self) -> bool {
        self.detected.is_cancelled()
    }

    /// Sends the probe to the server at `server` until any answer comes back, a loop is
    /// found, `PROBE_ATTEMPTS` have been made, or `shutdown`.
    pub async fn probe(&self, server: SocketAddr, shutdown: CancellationToken) {
        let local: SocketAddr = if server.is_ipv6() {
            SocketAddr::from(([0u16; 8], 0))
        } else {
            SocketAddr::from(([127, 0, 0, 1], 0))
        };
        let Ok(socket) = tokio::net::UdpSocket::bind(local).await else {
            tracing::warn!("Loop detection: cannot open a socket; skipped");
            return;
        };
        let mut query = Message::query();
        query.metadata.recursion_desired = true;
        query.add_query(Query::query(self.probe.clone(), RecordType::HINFO));
        let Ok(bytes) = query.to_vec() else {
            return;
        };
        let mut buf = vec![0u8; 4096];
        for _ in 0..PROBE_ATTEMPTS {
            if self.is_detected() || shutdown.is_cancelled() {
                return;
            }
            if socket.send_to(&bytes, server).await.is_err() {
                return;
            }
            let answered = tokio::select! {
                r = tokio::time::timeout(Duration::from_secs(1), socket.recv_from(&mut buf)) => {
                    matches!(r, Ok(Ok(_)))
                }
                _ = shutdown.cancelled() => return,
                _ = self.detected.cancelled() => return,
            };
            if answered {
                tracing::debug!("Loop detection probe answered; no loop");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn third_sighting_of_the_probe_is_a_loop() {
        let guard = LoopGuard::new();
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let key = names::key_of(guard.probe_name());
        guard.observe("example.com", peer, "dns://:53");
        guard.observe(&key, peer, "dns://:53");
        guard.observe(&key, peer, "dns://:53");
        assert!(!guard.is_detected());
        guard.observe(&key, peer, "dns://:53");
        assert!(guard.is_detected());
        assert_ne!(
            LoopGuard::new().probe_name(),
            guard.probe_name(),
            "probe names are random"
        );
    }
}
