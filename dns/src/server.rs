//! The DNS listeners: UDP and TCP on the same address and port. UDP requests answered
//! from memory are answered inline by the receiving task; those that need an upstream are
//! finished in their own task so they never hold up the socket. TCP connections carry any
//! number of length-prefixed requests, answered in order, and close after an idle period.

use crate::handler::{Handler, Step};
use crate::metrics::Transport;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long an idle TCP connection is kept (CoreDNS's default read timeout is similar).
const TCP_IDLE: Duration = Duration::from_secs(10);

/// Bound UDP and TCP sockets.
pub struct Listeners {
    /// The UDP socket.
    pub udp: Arc<UdpSocket>,
    /// The TCP listener.
    pub tcp: TcpListener,
}

impl Listeners {
    /// Binds UDP and TCP on `addr`. Port 0 picks a port free for both.
    pub async fn bind(addr: SocketAddr) -> anyhow::Result<Self> {
        let attempts = if addr.port() == 0 { 20 } else { 1 };
        let mut last = None;
        for _ in 0..attempts {
            let udp = UdpSocket::bind(addr)
                .await
                .map_err(|e| anyhow::anyhow!("failed to listen on {addr}/udp: {e}"))?;
            let port = udp.local_addr()?.port();
            match TcpListener::bind(SocketAddr::new(addr.ip(), port)).await {
                Ok(tcp) => {
                    return Ok(Listeners {
                        udp: Arc::new(udp),
                        tcp,
                    })
                }
                Err(e) => last = Some(anyhow::anyhow!("failed to listen on {addr}/tcp: {e}")),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("failed to listen on {addr}")))
    }

    /// The bound address (the same port for UDP and TCP).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.udp.local_addr()
    }
}

/// Serves `listeners` with `handler` until `shutdown`: `udp_tasks` tasks receive on the UDP
/// socket, one accepts TCP connections.
pub fn spawn(
    listeners: Listeners,
    handler: Arc<Handler>,
    udp_tasks: usize,
    shutdown: CancellationToken,
) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    for _ in 0..udp_tasks.max(1) {
        tasks.push(tokio::spawn(serve_udp(
            listeners.udp.clone(),
            handler.clone(),
            shutdown.clone(),
        )));
    }
    tasks.push(tokio::spawn(serve_tcp(listeners.tcp, handler, shutdown)));
    tasks
}

async fn serve_udp(socket: Arc<UdpSocket>, handler: Arc<Handler>, shutdown: CancellationToken) {
    let mut buf = vec![0u8; 65535];
    loop {
        let (n, peer) = tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok(r) => r,
                Err(e) => {
                    // ICMP errors from earlier sends surface here; keep serving.
                    tracing::debug!(error = %e, "UDP receive failed");
                    continue;
                }
            },
            _ = shutdown.cancelled() => return,
        };
        let transport = Transport {
            tcp: false,
            ipv6: peer.is_ipv6() && !is_v4_mapped(peer),
        };
        match handler.handle_local(&buf[..n], transport, peer) {
            Step::Reply(bytes) => {
                if let Err(e) = socket.send_to(&bytes, peer).await {
                    tracing::debug!(error = %e, %peer, "UDP send failed");
                }
            }
            Step::Forward(pending) => {
                let socket = socket.clone();
                let handler = handler.clone();
                tokio::spawn(async move {
                    let bytes = handler.forward(pending).await;
                    let _ = socket.send_to(&bytes, peer).await;
                });
            }
            Step::Drop => {}
        }
    }
}

fn is_v4_mapped(peer: SocketAddr) -> bool {
    match peer {
        SocketAddr::V6(v6) => v6.ip().to_ipv4_mapped().is_some(),
        SocketAddr::V4(_) => false,
    }
}

async fn serve_tcp(listener: TcpListener, handler: Arc<Handler>, shutdown: CancellationToken) {
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "TCP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => return,
        };
        let handler = handler.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = serve_connection(stream, peer, &handler) => {}
                _ = shutdown.cancelled() => {}
            }
        });
    }
}

async fn serve_connection(mut stream: TcpStream, peer: SocketAddr, handler: &Handler) {
    let transport = Transport {
        tcp: true,
        ipv6: peer.is_ipv6() && !is_v4_mapped(peer),
    };
    let mut buf = vec![0u8; 65535];
    loop {
        let len = match tokio::time::timeout(TCP_IDLE, stream.read_u16()).await {
            Ok(Ok(len)) => usize::from(len),
            _ => return,
        };
        match tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut buf[..len])).await {
            Ok(Ok(_)) => {}
            _ => return,
        }
        let Some(reply) = handler.handle(&buf[..len], transport, peer).await else {
            continue;
        };
        let Ok(reply_len) = u16::try_from(reply.len()) else {
            return;
        };
        let mut framed = Vec::with_capacity(reply.len() + 2);
        framed.extend_from_slice(&reply_len.to_be_bytes());
        framed.extend_from_slice(&reply);
        if stream.write_all(&framed).await.is_err() {
            return;
        }
    }
}
