//! SchedulingBasic, as upstream's scheduler_perf: against a real kube-apiserver, N nodes
//! (4 cpu, 32Gi, 110 pods) and M pods (100m, 500Mi) created up front; then a scheduler
//! binary starts and we measure pods/s from first to last bind, p50/p99 of
//! scheduler_scheduling_attempt_duration_seconds and the scheduler's peak RSS.
//!
//! The physical ceiling: the same setup with a tiny binder in this process instead of a
//! scheduler: it lists the pods once and does nothing but POST bindings (round-robin over
//! the nodes) at the scheduler's bind concurrency. A scheduler's pods/s is reported as a
//! fraction of it.
//!
//! Environment: BENCH_NODES (5000), BENCH_PODS (10000), BENCH_SCHEDULERS
//! (`label=/path/to/kube-scheduler;...`, default ours and, when FERROKUBE_UPSTREAM_DIR names
//! a directory with a kube-scheduler, upstream's), BENCH_SCHEDULER_FLAGS (default
//! `--kube-api-qps=5000 --kube-api-burst=5000`), BENCH_CEILING (0 skips the ceiling run),
//! BENCH_CEILING_CONCURRENCY (default: our MAX_BINDS_IN_FLIGHT). Run via
//! bench/bench-scheduler.sh. Besides the table, prints one JSON line per figure.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Binding, Node, ObjectReference, Pod, ServiceAccount};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use serde_json::json;

