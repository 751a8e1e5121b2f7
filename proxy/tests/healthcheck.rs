//! The healthCheckNodePort servers, on loopback: a LoadBalancer Service with
//! `externalTrafficPolicy: Local` answers upstream's JSON with its local endpoint count,
//! 200 with local endpoints and 503 without them or while kube-proxy is unhealthy; the
//! server closes when the Service goes away.

mod common;

use common::{service, slice, tracker};
use proxy::healthcheck::{health_checks, ServiceHealthServer};
use proxy::model::{IpFamily, ServiceName};
use serde_json::json;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// (status, lower-cased header lines, body) of `GET path` on 127.0.0.1:`port`.
fn get(port: u16, path: &str) -> std::io::Result<(u16, Vec<String>, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: lb\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let code = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((
        code,
        lines.map(str::to_lowercase).collect(),
        body.to_string(),
    ))
}

fn lb_local(hc_port: u16) -> k8s_openapi::api::core::v1::Service {
    service(
        "web",
        "shop",
        json!({"type": "LoadBalancer", "clusterIP": "10.96.7.7", "externalTrafficPolicy": "Local",
               "healthCheckNodePort": hc_port, "ports": [{"name": "http", "port": 80, "nodePort": 30777},
               {"name": "https", "port": 443, "nodePort": 30778}]}),
        json!({"loadBalancer": {"ingress": [{"ip": "192.0.2.10"}]}}),
    )
}

fn eps(local: &[&str], remote: &[&str]) -> serde_json::Value {
    let mut v: Vec<_> = local
        .iter()
        .map(|ip| json!({"addresses": [ip], "nodeName": "node-a"}))
        .collect();
    v.extend(
        remote
            .iter()
            .map(|ip| json!({"addresses": [ip], "nodeName": "node-b"})),
    );
    serde_json::Value::Array(v)
}

fn ports() -> serde_json::Value {
    json!([{"name": "http", "port": 8080}, {"name": "https", "port": 8443}])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_check_node_port_reports_local_endpoints() {
    let port = free_port();
    let svc = lb_local(port);
    // Two local endpoints (each serving both ports: counted once per IP) and one remote.
    let t = tracker(
        IpFamily::V4,
        "node-a",
        std::slice::from_ref(&svc),
        &[slice(
            "web",
            "shop",
            "IPv4",
            eps(&["10.1.0.1", "10.1.0.2"], &["10.2.0.1"]),
            ports(),
        )],
    );
    let wanted = health_checks(&t);
    let name = ServiceName::new("web", "shop");
    assert_eq!(wanted[&name].port, port);
    assert_eq!(wanted[&name].local_endpoints, 2);

    let healthy = Arc::new(AtomicBool::new(true));
    let h = healthy.clone();
    let mut server = ServiceHealthServer::new(
        vec!["127.0.0.1".parse().unwrap()],
        Arc::new(move || h.load(Ordering::Relaxed)),
    );
    assert!(server.sync(&wanted).is_empty());
    let (code, headers, body) = tokio::task::spawn_blocking(move || get(port, "/"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(
        headers.contains(&"content-type: application/json".into()),
        "{headers:?}"
    );
    assert!(
        headers.contains(&"x-content-type-options: nosniff".into()),
        "{headers:?}"
    );
    assert!(
        headers.contains(&"x-load-balancing-endpoint-weight: 2".into()),
        "{headers:?}"
    );
    assert_eq!(
        body,
        "{\n\t\"service\": {\n\t\t\"namespace\": \"web\",\n\t\t\"name\": \"shop\"\n\t},\n\t\"localEndpoints\": 2,\n\t\"serviceProxyHealthy\": true\n}"
    );

    // kube-proxy itself unhealthy: 503 even with local endpoints.
    healthy.store(false, Ordering::Relaxed);
    let (code, _, body) = tokio::task::spawn_blocking(move || get(port, "/healthz"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("\"serviceProxyHealthy\": false"), "{body}");
    healthy.store(true, Ordering::Relaxed);

    // Only remote endpoints left: 503, weight 0.
    let t = tracker(
        IpFamily::V4,
        "node-a",
        &[svc],
        &[slice(
            "web",
            "shop",
            "IPv4",
            eps(&[], &["10.2.0.1"]),
            ports(),
        )],
    );
    assert!(server.sync(&health_checks(&t)).is_empty());
    let (code, headers, body) = tokio::task::spawn_blocking(move || get(port, "/"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(code, 503, "{body}");
    assert!(
        headers.contains(&"x-load-balancing-endpoint-weight: 0".into()),
        "{headers:?}"
    );
    assert!(body.contains("\"localEndpoints\": 0"), "{body}");

    // The Service goes away: the port closes.
    assert!(server.sync(&Default::default()).is_empty());
    let closed = tokio::task::spawn_blocking(move || {
        for _ in 0..50 {
            if get(port, "/").is_err() {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        false
    })
    .await
    .unwrap();
    assert!(
        closed,
        "health check port still open after the Service was removed"
    );
    assert!(server.services().is_empty());
}

#[test]
fn cluster_policy_services_get_no_health_check() {
    let svc = service(
        "web",
        "plain",
        json!({"type": "LoadBalancer", "clusterIP": "10.96.7.8", "healthCheckNodePort": 31999,
               "ports": [{"name": "http", "port": 80, "nodePort": 30779}]}),
        json!({}),
    );
    let t = tracker(IpFamily::V4, "node-a", &[svc], &[]);
    assert!(health_checks(&t).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_port_is_reported_and_retried() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let t = tracker(
        IpFamily::V4,
        "node-a",
        &[lb_local(port)],
        &[slice(
            "web",
            "shop",
            "IPv4",
            eps(&["10.1.0.1"], &[]),
            ports(),
        )],
    );
    let mut server =
        ServiceHealthServer::new(vec!["127.0.0.1".parse().unwrap()], Arc::new(|| true));
    let failed = server.sync(&health_checks(&t));
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].0, ServiceName::new("web", "shop"));
    assert!(server.services().is_empty());
    // Once the port is free, the next sync opens it.
    drop(taken);
    assert!(server.sync(&health_checks(&t)).is_empty());
    let (code, _, body) = tokio::task::spawn_blocking(move || get(port, "/"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(code, 200, "{body}");
}
