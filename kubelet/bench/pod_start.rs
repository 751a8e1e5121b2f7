//! Benchmark (not a timed test): pod start latency p50/p99 for 30 pods whose image is
//! present, and the kubelet's RSS idle, at 30 pods and at 100 pods — on a real
//! kube-apiserver + etcd and a real containerd, with the kubelet binary as a process.
//!
//! `cargo bench -p kubelet --bench pod_start` (set `FERROKUBE_BIN_DIR=target/release` after
//! `cargo build --release -p kubelet` to measure the optimised binary).
//!
//! `KUBELET_BINARY=/path/to/upstream/kubelet` runs upstream's kubelet through the same
//! harness with the same flags and KubeletConfiguration (the bench then writes the CNI
//! conflist that ferrokube's kubelet writes itself from the pod CIDR).

use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, ServiceAccount};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kubelet::testing::{containerd::unavailable_reason, TestContainerd};
use std::collections::HashMap;
use std::time::{Duration, Instant};

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[idx]
}

fn ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn pod(name: &str, node: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"app": "bench"}},
        "spec": {"nodeName": node, "terminationGracePeriodSeconds": 1,
                 "containers": [{"name": "c", "image": "busybox:1.35", "command": ["sleep", "3600"]}]}
    }))
    .unwrap()
}

