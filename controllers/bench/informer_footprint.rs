//! Benchmark (not a timed test): how many watches the controller manager holds open and how
//! much memory it keeps with every controller on, over a cluster of a few hundred pods —
//! the cost of its informers (one watch and one cache per resource type, as upstream's
//! SharedInformerFactory, or one per controller).
//!
//! ```text
//! cargo bench -p controllers --bench informer_footprint                   # ferrokube
//! KCM_BINARY=/opt/upstream/bin/kube-controller-manager \
//!   cargo bench -p controllers --bench informer_footprint                   # upstream
//! PODS=600 cargo bench -p controllers --bench informer_footprint
//! CONTROLLERS='*,-garbage-collector-controller' cargo bench -p controllers --bench informer_footprint
//! ```
//!
//! Watches are the apiserver's `apiserver_longrunning_requests{verb="WATCH"}` gauge (only
//! the controller manager watches here), per resource; memory is the manager's resident
//! set after it settled (VmRSS) and its peak (VmHWM). The garbage collector watches the
//! metadata of every resource type the apiserver serves (as upstream's), so its watches
//! grow with discovery; `CONTROLLERS='*,-garbage-collector-controller'` leaves it out.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use e2e::components::controller_manager_args;
use e2e::TestCluster;
use k8s_openapi::api::core::v1::{
    ConfigMap, Endpoints, Namespace, Node, Pod, Service, ServiceAccount,
};
use kube::api::PostParams;
use kube::Api;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The controller manager under test: `$KCM_BINARY`, else ferrokube's release build, else
/// the debug one.
fn kcm_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("KCM_BINARY") {
        return PathBuf::from(p);
    }
    let release = e2e::binaries::workspace_root().join("target/release/kube-controller-manager");
    if release.is_file() {
        release
    } else {
        e2e::binaries::ferrokube_binary("kube-controller-manager")
            .expect("kube-controller-manager binary")
    }
}

/// `(VmRSS, VmHWM)` of `pid` in MiB.
fn rss_mib(pid: u32) -> Option<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<f64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib / 1024.0)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Open WATCH requests per resource, from the apiserver's own metrics.
async fn watches(client: &kube::Client) -> anyhow::Result<BTreeMap<String, u64>> {
    let req = http::Request::get("/metrics").body(Vec::new())?;
    let text = client.request_text(req).await?;
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("apiserver_longrunning_requests{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        if !labels.contains("verb=\"WATCH\"") {
            continue;
        }
        let n: f64 = value.trim().parse().unwrap_or(0.0);
        if n == 0.0 {
            continue;
        }
        let label = |key: &str| {
            labels
                .split(',')
                .find_map(|kv| kv.strip_prefix(&format!("{key}=\"")))
                .map(|v| v.trim_end_matches('"').to_string())
                .unwrap_or_default()
        };
        let resource = match label("subresource").as_str() {
            "" => label("resource"),
            sub => format!("{}/{sub}", label("resource")),
        };
        *out.entry(resource).or_default() += n as u64;
    }
    Ok(out)
}

fn object<K: serde::de::DeserializeOwned>(v: serde_json::Value) -> K {
    serde_json::from_value(v).expect("object")
}

/// `pods` pods over `namespaces` namespaces (each with its default ServiceAccount), a Service selecting each namespace's pods, and three nodes.
async fn populate(client: &kube::Client, namespaces: usize, pods: usize) -> anyhow::Result<()> {
    let pp = PostParams::default();
    for n in 0..3 {
        Api::<Node>::all(client.clone())
            .create(
                &pp,
                &object(serde_json::json!({"metadata": {"name": format!("node-{n}")}})),
            )
            .await?;
    }
    for ns in 0..namespaces {
        let name = format!("bench-{ns}");
        Api::<Namespace>::all(client.clone())
            .create(
                &pp,
                &object(serde_json::json!({"metadata": {"name": name}})),
            )
            .await?;
        // ServiceAccount admission needs it before the first pod; the manager is not up yet.
        Api::<ServiceAccount>::namespaced(client.clone(), &name)
            .create(
                &pp,
                &object(serde_json::json!({"metadata": {"name": "default"}})),
            )
            .await?;
        Api::<Service>::namespaced(client.clone(), &name)
            .create(
                &pp,
                &object(serde_json::json!({
                    "metadata": {"name": "web"},
                    "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}
                })),
            )
            .await?;
    }
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..pods {
        let client = client.clone();
        let ns = format!("bench-{}", i % namespaces);
        tasks.spawn(async move {
            let pod: Pod = object(serde_json::json!({
                "metadata": {"name": format!("pod-{i}"), "labels": {"app": "web"}},
                "spec": {
                    "nodeName": format!("node-{}", i % 3),
                    "automountServiceAccountToken": false,
                    "containers": [{
                        "name": "c",
                        "image": "busybox",
                        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}
                    }]
                }
            }));
            Api::<Pod>::namespaced(client, &ns)
                .create(&PostParams::default(), &pod)
                .await
        });
        if tasks.len() >= 32 {
            if let Some(r) = tasks.join_next().await {
                r??;
            }
        }
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    Ok(())
}

