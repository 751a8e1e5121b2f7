//! ferrokube-dns benchmark (not a timed test). Run through `dns/bench/bench-dns.sh`.
//!
//! For each size N: N Services in namespace `bench` (nine in ten ClusterIP, one in ten
//! headless), each with an EndpointSlice of 3 ready endpoints, served to the binary either
//! by a real kube-apiserver (e2e TestCluster; `--source apiserver`) or by a static object
//! file (`--static-objects`, test-only; `--source static`). `auto` uses the apiserver when
//! its binaries are found. The server runs pinned to one core (`taskset`, one runtime
//! worker); dnsperf runs on another.
//!
//! Measured: queries/s at saturation (dnsperf `-q 200` outstanding) and latency percentiles
//! at fixed offered loads (`-Q`, per-query latencies from `dnsperf -v`), for cluster names
//! (A of ClusterIP and headless Services, SRV) and for NXDOMAIN names in the cluster zone;
//! the server's RSS (VmRSS, VmHWM) after the runs.
//!
//! Flags: `--binary PATH`, `--sizes 1000,10000`, `--source auto|apiserver|static`,
//! `--seconds 10`, `--server-cpu 1`, `--client-cpu 0`, `--loads 20000,50000`.

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, PostParams};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ENDPOINTS: usize = 3;

struct Args {
    binary: PathBuf,
    sizes: Vec<usize>,
    source: String,
    seconds: u64,
    server_cpu: String,
    client_cpu: String,
    loads: Vec<u64>,
}

fn args() -> Args {
    let mut a = Args {
        binary: PathBuf::from("target/release/ferrokube-dns"),
        sizes: vec![1000, 10000],
        source: "auto".into(),
        seconds: 10,
        server_cpu: "1".into(),
        client_cpu: "0".into(),
        loads: vec![20000, 50000],
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--binary" => a.binary = value().into(),
            "--sizes" => a.sizes = value().split(',').map(|s| s.parse().unwrap()).collect(),
            "--source" => a.source = value(),
            "--seconds" => a.seconds = value().parse().unwrap(),
            "--server-cpu" => a.server_cpu = value(),
            "--client-cpu" => a.client_cpu = value(),
            "--loads" => a.loads = value().split(',').map(|s| s.parse().unwrap()).collect(),
            "--bench" | "--micro" => {}
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

fn service(i: usize) -> Value {
    let headless = i.is_multiple_of(10);
    json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"namespace": "bench", "name": format!("svc-{i}")},
        "spec": {"clusterIP": if headless { "None".to_string() } else { format!("10.96.{}.{}", 10 + i / 250, i % 250 + 1) },
                 "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}})
}

fn slice(i: usize) -> Value {
    let eps: Vec<Value> = (0..ENDPOINTS)
        .map(|e| {
            let n = i * ENDPOINTS + e;
            json!({"addresses": [format!("10.{}.{}.{}", 128 + n / 65536 % 64, n / 256 % 256, n % 256)],
                   "conditions": {"ready": true}})
        })
        .collect();
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"namespace": "bench", "name": format!("svc-{i}-abcde"),
                     "labels": {"kubernetes.io/service-name": format!("svc-{i}")}},
        "addressType": "IPv4", "endpoints": eps,
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]})
}

fn query_files(dir: &Path, n: usize) -> (PathBuf, PathBuf) {
    let mut cluster = String::new();
    let mut nx = String::new();
    // A deterministic spread over all Services.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for q in 0..20000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let i = (x % n as u64) as usize;
        if q % 10 == 9 {
            cluster.push_str(&format!("_http._tcp.svc-{i}.bench.svc.cluster.local SRV\n"));
        } else {
            cluster.push_str(&format!("svc-{i}.bench.svc.cluster.local A\n"));
        }
        nx.push_str(&format!("missing-{q}.bench.svc.cluster.local A\n"));
    }
    let (c, m) = (dir.join("cluster.txt"), dir.join("nxdomain.txt"));
    std::fs::write(&c, cluster).unwrap();
    std::fs::write(&m, nx).unwrap();
    (c, m)
}

