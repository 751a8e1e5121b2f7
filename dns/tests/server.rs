//! Component test: the server on real sockets on 127.0.0.1, its store fed directly,
//! queried with `dig` over UDP and TCP; forwarding and caching against a tiny upstream on
//! loopback; malformed packets; the health, ready and metrics endpoints.

mod common;

use common::{dig, http_body, http_status, resolv_conf, Dig, FakeUpstream};
use dns::app::Running;
use dns::model::{EndpointInfo, PortInfo, ServiceInfo, ServiceKey, ServiceKind, SliceInfo};
use dns::store::Store;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

struct Server {
    running: Running,
    store: Arc<Store>,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Server {
    fn dns(&self) -> SocketAddr {
        self.running.dns_addr
    }

    fn http(&self, port: u16) -> SocketAddr {
        self.running.http[&port]
    }
}

fn port(name: &str, number: u16) -> PortInfo {
    PortInfo {
        name: name.into(),
        protocol: "tcp".into(),
        port: number,
    }
}

fn endpoints(ips: impl IntoIterator<Item = String>, hostname: Option<&str>) -> Vec<EndpointInfo> {
    ips.into_iter()
        .map(|ip| EndpointInfo {
            addresses: vec![ip.parse().unwrap()],
            hostname: hostname.map(str::to_string),
            ready: true,
        })
        .collect()
}

fn fill(store: &Store) {
    let svc = |name: &str, kind, ports| ServiceInfo {
        key: ServiceKey::new("default", name),
        kind,
        ports,
    };
    store.apply_service(svc(
        "web",
        ServiceKind::ClusterIp(vec![
            "10.96.0.20".parse().unwrap(),
            "fd00::20".parse().unwrap(),
        ]),
        vec![port("http", 80)],
    ));
    store.apply_service(svc("db", ServiceKind::Headless, vec![port("sql", 5432)]));
    let mut db = endpoints(["10.1.0.1".to_string()], Some("db-0"));
    db.extend(endpoints(["10.1.0.2".to_string()], None));
    store.apply_slice(SliceInfo {
        name: "db-1".into(),
        service: ServiceKey::new("default", "db"),
        endpoints: db,
        ports: vec![port("sql", 5432)],
    });
    store.apply_service(svc(
        "alias",
        ServiceKind::ExternalName("web.default.svc.cluster.local".into()),
        vec![],
    ));
    store.apply_service(svc("big", ServiceKind::Headless, vec![port("http", 80)]));
    store.apply_slice(SliceInfo {
        name: "big-1".into(),
        service: ServiceKey::new("default", "big"),
        endpoints: endpoints((1..=100).map(|i| format!("10.2.0.{i}")), None),
        ports: vec![port("http", 80)],
    });
}

const HEALTH: u16 = 1;
const READY: u16 = 2;
const METRICS: u16 = 3;

async fn start(upstream: Option<SocketAddr>, synced: bool) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let resolv = upstream
        .map(|u| resolv_conf(dir.path(), u))
        .unwrap_or_default();
    let (h, r, m) = (
        e2e::ports::free_port().unwrap(),
        e2e::ports::free_port().unwrap(),
        e2e::ports::free_port().unwrap(),
    );
    let args = vec![
        "ferrokube-dns".to_string(),
        "--dns-bind-address=127.0.0.1".into(),
        "--dns-port=0".into(),
        "--http-bind-address=127.0.0.1".into(),
        format!("--health-port={h}"),
        format!("--ready-port={r}"),
        format!("--metrics-port={m}"),
        format!("--resolv-conf={resolv}"),
    ];
    let options = <dns::config::Options as clap::Parser>::try_parse_from(args).unwrap();
    let config = dns::config::validate(options).unwrap();
    let store = Arc::new(Store::new(config.zones.clone(), 30));
    fill(&store);
    if synced {
        store.mark_services_synced();
        store.mark_slices_synced();
    }
    let shutdown = CancellationToken::new();
    let registry = component_base::metrics::Metrics::new();
    let mut running = dns::app::start(&config, store.clone(), registry, shutdown.clone())
        .await
        .unwrap();
    // Re-key the HTTP addresses by role for the tests.
    let http = std::mem::take(&mut running.http);
    running.http.insert(HEALTH, http[&h]);
    running.http.insert(READY, http[&r]);
    running.http.insert(METRICS, http[&m]);
    Server {
        running,
        store,
        shutdown,
        _dir: dir,
    }
}

