//! Shared setup of the kubelet's tests: a private containerd and a PodRuntime whose logs
//! and cgroups live under names of their own ([`Rig`]), and the kubelet binary as a process
//! against a real apiserver ([`process::KubeletProcess`]).

#![allow(dead_code)]

pub mod process;

use kubelet::cgroups::{self, CgroupManager, Hierarchy};
use kubelet::runtime::config::NodeContext;
use kubelet::runtime::PodRuntime;
use kubelet::testing::{containerd::unavailable_reason, TestContainerd};
use std::sync::Arc;

/// A containerd plus a runtime for one test.
pub struct Rig {
    pub containerd: TestContainerd,
    pub runtime: PodRuntime,
    pub cgroup_root: String,
}

impl Rig {
    /// Starts containerd, or records a loud skip and returns `None`.
    pub async fn start(test: &str) -> Option<Rig> {
        if let Some(reason) = unavailable_reason() {
            e2e::skip::record_skip(test, &reason);
            return None;
        }
        let containerd = TestContainerd::start().await.expect("start containerd");
        let cri = kubelet::cri::Cri::connect(&containerd.endpoint())
            .await
            .unwrap();
        let cgroup_root = format!(
            "/ferrokube-test-{}",
            std::process::id() as u64 * 1000 + rand_suffix()
        );
        let ctx = NodeContext {
            pod_logs_dir: containerd.dir().join("pods-logs"),
            cgroups: Hierarchy::new(&cgroup_root),
            cluster_dns: vec!["10.96.0.10".into()],
            cluster_domain: "cluster.local".into(),
            host_resolv_conf: "nameserver 10.96.0.10\n".into(),
            memory_capacity: 8 << 30,
        };
        let runtime = PodRuntime {
            cri: Arc::new(cri),
            cgroups: Arc::from(cgroups::detect()),
            ctx,
            root_dir: containerd.dir().join("kubelet"),
            image_manager: Default::default(),
        };
        runtime
            .ensure_qos_cgroups(2000)
            .expect("create kubepods cgroups");
        Some(Rig {
            containerd,
            runtime,
            cgroup_root,
        })
    }

    pub fn cgroups(&self) -> &dyn CgroupManager {
        self.runtime.cgroups.as_ref()
    }
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
        % 1000
}

impl Drop for Rig {
    fn drop(&mut self) {
        // Remove what the test left of its cgroup tree (deepest first).
        let h = Hierarchy::new(&self.cgroup_root);
        let m = self.runtime.cgroups.clone();
        for q in [
            h.qos(kubelet::pod::qos::QosClass::Burstable),
            h.qos(kubelet::pod::qos::QosClass::BestEffort),
            h.kubepods(),
            self.cgroup_root.clone(),
        ] {
            let _ = m.remove(&q);
        }
    }
}

/// Starts a [`e2e::TestCluster`] and a [`TestContainerd`] as `(cluster, containerd)`, or
/// skips the enclosing test (returning from it) when either is unavailable.
#[macro_export]
macro_rules! cluster_and_containerd_or_skip {
    () => {{
        let cluster = e2e::cluster_or_skip!();
        if let Some(reason) = kubelet::testing::containerd::unavailable_reason() {
            e2e::skip_test!("{reason}");
        }
        let containerd = kubelet::testing::TestContainerd::start()
            .await
            .expect("start containerd");
        (cluster, containerd)
    }};
}

/// The `default` namespace's pods, after creating the `default` ServiceAccount the
/// controller-manager (not running in these tests) would create.
pub async fn default_pods(client: &kube::Client) -> kube::Api<k8s_openapi::api::core::v1::Pod> {
    use k8s_openapi::api::core::v1::ServiceAccount;
    let sas: kube::Api<ServiceAccount> = kube::Api::namespaced(client.clone(), "default");
    let _ = sas
        .create(
            &kube::api::PostParams::default(),
            &serde_json::from_value(serde_json::json!({"metadata": {"name": "default"}})).unwrap(),
        )
        .await;
    kube::Api::namespaced(client.clone(), "default")
}

/// Creates the pod `json` describes in `pods`' namespace.
pub async fn create_pod(
    pods: &kube::Api<k8s_openapi::api::core::v1::Pod>,
    json: serde_json::Value,
) -> k8s_openapi::api::core::v1::Pod {
    pods.create(&kube::api::PostParams::default(), &pod(json))
        .await
        .unwrap()
}

/// Waits until pod `name` reports phase `phase`, and returns its status.
pub async fn wait_pod_phase(
    pods: &kube::Api<k8s_openapi::api::core::v1::Pod>,
    name: &str,
    phase: &str,
    timeout: std::time::Duration,
) -> k8s_openapi::api::core::v1::PodStatus {
    process::wait(&format!("pod {phase}"), timeout, || async {
        let s = pods.get_opt(name).await.ok().flatten()?.status?;
        (s.phase.as_deref() == Some(phase)).then_some(s)
    })
    .await
}

