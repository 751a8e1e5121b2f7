//! e2e: the real `kube-proxy` binary against a real kube-apiserver. Service and
//! EndpointSlice objects created through the API drive the rules in a lab network
//! namespace (via the `FERROKUBE_PROXY_NETNS` test hook), and real connections follow
//! them. Skipped loudly without kube-apiserver/etcd, root or nft.

mod common;
mod lab;

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, PostParams};
use lab::{BACKEND_IPS, BACKEND_PORT, NODE_IP};
use serde_json::json;
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

fn http_get(port: u16, path: &str) -> (u16, String) {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new());
    };
    let _ = write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, out)
}

fn slice(ips: &[&str]) -> EndpointSlice {
    common::slice(
        "default",
        "echo",
        "IPv4",
        serde_json::Value::Array(
            ips.iter()
                .map(|ip| json!({"addresses": [ip], "conditions": {"ready": true}}))
                .collect(),
        ),
        json!([{"name": "tcp", "port": BACKEND_PORT, "protocol": "TCP"}]),
    )
}

/// Polls `f` (blocking) until it returns true or `timeout` passes.
async fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if tokio::task::block_in_place(&mut f) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_and_endpoint_slices_drive_real_rules() {
    if let Some(why) = lab::unavailable() {
        lab::skip(
            "e2e_proxy::services_and_endpoint_slices_drive_real_rules",
            &why,
        );
        return;
    }
    let cluster = e2e::cluster_or_skip!();
    let lab = lab::Lab::new();
    let client = cluster.client();
    let node: Node = serde_json::from_value(
        json!({"metadata": {"name": "lab-node", "labels": {"topology.kubernetes.io/zone": "z1"}},
        "status": {"addresses": [{"type": "InternalIP", "address": NODE_IP}]}}),
    )
    .unwrap();
    Api::<Node>::all(client.clone())
        .create(&PostParams::default(), &node)
        .await
        .unwrap();

    let (healthz, metrics) = (
        e2e::ports::free_port().unwrap(),
        e2e::ports::free_port().unwrap(),
    );
    std::env::set_var("FERROKUBE_PROXY_NETNS", &lab.node.name);
    let mut proxy = cluster
        .spawn_component(
            "kube-proxy",
            &[
                format!("--kubeconfig={}", cluster.kubeconfig().display()),
                "--hostname-override=lab-node".into(),
                "--proxy-mode=nftables".into(),
                "--cluster-cidr=10.99.0.0/16".into(),
                "--iptables-min-sync-period=100ms".into(),
                format!("--healthz-bind-address=127.0.0.1:{healthz}"),
                format!("--metrics-bind-address=127.0.0.1:{metrics}"),
                "--conntrack-max-per-core=0".into(),
                "--v=2".into(),
            ],
        )
        .unwrap();

    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let svc: Service = serde_json::from_value(
        json!({"metadata": {"name": "echo"}, "spec": {"type": "NodePort",
        "ports": [{"name": "tcp", "port": 80, "targetPort": BACKEND_PORT, "protocol": "TCP"}]}}),
    )
    .unwrap();
    let svc = services.create(&PostParams::default(), &svc).await.unwrap();
    let spec = svc.spec.unwrap();
    let cluster_ip = spec.cluster_ip.unwrap();
    let node_port = spec.ports.unwrap()[0].node_port.unwrap();
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    slices
        .create(&PostParams::default(), &slice(&BACKEND_IPS))
        .await
        .unwrap();

    let vip = format!("{cluster_ip}:80");
    let reached = eventually(Duration::from_secs(20), || lab.tcp(&vip).is_ok()).await;
    assert!(
        reached,
        "ClusterIP {vip} never answered; kube-proxy log:\n{}",
        proxy.log_tail(40)
    );
    let answers: BTreeSet<String> = lab.tcp_many(&vip, 30).into_iter().collect();
    assert_eq!(
        answers,
        BTreeSet::from(["backend-0".to_string(), "backend-1".to_string()])
    );
    assert!(lab
        .tcp(&format!("{NODE_IP}:{node_port}"))
        .unwrap()
        .starts_with("backend-"));

    // An EndpointSlice update moves traffic.
    let mut one = slices.get("echo-ipv4").await.unwrap();
    one.endpoints.retain(|e| e.addresses[0] == BACKEND_IPS[1]);
    slices
        .replace("echo-ipv4", &PostParams::default(), &one)
        .await
        .unwrap();
    let moved = eventually(Duration::from_secs(10), || {
        lab.tcp_many(&vip, 8).iter().all(|a| a == "backend-1")
    })
    .await;
    assert!(moved, "traffic did not follow the EndpointSlice update");

    let (code, body) = http_get(healthz, "/healthz");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("lastUpdated"), "{body}");
    let (code, body) = http_get(metrics, "/metrics");
    assert_eq!(code, 200);
    for name in [
        "kubeproxy_sync_proxy_rules_duration_seconds_bucket",
        "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
        "kubeproxy_sync_partial_proxy_rules_duration_seconds_count",
        "kubeproxy_sync_proxy_rules_endpoint_changes_total",
    ] {
        assert!(body.contains(name), "{name} missing from /metrics");
    }

    assert!(
        body.contains("kubeproxy_proxy_healthz_total{code=\"200\"}"),
        "{body}"
    );

    // The autoscaler's deletion taint: /healthz (what load balancers probe) turns 503,
    // /livez stays 200; removing the taint restores /healthz.
    let nodes: Api<Node> = Api::all(client.clone());
    let taint = |taints: serde_json::Value| {
        let nodes = nodes.clone();
        async move {
            nodes
                .patch(
                    "lab-node",
                    &kube::api::PatchParams::default(),
                    &kube::api::Patch::Merge(json!({"spec": {"taints": taints}})),
                )
                .await
                .unwrap();
        }
    };
    taint(json!([{"key": "ToBeDeletedByClusterAutoscaler", "value": "1", "effect": "NoSchedule"}]))
        .await;
    let drained = eventually(Duration::from_secs(10), || {
        http_get(healthz, "/healthz").0 == 503
    })
    .await;
    let (_, body) = http_get(healthz, "/healthz");
    assert!(drained && body.contains("\"nodeEligible\":false"), "{body}");
    assert_eq!(http_get(healthz, "/livez").0, 200);
    taint(json!(null)).await;
    let back = eventually(Duration::from_secs(10), || {
        http_get(healthz, "/healthz").0 == 200
    })
    .await;
    assert!(
        back,
        "/healthz stayed unhealthy after the taint was removed"
    );

    // A LoadBalancer Service with externalTrafficPolicy=Local gets a health check server
    // on its healthCheckNodePort: 200 with a ready endpoint on this node, else 503.
    let lb: Service = serde_json::from_value(json!({"metadata": {"name": "lb"}, "spec": {
        "type": "LoadBalancer", "externalTrafficPolicy": "Local",
        "ports": [{"name": "tcp", "port": 80, "targetPort": BACKEND_PORT, "protocol": "TCP"}]}}))
    .unwrap();
    let lb = services.create(&PostParams::default(), &lb).await.unwrap();
    let hc_port = u16::try_from(lb.spec.unwrap().health_check_node_port.unwrap()).unwrap();
    let lb_slice = |node: &str| {
        common::slice(
            "default",
            "lb",
            "IPv4",
            json!([{"addresses": [BACKEND_IPS[0]], "conditions": {"ready": true}, "nodeName": node}]),
            json!([{"name": "tcp", "port": BACKEND_PORT, "protocol": "TCP"}]),
        )
    };
    let lb_slice_name = lb_slice("lab-node").metadata.name.unwrap();
    slices
        .create(&PostParams::default(), &lb_slice("lab-node"))
        .await
        .unwrap();
    let serving = eventually(Duration::from_secs(10), || http_get(hc_port, "/").0 == 200).await;
    let (code, body) = http_get(hc_port, "/");
    assert!(
        serving,
        "health check on {hc_port}: {code} {body}\n{}",
        proxy.log_tail(20)
    );
    assert!(
        body.contains("\"localEndpoints\": 1") && body.contains("\"name\": \"lb\""),
        "{body}"
    );
    let mut moved = lb_slice("other-node");
    moved.metadata.resource_version = slices
        .get(&lb_slice_name)
        .await
        .unwrap()
        .metadata
        .resource_version;
    slices
        .replace(&lb_slice_name, &PostParams::default(), &moved)
        .await
        .unwrap();
    let no_local = eventually(Duration::from_secs(10), || http_get(hc_port, "/").0 == 503).await;
    assert!(no_local, "health check still 200 without local endpoints");
    services
        .delete("lb", &DeleteParams::default())
        .await
        .unwrap();
    let closed = eventually(Duration::from_secs(10), || http_get(hc_port, "/").0 == 0).await;
    assert!(
        closed,
        "health check port {hc_port} still open after the Service was deleted"
    );

    // Deleting the Service removes its rules.
    services
        .delete("echo", &DeleteParams::default())
        .await
        .unwrap();
    let gone = eventually(Duration::from_secs(10), || lab.tcp(&vip).is_err()).await;
    assert!(gone, "deleted Service still answers");
    assert!(
        proxy.try_exit_status().is_none(),
        "kube-proxy exited:\n{}",
        proxy.log_tail(40)
    );
    drop(proxy);
    // --cleanup leaves the namespace without our table.
    let out = std::process::Command::new(e2e::binaries::ferrokube_binary("kube-proxy").unwrap())
        .arg("--cleanup")
        .env("FERROKUBE_PROXY_NETNS", &lab.node.name)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(lab.node.exec(&["nft", "list", "tables"]).trim().is_empty());
}
