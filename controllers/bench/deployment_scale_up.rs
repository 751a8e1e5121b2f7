//! Benchmark (not a timed test): time from creating a 1,000-replica Deployment until its
//! 1,000 pods exist, the controller manager's peak RSS, and the CPU time the controller
//! manager and kube-apiserver spent meanwhile, against a real kube-apiserver.
//!
//! The controller-manager binary is a parameter, so upstream's is measured the same way:
//!
//! ```text
//! cargo bench -p controllers --bench deployment_scale_up                 # ferrokube (release)
//! KCM_BINARY=/opt/upstream/bin/kube-controller-manager \
//!   cargo bench -p controllers --bench deployment_scale_up                 # upstream
//! REPLICAS=300 RUNS=3 cargo bench -p controllers --bench deployment_scale_up
//! KUBE_API_QPS=500 cargo bench -p controllers --bench deployment_scale_up  # lift client limits
//! ```
//!
//! With the default client limits (qps 20, burst 30, as upstream) both controller managers
//! are bound by the limiter (~20 pods/s); `KUBE_API_QPS` passes `--kube-api-qps=N
//! --kube-api-burst=2N` to measure the controllers themselves.
//!
//! No kubelet runs: pods are counted once created (the apiserver's `remainingItemCount`
//! on a one-item list keeps the polling cheap).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use e2e::components::controller_manager_args;
use e2e::TestCluster;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::api::{ListParams, PostParams};
use kube::Api;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The controller manager under test: `$KCM_BINARY`, else ferrokube's release build.
fn kcm_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("KCM_BINARY") {
        return PathBuf::from(p);
    }
    let root = e2e::binaries::workspace_root();
    let release = root.join("target/release/kube-controller-manager");
    if release.is_file() {
        release
    } else {
        e2e::binaries::ferrokube_binary("kube-controller-manager")
            .expect("kube-controller-manager binary")
    }
}

/// Peak resident set (VmHWM) of `pid` in MiB.
fn peak_rss_mib(pid: u32) -> Option<f64> {
    component_base::metrics::peak_rss_bytes(pid).map(|b| b as f64 / (1024.0 * 1024.0))
}

/// What one run measured.
struct Run {
    /// From creating the Deployment until all its pods exist.
    elapsed: Duration,
    /// The controller manager's peak RSS, MiB.
    peak_rss_mib: f64,
    /// CPU seconds the controller manager used in `elapsed`.
    kcm_cpu: f64,
    /// CPU seconds kube-apiserver used in `elapsed`: on 2 cores the apiserver, not the
    /// controller manager, is the busier process, so this is where request cost shows.
    apiserver_cpu: f64,
}

async fn pod_count(pods: &Api<Pod>) -> anyhow::Result<usize> {
    // No label selector: the apiserver omits remainingItemCount for selected lists (the
    // namespace holds only the benchmark's pods).
    let l = pods.list(&ListParams::default().limit(1)).await?;
    Ok(l.items.len() + l.metadata.remaining_item_count.unwrap_or(0) as usize)
}

fn deployment(replicas: i32) -> Deployment {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "bench"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "bench"}},
            "template": {
                "metadata": {"labels": {"app": "bench"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}
            }
        }
    }))
    .expect("deployment")
}

async fn run_once(binary: &Path, replicas: i32) -> anyhow::Result<Run> {
    let mut cluster = match TestCluster::start().await {
        Ok(c) => c,
        Err(e) => anyhow::bail!("SKIPPED: no kube-apiserver ({e})"),
    };
    let port = e2e::ports::free_port()?;
    let mut args = controller_manager_args(&cluster, port, false)?;
    args.push("--controllers=serviceaccount,deployment,replicaset".into());
    args.push("--use-service-account-credentials=true".into());
    // Client rate limits as kubeadm leaves them (upstream defaults: qps 20, burst 30) unless
    // KUBE_API_QPS lifts them.
    let qps: u32 = env_or("KUBE_API_QPS", 0);
    if qps > 0 {
        args.push(format!("--kube-api-qps={qps}"));
        args.push(format!("--kube-api-burst={}", qps * 2));
    }
    let mut kcm = cluster.spawn("kube-controller-manager", binary, &args)?;
    let client = cluster.client();
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
    let deadline = Instant::now() + Duration::from_secs(60);
    while sas.get_opt("default").await?.is_none() {
        anyhow::ensure!(
            kcm.is_running(),
            "controller manager exited:\n{}",
            kcm.log_tail(20)
        );
        anyhow::ensure!(
            Instant::now() < deadline,
            "no default ServiceAccount after 60s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let apiserver = cluster.apiserver_pid();
    let cpu = |pid| component_base::metrics::cpu_seconds(pid).unwrap_or(f64::NAN);
    let (kcm_cpu0, apiserver_cpu0) = (cpu(kcm.pid()), cpu(apiserver));
    let start = Instant::now();
    Api::<Deployment>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &deployment(replicas))
        .await?;
    loop {
        let n = pod_count(&pods).await?;
        if n >= replicas as usize {
            break;
        }
        anyhow::ensure!(
            kcm.is_running(),
            "controller manager exited:\n{}",
            kcm.log_tail(20)
        );
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(600),
            "only {n} pods after 600s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = start.elapsed();
    let (kcm_cpu, apiserver_cpu) = (cpu(kcm.pid()) - kcm_cpu0, cpu(apiserver) - apiserver_cpu0);
    // Let the status writes settle so the peak includes a full steady cache.
    tokio::time::sleep(Duration::from_secs(2)).await;
    Ok(Run {
        elapsed,
        peak_rss_mib: peak_rss_mib(kcm.pid()).unwrap_or(f64::NAN),
        kcm_cpu,
        apiserver_cpu,
    })
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes `--bench`; nothing else is parsed.
    let replicas: i32 = env_or("REPLICAS", 1000);
    let runs: usize = env_or("RUNS", 1);
    let binary = kcm_binary();
    let qps: u32 = env_or("KUBE_API_QPS", 0);
    let limits = if qps > 0 {
        format!("--kube-api-qps={qps} --kube-api-burst={}", qps * 2)
    } else {
        "default client limits (qps 20, burst 30)".to_string()
    };
    println!("kube-controller-manager: {} ({limits})", binary.display());
    for run in 1..=runs {
        match run_once(&binary, replicas).await {
            Ok(r) => println!(
                "run {run}: {replicas}-replica Deployment -> {replicas} pods created in {:.2} s ({:.0} pods/s); controller peak RSS {:.1} MiB; CPU in that time: controller {:.2} s, kube-apiserver {:.2} s",
                r.elapsed.as_secs_f64(),
                f64::from(replicas) / r.elapsed.as_secs_f64(),
                r.peak_rss_mib,
                r.kcm_cpu,
                r.apiserver_cpu,
            ),
            Err(e) => {
                println!("{e:#}");
                return;
            }
        }
    }
}