/// Deletes pod `name` and waits until the apiserver no longer has it.
pub async fn delete_pod_and_wait_gone(
    pods: &kube::Api<k8s_openapi::api::core::v1::Pod>,
    name: &str,
    timeout: std::time::Duration,
) {
    pods.delete(name, &Default::default()).await.unwrap();
    wait_pod_gone(pods, name, timeout).await;
}

/// Waits until the apiserver no longer has pod `name`.
pub async fn wait_pod_gone(
    pods: &kube::Api<k8s_openapi::api::core::v1::Pod>,
    name: &str,
    timeout: std::time::Duration,
) {
    process::wait(&format!("pod {name} gone"), timeout, || async {
        pods.get_opt(name)
            .await
            .ok()
            .flatten()
            .is_none()
            .then_some(())
    })
    .await;
}

/// A BestEffort pod `name` bound to `node_name` whose one container `app` sleeps (host
/// network, no token, 1 s grace), as JSON for [`create_pod`].
pub fn sleeping_pod(name: &str, node_name: &str) -> serde_json::Value {
    serde_json::json!({
        "metadata": {"name": name},
        "spec": {"nodeName": node_name, "hostNetwork": true, "automountServiceAccountToken": false,
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "app", "image": "busybox:1.35", "command": ["sleep", "3600"]}]}
    })
}

/// A one-file image of its own (a distinct layer, so a distinct image ID), used by no pod.
pub fn tiny_image(name: &str) -> kubelet::image::OciImage {
    let mut tar = tar::Builder::new(Vec::new());
    let data = format!("image {name}\n");
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_cksum();
    tar.append_data(&mut h, "marker", data.as_bytes()).unwrap();
    let config = serde_json::json!({
        "architecture": component_base::version::go_arch(),
        "os": "linux",
        "config": {"Cmd": ["/marker"]},
        "rootfs": {"type": "layers", "diff_ids": []},
    });
    kubelet::image::OciImage::from_parts(name, &config, vec![tar.into_inner().unwrap()]).unwrap()
}

/// The repo tags of every image the runtime has.
pub async fn image_tags(cri: &dyn kubelet::cri::CriService) -> Vec<String> {
    cri.list_images(k8s_cri::v1::ListImagesRequest { filter: None })
        .await
        .unwrap()
        .images
        .into_iter()
        .flat_map(|i| i.repo_tags)
        .collect()
}

/// A pod from JSON with defaults filled in.
pub fn pod(json: serde_json::Value) -> k8s_openapi::api::core::v1::Pod {
    serde_json::from_value(json).unwrap()
}

/// The apiserver's client certificate for kubelets (kubeadm's apiserver-kubelet-client,
/// `system:masters`), issued by the cluster's CA.
pub fn apiserver_kubelet_client(cluster: &e2e::TestCluster) -> e2e::pki::CertFiles {
    cluster
        .pki()
        .client_cert(
            "kubelet-client",
            "kube-apiserver-kubelet-client",
            Some("system:masters"),
        )
        .unwrap()
}

/// GETs `path` from the kubelet API on `port` (HTTPS) with the client certificate `cert`:
/// (status, body).
pub fn kubelet_request(port: u16, path: &str, cert: &e2e::pki::CertFiles) -> (u16, String) {
    let out = std::process::Command::new("curl")
        .args(["-sk", "-w", "\n%{http_code}", "--cert"])
        .arg(&cert.cert)
        .arg("--key")
        .arg(&cert.key)
        .arg(format!("https://127.0.0.1:{port}{path}"))
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// GETs `path` from the kubelet API on `port` as [`apiserver_kubelet_client`] — the kubelet
/// must trust the cluster's CA (`KubeletBuilder::webhook_auth`) — and returns the body;
/// anything but 200 fails the test.
pub fn kubelet_get(cluster: &e2e::TestCluster, port: u16, path: &str) -> String {
    let (code, body) = kubelet_request(port, path, &apiserver_kubelet_client(cluster));
    assert_eq!(code, 200, "GET {path}: {body}");
    body
}

/// The value of the sample `name` whose labels include every `labels` pair, in a
/// Prometheus text exposition (a sample's trailing timestamp is not its value).
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().find_map(|l| {
        if l.starts_with('#') {
            return None;
        }
        let (n, rest, after) = match l.find(['{', ' ']) {
            Some(i) if l[i..].starts_with('{') => {
                let close = l.rfind('}')?;
                (&l[..i], &l[i..=close], &l[close + 1..])
            }
            Some(i) => (&l[..i], "", &l[i..]),
            None => return None,
        };
        let matches = n == name
            && labels
                .iter()
                .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
        let value = after.split_whitespace().next()?;
        matches.then(|| value.parse().ok()).flatten()
    })
}