fn free_port() -> u16 {
    e2e::ports::free_port().unwrap()
}

fn start_server(a: &Args, source_args: &[String], dir: &Path) -> (Child, SocketAddr, SocketAddr) {
    let dns_port = free_port();
    let http_port = free_port();
    let log = std::fs::File::create(dir.join("ferrokube-dns.log")).unwrap();
    let child = Command::new("taskset")
        .args(["-c", &a.server_cpu])
        .arg(&a.binary)
        .args([
            "--workers=1".to_string(),
            "--dns-bind-address=127.0.0.1".into(),
            format!("--dns-port={dns_port}"),
            "--http-bind-address=127.0.0.1".into(),
            format!("--ready-port={http_port}"),
            format!("--health-port={http_port}"),
            format!("--metrics-port={http_port}"),
            "--resolv-conf=".into(),
        ])
        .args(source_args)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("taskset + ferrokube-dns");
    (
        child,
        ([127, 0, 0, 1], dns_port).into(),
        ([127, 0, 0, 1], http_port).into(),
    )
}

fn wait_ready(http: SocketAddr, child: &mut Child) -> Duration {
    let start = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("ferrokube-dns exited: {status}");
        }
        let out = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
            .arg(format!("http://{http}/ready"))
            .output()
            .unwrap();
        if out.stdout == b"200" {
            return start.elapsed();
        }
        assert!(start.elapsed() < Duration::from_secs(300), "never ready");
        std::thread::sleep(Duration::from_millis(100));
    }
}

struct Run {
    qps: f64,
    /// Queries answered per second of server CPU time (user + system).
    per_cpu_second: f64,
    lost: String,
    latencies: Vec<f64>,
}

fn dnsperf(
    a: &Args,
    server: SocketAddr,
    pid: u32,
    file: &Path,
    extra: &[&str],
    verbose: bool,
) -> Run {
    let cpu_before = component_base::metrics::cpu_seconds(pid).unwrap_or(0.0);
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", &a.client_cpu, "dnsperf", "-s", "127.0.0.1", "-p"])
        .arg(server.port().to_string())
        .arg("-d")
        .arg(file)
        .args(["-l", &a.seconds.to_string(), "-c", "4"])
        .args(extra);
    if verbose {
        cmd.arg("-v");
    }
    let out = cmd.output().expect("dnsperf");
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(name).map(|v| v.trim().to_string()))
            .unwrap_or_default()
    };
    let cpu = component_base::metrics::cpu_seconds(pid).unwrap_or(0.0) - cpu_before;
    let qps: f64 = field("Queries per second:").parse().unwrap_or(0.0);
    let completed: f64 = field("Queries completed:")
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0.0);
    let per_cpu_second = if cpu > 0.0 { completed / cpu } else { 0.0 };
    let lost = field("Queries lost:");
    let mut latencies: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with("> "))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    latencies.sort_by(|x, y| x.total_cmp(y));
    Run {
        qps,
        per_cpu_second,
        lost,
        latencies,
    }
}

fn pct(sorted: &[f64], p: f64) -> String {
    if sorted.is_empty() {
        return "-".into();
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    format!("{:.3}", sorted[i] * 1000.0)
}

fn rss(pid: u32) -> (String, String) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let get = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    (get("VmRSS:"), get("VmHWM:"))
}

