//! Shared helpers of the dns component and e2e tests: running `dig` and parsing its
//! output, a tiny upstream DNS server on loopback, and HTTP status checks.

#![allow(dead_code)]

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::{A, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// What dig printed, parsed.
#[derive(Debug, Clone)]
pub struct Dig {
    /// `NOERROR`, `NXDOMAIN`, ...
    pub status: String,
    /// The header flags (`qr aa rd ra tc`).
    pub flags: Vec<String>,
    /// Answer records as `name ttl class type data` with single spaces.
    pub answers: Vec<String>,
    /// Authority records.
    pub authority: Vec<String>,
    /// Additional records.
    pub additional: Vec<String>,
    /// The whole output.
    pub raw: String,
}

impl Dig {
    /// Answer data fields (everything after the type), sorted.
    pub fn answer_data(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .answers
            .iter()
            .map(|a| a.splitn(5, ' ').nth(4).unwrap_or("").to_string())
            .collect();
        v.sort();
        v
    }
}

/// Runs `dig @addr -p port <args>` and parses its output.
pub fn dig(server: SocketAddr, args: &[&str]) -> Dig {
    let out = Command::new("dig")
        .arg(format!("@{}", server.ip()))
        .arg("-p")
        .arg(server.port().to_string())
        .args(["+tries=1", "+time=3", "+nocookie"])
        .args(args)
        .output()
        .expect("running dig (bind9-dnsutils)");
    let raw = String::from_utf8_lossy(&out.stdout).into_owned();
    parse(&raw)
}

fn parse(raw: &str) -> Dig {
    let mut dig = Dig {
        status: String::new(),
        flags: Vec::new(),
        answers: Vec::new(),
        authority: Vec::new(),
        additional: Vec::new(),
        raw: raw.to_string(),
    };
    let mut section = "";
    for line in raw.lines() {
        if let Some(rest) = line.split("status: ").nth(1) {
            dig.status = rest.split(',').next().unwrap_or("").trim().to_string();
        }
        if let Some(rest) = line.strip_prefix(";; flags: ") {
            dig.flags = rest
                .split(';')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .map(str::to_string)
                .collect();
        }
        if line.starts_with(";; ANSWER SECTION") {
            section = "answer";
            continue;
        }
        if line.starts_with(";; AUTHORITY SECTION") {
            section = "authority";
            continue;
        }
        if line.starts_with(";; ADDITIONAL SECTION") {
            section = "additional";
            continue;
        }
        if line.is_empty() || line.starts_with(';') {
            if line.is_empty() {
                section = "";
            }
            continue;
        }
        let record = line.split_whitespace().collect::<Vec<_>>().join(" ");
        match section {
            "answer" => dig.answers.push(record),
            "authority" => dig.authority.push(record),
            "additional" => dig.additional.push(record),
            _ => {}
        }
    }
    dig
}

/// A tiny upstream on 127.0.0.1: A queries for `*.example.` get 192.0.2.1 (TTL 60),
/// `nx.example.` gets NXDOMAIN with an SOA, anything else SERVFAIL. Counts queries.
pub struct FakeUpstream {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Queries received.
    pub queries: Arc<AtomicUsize>,
}

impl FakeUpstream {
    /// Starts it on a free UDP port.
    pub async fn start() -> FakeUpstream {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let queries = Arc::new(AtomicUsize::new(0));
        let counter = queries.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
                    return;
                };
                let Ok(request) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                counter.fetch_add(1, Ordering::SeqCst);
                let mut reply = Message::response(request.id, request.op_code);
                reply.metadata.message_type = MessageType::Response;
                reply.metadata.recursion_available = true;
                reply.queries = request.queries.clone();
                let q = &request.queries[0];
                let name = q.name().to_ascii().to_ascii_lowercase();
                if name == "nx.example." {
                    reply.metadata.response_code = ResponseCode::NXDomain;
                    let zone = Name::from_ascii("example.").unwrap();
                    reply.add_authority(Record::from_rdata(
                        zone.clone(),
                        60,
                        RData::SOA(SOA::new(zone.clone(), zone, 1, 1, 1, 1, 60)),
                    ));
                } else if name.ends_with(".example.") && q.query_type() == RecordType::A {
                    reply.add_answer(Record::from_rdata(
                        q.name().clone(),
                        60,
                        RData::A(A::new(192, 0, 2, 1)),
                    ));
                } else {
                    reply.metadata.response_code = ResponseCode::ServFail;
                }
                let _ = socket.send_to(&reply.to_vec().unwrap(), peer).await;
            }
        });
        FakeUpstream { addr, queries }
    }

    /// How many queries it has seen.
    pub fn count(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }
}

/// The HTTP status of `GET http://<addr><path>` (0 when unreachable).
pub fn http_status(addr: SocketAddr, path: &str) -> u16 {
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "3",
        ])
        .arg(format!("http://{addr}{path}"))
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

/// The body of `GET http://<addr><path>`.
pub fn http_body(addr: SocketAddr, path: &str) -> String {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "3"])
        .arg(format!("http://{addr}{path}"))
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A resolv.conf naming `upstream` (with its port, our extension).
pub fn resolv_conf(dir: &std::path::Path, upstream: SocketAddr) -> String {
    let path = dir.join("resolv.conf");
    std::fs::write(&path, format!("nameserver {upstream}\n")).unwrap();
    path.display().to_string()
}
