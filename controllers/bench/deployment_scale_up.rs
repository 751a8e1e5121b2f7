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
//! KCM_UPSTREAM_BINARY=/opt/upstream/bin/kube-controller-manager RUNS=5 KUBE_API_QPS=1000 \
//!   cargo bench -p controllers --bench deployment_scale_up                 # both, interleaved
//! ```
//!
//! With `KCM_UPSTREAM_BINARY` each run measures ours, then upstream's, and the bench ends
//! with one JSON line per figure (`{"figure": …, "ours": …, "upstream": …, "unit": …}`,
//! medians over the runs) for `hack/bench.sh`. Every run also prints the apiserver's
//! requests in its window by verb and resource (`apiserver_request_total`), which is where
//! a difference in apiserver CPU comes from.
//!
//! With the default client limits (qps 20, burst 30, as upstream) both controller managers
//! are bound by the limiter (~20 pods/s); `KUBE_API_QPS` passes `--kube-api-qps=N
//! --kube-api-burst=2N` to measure the controllers themselves.
//!
//! No kubelet runs: pods are counted once created (the apiserver's `remainingItemCount`
//! on a one-item list keeps the polling cheap).

use std::collections::BTreeMap;
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
    /// Requests the apiserver served in `elapsed`, by `VERB resource`.
    requests: BTreeMap<String, f64>,
}

/// The apiserver's `apiserver_request_total` summed by verb and resource.
async fn request_counts(client: &kube::Client) -> anyhow::Result<BTreeMap<String, f64>> {
    let req = http::Request::get("/metrics").body(Vec::new())?;
    let text = client.request_text(req).await?;
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let label = |name: &str| {
            labels
                .split("\",")
                .find_map(|kv| kv.strip_prefix(&format!("{name}=\"")))
                .map(|v| v.trim_end_matches('"').to_string())
                .unwrap_or_default()
        };
        let key = format!("{} {}", label("verb"), label("resource"));
        *out.entry(key).or_insert(0.0) += value.trim().parse::<f64>().unwrap_or(0.0);
    }
    Ok(out)
}

/// `after - before`, keeping the keys that moved.
fn diff_counts(
    before: &BTreeMap<String, f64>,
    after: &BTreeMap<String, f64>,
) -> BTreeMap<String, f64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, d)| *d > 0.0)
        .collect()
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
    let requests0 = request_counts(&client).await?;
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
    let requests = diff_counts(&requests0, &request_counts(&client).await?);
    // Let the status writes settle so the peak includes a full steady cache.
    tokio::time::sleep(Duration::from_secs(2)).await;
    Ok(Run {
        elapsed,
        peak_rss_mib: peak_rss_mib(kcm.pid()).unwrap_or(f64::NAN),
        kcm_cpu,
        apiserver_cpu,
        requests,
    })
}

/// A reported figure: its name, how a run gives its value, its unit.
type Figure<'a> = (&'a str, &'a dyn Fn(&Run) -> f64, &'a str);

/// The median of `v` (NaN when empty).
fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// One JSON figure line for `hack/bench.sh`; a side that was not measured is left out.
fn figure_line(figure: &str, ours: Option<f64>, upstream: Option<f64>, unit: &str) -> String {
    let mut obj = serde_json::json!({"figure": figure});
    let round = |v: f64| (v * 1000.0).round() / 1000.0;
    if let Some(v) = ours {
        obj["ours"] = serde_json::json!(round(v));
    }
    if let Some(v) = upstream {
        obj["upstream"] = serde_json::json!(round(v));
    }
    obj["unit"] = serde_json::json!(unit);
    obj.to_string()
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes `--bench`; nothing else is parsed.
    let replicas: i32 = env_or("REPLICAS", 1000);
    let runs: usize = env_or("RUNS", 1);
    let qps: u32 = env_or("KUBE_API_QPS", 0);
    let limits = if qps > 0 {
        format!("--kube-api-qps={qps} --kube-api-burst={}", qps * 2)
    } else {
        "default client limits (qps 20, burst 30)".to_string()
    };
    // KCM_BINARY alone measures that binary as "ours" (the old single-binary mode).
    let mut binaries = vec![("ours", kcm_binary())];
    // hack/bench.sh passes an empty value when upstream's binary is absent (it said so).
    match std::env::var_os("KCM_UPSTREAM_BINARY")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
    {
        Some(p) if p.is_file() => binaries.push(("upstream", p)),
        Some(p) => println!(
            "SKIPPED: upstream kube-controller-manager: {} is not a file",
            p.display()
        ),
        None => {}
    }
    for (who, binary) in &binaries {
        println!(
            "{who} kube-controller-manager: {} ({limits})",
            binary.display()
        );
    }
    let mut results: BTreeMap<&str, Vec<Run>> = BTreeMap::new();
    for run in 1..=runs {
        for (who, binary) in &binaries {
            match run_once(binary, replicas).await {
                Ok(r) => {
                    println!(
                        "run {run} {who}: {replicas}-replica Deployment -> {replicas} pods created in {:.2} s ({:.0} pods/s); controller peak RSS {:.1} MiB; CPU in that time: controller {:.2} s, kube-apiserver {:.2} s",
                        r.elapsed.as_secs_f64(),
                        f64::from(replicas) / r.elapsed.as_secs_f64(),
                        r.peak_rss_mib,
                        r.kcm_cpu,
                        r.apiserver_cpu,
                    );
                    let reqs: Vec<String> = r
                        .requests
                        .iter()
                        .filter(|(_, n)| **n >= 5.0)
                        .map(|(k, n)| format!("{k} {n:.0}"))
                        .collect();
                    println!("  apiserver requests (>= 5): {}", reqs.join(", "));
                    results.entry(who).or_default().push(r);
                }
                Err(e) => {
                    println!("{e:#}");
                    return;
                }
            }
        }
    }
    let fig = |f: &dyn Fn(&Run) -> f64, who: &str| {
        results
            .get(who)
            .map(|runs| median(runs.iter().map(f).collect()))
    };
    let name = |what: &str| {
        let limits = if qps > 0 {
            format!("qps {qps}")
        } else {
            "default qps".to_string()
        };
        format!("kube-controller-manager {replicas}-replica scale-up ({limits}): {what}")
    };
    let figures: [Figure; 4] = [
        ("wall time", &|r| r.elapsed.as_secs_f64(), "s"),
        ("kube-apiserver CPU", &|r| r.apiserver_cpu, "s"),
        ("controller CPU", &|r| r.kcm_cpu, "s"),
        ("peak RSS", &|r| r.peak_rss_mib, "MiB"),
    ];
    for (what, f, unit) in figures {
        println!(
            "{}",
            figure_line(&name(what), fig(f, "ours"), fig(f, "upstream"), unit)
        );
    }
}
