//! e2e: the kubelet before its API server exists, as `kubeadm init` starts it. It serves
//! `/healthz` and runs its static pods with no API server to talk to, keeps trying to
//! register, and — once the API server answers, here well past the minute the kubelet used
//! to give up after — registers its Node, turns Ready and creates the static pod's mirror.

#[macro_use]
mod common;

use common::process::{wait, KubeletProcess};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kubelet::pod::observed::ContainerState;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

/// Forwards every connection on `listener` to `upstream` (the API server) — the API server
/// "starting" at the address in the kubelet's kubeconfig.
fn forward(listener: TcpListener, upstream: String) {
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let upstream = upstream.clone();
            tokio::spawn(async move {
                if let Ok(mut outbound) = TcpStream::connect(&upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
}

#[tokio::test]
async fn static_pods_run_before_the_api_server_exists() {
    let (cluster, containerd) = cluster_and_containerd_or_skip!();
    let builder = KubeletProcess::builder(&cluster, &containerd, "alone");
    let node_name_of = |b: &str| format!("{b}-node-{}", std::process::id() % 10000);
    let node_name = node_name_of("alone");
    // The kubeconfig names an address where nothing listens yet.
    let late_port = e2e::ports::free_port().unwrap();
    let real = cluster
        .kubeconfig_for(&e2e::Identity::Node(node_name.clone()))
        .unwrap();
    let api_url = cluster.url();
    let late_url = format!("https://127.0.0.1:{late_port}");
    let text = std::fs::read_to_string(&real).unwrap();
    assert!(text.contains(&api_url), "{text}");
    let late = real.with_file_name("late.kubeconfig");
    std::fs::write(&late, text.replace(&api_url, &late_url)).unwrap();

    let manifests = containerd.dir().join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    std::fs::write(
        manifests.join("web.yaml"),
        serde_yaml::to_string(&serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "static-web", "namespace": "default"},
            "spec": {"hostNetwork": true, "terminationGracePeriodSeconds": 1,
                "containers": [{"name": "web", "image": "busybox:1.35",
                    "command": ["sleep", "3600"]}]}
        }))
        .unwrap(),
    )
    .unwrap();
    let mut kubelet = builder
        .kubeconfig(&late)
        .flag(format!(
            "--pod-cidr=10.89.{}.0/24",
            std::process::id() % 250
        ))
        .config(serde_json::json!({"staticPodPath": manifests, "fileCheckFrequency": "1s"}))
        .start();
    assert_eq!(kubelet.node_name, node_name);

    // No API server: /healthz answers and the static pod runs.
    let healthz = format!("http://127.0.0.1:{}/healthz", kubelet.healthz_port);
    wait(
        "/healthz without an API server",
        Duration::from_secs(60),
        || async {
            let body = reqwest::get(&healthz).await.ok()?.text().await.ok()?;
            (body == "ok").then_some(())
        },
    )
    .await;
    let cri = kubelet::cri::Cri::connect(&containerd.endpoint())
        .await
        .unwrap();
    let static_name = format!("static-web-{node_name}");
    wait(
        "the static pod running",
        Duration::from_secs(90),
        || async {
            let all = kubelet::runtime::observe::observe_all(&cri).await.ok()?;
            all.values()
                .any(|(r, o)| {
                    r.name == static_name
                        && o.latest("web", None)
                            .is_some_and(|c| c.state == ContainerState::Running)
                })
                .then_some(())
        },
    )
    .await;

    // Past the minute the kubelet once gave up after, the API server "starts".
    tokio::time::sleep(Duration::from_secs(65)).await;
    assert!(
        kubelet.is_running(),
        "the kubelet kept going: {}",
        kubelet.log_tail(20)
    );
    let listener = TcpListener::bind(("127.0.0.1", late_port)).await.unwrap();
    forward(listener, api_url.trim_start_matches("https://").to_string());
    let node = kubelet.wait_ready(Duration::from_secs(60)).await;
    assert_eq!(node.metadata.name.as_deref(), Some(node_name.as_str()));
    let pods: Api<Pod> = Api::namespaced(cluster.client(), "default");
    let mirror = wait("the mirror pod", Duration::from_secs(60), || async {
        pods.get_opt(&static_name).await.ok().flatten()
    })
    .await;
    assert!(mirror
        .metadata
        .annotations
        .unwrap_or_default()
        .contains_key("kubernetes.io/config.mirror"));
    std::fs::remove_file(manifests.join("web.yaml")).unwrap();
    wait(
        "the static pod stopped",
        Duration::from_secs(60),
        || async {
            let all = kubelet::runtime::observe::observe_all(&cri).await.ok()?;
            (!all
                .values()
                .any(|(r, o)| r.name == static_name && o.any_running()))
            .then_some(())
        },
    )
    .await;
    kubelet.stop();
}
