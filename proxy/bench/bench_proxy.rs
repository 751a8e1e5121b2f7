//! kube-proxy benchmark (not a timed test). Run through `proxy/bench/bench-proxy.sh`.
//!
//! `rules` mode, in process: N Services × 10 endpoints; a full sync and incremental syncs
//! (one Service's endpoints changed), with rule generation and kernel apply (`nft -f` in
//! a throwaway network namespace) timed separately; peak RSS of the process.
//!
//! Flags: `--sizes 1000,10000`, `--binary PATH` (repeatable; the first is "ours", the
//! second "upstream" in the final table and JSON lines), `--no-rules` (binary mode only).
//!
//! `binary` mode, for any kube-proxy binary (ours or upstream's): a real kube-apiserver
//! (e2e TestCluster) holding N Services + EndpointSlices; the binary runs inside a
//! throwaway network namespace (reaching the apiserver through an in-process forwarder);
//! its own metrics give full/partial sync durations; /proc gives its peak RSS.

#[path = "../tests/lab/mod.rs"]
#[allow(unused_macros)]
mod lab;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, PostParams};
use proxy::model::{IpFamily, ServiceName};
use proxy::nftables::{Nft, NftConfig};
use proxy::sync::FamilySyncer;
use serde_json::json;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ENDPOINTS: usize = 10;