/// dig off the async workers.
async fn ask(server: SocketAddr, args: &[&str]) -> Dig {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        dig(server, &refs)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_kind_over_udp_and_tcp() {
    let server = start(None, true).await;
    let dns = server.dns();
    for transport in ["+notcp", "+tcp"] {
        let a = ask(dns, &[transport, "web.default.svc.cluster.local", "A"]).await;
        assert_eq!(a.status, "NOERROR", "{}", a.raw);
        assert!(a.flags.contains(&"aa".to_string()), "{}", a.raw);
        assert_eq!(
            a.answers,
            vec!["web.default.svc.cluster.local. 30 IN A 10.96.0.20"],
            "{transport}"
        );
        let aaaa = ask(dns, &[transport, "web.default.svc.cluster.local", "AAAA"]).await;
        assert_eq!(aaaa.answer_data(), vec!["fd00::20"], "{}", aaaa.raw);

        let headless = ask(dns, &[transport, "db.default.svc.cluster.local", "A"]).await;
        assert_eq!(headless.answer_data(), vec!["10.1.0.1", "10.1.0.2"]);

        let srv = ask(
            dns,
            &[transport, "_http._tcp.web.default.svc.cluster.local", "SRV"],
        )
        .await;
        assert_eq!(
            srv.answer_data(),
            vec!["0 100 80 web.default.svc.cluster.local."]
        );
        assert!(
            srv.additional.iter().any(|r| r.ends_with("A 10.96.0.20")),
            "{}",
            srv.raw
        );
        let hsrv = ask(
            dns,
            &[transport, "_sql._tcp.db.default.svc.cluster.local", "SRV"],
        )
        .await;
        assert_eq!(
            hsrv.answer_data(),
            vec![
                "0 50 5432 10-1-0-2.db.default.svc.cluster.local.",
                "0 50 5432 db-0.db.default.svc.cluster.local."
            ]
        );

        let host = ask(dns, &[transport, "db-0.db.default.svc.cluster.local", "A"]).await;
        assert_eq!(host.answer_data(), vec!["10.1.0.1"]);

        let alias = ask(dns, &[transport, "alias.default.svc.cluster.local", "A"]).await;
        assert_eq!(
            alias.answers,
            vec![
                "alias.default.svc.cluster.local. 30 IN CNAME web.default.svc.cluster.local.",
                "web.default.svc.cluster.local. 30 IN A 10.96.0.20"
            ]
        );

        let pod = ask(
            dns,
            &[transport, "10-244-0-5.default.pod.cluster.local", "A"],
        )
        .await;
        assert_eq!(pod.answer_data(), vec!["10.244.0.5"]);

        let ptr = ask(dns, &[transport, "-x", "10.96.0.20"]).await;
        assert_eq!(ptr.answer_data(), vec!["web.default.svc.cluster.local."]);
        let ep_ptr = ask(dns, &[transport, "-x", "10.1.0.1"]).await;
        assert_eq!(
            ep_ptr.answer_data(),
            vec!["db-0.db.default.svc.cluster.local."]
        );

        let nx = ask(dns, &[transport, "missing.default.svc.cluster.local", "A"]).await;
        assert_eq!(nx.status, "NXDOMAIN");
        assert!(nx.answers.is_empty());
        assert_eq!(nx.authority.len(), 1, "{}", nx.raw);
        assert!(
            nx.authority[0].starts_with(
                "cluster.local. 30 IN SOA ns.dns.cluster.local. hostmaster.cluster.local."
            ),
            "{}",
            nx.raw
        );
        let nodata = ask(dns, &[transport, "web.default.svc.cluster.local", "TXT"]).await;
        assert_eq!(nodata.status, "NOERROR");
        assert!(nodata.answers.is_empty());
        assert_eq!(nodata.authority.len(), 1, "{}", nodata.raw);

        let mixed = ask(dns, &[transport, "WEB.Default.Svc.CLUSTER.local", "A"]).await;
        assert_eq!(mixed.answer_data(), vec!["10.96.0.20"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncation_without_edns_and_bigger_edns_buffers() {
    let server = start(None, true).await;
    let dns = server.dns();
    let truncated = ask(
        dns,
        &[
            "+notcp",
            "+noedns",
            "+ignore",
            "big.default.svc.cluster.local",
            "A",
        ],
    )
    .await;
    assert!(
        truncated.flags.contains(&"tc".to_string()),
        "{}",
        truncated.raw
    );
    assert!(truncated.answers.len() < 100);
    // dig retries a truncated answer over TCP and gets everything.
    let retried = ask(
        dns,
        &["+notcp", "+noedns", "big.default.svc.cluster.local", "A"],
    )
    .await;
    assert_eq!(retried.answers.len(), 100, "{}", retried.raw);
    let edns = ask(
        dns,
        &[
            "+notcp",
            "+bufsize=4096",
            "+ignore",
            "big.default.svc.cluster.local",
            "A",
        ],
    )
    .await;
    assert!(!edns.flags.contains(&"tc".to_string()), "{}", edns.raw);
    assert_eq!(edns.answers.len(), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_with_cache_and_servfail_when_upstreams_fail() {
    let upstream = FakeUpstream::start().await;
    let server = start(Some(upstream.addr), true).await;
    let dns = server.dns();
    let first = ask(dns, &["www.example", "A"]).await;
    assert_eq!(first.status, "NOERROR", "{}", first.raw);
    assert_eq!(first.answer_data(), vec!["192.0.2.1"]);
    assert!(!first.flags.contains(&"aa".to_string()));
    let seen = upstream.count();
    let second = ask(dns, &["WWW.example", "A"]).await;
    assert_eq!(second.answer_data(), vec!["192.0.2.1"]);
    assert_eq!(
        upstream.count(),
        seen,
        "the second answer came from the cache"
    );
    let ttl: u32 = second.answers[0]
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert!(ttl <= 30, "cached TTL capped at 30: {}", second.raw);

    let nx = ask(dns, &["nx.example", "A"]).await;
    assert_eq!(nx.status, "NXDOMAIN");
    assert_eq!(nx.authority.len(), 1, "{}", nx.raw);
    let fail = ask(dns, &["www.example", "MX"]).await;
    assert_eq!(fail.status, "SERVFAIL");
    // Reverse names without a cluster PTR fall through to the upstream too.
    let before = upstream.count();
    let _ = ask(dns, &["-x", "192.0.2.77"]).await;
    assert_eq!(upstream.count(), before + 1);

    let metrics = http_body(server.http(METRICS), "/metrics");
    for needle in [
        r#"coredns_cache_hits_total{server="dns://127.0.0.1:"#,
        r#"type="success",zones=".",view=""} 1"#,
        "coredns_cache_misses_total{",
        "coredns_cache_entries{",
        r#"rcode="NOERROR",plugin="cache"} 1"#,
        r#"rcode="NOERROR",plugin="forward"} 1"#,
        r#"rcode="NXDOMAIN",plugin="forward"} 1"#,
        "coredns_dns_requests_total{",
        r#"proto="udp",family="1",type="A"}"#,
    ] {
        assert!(metrics.contains(needle), "missing {needle} in\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_packets_get_formerr_or_nothing_and_the_server_keeps_serving() {
    let server = start(None, true).await;
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    // A header claiming one question, then garbage.
    let mut packet = vec![0xab, 0xcd, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0];
    packet.extend_from_slice(&[0xff; 7]);
    socket.send_to(&packet, server.dns()).await.unwrap();
    let mut buf = [0u8; 512];
    let (n, _) = tokio::time::timeout(
        std::time::Duration::from_secs(3),
        socket.recv_from(&mut buf),
    )
    .await
    .expect("a FORMERR reply")
    .unwrap();
    let reply = hickory_proto::op::Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(reply.id, 0xabcd);
    assert_eq!(
        reply.response_code,
        hickory_proto::op::ResponseCode::FormErr
    );
    // Too short to answer: dropped.
    socket.send_to(&[1, 2, 3], server.dns()).await.unwrap();
    let after = ask(server.dns(), &["web.default.svc.cluster.local", "A"]).await;
    assert_eq!(after.answer_data(), vec!["10.96.0.20"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_only_after_sync_and_health_always() {
    let server = start(None, false).await;
    let (health, ready) = (server.http(HEALTH), server.http(READY));
    assert_eq!(
        tokio::task::spawn_blocking(move || http_status(health, "/health"))
            .await
            .unwrap(),
        200
    );
    assert_eq!(
        tokio::task::spawn_blocking(move || http_status(ready, "/ready"))
            .await
            .unwrap(),
        503
    );
    server.store.mark_services_synced();
    server.store.mark_slices_synced();
    assert_eq!(
        tokio::task::spawn_blocking(move || http_status(ready, "/ready"))
            .await
            .unwrap(),
        200
    );
}
