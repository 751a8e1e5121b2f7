//! e2e: node allocatable and the eviction manager on a real containerd and apiserver —
//! kubeReserved and the hard eviction threshold come off allocatable, the kubepods cgroup
//! is limited to capacity minus reservations, a met `memory.available` threshold turns
//! MemoryPressure True and the running pod is evicted (Failed/Evicted, DisruptionTarget);
//! a met `nodefs.available` threshold turns DiskPressure True, unused images are removed
//! first, and only then is a pod evicted.

#[macro_use]
mod common;

use common::process::{wait_every, KubeletProcess};
use common::{
    create_pod, default_pods, image_tags, kubelet_get, sample, sleeping_pod, tiny_image,
    wait_pod_phase,
};
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use std::time::{Duration, Instant};

/// Polls every 500 ms, as these tests always have.
async fn wait<T, F: Fn() -> Fut, Fut: std::future::Future<Output = Option<T>>>(
    what: &str,
    timeout: Duration,
    f: F,
) -> T {
    wait_every(what, timeout, Duration::from_millis(500), f).await
}

fn ki(q: &str) -> i64 {
    api_helpers::quantity::value(q).unwrap()
}

#[tokio::test]
async fn memory_pressure_evicts_and_allocatable_is_enforced() {
    let (cluster, containerd) = cluster_and_containerd_or_skip!();
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
    let kubelet = KubeletProcess::builder(&cluster, &containerd, "evict")
        .config(serde_json::json!({
            "kubeReserved": {"memory": "1Gi", "cpu": "100m"},
            "evictionHard": {"memory.available": format!("{threshold_mi}Mi")},
            "evictionPressureTransitionPeriod": "30s",
        }))
        .webhook_auth()
        .start();
    let node_name = kubelet.node_name.clone();
    let cgroup_root = kubelet.cgroup_root.clone();
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

    // A running pod is evicted. It arrives under MemoryPressure: Burstable, so admission
    // (which refuses only BestEffort pods under memory pressure alone) lets it start. Its
    // own 30 s grace does not apply: a hard threshold kills within upstream's immediate
    // grace period (1 s; `sleep` as PID 1 ignores SIGTERM, so 30 s would show).
    let pods = default_pods(&client).await;
    create_pod(
        &pods,
        serde_json::json!({
            "metadata": {"name": "victim"},
            "spec": {"nodeName": node_name, "hostNetwork": true, "automountServiceAccountToken": false,
                "terminationGracePeriodSeconds": 30,
                "containers": [{"name": "app", "image": "busybox:1.35", "command": ["sleep", "3600"],
                    "resources": {"requests": {"memory": "10Mi"}}}]}
        }),
    )
    .await;
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
    let log = kubelet.log();
    let killing = log
        .lines()
        .find(|l| l.contains("Killing evicted pod") && l.contains("victim"))
        .unwrap_or_else(|| panic!("no eviction kill logged:\n{}", kubelet.log_tail(30)));
    assert!(killing.contains("grace_period=1"), "{killing}");
    let metrics = kubelet_get(&cluster, kubelet.port, "/metrics");
    assert_eq!(
        sample(
            &metrics,
            "kubelet_evictions",
            &[("eviction_signal", "memory.available")]
        ),
        Some(1.0),
        "{metrics}"
    );
    assert!(
        metrics.contains("# TYPE kubelet_evictions counter"),
        "{metrics}"
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
    kubelet.stop();
}

#[tokio::test]
async fn disk_pressure_collects_images_before_evicting() {
    let (cluster, containerd) = cluster_and_containerd_or_skip!();
    let cri = kubelet::cri::Cri::connect(&containerd.endpoint())
        .await
        .unwrap();
    let victim_image = "docker.io/library/disk-gc-victim:1";
    kubelet::image::ImageLoader::connect(&containerd.endpoint(), kubelet::image::K8S_NAMESPACE)
        .await
        .unwrap()
        .load(&tiny_image(victim_image))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !image_tags(&cri).await.contains(&victim_image.to_string()) {
        assert!(Instant::now() < deadline, "CRI never listed {victim_image}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let id = std::process::id() % 10000;
    let dir = containerd.dir().join("kubelet");
    // nodefs.available<99%: met from the first observation and never relieved. Images are
    // collectable 5s after the kubelet first sees them; busybox stays in use by a static
    // pod (never evicted), so the second observation (10s) removes only the unused image.
    let manifests = dir.join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    std::fs::write(
        manifests.join("keeper.yaml"),
        "apiVersion: v1\nkind: Pod\nmetadata: {name: keeper, namespace: default}\nspec:\n  hostNetwork: true\n  terminationGracePeriodSeconds: 1\n  containers:\n  - {name: app, image: busybox:1.35, command: [sleep, \"3600\"]}\n",
    )
    .unwrap();
    // The victim runs before the pressure (a pod arriving under DiskPressure is refused at
    // admission, tests/admission.rs): first without the threshold, then restarted with it.
    let mut kubelet = KubeletProcess::builder(&cluster, &containerd, "disk")
        .config(serde_json::json!({
            "evictionPressureTransitionPeriod": "30s",
            "imageMinimumGCAge": "5s",
            "staticPodPath": manifests,
            "fileCheckFrequency": "1s",
            "evictionMaxPodGracePeriod": 3,
        }))
        .webhook_auth()
        .start();
    let node_name = kubelet.node_name.clone();
    let client = cluster.client();
    let nodes: Api<Node> = Api::all(client.clone());
    let pods = default_pods(&client).await;
    let pod_name = format!("disk-victim-{id}");
    // A soft eviction gives min(evictionMaxPodGracePeriod 3, the pod's own 30) seconds.
    let mut victim = sleeping_pod(&pod_name, &node_name);
    victim["spec"]["terminationGracePeriodSeconds"] = 30.into();
    create_pod(&pods, victim).await;
    wait_pod_phase(&pods, &pod_name, "Running", Duration::from_secs(60)).await;
    let mut config: serde_json::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&kubelet.config_path).unwrap()).unwrap();
    // Soft, with a grace period: DiskPressure at once, but pods are considered only from
    // the second observation (10 s), when the unused image (first seen by the restarted
    // kubelet) is collectable.
    config["evictionSoft"] = serde_json::json!({"nodefs.available": "99%"});
    config["evictionSoftGracePeriod"] = serde_json::json!({"nodefs.available": "8s"});
    std::fs::write(
        &kubelet.config_path,
        serde_yaml::to_string(&config).unwrap(),
    )
    .unwrap();
    kubelet.restart();

    let condition = wait("DiskPressure", Duration::from_secs(60), || async {
        let n = nodes.get_opt(&node_name).await.ok().flatten()?;
        let c = n
            .status?
            .conditions?
            .into_iter()
            .find(|c| c.type_ == "DiskPressure")?;
        (c.status == "True").then_some(c)
    })
    .await;
    assert_eq!(condition.reason.as_deref(), Some("KubeletHasDiskPressure"));
    // The running pod (not re-admitted after the restart) is evicted at a later
    // observation, after node-level reclaim.

    let evicted = wait("pod evicted", Duration::from_secs(90), || async {
        let p = pods.get_opt(&pod_name).await.ok().flatten()?;
        let s = p.status.clone()?;
        (s.phase.as_deref() == Some("Failed") && s.reason.as_deref() == Some("Evicted"))
            .then_some(s)
    })
    .await;
    assert!(
        evicted
            .message
            .as_deref()
            .unwrap_or_default()
            .starts_with("The node was low on resource: ephemeral-storage."),
        "{:?}",
        evicted.message
    );
    // The unused image went first (node-level reclaim), in the kubelet's own order of work.
    let tags = image_tags(&cri).await;
    assert!(
        !tags.contains(&victim_image.to_string()),
        "{tags:?}\n{}",
        kubelet.log_tail(40)
    );
    assert!(
        tags.contains(&kubelet::image::busybox::PAUSE_IMAGE.to_string()),
        "the sandbox image is never collected: {tags:?}"
    );
    let log = kubelet.log();
    let removed_at = log.find("Removing image to free bytes").unwrap_or_else(|| {
        panic!(
            "no image removal in the kubelet log:\n{}",
            kubelet.log_tail(40)
        )
    });
    let evicting_at = log
        .find("Eviction manager: evicting pod")
        .expect("eviction logged");
    assert!(removed_at < evicting_at, "images are reclaimed before pods");
    let killing = log
        .lines()
        .find(|l| l.contains("Killing evicted pod") && l.contains(&pod_name))
        .expect("eviction kill logged");
    assert!(killing.contains("grace_period=3"), "{killing}");
    let metrics = kubelet_get(&cluster, kubelet.port, "/metrics");
    assert_eq!(
        sample(
            &metrics,
            "kubelet_evictions",
            &[("eviction_signal", "nodefs.available")]
        ),
        Some(1.0),
        "{metrics}"
    );
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::all(client.clone());
    let met = wait(
        "EvictionThresholdMet event",
        Duration::from_secs(20),
        || async {
            let list = events.list(&Default::default()).await.ok()?;
            list.items.into_iter().find(|e| {
                e.reason.as_deref() == Some("EvictionThresholdMet")
                    && e.involved_object.name.as_deref() == Some(node_name.as_str())
            })
        },
    )
    .await;
    assert_eq!(
        met.message.as_deref(),
        Some("Attempting to reclaim ephemeral-storage")
    );

    pods.delete(&pod_name, &Default::default()).await.ok();
    kubelet.stop();
}
