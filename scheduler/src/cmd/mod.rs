//! The kube-scheduler command: flags and config → client, server, leader election, and the
//! scheduler itself.

pub mod flags;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use component_base::client::ClientOptions;
use component_base::events::EventRecorder;
use component_base::metrics::Metrics;
use component_base::server::{self, Authorization, Health, ServingOptions, TlsOptions};
use tokio_util::sync::CancellationToken;

use crate::config::build_framework;
use crate::metrics::SchedulerMetrics;
use crate::plugins::PluginContext;
use crate::queue::{Backoff, MAX_IN_UNSCHEDULABLE};
use crate::scheduler::{informers, run_loop, Shared};
pub use flags::Options;

/// Runs the scheduler until SIGTERM/SIGINT or lost leadership.
pub async fn run(options: Options) -> anyhow::Result<()> {
    tracing::info!(version = %component_base::version::version(), "Starting Kubernetes Scheduler");
    let shutdown = component_base::shutdown::on_signal();
    let client_options = ClientOptions {
        kubeconfig: options.kubeconfig.clone(),
        master: options.master.clone(),
        qps: options.qps,
        burst: options.burst,
        content_type: options.content_type.clone(),
        component: flags::COMPONENT.to_string(),
    };
    let client = component_base::client::client(&client_options).await?;
    let threads = (options.config.parallelism.max(1) as usize).min(
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2),
    );
    if let Err(e) = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("filter-score-{i}"))
        .build_global()
    {
        tracing::debug!(error = %e, "rayon pool already initialised");
    }

    let health = Health::default();
    let metrics = Metrics::new();
    health.add_shutdown_check(shutdown.clone());
    let sched_metrics = SchedulerMetrics::register(&metrics);

    let ctx = PluginContext {
        client: Some(client.clone()),
    };
    let mut profiles = HashMap::new();
    for p in options.config.effective_profiles() {
        let fw = build_framework(&p, &ctx)
            .with_context(|| format!("config file {:?}", options.config_file))?;
        profiles.insert(p.scheduler_name.clone(), Arc::new(fw));
    }
    let host = component_base::hostname::hostname();
    let recorders: HashMap<String, EventRecorder> = profiles
        .keys()
        .map(|name| {
            (
                name.clone(),
                EventRecorder::new(client.clone(), name, &format!("{name}-{host}")),
            )
        })
        .collect();

    let serving = ServingOptions {
        bind_address: options.bind_address,
        port: options.secure_port,
        tls: Some(TlsOptions {
            cert_file: options.tls_cert_file.clone(),
            key_file: options.tls_private_key_file.clone(),
            cert_dir: options.cert_dir.clone(),
            alternate_names: Vec::new(),
        }),
    };
    let authorization = Authorization::Delegated {
        client: client.clone(),
        always_allow_paths: server::authz::DEFAULT_ALWAYS_ALLOW_PATHS
            .iter()
            .map(|p| p.to_string())
            .collect(),
    };
    let served = server::serve(
        flags::COMPONENT,
        &serving,
        server::router(health.clone(), metrics.clone()),
        authorization,
        shutdown.clone(),
    )
    .await
    .context("--secure-port")?;

    let backoff = Backoff {
        initial: Duration::from_secs(
            options
                .config
                .pod_initial_backoff_seconds
                .unwrap_or(1)
                .max(0) as u64,
        ),
        max: Duration::from_secs(options.config.pod_max_backoff_seconds.unwrap_or(10).max(0) as u64),
    };
    let max_unsched = if options.max_in_unschedulable.is_zero() {
        MAX_IN_UNSCHEDULABLE
    } else {
        options.max_in_unschedulable
    };
    let percentage = options.config.percentage_of_nodes_to_score.unwrap_or(0);
    let work = move |leading: CancellationToken| {
        let effects = crate::scheduler::effects::start(client.clone(), recorders);
        let shared = Shared::new(profiles, sched_metrics, percentage, backoff, Some(effects));
        run_scheduler(shared, client, leading, max_unsched)
    };
    // Its own client, as upstream's "leader-election" clientset: renewals must not queue
    // behind scheduling requests in a shared rate limiter.
    let election_client = component_base::client::client(&client_options).await?;
    let result = component_base::leader_election::lead_or_run(
        election_client,
        &options.leader_election,
        &health,
        &metrics,
        shutdown.clone(),
        work,
    )
    .await;
    shutdown.cancel();
    if let Some((_, task)) = served {
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    result
}

/// Starts informers, waits for nodes and pods to sync, then runs the scheduling loop on a
/// dedicated thread until `leading` is cancelled.
async fn run_scheduler(
    shared: Arc<Shared>,
    client: kube::Client,
    leading: CancellationToken,
    max_unsched: Duration,
) -> anyhow::Result<()> {
    let nodes_synced = Arc::new(AtomicBool::new(false));
    let pods_synced = Arc::new(AtomicBool::new(false));
    tokio::spawn(informers::watch_views(
        shared.clone(),
        client.clone(),
        leading.clone(),
    ));
    tokio::spawn(informers::watch_nodes(
        shared.clone(),
        client.clone(),
        nodes_synced.clone(),
        leading.clone(),
    ));
    // Nodes first, so the first pods see a full cluster.
    while !nodes_synced.load(Ordering::Acquire) {
        tokio::select! {
            _ = leading.cancelled() => return Ok(()),
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    }
    tokio::spawn(informers::watch_pods(
        shared.clone(),
        client,
        pods_synced.clone(),
        leading.clone(),
    ));
    while !pods_synced.load(Ordering::Acquire) {
        tokio::select! {
            _ = leading.cancelled() => return Ok(()),
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    }
    tracing::info!("Caches synced; starting the scheduling loop");
    let flusher = {
        let shared = shared.clone();
        let leading = leading.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = leading.cancelled() => return,
                    _ = tick.tick() => shared.queue.flush(max_unsched),
                }
            }
        })
    };
    let rt = tokio::runtime::Handle::current();
    let loop_shared = shared.clone();
    let thread = std::thread::Builder::new()
        .name("scheduling-loop".into())
        .spawn(move || run_loop(loop_shared, rt))?;
    leading.cancelled().await;
    shared.stop.store(true, Ordering::Relaxed);
    shared.queue.close();
    flusher.abort();
    let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    Ok(())
}
