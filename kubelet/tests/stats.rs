//! e2e: the kubelet's resource endpoints with a real kubelet, containerd and apiserver — a
//! pod with a CPU-limited busy container and ~16 MB of live memory shows up in
//! `/stats/summary` with plausible CPU and memory, `/metrics/resource` carries its
//! counters, `/metrics/cadvisor` its cgroup's usage, CFS quota and throttling, `/configz` echoes the configured `maxPods`, authorization checks the
//! `nodes/stats` and `nodes/metrics` subresources, and the apiserver's node proxy reaches
//! the summary when the node has a proxyable address.

#[macro_use]
mod common;

use common::process::{wait, KubeletProcess};
use common::{
    apiserver_kubelet_client, create_pod, default_pods, delete_pod_and_wait_gone, kubelet_request,
    wait_pod_phase,
};
use kubelet::stats::Summary;
use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::time::Duration;

/// An address of this machine the apiserver may proxy to (not loopback), if there is one:
/// NODE-ENVIRONMENT's node address on `lo`.
fn proxyable_local_address() -> Option<IpAddr> {
    let ip = IpAddr::V4(Ipv4Addr::new(10, 200, 0, 1));
    std::net::TcpListener::bind((ip, 0)).ok().map(|_| ip)
}

#[tokio::test]
async fn summary_metrics_and_configz() {
    let (cluster, containerd) = cluster_and_containerd_or_skip!();
    let node_ip = proxyable_local_address();
    let kubelet = KubeletProcess::builder(&cluster, &containerd, "stats")
        .node_ip(node_ip.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)))
        .config(serde_json::json!({
            "maxPods": 37,
            "evictionHard": {"memory.available": "1Mi"},
        }))
        .webhook_auth()
        .start();
    let node_name = kubelet.node_name.clone();
    let port = kubelet.port;
    let client = cluster.client();
    let pods = default_pods(&client).await;
    // 100m of CPU (CFS quota) spent in a busy loop, ~16 MB held in a shell variable.
    create_pod(
        &pods,
        serde_json::json!({
            "metadata": {"name": "stats-busy"},
            "spec": {
                "nodeName": node_name, "hostNetwork": true, "automountServiceAccountToken": false,
                "terminationGracePeriodSeconds": 1,
                "volumes": [{"name": "scratch", "emptyDir": {}}],
                "containers": [{"name": "busy", "image": "busybox:1.35",
                    "command": ["sh", "-c", "head -c 1048576 /dev/zero > /scratch/blob; x=$(head -c 16000000 /dev/zero | tr '\\0' a); echo ready; while true; do :; done"],
                    "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}],
                    "resources": {"limits": {"cpu": "100m", "memory": "96Mi"}}}]
            }
        }),
    )
    .await;
    wait_pod_phase(&pods, "stats-busy", "Running", Duration::from_secs(60)).await;

    let admin = apiserver_kubelet_client(&cluster);
    // usageNanoCores needs two samples of the 10 s sampler, and the memory must be held.
    let summary: Summary = wait(
        "container CPU rate in the summary",
        Duration::from_secs(45),
        || async {
            let (code, body) = kubelet_request(port, "/stats/summary", &admin);
            assert_eq!(code, 200, "{body}");
            let s: Summary = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
            let pod = s.pods.iter().find(|p| p.pod_ref.name == "stats-busy")?;
            let c = pod.containers.iter().find(|c| c.name == "busy")?;
            let rate = c.cpu.as_ref()?.usage_nano_cores?;
            let ws = c.memory.as_ref()?.working_set_bytes?;
            (rate > 0 && ws > 16_000_000).then_some(s)
        },
    )
    .await;

    // The node.
    let node = &summary.node;
    assert_eq!(node.node_name, node_name);
    assert!(node.start_time.0.is_some());
    let cpu = node.cpu.as_ref().unwrap();
    assert!(cpu.usage_core_nano_seconds.unwrap() > 0);
    assert!(cpu.usage_nano_cores.unwrap() > 0);
    let mem = node.memory.as_ref().unwrap();
    let capacity = mem.working_set_bytes.unwrap() + mem.available_bytes.unwrap();
    assert!(capacity > 1 << 30, "machine memory {capacity}");
    let fs = node.fs.as_ref().unwrap();
    assert!(fs.capacity_bytes.unwrap() > fs.available_bytes.unwrap());
    assert!(fs.used_bytes.unwrap() > 0 && fs.inodes_used.unwrap() > 0);
    let image_fs = node.runtime.as_ref().unwrap().image_fs.as_ref().unwrap();
    assert!(image_fs.used_bytes.unwrap() > 0 && image_fs.capacity_bytes.unwrap() > 0);
    let net = node.network.as_ref().expect("node network");
    assert!(net
        .interfaces
        .iter()
        .all(|i| i.name != "lo" && !i.name.starts_with("veth")));
    assert!(
        net.interfaces.iter().any(|i| i.rx_bytes.unwrap() > 0),
        "{net:?}"
    );
    let rlimit = node.rlimit.as_ref().unwrap();
    assert!(rlimit.max_pid.unwrap() > 0 && rlimit.num_of_running_processes.unwrap() > 0);
    let pods_cg = node
        .system_containers
        .iter()
        .find(|c| c.name == "pods")
        .expect("pods system container");
    assert!(pods_cg.memory.as_ref().unwrap().working_set_bytes.unwrap() > 16_000_000);
    assert!(node.system_containers.iter().any(|c| c.name == "kubelet"));

    // The pod and its container.
    let pod = summary
        .pods
        .iter()
        .find(|p| p.pod_ref.name == "stats-busy")
        .unwrap();
    assert_eq!(pod.pod_ref.namespace, "default");
    assert!(!pod.pod_ref.uid.is_empty());
    let c = &pod.containers[0];
    let rate = c.cpu.as_ref().unwrap().usage_nano_cores.unwrap();
    // The CFS quota holds it at 0.1 core; allow for sampling noise.
    assert!(
        (20_000_000..=160_000_000).contains(&rate),
        "busy container at 100m uses {rate} nanocores"
    );
    assert!(c.cpu.as_ref().unwrap().usage_core_nano_seconds.unwrap() > 100_000_000);
    let cmem = c.memory.as_ref().unwrap();
    let ws = cmem.working_set_bytes.unwrap();
    assert!(ws > 16_000_000 && ws < 96 << 20, "working set {ws}");
    assert!(cmem.rss_bytes.unwrap() > 16_000_000);
    assert!(cmem.available_bytes.unwrap() < 96 << 20);
    assert!(c.rootfs.is_some() && c.logs.as_ref().unwrap().used_bytes.unwrap() > 0);
    let pcpu = pod.cpu.as_ref().unwrap();
    assert!(
        pcpu.usage_core_nano_seconds.unwrap()
            >= c.cpu.as_ref().unwrap().usage_core_nano_seconds.unwrap()
    );
    assert!(pod.memory.as_ref().unwrap().working_set_bytes.unwrap() >= ws);
    assert!(pod.process_stats.as_ref().unwrap().process_count.unwrap() >= 1);
    let scratch = pod
        .volume_stats
        .iter()
        .find(|v| v.name == "scratch")
        .unwrap();
    assert!(scratch.fs.used_bytes.unwrap() >= 1 << 20, "{scratch:?}");
    let eph = pod.ephemeral_storage.as_ref().unwrap();
    assert!(eph.used_bytes.unwrap() >= scratch.fs.used_bytes.unwrap());
    assert!(pod.network.is_some(), "network of the sandbox's namespace");

    // What a scrape costs on the kubelet's side: curl's time from the TLS session being
    // up to the first response byte (a figure to compare with upstream's kubelet).
    for path in ["/stats/summary", "/metrics/resource", "/metrics/cadvisor"] {
        let mut ms = Vec::new();
        for _ in 0..5 {
            let out = Command::new("curl")
                .args([
                    "-sk",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{time_appconnect} %{time_starttransfer}",
                ])
                .arg("--cert")
                .arg(&admin.cert)
                .arg("--key")
                .arg(&admin.key)
                .arg(format!("https://127.0.0.1:{port}{path}"))
                .output()
                .unwrap();
            let t: Vec<f64> = String::from_utf8_lossy(&out.stdout)
                .split(' ')
                .filter_map(|v| v.parse().ok())
                .collect();
            ms.push((t[1] - t[0]) * 1000.0);
        }
        ms.sort_by(f64::total_cmp);
        eprintln!(
            "{path}: median {:.1} ms to first byte (1 pod, 5 requests)",
            ms[2]
        );
    }

    // CPU and memory only.
    let (code, body) = kubelet_request(port, "/stats/summary?only_cpu_and_memory=true", &admin);
    assert_eq!(code, 200);
    let small: Summary = serde_json::from_str(&body).unwrap();
    assert!(small.node.fs.is_none() && small.node.cpu.is_some());
    let p = small
        .pods
        .iter()
        .find(|p| p.pod_ref.name == "stats-busy")
        .unwrap();
    assert!(p.containers[0].rootfs.is_none() && p.containers[0].memory.is_some());

    // Resource metrics.
    let (code, metrics) = kubelet_request(port, "/metrics/resource", &admin);
    assert_eq!(code, 200);
    let line = metrics
        .lines()
        .find(|l| {
            l.starts_with(
                "container_cpu_usage_seconds_total{container=\"busy\",namespace=\"default\",pod=\"stats-busy\"} ",
            )
        })
        .unwrap_or_else(|| panic!("no container CPU counter in\n{metrics}"));
    let secs: f64 = line.split(' ').nth(1).unwrap().parse().unwrap();
    assert!(secs > 0.1, "{line}");
    for want in [
        "# TYPE node_cpu_usage_seconds_total counter",
        "container_memory_working_set_bytes{container=\"busy\",namespace=\"default\",pod=\"stats-busy\"} ",
        "container_start_time_seconds{container=\"busy\",namespace=\"default\",pod=\"stats-busy\"} ",
        "pod_cpu_usage_seconds_total{namespace=\"default\",pod=\"stats-busy\"} ",
        "pod_memory_working_set_bytes{namespace=\"default\",pod=\"stats-busy\"} ",
        "node_memory_working_set_bytes ",
        "\nresource_scrape_error 0",
    ] {
        assert!(metrics.contains(want), "missing {want:?} in\n{metrics}");
    }

    // cAdvisor's per-cgroup metrics: the busy container's cgroup, its limits, its pod's
    // cgroup and sandbox, and the machine.
    let (code, cadvisor) = kubelet_request(port, "/metrics/cadvisor", &admin);
    assert_eq!(code, 200, "{cadvisor}");
    let busy = [
        ("container", "busy"),
        ("namespace", "default"),
        ("pod", "stats-busy"),
    ];
    let of_busy = |name: &str| {
        common::sample(&cadvisor, name, &busy)
            .unwrap_or_else(|| panic!("no {name} for the busy container in\n{cadvisor}"))
    };
    let cpu = common::sample(
        &cadvisor,
        "container_cpu_usage_seconds_total",
        &[busy[0], busy[1], busy[2], ("cpu", "total")],
    )
    .unwrap_or_else(|| panic!("no CPU counter in\n{cadvisor}"));
    assert!(cpu > 0.1, "cpu {cpu}");
    assert!(of_busy("container_cpu_user_seconds_total") > 0.0);
    let ws = of_busy("container_memory_working_set_bytes");
    assert!(ws > 16e6 && ws < (96 << 20) as f64, "working set {ws}");
    assert!(of_busy("container_memory_usage_bytes") >= ws);
    assert!(of_busy("container_memory_rss") > 16e6);
    assert!(of_busy("container_memory_kernel_usage") >= 0.0);
    assert_eq!(of_busy("container_spec_cpu_quota"), 10000.0);
    assert_eq!(of_busy("container_spec_cpu_period"), 100000.0);
    assert_eq!(
        of_busy("container_spec_memory_limit_bytes"),
        (96 << 20) as f64
    );
    // A busy loop under a 100m quota is throttled.
    assert!(of_busy("container_cpu_cfs_periods_total") > 0.0);
    assert!(of_busy("container_cpu_cfs_throttled_periods_total") > 0.0);
    assert!(of_busy("container_start_time_seconds") > 1.6e9);
    assert!(of_busy("container_processes") >= 1.0 && of_busy("container_threads") >= 1.0);
    assert_eq!(of_busy("container_oom_events_total"), 0.0);
    eprintln!(
        "/metrics/cadvisor busy container: cpu {cpu:.3} s, working set {ws} B, {} of {} CFS periods throttled",
        of_busy("container_cpu_cfs_throttled_periods_total"),
        of_busy("container_cpu_cfs_periods_total")
    );
    let line = cadvisor
        .lines()
        .find(|l| {
            l.starts_with("container_memory_working_set_bytes{container=\"busy\",")
                && l.contains("pod=\"stats-busy\"")
        })
        .unwrap();
    // Limits only: a Guaranteed pod, directly under kubepods.
    let pods_cgroup = format!(
        ",id=\"{}/kubepods/pod",
        kubelet.cgroup_root.trim_end_matches('/')
    );
    assert!(line.contains(&pods_cgroup), "{line}");
    assert!(
        line.contains("image=\"") && line.contains("busybox"),
        "{line}"
    );
    let name = line
        .split("name=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    assert_eq!(name.len(), 64, "container ID as name: {line}");
    // The pod's cgroup (no container, no name) holds at least the container's memory, and
    // the sandbox reports the pod's network.
    let pod_ws = common::sample(
        &cadvisor,
        "container_memory_working_set_bytes",
        &[("container", ""), ("name", ""), ("pod", "stats-busy")],
    )
    .unwrap_or_else(|| panic!("no pod cgroup in\n{cadvisor}"));
    assert!(pod_ws >= ws, "pod {pod_ws} < container {ws}");
    assert!(
        common::sample(
            &cadvisor,
            "container_network_receive_bytes_total",
            &[
                ("container", ""),
                ("image", kubelet::image::busybox::PAUSE_IMAGE),
                ("pod", "stats-busy"),
            ],
        )
        .is_some(),
        "{cadvisor}"
    );
    // The root cgroup reports the kubelet's filesystem.
    let root_fs = common::sample(&cadvisor, "container_fs_usage_bytes", &[("id", "/")])
        .unwrap_or_else(|| panic!("no root filesystem in\n{cadvisor}"));
    let root_limit = common::sample(&cadvisor, "container_fs_limit_bytes", &[("id", "/")]).unwrap();
    assert!(
        root_fs > 0.0 && root_limit > root_fs,
        "{root_fs} of {root_limit}"
    );
    let nproc = Command::new("nproc").arg("--all").output().unwrap();
    let cores: f64 = String::from_utf8_lossy(&nproc.stdout)
        .trim()
        .parse()
        .unwrap();
    assert_eq!(
        common::sample(&cadvisor, "machine_cpu_cores", &[]),
        Some(cores)
    );
    assert!(common::sample(&cadvisor, "machine_memory_bytes", &[]).unwrap() > (1u64 << 30) as f64);
    for want in [
        "# TYPE container_cpu_usage_seconds_total counter\n",
        "# TYPE container_memory_working_set_bytes gauge\n",
        "\ncontainer_scrape_error 0\n",
    ] {
        assert!(cadvisor.contains(want), "missing {want:?} in\n{cadvisor}");
    }

    // The kubelet's own gauges: exactly this pod's sandbox and its one container run, and
    // its start was timed.
    let (code, metrics) = kubelet_request(port, "/metrics", &admin);
    assert_eq!(code, 200);
    for (name, labels, want) in [
        ("kubelet_running_pods", &[][..], 1.0),
        (
            "kubelet_running_containers",
            &[("container_state", "running")][..],
            1.0,
        ),
    ] {
        assert_eq!(
            common::sample(&metrics, name, labels),
            Some(want),
            "{name} in\n{metrics}"
        );
    }
    let starts = common::sample(&metrics, "kubelet_pod_start_duration_seconds_count", &[]);
    assert!(starts.is_some_and(|n| n >= 1.0), "{metrics}");

    // configz echoes the file's maxPods.
    let (code, body) = kubelet_request(port, "/configz", &admin);
    assert_eq!(code, 200, "{body}");
    let configz: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(configz["kubeletconfig"]["maxPods"], 37, "{body}");
    assert_eq!(configz["kubeletconfig"]["authorization"]["mode"], "Webhook");

    // Authorization asks for nodes/stats and nodes/metrics.
    let nobody = cluster.pki().client_cert("nobody", "nobody", None).unwrap();
    let (code, body) = kubelet_request(port, "/stats/summary", &nobody);
    assert_eq!(code, 403);
    assert!(body.contains("subresource(s)=[stats]"), "{body}");
    let (code, body) = kubelet_request(port, "/metrics/resource", &nobody);
    assert_eq!(code, 403);
    assert!(body.contains("subresource(s)=[metrics]"), "{body}");
    let (code, body) = kubelet_request(port, "/metrics/cadvisor", &nobody);
    assert_eq!(code, 403);
    assert!(body.contains("subresource(s)=[metrics]"), "{body}");
    let (code, body) = kubelet_request(port, "/configz", &nobody);
    assert_eq!(code, 403);
    assert!(body.contains("subresource(s)=[configz proxy]"), "{body}");

    // Through the apiserver's node proxy, as `kubectl top`/metrics-server users reach it.
    if node_ip.is_some() {
        let raw = format!("/api/v1/nodes/{node_name}/proxy/stats/summary");
        let o = cluster.kubectl(&["get", "--raw", &raw]).unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let s: Summary = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(s.node.node_name, node_name);
        assert!(s.pods.iter().any(|p| p.pod_ref.name == "stats-busy"));
    } else {
        eprintln!(
            "SKIPPED (part): no proxyable node address (10.200.0.1 on lo) — node proxy not checked"
        );
    }

    delete_pod_and_wait_gone(&pods, "stats-busy", Duration::from_secs(30)).await;
    kubelet.stop();
}