fn env_usize(k: &str, d: usize) -> usize {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

async fn create_nodes(c: &kube::Client, n: usize) -> anyhow::Result<()> {
    let api: Api<Node> = Api::all(c.clone());
    futures::stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            async move {
                let name = format!("node-{i:05}");
                let node: Node = serde_json::from_value(json!({
                    "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
                    "status": {"allocatable": {"cpu": "4", "memory": "32Gi", "pods": "110"},
                               "capacity": {"cpu": "4", "memory": "32Gi", "pods": "110"},
                               "conditions": [{"type": "Ready", "status": "True"}]}
                }))?;
                api.create(&PostParams::default(), &node).await?;
                // Drop the not-ready taint TaintNodesByCondition adds on create.
                api.patch(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(&json!({"spec": {"taints": null}})),
                )
                .await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(64)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

async fn create_pods(c: &kube::Client, m: usize) -> anyhow::Result<()> {
    let api: Api<Pod> = Api::namespaced(c.clone(), "default");
    futures::stream::iter(0..m)
        .map(|i| {
            let api = api.clone();
            async move {
                let pod: Pod = serde_json::from_value(json!({
                    "metadata": {"name": format!("pod-{i:06}")},
                    "spec": {"containers": [{"name": "pause", "image": "registry.k8s.io/pause:3.10",
                        "resources": {"requests": {"cpu": "100m", "memory": "500Mi"}}}]}
                }))?;
                api.create(&PostParams::default(), &pod).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(64)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

/// histogram_quantile over cumulative (le, count) buckets.
fn quantile(q: f64, buckets: &[(f64, f64)]) -> f64 {
    let total = buckets.last().map(|b| b.1).unwrap_or(0.0);
    if total == 0.0 {
        return f64::NAN;
    }
    let rank = q * total;
    let mut prev = (0.0, 0.0);
    for &(le, c) in buckets {
        if c >= rank {
            if le.is_infinite() {
                return prev.0;
            }
            let width = le - prev.0;
            return prev.0 + width * (rank - prev.1) / (c - prev.1).max(1e-9);
        }
        prev = (le, c);
    }
    prev.0
}

/// Buckets of scheduler_scheduling_attempt_duration_seconds{result="scheduled"}, summed
/// over profiles.
fn attempt_buckets(text: &str) -> Vec<(f64, f64)> {
    let mut by_le: std::collections::BTreeMap<String, f64> = Default::default();
    for l in text.lines() {
        let Some(rest) = l.strip_prefix("scheduler_scheduling_attempt_duration_seconds_bucket{")
        else {
            continue;
        };
        if !rest.contains("result=\"scheduled\"") {
            continue;
        }
        // `le` is its own label: not the tail of `profile="`.
        let labels = format!(",{rest}");
        let Some(le) = labels
            .split(",le=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
        else {
            continue;
        };
        let Some(v) = l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) else {
            continue;
        };
        *by_le.entry(le.to_string()).or_default() += v;
    }
    let mut b: Vec<(f64, f64)> = by_le
        .into_iter()
        .map(|(le, v)| {
            (
                if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().unwrap_or(f64::INFINITY)
                },
                v,
            )
        })
        .collect();
    b.sort_by(|a, b| a.0.total_cmp(&b.0));
    b
}

struct Figures {
    label: String,
    pods_per_sec: f64,
    first_to_last: Duration,
    p50_ms: f64,
    p99_ms: f64,
    peak_rss_mib: f64,
}

/// What drives the bindings in one run.
enum Runner<'a> {
    /// A scheduler binary with flags.
    Scheduler {
        binary: &'a str,
        flags: &'a [String],
    },
    /// The tiny binder with this many bindings in flight.
    Ceiling { concurrency: usize },
}

/// The ceiling: list the pods once, POST bindings round-robin over the nodes.
async fn tiny_binder(c: kube::Client, nodes: usize, concurrency: usize) -> anyhow::Result<()> {
    let api: Api<Pod> = Api::namespaced(c, "default");
    let names: Vec<String> = api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    futures::stream::iter(names.into_iter().enumerate())
        .map(|(i, name)| {
            let api = api.clone();
            async move {
                let b = Binding {
                    metadata: kube::api::ObjectMeta {
                        name: Some(name.clone()),
                        namespace: Some("default".into()),
                        ..Default::default()
                    },
                    target: ObjectReference {
                        kind: Some("Node".into()),
                        name: Some(format!("node-{:05}", i % nodes)),
                        ..Default::default()
                    },
                };
                api.create_subresource::<Binding, serde_json::Value>(
                    "binding",
                    &name,
                    &PostParams::default(),
                    &b,
                )
                .await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(concurrency.max(1))
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

async fn run_one(
    label: &str,
    runner: Runner<'_>,
    nodes: usize,
    pods: usize,
) -> anyhow::Result<Figures> {
    let cluster = match e2e::TestCluster::start().await {
        Ok(c) => c,
        Err(e2e::StartError::MissingAssets(m)) => {
            anyhow::bail!("SKIPPED: {}", e2e::cluster::skip_reason(&m))
        }
        Err(e2e::StartError::Failed(e)) => return Err(e),
    };
    let c = cluster.client();
    let sa: Api<ServiceAccount> = Api::namespaced(c.clone(), "default");
    let _ = sa
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "default"}}))?,
        )
        .await;
    let t = Instant::now();
    create_nodes(&c, nodes).await?;
    eprintln!(
        "[{label}] {nodes} nodes created in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    create_pods(&c, pods).await?;
    eprintln!(
        "[{label}] {pods} pods created in {:.1}s",
        t.elapsed().as_secs_f64()
    );

    // Watch bindings before the scheduler starts.
    let api: Api<Pod> = Api::namespaced(c.clone(), "default");
    let watch = tokio::spawn(async move {
        let mut bound: HashSet<String> = HashSet::new();
        let (mut first, mut last) = (None, None);
        let stream = watcher::watcher(api, watcher::Config::default()).applied_objects();
        let mut stream = std::pin::pin!(stream);
        while let Some(Ok(p)) = stream.next().await {
            if p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some()
                && bound.insert(p.metadata.name.clone().unwrap_or_default())
            {
                let now = Instant::now();
                first.get_or_insert(now);
                last = Some(now);
                if bound.len() == pods {
                    break;
                }
            }
        }
        (bound.len(), first, last)
    });
    tokio::time::sleep(Duration::from_secs(2)).await;

    let (binary, flags) = match runner {
        Runner::Scheduler { binary, flags } => (binary, flags),
        Runner::Ceiling { concurrency } => {
            let budget = Duration::from_secs(60 + (pods as u64) / 20);
            let binder = tokio::spawn(tiny_binder(c.clone(), nodes, concurrency));
            let (count, first, last) = tokio::time::timeout(budget, watch)
                .await
                .map_err(|_| anyhow::anyhow!("[{label}] timed out after {budget:?}"))??;
            binder.await??;
            let span = last.unwrap().duration_since(first.unwrap());
            return Ok(Figures {
                label: label.to_string(),
                pods_per_sec: (count.saturating_sub(1)) as f64 / span.as_secs_f64().max(1e-9),
                first_to_last: span,
                p50_ms: f64::NAN,
                p99_ms: f64::NAN,
                peak_rss_mib: f64::NAN,
            });
        }
    };
    let port = e2e::ports::free_port()?;
    let mut args = e2e::components::scheduler_args(&cluster, port, false)?;
    args.extend_from_slice(flags);
    let mut proc = cluster.spawn(label, std::path::Path::new(binary), &args)?;
    let pid = proc.pid();
    let budget = Duration::from_secs(60 + (pods as u64) / 20);
    let (count, first, last) = match tokio::time::timeout(budget, watch).await {
        Ok(r) => r?,
        Err(_) => anyhow::bail!(
            "[{label}] timed out after {budget:?}; log: {}",
            proc.log_tail(20)
        ),
    };
    let peak = component_base::metrics::peak_rss_bytes(pid).unwrap_or(0) as f64 / (1024.0 * 1024.0);
    let token = e2e::monitoring::metrics_reader_token(&c).await?;
    e2e::monitoring::wait_until_authenticated(&c, &token).await?;
    let probe = e2e::probe::Probe::new(&format!("https://127.0.0.1:{port}"), Some(&token))?;
    let metrics = probe.get("/metrics").await?.body;
    let _ = std::fs::write(
        std::env::temp_dir().join(format!("bench-metrics-{label}.txt")),
        &metrics,
    );
    let buckets = attempt_buckets(&metrics);
    let _ = proc.kill();
    let (first, last) = (first.unwrap(), last.unwrap());
    let span = last.duration_since(first);
    Ok(Figures {
        label: label.to_string(),
        pods_per_sec: (count.saturating_sub(1)) as f64 / span.as_secs_f64().max(1e-9),
        first_to_last: span,
        p50_ms: quantile(0.5, &buckets) * 1000.0,
        p99_ms: quantile(0.99, &buckets) * 1000.0,
        peak_rss_mib: peak,
    })
}

/// One JSON line per figure, for hack/bench.sh: `ours`/`upstream` null when not measured.
fn json_line(figure: &str, ours: Option<f64>, upstream: Option<f64>, unit: &str) {
    let num = |v: Option<f64>| {
        v.filter(|v| v.is_finite())
            .map(|v| json!((v * 1000.0).round() / 1000.0))
            .unwrap_or(serde_json::Value::Null)
    };
    println!(
        "{}",
        json!({"figure": figure, "ours": num(ours), "upstream": num(upstream), "unit": unit})
    );
}

/// The default schedulers: ours, and upstream's from FERROKUBE_UPSTREAM_DIR when it has one.
fn default_schedulers() -> anyhow::Result<String> {
    let ours = e2e::binaries::ferrokube_binary("kube-scheduler")?;
    let mut spec = format!("ferrokube={}", ours.display());
    match std::env::var("FERROKUBE_UPSTREAM_DIR") {
        Ok(dir) if !dir.is_empty() => {
            let bin = std::path::Path::new(&dir).join("kube-scheduler");
            if bin.is_file() {
                spec.push_str(&format!(";upstream={}", bin.display()));
            } else {
                eprintln!("SKIPPED upstream: {} not found", bin.display());
            }
        }
        _ => eprintln!(
            "SKIPPED upstream: FERROKUBE_UPSTREAM_DIR is not set (a directory holding upstream's kube-scheduler)"
        ),
    }
    Ok(spec)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return Ok(());
    }
    let nodes = env_usize("BENCH_NODES", 5000);
    let pods = env_usize("BENCH_PODS", 10000);
    let flags: Vec<String> = std::env::var("BENCH_SCHEDULER_FLAGS")
        .unwrap_or_else(|_| "--kube-api-qps=5000 --kube-api-burst=5000".into())
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let spec = match std::env::var("BENCH_SCHEDULERS") {
        Ok(s) if !s.is_empty() => s,
        _ => default_schedulers()?,
    };
    let concurrency = env_usize(
        "BENCH_CEILING_CONCURRENCY",
        scheduler::scheduler::MAX_BINDS_IN_FLIGHT,
    );
    let mut results = Vec::new();
    if env_usize("BENCH_CEILING", 1) != 0 {
        let label = "ceiling";
        eprintln!(
            "== SchedulingBasic {nodes} nodes / {pods} pods: tiny binder, {concurrency} bindings in flight"
        );
        match run_one(label, Runner::Ceiling { concurrency }, nodes, pods).await {
            Ok(f) => results.push(f),
            Err(e) => eprintln!("[{label}] FAILED: {e:#}"),
        }
    }
    for entry in spec.split(';').filter(|s| !s.is_empty()) {
        let (label, bin) = entry.split_once('=').unwrap_or((entry, entry));
        eprintln!("== SchedulingBasic {nodes} nodes / {pods} pods: {label} ({bin})");
        let runner = Runner::Scheduler {
            binary: bin,
            flags: &flags,
        };
        match run_one(label, runner, nodes, pods).await {
            Ok(f) => results.push(f),
            Err(e) => eprintln!("[{label}] FAILED: {e:#}"),
        }
    }
    println!(
        "\nSchedulingBasic {nodes} nodes / {pods} pods, flags: {}",
        flags.join(" ")
    );
    println!(
        "{:<12} {:>10} {:>12} {:>12} {:>12} {:>14}",
        "scheduler", "pods/s", "first→last", "p50 attempt", "p99 attempt", "peak RSS"
    );
    for f in &results {
        println!(
            "{:<12} {:>10.1} {:>11.2}s {:>10.2}ms {:>10.2}ms {:>10.1} MiB",
            f.label,
            f.pods_per_sec,
            f.first_to_last.as_secs_f64(),
            f.p50_ms,
            f.p99_ms,
            f.peak_rss_mib
        );
    }
    let find = |l: &str| results.iter().find(|f| f.label == l);
    let (ours, up, ceiling) = (find("ferrokube"), find("upstream"), find("ceiling"));
    if let (Some(a), Some(b)) = (ours, up) {
        println!(
            "ratio ferrokube/upstream: throughput ×{:.2}, p50 ×{:.2}, p99 ×{:.2}, peak RSS ×{:.2}",
            a.pods_per_sec / b.pods_per_sec,
            a.p50_ms / b.p50_ms,
            a.p99_ms / b.p99_ms,
            a.peak_rss_mib / b.peak_rss_mib
        );
    }
    if let Some(c) = ceiling {
        for f in [ours, up].into_iter().flatten() {
            println!(
                "{}: {:.0}% of the binding ceiling ({:.1} pods/s, {concurrency} in flight)",
                f.label,
                100.0 * f.pods_per_sec / c.pods_per_sec,
                c.pods_per_sec
            );
        }
    }
    let name = format!("scheduler {nodes} nodes/{pods} pods");
    let get = |f: Option<&Figures>, g: fn(&Figures) -> f64| f.map(g);
    json_line(
        &format!("{name} throughput"),
        get(ours, |f| f.pods_per_sec),
        get(up, |f| f.pods_per_sec),
        "pods/s",
    );
    json_line(
        &format!("{name} peak RSS"),
        get(ours, |f| f.peak_rss_mib),
        get(up, |f| f.peak_rss_mib),
        "MiB",
    );
    json_line(
        &format!("{name} scheduling attempt p50"),
        get(ours, |f| f.p50_ms),
        get(up, |f| f.p50_ms),
        "ms",
    );
    json_line(
        &format!("{name} scheduling attempt p99"),
        get(ours, |f| f.p99_ms),
        get(up, |f| f.p99_ms),
        "ms",
    );
    if let Some(c) = ceiling {
        json_line(
            &format!("{name} binding ceiling ({concurrency} in flight)"),
            Some(c.pods_per_sec),
            Some(c.pods_per_sec),
            "pods/s",
        );
        json_line(
            &format!("{name} throughput as a fraction of the binding ceiling"),
            ours.map(|f| f.pods_per_sec / c.pods_per_sec),
            up.map(|f| f.pods_per_sec / c.pods_per_sec),
            "fraction",
        );
    }
    Ok(())
}
