//! e2e: the kubelet as kubeadm and kind run it — the KubeletConfiguration kubeadm writes
//! (zero durations, empty strings) and a CNI config that is the cluster's, not ours.

#[macro_use]
mod common;

use common::process::{wait, KubeletProcess};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use std::time::Duration;

/// The Ready condition's status and message.
fn ready(node: &Node) -> Option<(String, String)> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| (c.status.clone(), c.message.clone().unwrap_or_default()))
}

/// kind's node config as JSON, with what points at kind's filesystem (static pods, the
/// client CA) moved into the test's own directory and CA, and cgroupfs for kind's systemd
/// driver: this machine runs no systemd (the kubelet would refuse to start, naming
/// cgroupDriver), and the systemd driver has tests of its own.
fn kind_node_config(static_pods: &std::path::Path) -> serde_json::Value {
    let mut config: serde_json::Value =
        serde_yaml::from_str(kubelet::testing::KIND_NODE_CONFIG).unwrap();
    config["staticPodPath"] = static_pods.display().to_string().into();
    config["authentication"]["x509"] = serde_json::Value::Null;
    config["cgroupDriver"] = "cgroupfs".into();
    config
}

#[tokio::test]
async fn kubeadms_config_with_zero_durations_runs_a_ready_node() {
    let (cluster, containerd) = cluster_and_containerd_or_skip!();
    let static_pods = containerd.dir().join("manifests");
    std::fs::create_dir_all(&static_pods).unwrap();
    let id = std::process::id() % 10000;
    let mut kubelet = KubeletProcess::builder(&cluster, &containerd, "kubeadm")
        .config(kind_node_config(&static_pods))
        .webhook_auth()
        .flag(format!("--pod-cidr=10.87.{}.0/24", id % 250))
        .start();
    let config = std::fs::read_to_string(&kubelet.config_path).unwrap();
    assert!(
        config.contains("nodeStatusUpdateFrequency: 0s") && config.contains("syncFrequency: 0s"),
        "{config}"
    );
    kubelet.wait_ready(Duration::from_secs(90)).await;
    // The loops run on the defaulted periods (a zero one panicked the status task, which
    // ticks at once and then every 10 s): 25 s on, the Lease has been renewed, the process
    // lives and nothing panicked.
    let leases: Api<Lease> = Api::namespaced(cluster.client(), "kube-node-lease");
    let name = kubelet.node_name.clone();
    let renewed = |l: Lease| l.spec?.renew_time;
    let first = renewed(leases.get(&name).await.unwrap()).unwrap();
    tokio::time::sleep(Duration::from_secs(25)).await;
    kubelet
        .wait("a Lease renewal", Duration::from_secs(20), || {
            let (leases, name, first) = (leases.clone(), name.clone(), first.clone());
            async move { (renewed(leases.get(&name).await.ok()?)? != first).then_some(()) }
        })
        .await;
    let nodes: Api<Node> = Api::all(cluster.client());
    let node = nodes.get(&name).await.unwrap();
    assert_eq!(ready(&node).unwrap().0, "True");
    let log = kubelet.log();
    assert!(!log.contains("panicked"), "{}", kubelet.log_tail(40));
    kubelet.stop();
}

#[tokio::test]
async fn the_cni_config_is_written_only_when_opted_in_and_never_over_anothers() {
    let (cluster, containerd) = cluster_and_containerd_or_skip!();
    let conf_dir = containerd.cni_conf_dir();
    let ours = conf_dir.join(kubelet::cni::CONFLIST);
    let id = std::process::id() % 10000;
    let pod_cidr = format!("10.86.{}.0/24", id % 250);

    // Not opted in: nothing written, NotReady with the runtime's reason, as upstream.
    let mut kubelet = KubeletProcess::builder(&cluster, &containerd, "nocni")
        .without_cni_bridge()
        .flag(format!("--pod-cidr={pod_cidr}"))
        .start();
    let nodes: Api<Node> = Api::all(cluster.client());
    let name = kubelet.node_name.clone();
    let (status, message) = kubelet
        .wait(
            "the node's Ready condition",
            Duration::from_secs(60),
            || {
                let (nodes, name) = (nodes.clone(), name.clone());
                async move { ready(&nodes.get_opt(&name).await.ok()??) }
            },
        )
        .await;
    assert_eq!(status, "False", "{message}");
    assert!(
        message.contains(
            "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady \
             message:Network plugin returns error: cni plugin not initialized"
        ),
        "{message}"
    );
    let log = kubelet.log_path().to_path_buf();
    wait(
        "the CNI decision in the log",
        Duration::from_secs(30),
        || {
            let logged =
                std::fs::read_to_string(&log).is_ok_and(|l| l.contains("Writing no CNI config"));
            async move { logged.then_some(()) }
        },
    )
    .await;
    assert!(!ours.exists(), "wrote {ours:?} without the opt-in");
    kubelet.stop();

    // Opted in, but the cluster's network add-on was first: its config is left alone (and
    // is what makes the node Ready), ours is never written.
    std::fs::create_dir_all(&conf_dir).unwrap();
    let foreign = conf_dir.join("10-kindnet.conflist");
    let bridge = format!("fkkn{id}");
    let foreign_text = serde_json::to_string_pretty(
        &kubelet::cni::BridgeNetwork {
            bridge: bridge.clone(),
            ..Default::default()
        }
        .conflist(&pod_cidr),
    )
    .unwrap()
    .replace("\"ferrokube\"", "\"kindnet\"");
    std::fs::write(&foreign, &foreign_text).unwrap();
    let mut kubelet = KubeletProcess::builder(&cluster, &containerd, "kncni")
        .flag(format!("--pod-cidr={pod_cidr}"))
        .start();
    kubelet.wait_ready(Duration::from_secs(90)).await;
    let log = kubelet.log_path().to_path_buf();
    wait(
        "the CNI decision in the log",
        Duration::from_secs(30),
        || {
            let logged = std::fs::read_to_string(&log)
                .is_ok_and(|l| l.contains("Another CNI config is in the conf dir"));
            async move { logged.then_some(()) }
        },
    )
    .await;
    assert!(!ours.exists(), "wrote {ours:?} next to 10-kindnet.conflist");
    assert_eq!(std::fs::read_to_string(&foreign).unwrap(), foreign_text);
    kubelet.stop();
    let _ = std::process::Command::new("ip")
        .args(["link", "del", &bridge])
        .stderr(std::process::Stdio::null())
        .status();
}
