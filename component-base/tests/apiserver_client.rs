//! The apiserver client on a real kube-apiserver: a burst of requests shares one HTTP/2
//! connection (kube-rs's own stack opens a TLS connection per in-flight request), and more
//! open watches than the apiserver's per-connection stream limit (100) starve nothing.

use std::collections::HashSet;
use std::time::Duration;

use futures::future::join_all;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ObjectMeta, PostParams, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};

/// Concurrent GETs in one burst.
const BURST: usize = 150;

/// Socket inodes of this process's open file descriptors.
fn socket_inodes() -> HashSet<u64> {
    std::fs::read_dir("/proc/self/fd")
        .map(|fds| {
            fds.filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
                .filter_map(|target| {
                    let t = target.to_string_lossy().into_owned();
                    t.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// This process's ESTABLISHED TCP connections to `port`.
fn connections_to(port: u16) -> usize {
    let inodes = socket_inodes();
    let mut n = 0;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let remote_port = cols
                .get(2)
                .and_then(|r| r.rsplit(':').next())
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            let inode = cols.get(9).and_then(|i| i.parse::<u64>().ok());
            if remote_port == Some(port)
                && cols.get(3) == Some(&"01")
                && inode.is_some_and(|i| inodes.contains(&i))
            {
                n += 1;
            }
        }
    }
    n
}

async fn admin_config(cluster: &e2e::TestCluster) -> kube::Config {
    let kc = Kubeconfig::read_from(cluster.kubeconfig()).unwrap();
    kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap()
}

fn config_map(name: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Fires `BURST` concurrent GETs of ConfigMap `burst` and returns how many connections to
/// the apiserver that opened.
async fn burst(client: kube::Client, port: u16) -> usize {
    let before = connections_to(port);
    let api = Api::<ConfigMap>::namespaced(client, "default");
    for got in join_all((0..BURST).map(|_| api.get("burst"))).await {
        got.unwrap();
    }
    connections_to(port) - before
}

#[tokio::test]
async fn request_burst_shares_one_http2_connection() {
    let cluster = e2e::cluster_or_skip!();
    let port: u16 = cluster.url().rsplit(':').next().unwrap().parse().unwrap();
    let cfg = admin_config(&cluster).await;
    Api::<ConfigMap>::namespaced(cluster.client(), "default")
        .create(&PostParams::default(), &config_map("burst"))
        .await
        .unwrap();

    let ours = component_base::client::client_from_config(cfg.clone(), -1.0, 0).unwrap();
    let ours_opened = burst(ours.clone(), port).await;
    // Each request is counted as client-go counts it, on the component's /metrics.
    let text = component_base::metrics::Metrics::new().render();
    let gets = text.lines().find_map(|l| {
        l.strip_prefix(&format!(
            "rest_client_requests_total{{code=\"200\",method=\"GET\",host=\"127.0.0.1:{port}\"}} "
        ))?
        .parse::<f64>()
        .ok()
    });
    assert!(gets >= Some(BURST as f64), "{gets:?} in\n{text}");
    assert!(
        text.contains(&format!(
            "rest_client_request_duration_seconds_count{{verb=\"GET\",host=\"127.0.0.1:{port}\"}}"
        )),
        "{text}"
    );
    let kube_rs = kube::Client::try_from(cfg).unwrap();
    let kube_rs_opened = burst(kube_rs, port).await;
    eprintln!(
        "{BURST} concurrent GETs opened {ours_opened} connection(s); \
         kube-rs's HTTP/1.1 stack opened {kube_rs_opened}"
    );
    assert_eq!(
        ours_opened, 1,
        "the burst should share one HTTP/2 connection"
    );
    assert!(
        kube_rs_opened > 10,
        "the comparison is void unless HTTP/1.1 opens many: {kube_rs_opened}"
    );
}

#[tokio::test]
async fn more_watches_than_the_stream_limit_starve_nothing() {
    let cluster = e2e::cluster_or_skip!();
    let cfg = admin_config(&cluster).await;
    let client = component_base::client::client_from_config(cfg, -1.0, 0).unwrap();
    let api = Api::<ConfigMap>::namespaced(client, "default");

    // 120 open watches: more than 100 streams on one HTTP/2 connection would queue every
    // later request for as long as the watches stay open.
    let params = WatchParams::default().timeout(120);
    let opened = tokio::time::timeout(
        Duration::from_secs(30),
        join_all((0..120).map(|_| api.watch(&params, "0"))),
    )
    .await
    .expect("120 watches opened at once must all start");
    let watches: Vec<_> = opened.into_iter().map(Result::unwrap).collect();
    let pp = PostParams::default();
    let wait = Duration::from_secs(10);
    tokio::time::timeout(wait, api.create(&pp, &config_map("after-watches")))
        .await
        .expect("a create behind 120 open watches must not wait for them")
        .unwrap();
    tokio::time::timeout(wait, api.get("after-watches"))
        .await
        .expect("a get behind 120 open watches must not wait for them")
        .unwrap();
    drop(watches);
}
