//! e2e: the real `kube-proxy` binary run as kubeadm runs it — `--config` with the
//! `config.conf` of kubeadm's ConfigMap (zero sync periods, `qps: 0`, empty `mode`, empty
//! metrics address) — against a real kube-apiserver, programming a lab network namespace
//! (`FERROKUBE_PROXY_NETNS`). Skipped loudly without kube-apiserver/etcd, root, nft or
//! iptables-restore.

mod common;
mod lab;

use k8s_openapi::api::core::v1::{Node, Service};
use kube::api::{Api, PostParams};
use lab::{BACKEND_IPS, BACKEND_PORT, NODE_IP};
use serde_json::json;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

/// kubeadm v1.35's `config.conf`, with what must point at this test (kubeconfig, node name,
/// cluster CIDR, ports that do not collide) filled in.
fn kubeadm_config(kubeconfig: &str, healthz: u16) -> String {
    let conf = proxy::testing::KUBEADM_CONFIG_CONF;
    let out = conf
        .replace(
            "kubeconfig: /var/lib/kube-proxy/kubeconfig.conf",
            &format!("kubeconfig: {kubeconfig}"),
        )
        .replace("clusterCIDR: 10.244.0.0/16", "clusterCIDR: 10.99.0.0/16")
        .replace(
            "healthzBindAddress: \"\"",
            &format!("healthzBindAddress: 127.0.0.1:{healthz}"),
        )
        .replace("hostnameOverride: \"\"", "hostnameOverride: kubeadm-node");
    assert_ne!(out, conf, "the kubeadm config.conf changed shape");
    out
}

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
async fn kubeadms_config_file_with_zero_periods_and_empty_mode_syncs_iptables_rules() {
    const TEST: &str = "kubeadm_config::kubeadms_config_file_with_zero_periods_and_empty_mode_syncs_iptables_rules";
    if let Some(why) = lab::unavailable() {
        lab::skip(TEST, &why);
        return;
    }
    if std::process::Command::new("iptables-restore")
        .arg("--version")
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true)
    {
        lab::skip(TEST, "`iptables-restore` is not installed");
        return;
    }
    let cluster = e2e::cluster_or_skip!();
    let lab = lab::Lab::new();
    let client = cluster.client();
    let node: Node = serde_json::from_value(json!({"metadata": {"name": "kubeadm-node"},
        "status": {"addresses": [{"type": "InternalIP", "address": NODE_IP}]}}))
    .unwrap();
    Api::<Node>::all(client.clone())
        .create(&PostParams::default(), &node)
        .await
        .unwrap();

    let healthz = e2e::ports::free_port().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.conf");
    std::fs::write(
        &config,
        kubeadm_config(&cluster.kubeconfig().display().to_string(), healthz),
    )
    .unwrap();
    std::env::set_var("FERROKUBE_PROXY_NETNS", &lab.node.name);
    let mut proxy = cluster
        .spawn_component(
            "kube-proxy",
            &[format!("--config={}", config.display()), "--v=2".into()],
        )
        .unwrap();

    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let svc: Service = serde_json::from_value(json!({"metadata": {"name": "echo"}, "spec": {
        "ports": [{"name": "tcp", "port": 80, "targetPort": BACKEND_PORT, "protocol": "TCP"}]}}))
    .unwrap();
    let cluster_ip = services
        .create(&PostParams::default(), &svc)
        .await
        .unwrap()
        .spec
        .unwrap()
        .cluster_ip
        .unwrap();
    let slice = common::slice(
        "default",
        "echo",
        "IPv4",
        json!([{"addresses": [BACKEND_IPS[0]], "conditions": {"ready": true}}]),
        json!([{"name": "tcp", "port": BACKEND_PORT, "protocol": "TCP"}]),
    );
    Api::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &slice)
        .await
        .unwrap();

    let vip = format!("{cluster_ip}:80");
    let reached = eventually(Duration::from_secs(30), || lab.tcp(&vip).is_ok()).await;
    assert!(
        reached,
        "ClusterIP {vip} never answered; kube-proxy log:\n{}",
        proxy.log_tail(40)
    );
    // Upstream's Linux default for an empty mode: iptables rules, no nftables table.
    let nat = lab.node.exec(&["iptables-save", "-t", "nat"]);
    assert!(nat.contains("KUBE-SERVICES"), "{nat}");
    assert!(
        !lab.node
            .exec(&["nft", "list", "tables"])
            .contains("kube-proxy"),
        "an nftables table in iptables mode"
    );
    let (code, body) = http_get(healthz, "/healthz");
    assert_eq!(code, 200, "{body}");
    assert!(
        proxy.try_exit_status().is_none(),
        "kube-proxy exited:\n{}",
        proxy.log_tail(40)
    );
    let log = proxy.log_tail(200);
    assert!(!log.contains("panicked"), "{log}");
}