async fn run() -> anyhow::Result<()> {
    let pods: usize = env_or("PODS", 300);
    let namespaces: usize = env_or("NAMESPACES", 10);
    let settle = Duration::from_secs(env_or("SETTLE_SECS", 30));
    let controllers: String = env_or(
        "CONTROLLERS",
        "*,bootstrap-signer-controller,token-cleaner-controller".to_string(),
    );
    let binary = kcm_binary();
    println!("kube-controller-manager: {}", binary.display());
    let cluster = match TestCluster::start().await {
        Ok(c) => c,
        Err(e) => anyhow::bail!("SKIPPED: no kube-apiserver ({e})"),
    };
    let client = cluster.client();
    populate(&client, namespaces, pods).await?;
    let before = watches(&client).await?;

    let port = e2e::ports::free_port()?;
    let mut args = controller_manager_args(&cluster, port, false)?;
    args.push(format!("--controllers={controllers}"));
    args.push("--use-service-account-credentials=true".into());
    args.push("--v=2".into());
    let mut kcm = cluster.spawn("kube-controller-manager", &binary, &args)?;
    // Ready when the endpoints controller and the root-CA publisher reached the last namespace.
    let deadline = Instant::now() + Duration::from_secs(300);
    let last_ns = format!("bench-{}", namespaces - 1);
    let endpoints = Api::<Endpoints>::namespaced(client.clone(), &last_ns);
    let config_maps = Api::<ConfigMap>::namespaced(client.clone(), &last_ns);
    while endpoints.get_opt("web").await?.is_none()
        || config_maps.get_opt("kube-root-ca.crt").await?.is_none()
    {
        anyhow::ensure!(
            kcm.is_running(),
            "controller manager exited:\n{}",
            kcm.log_tail(20)
        );
        anyhow::ensure!(
            Instant::now() < deadline,
            "no Endpoints web or ConfigMap kube-root-ca.crt in {last_ns} after 300s:\n{}",
            kcm.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(settle).await;
    anyhow::ensure!(
        kcm.is_running(),
        "controller manager exited:\n{}",
        kcm.log_tail(20)
    );
    let after = watches(&client).await?;
    let (rss, hwm) = rss_mib(kcm.pid()).unwrap_or((f64::NAN, f64::NAN));

    let mut per_resource: Vec<(String, u64)> = after
        .iter()
        .map(|(r, n)| {
            (
                r.clone(),
                n.saturating_sub(before.get(r).copied().unwrap_or(0)),
            )
        })
        .filter(|(_, n)| *n > 0)
        .collect();
    per_resource.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let total: u64 = per_resource.iter().map(|(_, n)| n).sum();
    println!(
        "{pods} pods in {namespaces} namespaces, --controllers={controllers}, {}s after start-up:",
        settle.as_secs()
    );
    println!("  watches open: {total}");
    let list: Vec<String> = per_resource
        .iter()
        .map(|(r, n)| format!("{r} {n}"))
        .collect();
    println!("  per resource: {}", list.join(", "));
    println!("  controller RSS {rss:.1} MiB, peak {hwm:.1} MiB");
    Ok(())
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes `--bench`; nothing else is parsed.
    if let Err(e) = run().await {
        println!("{e:#}");
    }
}