/// Creates `names` at once and returns each pod's create→Ready latency.
async fn start_pods(pods: &Api<Pod>, node: &str, names: &[String]) -> Vec<Duration> {
    let mut created = HashMap::new();
    for n in names {
        pods.create(&PostParams::default(), &pod(n, node))
            .await
            .unwrap();
        created.insert(n.clone(), Instant::now());
    }
    let mut latencies = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(300);
    while latencies.len() < names.len() {
        assert!(Instant::now() < deadline, "pods did not all become Ready");
        for p in pods
            .list(&ListParams::default().labels("app=bench"))
            .await
            .unwrap()
            .items
        {
            let name = p.metadata.name.clone().unwrap_or_default();
            if ready(&p) && created.contains_key(&name) && !latencies.contains_key(&name) {
                latencies.insert(name.clone(), created[&name].elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut v: Vec<Duration> = latencies.into_values().collect();
    v.sort();
    v
}

#[tokio::main]
async fn main() {
    let cluster = match e2e::TestCluster::start().await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("SKIPPED: benchmark needs kube-apiserver + etcd: {e:#}");
            return;
        }
    };
    if let Some(reason) = unavailable_reason() {
        eprintln!("SKIPPED: {reason}");
        return;
    }
    let containerd = TestContainerd::start().await.expect("start containerd");
    let id = std::process::id() % 10000;
    let node_name = format!("bench-node-{id}");
    let dir = containerd.dir().join("kubelet");
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("config.yaml");
    // Eviction thresholds low enough that a shared build machine's disk (often under the
    // default 15% imagefs.available) does not put the node under DiskPressure.
    std::fs::write(&config, format!(
        "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\npodLogsDir: {}\nclusterDNS: [10.96.0.10]\nclusterDomain: cluster.local\nfailSwapOn: false\nevictionHard: {{memory.available: 100Mi, nodefs.available: 2%, imagefs.available: 2%}}\n",
        dir.join("logs").display()
    )).unwrap();
    let kubeconfig = cluster
        .kubeconfig_for(&e2e::Identity::Node(node_name.clone()))
        .unwrap();
    let upstream = std::env::var_os("KUBELET_BINARY").map(std::path::PathBuf::from);
    let bin = match &upstream {
        Some(path) => path.clone(),
        None => e2e::binaries::ferrokube_binary("kubelet").unwrap(),
    };
    let bridge = format!("fkb{id}");
    let pod_cidr = format!("10.89.{}.0/24", id % 250);
    if upstream.is_some() {
        // Upstream's kubelet leaves the CNI config to the node's installer.
        let net = kubelet::cni::BridgeNetwork {
            bridge: bridge.clone(),
            ..Default::default()
        };
        net.write_conflist(&containerd.cni_conf_dir(), &pod_cidr)
            .unwrap();
    }
    // Upstream's kubelet refuses a --cgroup-root that does not exist in every hierarchy
    // (ferrokube's creates it); make it for both so they start alike.
    let cgroup_root = format!("ferrokube-bench-{id}");
    let cgroup_dirs = cgroup_root_dirs(&cgroup_root);
    for d in &cgroup_dirs {
        std::fs::create_dir_all(d).unwrap();
    }
    let args = vec![
        format!(
            "FERROKUBE_CNI_CONF_DIR={}",
            containerd.cni_conf_dir().display()
        ),
        // Opts ferrokube's kubelet in to writing its bridge conflist (upstream's ignores it).
        format!("FERROKUBE_CNI_BRIDGE={bridge}"),
        bin.display().to_string(),
        format!("--config={}", config.display()),
        format!("--kubeconfig={}", kubeconfig.display()),
        format!("--container-runtime-endpoint={}", containerd.endpoint()),
        format!("--root-dir={}", dir.join("root").display()),
        format!("--hostname-override={node_name}"),
        "--node-ip=127.0.0.1".into(),
        format!("--pod-cidr={pod_cidr}"),
        format!("--cgroup-root=/{cgroup_root}"),
        format!("--healthz-port={}", e2e::ports::free_port().unwrap()),
        format!("--port={}", e2e::ports::free_port().unwrap()),
    ];
    let mut kubelet = cluster
        .spawn("kubelet", std::path::Path::new("/usr/bin/env"), &args)
        .unwrap();
    let pid = kubelet.pid();
    let client = cluster.client();
    let nodes: Api<Node> = Api::all(client.clone());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n = nodes.get_opt(&node_name).await.ok().flatten();
        let is_ready = n
            .and_then(|n| n.status?.conditions)
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        if is_ready {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node not Ready: {}",
            kubelet.log_tail(20)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
    let _ = sas
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({"metadata": {"name": "default"}})).unwrap(),
        )
        .await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let ca = std::fs::read_to_string(cluster.pki().ca_cert()).unwrap();
    let _ = cms.create(&PostParams::default(), &serde_json::from_value(serde_json::json!({"metadata": {"name": "kube-root-ca.crt"}, "data": {"ca.crt": ca}})).unwrap()).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let idle = rss_mib(pid);

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let first: Vec<String> = (0..30).map(|i| format!("bench-{i}")).collect();
    let lat = start_pods(&pods, &node_name, &first).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let at30 = rss_mib(pid);
    let rest: Vec<String> = (30..100).map(|i| format!("bench-{i}")).collect();
    let started = Instant::now();
    start_pods(&pods, &node_name, &rest).await;
    let seventy = started.elapsed();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let at100 = rss_mib(pid);

    let who = if upstream.is_some() {
        "upstream"
    } else {
        "ferrokube"
    };
    println!("{who} kubelet ({})", bin.display());
    println!("  pod start latency, 30 pods created at once (create -> Ready): p50 {:.2}s  p99 {:.2}s  max {:.2}s",
        percentile(&lat, 0.5).as_secs_f64(), percentile(&lat, 0.99).as_secs_f64(), lat.last().unwrap().as_secs_f64());
    println!(
        "  70 more pods (to 100) all Ready in {:.1}s",
        seventy.as_secs_f64()
    );
    println!("  RSS idle {idle:.1} MiB | 30 pods {at30:.1} MiB | 100 pods {at100:.1} MiB");
    // One JSON line per figure for hack/bench.sh, which pairs ours with upstream's run.
    let side = if upstream.is_some() {
        "upstream"
    } else {
        "ours"
    };
    let p50 = percentile(&lat, 0.5).as_secs_f64();
    for (figure, value, unit) in [
        ("kubelet 30 pods create->Ready p50", p50, "s"),
        (
            "kubelet 70 more pods (to 100) all Ready",
            seventy.as_secs_f64(),
            "s",
        ),
        ("kubelet RSS idle", idle, "MiB"),
        ("kubelet RSS at 100 pods", at100, "MiB"),
    ] {
        let value = (value * 100.0).round() / 100.0;
        println!(
            "{}",
            serde_json::json!({"figure": figure, side: value, "unit": unit})
        );
    }

    pods.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels("app=bench"),
    )
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(180);
    while !pods
        .list(&ListParams::default().labels("app=bench"))
        .await
        .unwrap()
        .items
        .is_empty()
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let _ = kubelet.terminate(Duration::from_secs(5));
    let _ = std::process::Command::new("ip")
        .args(["link", "del", &bridge])
        .status();
    for d in &cgroup_dirs {
        remove_cgroup_tree(d);
    }
}

/// `<hierarchy>/<root>` in every mounted cgroup v1 hierarchy, or the one v2 path.
fn cgroup_root_dirs(root: &str) -> Vec<std::path::PathBuf> {
    let base = std::path::Path::new("/sys/fs/cgroup");
    if base.join("cgroup.controllers").exists() {
        return vec![base.join(root)];
    }
    std::fs::read_dir(base)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.path().join("cgroup.procs").exists())
                .filter(|e| !e.file_type().is_ok_and(|t| t.is_symlink()))
                .map(|e| e.path().join(root))
                .collect()
        })
        .unwrap_or_default()
}

/// Removes an empty cgroup tree bottom-up (cgroup directories are removed with rmdir).
fn remove_cgroup_tree(dir: &std::path::Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup_tree(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}