async fn fill_apiserver(client: kube::Client, n: usize) -> Duration {
    let start = Instant::now();
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "bench"}})).unwrap();
    let _ = Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await;
    let services: Api<Service> = Api::namespaced(client.clone(), "bench");
    let slices: Api<EndpointSlice> = Api::namespaced(client, "bench");
    futures::stream::iter(0..n)
        .map(|i| {
            let (services, slices) = (services.clone(), slices.clone());
            async move {
                let svc: Service = serde_json::from_value(service(i)).unwrap();
                services.create(&PostParams::default(), &svc).await.unwrap();
                let s: EndpointSlice = serde_json::from_value(slice(i)).unwrap();
                slices.create(&PostParams::default(), &s).await.unwrap();
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    start.elapsed()
}

/// In-process cost of answering one query (no sockets): parse, answer, encode, metrics.
fn micro(n: usize) {
    use dns::metrics::Transport;
    let zones = vec![dns::names::fqdn("cluster.local").unwrap()];
    let store = std::sync::Arc::new(dns::store::Store::new(zones, 30));
    let services: Vec<_> = (0..n)
        .filter_map(|i| dns::model::service_info(&serde_json::from_value(service(i)).unwrap()))
        .collect();
    let slices: Vec<_> = (0..n)
        .filter_map(|i| dns::model::slice_info(&serde_json::from_value(slice(i)).unwrap()))
        .collect();
    let before = rss(std::process::id()).0;
    let t = Instant::now();
    store.replace_services(services);
    store.replace_slices(slices);
    store.mark_services_synced();
    store.mark_slices_synced();
    let build = t.elapsed();
    println!(
        "micro: {n} Services: RSS {before} before the index, {} after; {} names with records",
        rss(std::process::id()).0,
        store.read().index.names_with_records()
    );
    let t = Instant::now();
    let svc =
        dns::model::service_info(&serde_json::from_value(service(n / 2 + 1)).unwrap()).unwrap();
    for _ in 0..100 {
        store.apply_service(svc.clone());
    }
    let update = t.elapsed() / 100;
    let registry = component_base::metrics::Metrics::new();
    let handler = dns::handler::Handler::new(
        store,
        dns::model::ServiceKey::new("kube-system", "kube-dns"),
        std::sync::Arc::new(dns::forward::Forwarder::new(
            vec![],
            Duration::from_secs(1),
            None,
        )),
        dns::cache::Cache::new(0, 0),
        dns::metrics::DnsMetrics::register(&registry, "dns://:53"),
        std::sync::Arc::new(dns::loop_detect::LoopGuard::new()),
        "dns://:53".into(),
    );
    let queries: Vec<Vec<u8>> = (0..1000)
        .map(|q| {
            let mut m = hickory_proto::op::Message::query();
            let name = if q % 2 == 0 {
                format!("svc-{}.bench.svc.cluster.local.", q * 7 % n)
            } else {
                format!("missing-{q}.bench.svc.cluster.local.")
            };
            m.add_query(hickory_proto::op::Query::query(
                hickory_proto::rr::Name::from_ascii(&name).unwrap(),
                hickory_proto::rr::RecordType::A,
            ));
            m.to_vec().unwrap()
        })
        .collect();
    let peer: SocketAddr = "127.0.0.1:5353".parse().unwrap();
    let transport = Transport {
        tcp: false,
        ipv6: false,
    };
    let rounds = 300;
    let t = Instant::now();
    let mut bytes = 0;
    for _ in 0..rounds {
        for q in &queries {
            if let dns::handler::Step::Reply(b) = handler.handle_local(q, transport, peer) {
                bytes += b.len();
            }
        }
    }
    let per = t.elapsed() / (rounds * queries.len()) as u32;
    println!(
        "micro: {n} Services: index built in {build:.1?}, one Service updated in {update:.1?}; answer {per:?}/query in process ({} bytes out)",
        bytes
    );
}

#[tokio::main]
async fn main() {
    let a = args();
    if std::env::args().any(|a| a == "--micro") {
        for &n in &a.sizes {
            micro(n);
        }
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = None;
    let use_apiserver = match a.source.as_str() {
        "static" => false,
        "apiserver" => true,
        _ => e2e::assets::find_control_plane().is_ok(),
    };
    println!(
        "# ferrokube-dns benchmark: source {}, server on cpu {}, dnsperf on cpu {}, {} s per run, load average {}",
        if use_apiserver { "kube-apiserver" } else { "static file (--static-objects)" },
        a.server_cpu,
        a.client_cpu,
        a.seconds,
        std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim()
    );
    let mut filled = 0;
    // One JSON line per figure for hack/bench.sh, printed at the end (no upstream side:
    // CoreDNS is not run by this harness).
    let mut figures = Vec::new();
    for &n in &a.sizes {
        let source_args = if use_apiserver {
            if cluster.is_none() {
                cluster = Some(e2e::TestCluster::start().await.expect("test cluster"));
            }
            let c = cluster.as_ref().unwrap();
            let took = fill_apiserver_range(c.client(), filled, n).await;
            filled = n;
            println!("created {n} Services + EndpointSlices in the apiserver ({took:.1?})");
            vec![format!("--kubeconfig={}", c.kubeconfig().display())]
        } else {
            let mut items: Vec<Value> = (0..n).map(service).collect();
            items.extend((0..n).map(slice));
            let path = dir.path().join(format!("objects-{n}.json"));
            std::fs::write(
                &path,
                json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string(),
            )
            .unwrap();
            vec![format!("--static-objects={}", path.display())]
        };
        let (cluster_q, nx_q) = query_files(dir.path(), n);
        let (mut child, dns, http) = start_server(&a, &source_args, dir.path());
        let ready = wait_ready(http, &mut child);
        println!("\n## {n} Services (ready after {ready:.1?})\n");
        println!(
            "| queries | offered | qps | qps per server CPU-second | lost | p50 ms | p90 ms | p99 ms | p99.9 ms |"
        );
        println!("|---|---|---|---|---|---|---|---|---|");
        let pid = child.id();
        for (what, file) in [("cluster names", &cluster_q), ("NXDOMAIN", &nx_q)] {
            let max = dnsperf(&a, dns, pid, file, &["-q", "200"], false);
            println!(
                "| {what} | saturation | {:.0} | {:.0} | {} | | | | |",
                max.qps, max.per_cpu_second, max.lost
            );
            figures.push(figure_line(
                &format!("ferrokube-dns {n} Services {what}: queries/s at saturation"),
                max.qps.round(),
                "queries/s",
            ));
            for &load in &a.loads {
                let run = dnsperf(
                    &a,
                    dns,
                    pid,
                    file,
                    &["-Q", &load.to_string(), "-q", "200"],
                    true,
                );
                println!(
                    "| {what} | {load}/s | {:.0} | {:.0} | {} | {} | {} | {} | {} |",
                    run.qps,
                    run.per_cpu_second,
                    run.lost,
                    pct(&run.latencies, 0.50),
                    pct(&run.latencies, 0.90),
                    pct(&run.latencies, 0.99),
                    pct(&run.latencies, 0.999)
                );
            }
        }
        let (now, peak) = rss(child.id());
        println!("\nRSS after the runs: {now} (peak {peak})");
        if let Some(kb) = peak
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
        {
            figures.push(figure_line(
                &format!("ferrokube-dns {n} Services: peak RSS"),
                (kb / 1024.0 * 10.0).round() / 10.0,
                "MiB",
            ));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    for f in figures {
        println!("{f}");
    }
}

/// One JSON figure line for `hack/bench.sh` with our side only.
fn figure_line(figure: &str, ours: f64, unit: &str) -> String {
    json!({"figure": figure, "ours": ours, "unit": unit}).to_string()
}

async fn fill_apiserver_range(client: kube::Client, from: usize, to: usize) -> Duration {
    if from == 0 {
        return fill_apiserver(client, to).await;
    }
    let start = Instant::now();
    let services: Api<Service> = Api::namespaced(client.clone(), "bench");
    let slices: Api<EndpointSlice> = Api::namespaced(client, "bench");
    futures::stream::iter(from..to)
        .map(|i| {
            let (services, slices) = (services.clone(), slices.clone());
            async move {
                let svc: Service = serde_json::from_value(service(i)).unwrap();
                services.create(&PostParams::default(), &svc).await.unwrap();
                let s: EndpointSlice = serde_json::from_value(slice(i)).unwrap();
                slices.create(&PostParams::default(), &s).await.unwrap();
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    start.elapsed()
}
