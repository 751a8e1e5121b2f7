//! `/healthz`, `/livez`, `/readyz` (plain, `?verbose`, single check) and `/metrics` of each
//! control-plane binary on its secure port (HTTPS, self-signed certificate, delegated
//! authorization: health paths are always allowed, `/metrics` needs an authorized token).
//!
//! Checked against upstream's binaries (`FERROKUBE_BIN_DIR=<upstream bin dir>`): the
//! scheduler passes as is; upstream's controller-manager serves only `/healthz`, while issue 2
//! asks every ferrokube component for all three endpoints.
//!
//! kubelet (10248/10250) and kube-proxy (10249/10256) join once they run here (they need
//! containerd and a network namespace).

use std::time::Duration;

use e2e::components::{
    controller_manager_args, scheduler_args, KUBE_CONTROLLER_MANAGER, KUBE_SCHEDULER,
};
use e2e::ports::free_port;
use e2e::probe::Probe;
use e2e::{monitoring, prometheus, wait, TestCluster};

/// Metrics every Kubernetes component exports.
const COMMON_METRICS: &[&str] = &["kubernetes_build_info", "process_start_time_seconds"];

/// Checks every endpoint of `binary`. `single_checks`: whether `/<endpoint>/<check>` is served
/// (upstream's scheduler does; its controller-manager answers 404).
async fn check_component(
    cluster: &TestCluster,
    binary: &str,
    args: Vec<String>,
    port: u16,
    single_checks: bool,
) {
    let mut process = cluster.spawn_component(binary, &args).unwrap();
    let anonymous = Probe::new(&format!("https://127.0.0.1:{port}"), None).unwrap();

    wait::until_running(
        &format!("{binary} /healthz on port {port}"),
        Duration::from_secs(30),
        Duration::from_millis(200),
        &mut [&mut process],
        || async {
            Ok(anonymous
                .get("/healthz")
                .await
                .ok()
                .filter(|a| a.status == 200))
        },
    )
    .await
    .unwrap();

    // Only the bare paths are always allowed; sub-paths and /metrics need authorization.
    let token = monitoring::metrics_reader_token(&cluster.client())
        .await
        .unwrap();
    let scraper = Probe::new(&format!("https://127.0.0.1:{port}"), Some(&token)).unwrap();
    // Right after start, upstream's delegated authentication may still treat the token as
    // anonymous and cache that for 10 s (as a scraper would, retry).
    let metrics = wait::until(
        &format!("{binary} /metrics to answer the authorized scraper"),
        Duration::from_secs(30),
        Duration::from_millis(500),
        || async {
            let answer = scraper.get("/metrics").await?;
            Ok((answer.status == 200).then_some(answer))
        },
    )
    .await
    .unwrap();

    for endpoint in ["healthz", "livez", "readyz"] {
        // /readyz may wait for informer sync or leadership: give it time to turn ready.
        let plain = wait::until(
            &format!("{binary} /{endpoint} to answer 200"),
            Duration::from_secs(30),
            Duration::from_millis(200),
            || async {
                let answer = anonymous.get(&format!("/{endpoint}")).await?;
                Ok((answer.status == 200).then_some(answer))
            },
        )
        .await
        .unwrap();
        assert_eq!(plain.body.trim(), "ok", "{binary} /{endpoint}");

        let verbose = anonymous
            .get(&format!("/{endpoint}?verbose"))
            .await
            .unwrap();
        assert_eq!(
            verbose.status, 200,
            "{binary} /{endpoint}?verbose: {}",
            verbose.body
        );
        let checks = passed_checks(&verbose.body);
        assert!(
            !checks.is_empty(),
            "{binary} /{endpoint}?verbose lists no checks: {}",
            verbose.body
        );
        assert!(
            verbose.body.contains(&format!("{endpoint} check passed")),
            "{binary} /{endpoint}?verbose: {}",
            verbose.body
        );

        // Each named check is served on its own, as upstream's /healthz/<name>, to the
        // authorized only.
        if !single_checks {
            continue;
        }
        for check in &checks {
            let path = format!("/{endpoint}/{check}");
            let denied = anonymous.get(&path).await.unwrap();
            assert!(
                matches!(denied.status, 401 | 403),
                "{binary} anonymous {path}: {}",
                denied.status
            );
            let single = scraper.get(&path).await.unwrap();
            assert_eq!(
                (single.status, single.body.trim()),
                (200, "ok"),
                "{binary} {path}"
            );
        }
        let unknown = scraper
            .get(&format!("/{endpoint}/no-such-check"))
            .await
            .unwrap();
        assert_eq!(unknown.status, 404, "{binary} /{endpoint}/no-such-check");
    }

    let denied = anonymous.get("/metrics").await.unwrap();
    assert!(
        matches!(denied.status, 401 | 403),
        "{binary} /metrics without credentials answered {}",
        denied.status
    );

    let content_type = metrics.content_type.unwrap_or_default();
    assert!(
        content_type.starts_with("text/plain"),
        "{binary} /metrics Content-Type {content_type}"
    );
    let names = prometheus::sample_names(&metrics.body)
        .unwrap_or_else(|e| panic!("{binary} /metrics is not Prometheus text: {e:#}"));
    for metric in COMMON_METRICS {
        assert!(names.contains(*metric), "{binary} /metrics lacks {metric}");
    }
    assert!(
        process.is_running(),
        "{binary} exited:\n{}",
        process.log_tail(20)
    );
}

/// The names of the `[+]name ok` lines of a verbose health answer; panics on a `[-]` line.
fn passed_checks(verbose: &str) -> Vec<String> {
    verbose
        .lines()
        .filter_map(|line| {
            assert!(
                !line.starts_with("[-]"),
                "failed check in a 200 answer: {line}"
            );
            line.strip_prefix("[+]")?
                .strip_suffix(" ok")
                .map(str::to_string)
        })
        .collect()
}

#[tokio::test]
async fn scheduler_serves_health_and_metrics() {
    let cluster = e2e::cluster_or_skip!();
    let port = free_port().unwrap();
    let args = scheduler_args(&cluster, port, true).unwrap();
    check_component(&cluster, KUBE_SCHEDULER, args, port, true).await;
}

#[tokio::test]
async fn controller_manager_serves_health_and_metrics() {
    let cluster = e2e::cluster_or_skip!();
    let port = free_port().unwrap();
    let args = controller_manager_args(&cluster, port, true).unwrap();
    check_component(&cluster, KUBE_CONTROLLER_MANAGER, args, port, false).await;
}