fn service(i: usize) -> Service {
    serde_json::from_value(
        json!({"metadata": {"namespace": "bench", "name": format!("svc-{i}")},
        "spec": {"clusterIP": format!("10.100.{}.{}", i / 250, i % 250 + 1),
                 "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}}),
    )
    .unwrap()
}

fn slice(i: usize, generation: usize) -> EndpointSlice {
    let eps: Vec<_> = (0..ENDPOINTS)
        .map(|e| {
            let n = i * ENDPOINTS + e + generation;
            json!({"addresses": [format!("10.{}.{}.{}", 128 + n / 65536 % 64, n / 256 % 256, n % 256)], "conditions": {"ready": true}})
        })
        .collect();
    serde_json::from_value(
        json!({"metadata": {"namespace": "bench", "name": format!("svc-{i}-abcde"),
        "labels": {"kubernetes.io/service-name": format!("svc-{i}")}},
        "addressType": "IPv4", "endpoints": eps,
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}),
    )
    .unwrap()
}

fn peak_rss_kib(pid: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn bench_rules(n: usize) {
    let ns = lab::Netns::create_for_bench(&format!("fkbench{}r{n}", std::process::id()));
    let mut cfg = NftConfig::new(IpFamily::V4, "bench-node");
    cfg.cluster_cidr = Some("10.128.0.0/9".parse().unwrap());
    let mut s = FamilySyncer::new(cfg, Nft::in_netns(&ns.name));
    let fold = Instant::now();
    for i in 0..n {
        s.tracker.update_service(
            ServiceName::new("bench", &format!("svc-{i}")),
            Some(&service(i)),
        );
        s.tracker.update_slice(&slice(i, 0), false);
    }
    let ingest = fold.elapsed();
    if let Ok(path) = std::env::var("FERROKUBE_BENCH_DUMP") {
        let mut copy = proxy::nftables::NftProxier::new(s.proxier.cfg.clone());
        let mut t = proxy::model::ChangeTracker::new(IpFamily::V4, "bench-node");
        for i in 0..n {
            t.update_service(
                ServiceName::new("bench", &format!("svc-{i}")),
                Some(&service(i)),
            );
            t.update_slice(&slice(i, 0), false);
        }
        t.apply();
        let plan = copy.plan(&t, &Default::default(), None, Instant::now());
        std::fs::write(format!("{path}.{n}"), plan.tx.text()).unwrap();
    }
    let full = s.sync();
    assert!(full.error.is_none(), "{:?}", full.error);
    let (mut gens, mut applies) = (Vec::new(), Vec::new());
    let mut commands = 0;
    for round in 1..=5 {
        s.tracker.update_slice(&slice(round * 7 % n, round), false);
        let out = s.sync();
        assert!(out.error.is_none() && !out.full, "{:?}", out.error);
        gens.push(out.generate);
        applies.push(out.apply);
        commands = out.commands;
    }
    println!(
        "rules  n={n:<6} ingest {:>9} | full: generate {:>9} apply {:>10} ({} cmds, {} KiB) | incremental (median of 5): generate {:>8} apply {:>8} ({commands} cmds) | peak RSS {} MiB",
        ms(ingest), ms(full.generate), ms(full.apply), full.commands, full.bytes / 1024,
        ms(median(gens)), ms(median(applies)), peak_rss_kib("self") / 1024
    );
}

/// Forwards connections made inside a lab namespace on 127.0.0.1:`port` to the host's
/// 127.0.0.1:`target` (the apiserver). Only the listening socket is made on a thread
/// that entered the namespace (a socket keeps the namespace it was made in); accepting
/// and connecting happen in the harness's own namespace. Every forwarded connection is
/// tracked and dropped when it ends; dropping the forwarder closes the listener and all
/// connections, so repeated runs hold no descriptors (an earlier version connected from
/// inside the namespace, looped back into itself and ran out of descriptors).
struct Forwarder {
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<HashMap<u64, TcpStream>>>,
    accept: Option<std::thread::JoinHandle<()>>,
}

impl Forwarder {
    fn start(ns: &lab::Netns, port: u16, target: u16) -> Self {
        let listener = ns
            .run(move || TcpListener::bind(("127.0.0.1", port)))
            .join()
            .unwrap()
            .expect("bind the forwarder in the lab namespace");
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<HashMap<u64, TcpStream>>> = Arc::default();
        let (stop2, conns2) = (stop.clone(), conns.clone());
        let accept = std::thread::spawn(move || {
            let mut next = 0u64;
            while !stop2.load(Ordering::Relaxed) {
                let inbound = match listener.accept() {
                    Ok((s, _)) => s,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                    Err(e) => panic!("forwarder accept: {e}"),
                };
                inbound.set_nonblocking(false).unwrap();
                let Ok(outbound) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                next += 1;
                let id = next;
                conns2
                    .lock()
                    .unwrap()
                    .insert(id, inbound.try_clone().unwrap());
                let conns = conns2.clone();
                std::thread::spawn(move || {
                    pipe(inbound, outbound);
                    conns.lock().unwrap().remove(&id);
                });
            }
        });
        Forwarder {
            stop,
            conns,
            accept: Some(accept),
        }
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
        for s in self.conns.lock().unwrap().values() {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
        // The pipe threads see EOF/errors, end, and remove their entries.
        for _ in 0..200 {
            if self.conns.lock().unwrap().is_empty() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Copies both directions until both end; closing one side's write when its peer's
/// read ends (so half-closes propagate), and both sockets when either side fails.
fn pipe(a: TcpStream, b: TcpStream) {
    let (mut a_rd, mut b_wr) = (a.try_clone().unwrap(), b.try_clone().unwrap());
    let up = std::thread::spawn(move || {
        let _ = std::io::copy(&mut a_rd, &mut b_wr);
        let _ = b_wr.shutdown(std::net::Shutdown::Write);
    });
    let (mut b_rd, mut a_wr) = (b, a);
    let _ = std::io::copy(&mut b_rd, &mut a_wr);
    let _ = a_wr.shutdown(std::net::Shutdown::Both);
    let _ = b_rd.shutdown(std::net::Shutdown::Both);
    let _ = up.join();
}

/// Open descriptors of process `pid` ("self" for the harness).
fn open_fds(pid: &str) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn metrics_in(ns: &lab::Netns) -> String {
    ns.run(|| {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", 10249)) else {
            return String::new();
        };
        let _ = write!(s, "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    })
    .join()
    .unwrap()
}

/// The IPv4 proxier's value of `name` (summed over other labels): a dual-stack proxy
/// also reports its (empty) IPv6 syncs, which would dilute the averages.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| !l.contains("ip_family=") || l.contains("ip_family=\"IPv4\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// One binary's figures at one size.
#[derive(Debug, Clone, Copy, Default)]
struct Figures {
    /// Start until every Service is in the kernel (s).
    programmed: f64,
    /// Mean full sync from the proxy's own metric (s).
    full: f64,
    /// Mean partial sync (ms), if any was reported.
    incremental: Option<f64>,
    /// Peak RSS (MiB).
    rss: f64,
}

async fn bench_binary(binary: &str, n: usize) -> Option<Figures> {
    let cluster = match e2e::TestCluster::start().await {
        Ok(c) => c,
        Err(e) => {
            lab::skip("bench binary", &format!("no control plane: {e}"));
            return None;
        }
    };
    let client = cluster.client();
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "bench"}})).unwrap(),
        )
        .await
        .unwrap();
    let node: Node = serde_json::from_value(json!({"metadata": {"name": "bench-node"}, "status": {"addresses": [{"type": "InternalIP", "address": "10.99.1.1"}]}})).unwrap();
    Api::<Node>::all(client.clone())
        .create(&PostParams::default(), &node)
        .await
        .unwrap();
    let svcs: Api<Service> = Api::namespaced(client.clone(), "bench");
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "bench");
    let t = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| {
            let (svcs, slices) = (svcs.clone(), slices.clone());
            async move {
                let mut s = service(i);
                if let Some(spec) = s.spec.as_mut() {
                    spec.cluster_ip = None; // let the apiserver allocate
                }
                svcs.create(&PostParams::default(), &s).await.unwrap();
                slices
                    .create(&PostParams::default(), &slice(i, 0))
                    .await
                    .unwrap();
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    eprintln!(
        "created {n} Services + EndpointSlices in {:.1}s",
        t.elapsed().as_secs_f64()
    );

    let ns = lab::Netns::create_for_bench(&format!("fkbench{}b{n}", std::process::id()));
    let api_port: u16 = cluster
        .url()
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .parse()
        .unwrap();
    let forwarder = Forwarder::start(&ns, api_port, api_port);
    let args = [
        "--proxy-mode=nftables".to_string(),
        format!("--kubeconfig={}", cluster.kubeconfig().display()),
        "--hostname-override=bench-node".into(),
        "--cluster-cidr=10.128.0.0/9".into(),
        "--metrics-bind-address=127.0.0.1:10249".into(),
        "--healthz-bind-address=127.0.0.1:10256".into(),
        "--conntrack-max-per-core=0".into(),
        "--oom-score-adj=0".into(),
        "--iptables-min-sync-period=1s".into(),
    ];
    let log = cluster.dir().join("bench-proxy.log");
    let started = Instant::now();
    let mut child = std::process::Command::new("ip")
        .args(["netns", "exec", &ns.name, binary])
        .args(&args)
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(log.with_extension("err")).unwrap())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    let full_count = "kubeproxy_sync_full_proxy_rules_duration_seconds_count";
    let mut first = None;
    while started.elapsed() < Duration::from_secs(600) {
        let m = metrics_in(&ns);
        let svc_ips = ns
            .exec(&["nft", "list", "map", "ip", "kube-proxy", "service-ips"])
            .matches(": goto")
            .count();
        if metric(&m, full_count) >= 1.0 && svc_ips >= n {
            first = Some((started.elapsed(), m));
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{binary} exited {status}: {}",
                std::fs::read_to_string(log.with_extension("err")).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let (programmed, m) = first.expect("the proxy never programmed every Service");
    let full =
        metric(&m, "kubeproxy_sync_full_proxy_rules_duration_seconds_sum") / metric(&m, full_count);
    // Incremental: change one EndpointSlice at a time and read the partial-sync histogram.
    let partial_sum = "kubeproxy_sync_partial_proxy_rules_duration_seconds_sum";
    let partial_count = "kubeproxy_sync_partial_proxy_rules_duration_seconds_count";
    let before = metrics_in(&ns);
    let (s0, c0) = (metric(&before, partial_sum), metric(&before, partial_count));
    for round in 1..=5 {
        let mut sl = slice(round * 7 % n, round);
        sl.metadata.resource_version = slices
            .get(sl.metadata.name.as_deref().unwrap())
            .await
            .unwrap()
            .metadata
            .resource_version;
        slices
            .replace(
                sl.metadata.name.clone().unwrap().as_str(),
                &PostParams::default(),
                &sl,
            )
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = metrics_in(&ns);
    let (s1, c1) = (metric(&after, partial_sum), metric(&after, partial_count));
    let incremental = (c1 > c0).then(|| (s1 - s0) / (c1 - c0) * 1e3);
    let partial = match incremental {
        Some(ms) => format!("{ms:.1} ms ({} syncs)", c1 - c0),
        None => "n/a (no partial syncs reported)".into(),
    };
    let rss_now = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .unwrap_or(0);
    println!(
        "binary n={n:<6} {binary}: start→all programmed {:.2}s | full sync (own metric) {:.1} ms | incremental {partial} | peak RSS {} MiB, RSS now {} MiB | open fds {}",
        programmed.as_secs_f64(), full * 1e3, peak_rss_kib(&pid) / 1024, rss_now / 1024, open_fds(&pid)
    );
    // Read before the process ends: /proc/PID goes away with it.
    let peak_rss = peak_rss_kib(&pid) as f64 / 1024.0;
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = child.wait();
    drop(forwarder);
    Some(Figures {
        programmed: programmed.as_secs_f64(),
        full,
        incremental,
        rss: peak_rss,
    })
}

/// Prints the side-by-side table of the first binary ("ours") against the second
/// ("upstream"), and one JSON line per figure for scripts (`hack/bench.sh`).
fn report(sizes: &[usize], results: &HashMap<(usize, usize), Figures>, binaries: &[String]) {
    let mut rows: Vec<(String, Option<f64>, Option<f64>, &str)> = Vec::new();
    for &n in sizes {
        let get = |b: usize| results.get(&(n, b)).copied();
        let (ours, up) = (get(0), get(1));
        let f = |x: Option<Figures>, pick: fn(Figures) -> Option<f64>| x.and_then(pick);
        rows.push((
            format!("kube-proxy {n} Services full sync"),
            f(ours, |x| Some(x.full)),
            f(up, |x| Some(x.full)),
            "s",
        ));
        rows.push((
            format!("kube-proxy {n} Services start to all programmed"),
            f(ours, |x| Some(x.programmed)),
            f(up, |x| Some(x.programmed)),
            "s",
        ));
        rows.push((
            format!("kube-proxy {n} Services incremental sync"),
            f(ours, |x| x.incremental),
            f(up, |x| x.incremental),
            "ms",
        ));
        rows.push((
            format!("kube-proxy {n} Services peak RSS"),
            f(ours, |x| Some(x.rss)),
            f(up, |x| Some(x.rss)),
            "MiB",
        ));
    }
    println!();
    println!(
        "ours: {}",
        binaries.first().map(String::as_str).unwrap_or("-")
    );
    println!(
        "upstream: {}",
        binaries.get(1).map(String::as_str).unwrap_or("-")
    );
    println!("| figure | ours | upstream | ours / upstream |");
    println!("|---|---|---|---|");
    let show = |v: Option<f64>, unit: &str| match v {
        Some(v) if unit == "s" => format!("{v:.2} s"),
        Some(v) => format!("{v:.1} {unit}"),
        None => "n/a".into(),
    };
    for (name, ours, up, unit) in &rows {
        let ratio = match (ours, up) {
            (Some(a), Some(b)) if *b > 0.0 => format!("×{:.2}", a / b),
            _ => "—".into(),
        };
        println!(
            "| {name} | {} | {} | {ratio} |",
            show(*ours, unit),
            show(*up, unit)
        );
    }
    for (name, ours, up, unit) in &rows {
        let num = |v: &Option<f64>| match v {
            Some(v) => format!("{}", (v * 1000.0).round() / 1000.0),
            None => "null".into(),
        };
        // Keys in the documented order (serde_json would sort them).
        println!(
            "{{\"figure\": {}, \"ours\": {}, \"upstream\": {}, \"unit\": {}}}",
            serde_json::Value::from(name.as_str()),
            num(ours),
            num(up),
            serde_json::Value::from(*unit)
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if let Some(why) = lab::unavailable() {
        lab::skip("bench-proxy", &why);
        return;
    }
    let mut sizes = vec![1000, 10000];
    let mut binaries = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--sizes" => {
                sizes = it
                    .next()
                    .unwrap()
                    .split(',')
                    .map(|s| s.parse().unwrap())
                    .collect()
            }
            "--binary" => binaries.push(it.next().unwrap().clone()),
            _ => {}
        }
    }
    if !args.iter().any(|a| a == "--no-rules") {
        for &n in &sizes {
            bench_rules(n);
        }
    }
    if binaries.is_empty() {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let fds_before = open_fds("self");
    let mut results = HashMap::new();
    for &n in &sizes {
        for (i, b) in binaries.iter().enumerate() {
            if let Some(f) = rt.block_on(bench_binary(b, n)) {
                results.insert((n, i), f);
            }
            // Everything of the run (apiserver, etcd, forwarder, namespace) is gone now:
            // the harness must be back where it started.
            eprintln!(
                "harness open fds: {} before the binary runs, {} now",
                fds_before,
                open_fds("self")
            );
        }
    }
    report(&sizes, &results, &binaries);
}
