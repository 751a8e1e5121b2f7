//! e2e: node allocatable and the eviction manager on a real containerd and apiserver —
//! kubeReserved and the hard eviction threshold come off allocatable, the kubepods cgroup
//! is limited to capacity minus reservations, a met `memory.available` threshold turns
//! MemoryPressure True and the running pod is evicted (Failed/Evicted, DisruptionTarget).

use k8s_openapi::api::core::v1::{Node, Pod, ServiceAccount};
use kube::api::{Api, PostParams};
use kubelet::testing::{containerd::unavailable_reason, TestContainerd};
use std::time::{Duration, Instant};

async fn wait<T, F: Fn() -> Fut, Fut: std::future::Future<Output = Option<T>>>(
    what: &str,
    timeout: Duration,
    f: F,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn ki(q: &str) -> i64 {
    kubelet::pod::quantity::bytes(q).unwrap()
}

#[tokio::test]
async fn memory_pressure_evicts_and_allocatable_is_enforced() {
    let cluster = e2e::cluster_or_skip!();
    if let Some(reason) = unavailable_reason() {
        e2e::skip_test!("{reason}");
    }
    let containerd = TestContainerd::start().await.expect("start containerd");
    let id = std::process::id() % 10000;
    let node_name = format!("evict-node-{id}");
    let dir = containerd.dir().join("kubelet");
    std::fs::create_dir_all(&dir).unwrap();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    let total_kib: i64 = meminfo
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    // A threshold just above what is available now: met from the first observation.
    let threshold_mi = total_kib / 1024 + 1;
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\npodLogsDir: {}\nfailSwapOn: false\n\
kubeReserved: {{memory: 1Gi, cpu: 100m}}\nevictionHard: {{memory.available: {threshold_mi}Mi}}\nevictionPressureTransitionPeriod: 30s\n",
            dir.join("logs").display()
        ),
    )
    .unwrap();
    let kubeconfig = cluster
        .kubeconfig_for(&e2e::Identity::Node(node_name.clone()))
        .unwrap();
    let cgroup_root = format!("/ferrokube-evict-{id}");
    let args = vec![
        format!(
            "FERROKUBE_CNI_CONF_DIR={}",
            containerd.cni_conf_dir().display()
        ),
        format!("FERROKUBE_CNI_BRIDGE=fkev{id}"),
        e2e::binaries::ferrokube_binary("kubelet")
            .unwrap()
            .display()
            .to_string(),
        format!("--config={}", config.display()),
        format!("--kubeconfig={}", kubeconfig.display()),
        format!("--container-runtime-endpoint={}", containerd.endpoint()),
        format!("--root-dir={}", dir.join("root").display()),
        format!("--hostname-override={node_name}"),
        "--node-ip=127.0.0.1".into(),
        format!("--cgroup-root={cgroup_root}"),
        format!("--healthz-port={}", e2e::ports::free_port().unwrap()),
        format!("--port={}", e2e::ports::free_port().unwrap()),
    ];
    let mut kubelet = cluster
        .spawn("kubelet", std::path::Path::new("/usr/bin/env"), &args)
        .unwrap();
    let client = cluster.client();
    let nodes: Api<Node> = Api::all(client.clone());

    // Node pressure: MemoryPressure True with upstream's reason.
    let node = wait("MemoryPressure", Duration::from_secs(60), || async {
        let n = nodes.get_opt(&node_name).await.ok().flatten()?;
        let c = n
            .status
            .as_ref()?
            .conditions
            .as_ref()?
            .iter()
            .find(|c| c.type_ == "MemoryPressure")?
            .clone();
        (c.status == "True").then_some(()).map(|_| (n, c))
    })
    .await;
    assert_eq!(
        node.1.reason.as_deref(),
        Some("KubeletHasInsufficientMemory")
    );
    // Allocatable: capacity − kubeReserved − the hard eviction threshold (floored at 0).
    let status = node.0.status.clone().unwrap();
    let capacity = ki(&status.capacity.as_ref().unwrap()["memory"].0);
    let allocatable = ki(&status.allocatable.as_ref().unwrap()["memory"].0);
    assert_eq!(
        allocatable,
        (capacity - (1 << 30) - (threshold_mi << 20)).max(0)
    );
    assert_eq!(status.allocatable.as_ref().unwrap()["cpu"].0, {
        let cpus: i64 = status.capacity.as_ref().unwrap()["cpu"].0.parse().unwrap();
        format!("{}m", cpus * 1000 - 100)
    });
    // kubepods: capacity − kubeReserved (eviction thresholds are not in the cgroup limit).
    let limit: i64 = std::fs::read_to_string(format!(
        "/sys/fs/cgroup/memory{cgroup_root}/kubepods/memory.limit_in_bytes"
    ))
    .unwrap()
    .trim()
    .parse()
    .unwrap();
    let page = 4096;
    assert_eq!(
        limit / page,
        (total_kib * 1024 - (1 << 30)) / page,
        "kubepods memory limit"
    );

    // A running pod is evicted.
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
    let _ = sas
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({"metadata": {"name": "default"}})).unwrap(),
        )
        .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "victim"},
        "spec": {"nodeName": node_name, "hostNetwork": true, "automountServiceAccountToken": false,
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "app", "image": "busybox:1.35", "command": ["sleep", "3600"]}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let evicted = wait("pod evicted", Duration::from_secs(60), || async {
        let p = pods.get_opt("victim").await.ok().flatten()?;
        let s = p.status.clone()?;
        (s.phase.as_deref() == Some("Failed") && s.reason.as_deref() == Some("Evicted"))
            .then_some(p)
    })
    .await;
    let s = evicted.status.unwrap();
    assert!(
        s.message
            .as_deref()
            .unwrap()
            .starts_with("The node was low on resource: memory."),
        "{:?}",
        s.message
    );
    let dt = s
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "DisruptionTarget")
        .expect("DisruptionTarget");
    assert_eq!(
        (dt.status.as_str(), dt.reason.as_deref()),
        ("True", Some("TerminationByKubelet"))
    );
    // It stays down: no container of it runs afterwards.
    let cri = kubelet::cri::Cri::connect(&containerd.endpoint())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let all = kubelet::runtime::observe::observe_all(&cri).await.unwrap();
    assert!(
        all.values()
            .all(|(r, o)| r.name != "victim" || !o.any_running()),
        "evicted pod restarted"
    );
    let p = pods.get("victim").await.unwrap();
    assert_eq!(
        p.status.unwrap().phase.as_deref(),
        Some("Failed"),
        "still Failed"
    );

    pods.delete("victim", &Default::default()).await.ok();
    kubelet.terminate(Duration::from_secs(5)).unwrap();
    for ctl in [
        "cpu", "cpuacct", "cpuset", "memory", "pids", "blkio", "devices", "freezer",
    ] {
        for cg in ["kubepods/burstable", "kubepods/besteffort", "kubepods", ""] {
            let _ = std::fs::remove_dir(format!("/sys/fs/cgroup/{ctl}{cgroup_root}/{cg}"));
        }
    }
}
