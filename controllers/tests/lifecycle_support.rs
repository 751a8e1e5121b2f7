//! Shared by the `lifecycle_*` e2e tests (included with `#[path]`): a real etcd +
//! kube-apiserver and ferrokube's kube-controller-manager running as a process, as an
//! operator runs it.
#![allow(dead_code)]

use std::time::Duration;

use e2e::components::{controller_manager_args, KUBE_CONTROLLER_MANAGER};
use e2e::{ManagedProcess, TestCluster};

/// Starts the controller manager against `cluster` with only `controllers` enabled plus
/// `extra` flags.
pub fn start_kcm(cluster: &TestCluster, controllers: &str, extra: &[&str]) -> ManagedProcess {
    start_kcm_on_port(cluster, controllers, extra).0
}

/// As [`start_kcm`], also returning the secure port (/healthz, /metrics) it serves on.
pub fn start_kcm_on_port(
    cluster: &TestCluster,
    controllers: &str,
    extra: &[&str],
) -> (ManagedProcess, u16) {
    let port = e2e::ports::free_port().expect("free port");
    let mut args = controller_manager_args(cluster, port, false).expect("kcm args");
    args.push(format!("--controllers={controllers}"));
    args.push("--v=2".into());
    args.push("--use-service-account-credentials=true".into());
    args.extend(extra.iter().map(|s| s.to_string()));
    let kcm = cluster
        .spawn_component(KUBE_CONTROLLER_MANAGER, &args)
        .expect("start kube-controller-manager");
    (kcm, port)
}

/// The manager's /metrics on `port`, read as a Prometheus scraper with a token of a
/// ServiceAccount allowed to get /metrics (retried while delegated authentication still
/// refuses the new token).
pub async fn scrape_metrics(cluster: &TestCluster, kcm: &mut ManagedProcess, port: u16) -> String {
    scrape_metrics_until(cluster, kcm, port, |_| true).await
}

/// As [`scrape_metrics`], scraping again (for up to 30 s) until `ready` holds for the text.
pub async fn scrape_metrics_until(
    cluster: &TestCluster,
    kcm: &mut ManagedProcess,
    port: u16,
    ready: impl Fn(&str) -> bool,
) -> String {
    let token = e2e::monitoring::metrics_reader_token(&cluster.client())
        .await
        .expect("metrics reader token");
    let scraper = e2e::probe::Probe::new(&format!("https://127.0.0.1:{port}"), Some(&token))
        .expect("metrics probe");
    let ready = &ready;
    eventually(
        "/metrics to answer the scraper",
        Duration::from_secs(30),
        kcm,
        || {
            let scraper = scraper.clone();
            async move {
                let answer = scraper.get("/metrics").await?;
                Ok((answer.status == 200 && ready(&answer.body)).then_some(answer.body))
            }
        },
    )
    .await
}

/// The value of the sample `series` (name and labels exactly as exposed, e.g.
/// `workqueue_adds_total{name="endpoint"}`) in Prometheus text `metrics`.
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// Polls `check` every 200ms for up to `timeout`, failing with the manager's log tail.
pub async fn eventually<T, F, Fut>(
    what: &str,
    timeout: Duration,
    kcm: &mut ManagedProcess,
    check: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    match e2e::wait::until_running(what, timeout, Duration::from_millis(200), &mut [kcm], check)
        .await
    {
        Ok(v) => v,
        Err(e) => panic!("{e:#}"),
    }
}

/// Creates the `default` namespace's `default` ServiceAccount (ServiceAccount admission
/// wants it before pods; these tests run without the serviceaccount controller). An
/// existing one is fine.
pub async fn ensure_default_service_account(client: &kube::Client) {
    use k8s_openapi::api::core::v1::ServiceAccount;
    let sas: kube::Api<ServiceAccount> = kube::Api::namespaced(client.clone(), "default");
    let sa: ServiceAccount =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "default"}})).unwrap();
    if let Err(e) = sas.create(&kube::api::PostParams::default(), &sa).await {
        assert!(matches!(&e, kube::Error::Api(s) if s.code == 409), "{e}");
    }
}
