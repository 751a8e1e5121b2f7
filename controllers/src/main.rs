//! `kube-controller-manager`: runs ferrokube's controllers against a kube-apiserver, with
//! upstream's flags, leader election on the `kube-system/kube-controller-manager` Lease and
//! the secure health/metrics port 10257.

use std::collections::BTreeSet;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use component_base::leader_election::{default_identity, LeaderElector};
use component_base::metrics::Metrics;
use component_base::server::{self, Authorization, Health, ServingOptions, TlsOptions};
use controllers::app::flags;
use controllers::app::registry::{self, Selection};
use controllers::machinery::context::{ControllerContext, ControllerMetrics, Credentials};
use controllers::machinery::informers::InformerFactory;
use controllers::machinery::options::KcmOptions;
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    let (options, ignored) = match flags::parse(std::env::args_os()) {
        Ok(Some(parsed)) => parsed,
        Ok(None) => {
            println!("{}", component_base::version::version_line());
            return ExitCode::SUCCESS;
        }
        Err(flags::ParseError::Clap(e)) => e.exit(),
        Err(flags::ParseError::Invalid(message)) => {
            eprintln!("Error: {message}");
            return ExitCode::from(1);
        }
    };
    component_base::logging::init(options.logging_format, options.verbosity);
    component_base::flags::warn_ignored(flags::COMPONENT, &ignored);
    component_base::app::block_on("kube-controller-manager", run(options))
}

async fn run(options: KcmOptions) -> anyhow::Result<()> {
    tracing::info!(version = %component_base::version::version(), "Starting kube-controller-manager");
    let shutdown = component_base::shutdown::on_signal();
    let client_options = options.client_options();
    let config = component_base::client::config(&client_options).await?;
    let client = component_base::client::client_from_config(
        config.clone(),
        options.kube_api_qps,
        options.kube_api_burst,
    )?;
    let credentials = Arc::new(if options.use_service_account_credentials {
        Credentials::service_accounts(config.clone(), options.kube_api_qps, options.kube_api_burst)?
    } else {
        Credentials::Shared
    });
    let selection = Selection::parse(&options.controllers).map_err(anyhow::Error::msg)?;
    let implemented: BTreeSet<&'static str> = registry::all()
        .iter()
        .filter_map(|d| registry::canonical(d.name))
        .collect();
    let gates = &options.feature_gates;
    if !gates.unread().is_empty() {
        tracing::info!(gates = %gates.unread().join(","), "Feature gates set that no ferrokube controller reads");
    }
    for (controller, why) in selection.skipped(gates) {
        match why {
            registry::Skipped::CloudProvider => {
                tracing::info!(controller, "Skipping a cloud provider controller")
            }
            registry::Skipped::FeatureGates(required) => {
                tracing::info!(controller, required_feature_gates = %required.join(","), "Controller is disabled by a feature gate")
            }
        }
    }
    let unimplemented = selection.enabled_but_unimplemented(&implemented, gates);
    if !unimplemented.is_empty() {
        tracing::warn!(controllers = %unimplemented.join(","), "Controllers enabled but not implemented by ferrokube; they do not run");
    }

    let health = Health::default();
    let metrics = Metrics::new();
    health.add_shutdown_check(shutdown.clone());
    // Its own client, as upstream's "leader-election" clientset: renewals must not queue
    // behind the controllers' requests in a shared rate limiter (a start-up burst at the
    // default 20 qps once delayed a renewal past the 10 s deadline and the manager exited).
    let election_client = component_base::client::client_from_config(
        config.clone(),
        options.kube_api_qps,
        options.kube_api_burst,
    )?;
    let elector = options.leader_election.leader_elect.then(|| {
        let elector = LeaderElector::new(
            election_client,
            options.leader_election.clone(),
            default_identity(),
        );
        elector.register_metrics(&metrics);
        health.add_everywhere(
            "leaderElection",
            elector.health_check(Duration::from_secs(20)),
        );
        elector
    });
    let serving = ServingOptions {
        bind_address: options.serving.bind_address,
        port: options.serving.secure_port,
        tls: Some(TlsOptions {
            cert_file: options.serving.tls_cert_file.clone(),
            key_file: options.serving.tls_private_key_file.clone(),
            cert_dir: options.serving.cert_dir.clone(),
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
    let server = server::serve(
        flags::COMPONENT,
        &serving,
        server::router(health, metrics.clone()),
        authorization,
        shutdown.clone(),
    )
    .await
    .context("--secure-port")?;
    if let Some((addr, _)) = &server {
        tracing::info!(%addr, "Serving securely");
    }

    let options = Arc::new(options);
    // Registered once: controllers restarted after regaining leadership reuse the families.
    let controller_metrics = ControllerMetrics::new(&metrics);
    let work = move |leading: CancellationToken| {
        let ctx = ControllerContext {
            informer_factory: Arc::new(InformerFactory::new(client.clone(), leading.clone())),
            client,
            options,
            shutdown: leading,
            credentials,
            metrics: controller_metrics,
        };
        run_controllers(ctx, selection)
    };
    let result = match elector {
        Some(elector) => elector.run(shutdown.clone(), work).await,
        None => work(shutdown.clone()).await,
    };
    shutdown.cancel();
    if let Some((_, task)) = server {
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    result
}

/// Starts every enabled controller and waits until `ctx.shutdown` is cancelled. A controller
/// that fails stops the manager, as upstream's does when a controller cannot start.
async fn run_controllers(ctx: ControllerContext, selection: Selection) -> anyhow::Result<()> {
    let leading = ctx.shutdown.clone();
    let mut tasks = tokio::task::JoinSet::new();
    for (name, descriptor) in registry::enabled(&selection, &ctx.options.feature_gates) {
        tracing::info!(controller = name, "Starting controller");
        let future = (descriptor.start)(ctx.clone());
        tasks.spawn(async move { (name, future.await) });
    }
    let mut failure = None;
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok((name, Ok(()))) => tracing::info!(controller = name, "Controller stopped"),
            Ok((name, Err(e))) => {
                tracing::error!(controller = name, error = %format!("{e:#}"), "Controller failed");
                failure.get_or_insert_with(|| e.context(format!("controller {name}")));
                leading.cancel();
            }
            Err(e) => {
                failure.get_or_insert_with(|| anyhow::anyhow!("controller task panicked: {e}"));
                leading.cancel();
            }
        }
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
