//! Starting the kubelet: options, host checks, runtime and API connections, cgroups, the
//! node, the pod network config, the servers and the pod manager — then running until a
//! termination signal. Stopping the kubelet stops no container (a restart re-adopts them).

use crate::config::Options;
use crate::cri::{Cri, CriHandle, CriService};
use crate::manager::{self, Shared};
use crate::node::sync::{pod_cidr, NodeSync};
use crate::runtime::config::NodeContext;
use crate::runtime::PodRuntime;
use crate::volumes::ApiVolumeSource;
use anyhow::{Context, Result};
use component_base::client::ClientOptions;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

async fn connect_runtime(endpoint: &str) -> Result<CriHandle> {
    let mut last = None;
    for _ in 0..30 {
        match Cri::connect(endpoint).await {
            Ok(c) if c.runtime_version().await.is_ok() => return Ok(Arc::new(c)),
            Ok(_) => {}
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("runtime did not answer Version")))
        .context("container runtime is not available")
}

/// The cgroup manager of the configured driver; with systemd, failing when systemd cannot
/// be reached (upstream: "systemd not running on this host, cannot use systemd cgroups
/// manager").
fn cgroup_manager(
    driver: crate::cgroups::CgroupDriver,
) -> Result<Box<dyn crate::cgroups::CgroupManager>> {
    let manager = crate::cgroups::for_driver(driver).with_context(|| {
        format!(
            "cgroupDriver \"{driver}\": systemd not running on this host (its D-Bus is not \
             reachable), cannot use systemd cgroups manager; set cgroupDriver: cgroupfs or run \
             the kubelet where systemd is PID 1"
        )
    })?;
    tracing::info!(cgroup_driver = %driver, cgroup_version = manager.version(), "Using cgroup driver");
    Ok(manager)
}

/// Runs the kubelet with resolved options until SIGTERM/SIGINT.
pub async fn run(mut opts: Options) -> Result<()> {
    if !opts.unimplemented.is_empty() {
        tracing::warn!(fields = %opts.unimplemented.join(","), "KubeletConfiguration fields accepted for compatibility but not implemented by ferrokube; they are ignored");
    }
    opts.validate_host()?;
    if crate::cgroups::is_v1() {
        tracing::warn!("cgroup v1 support is in maintenance mode, please migrate to cgroup v2");
    }
    let stop = component_base::shutdown::on_signal();
    let cri = connect_runtime(&opts.runtime_endpoint).await?;
    let runtime_version = cri.runtime_version().await?;
    match crate::cri::cgroup_driver(cri.as_ref()).await? {
        Some(driver) => {
            tracing::info!(cgroup_driver = %driver, "Using cgroup driver setting received from the CRI runtime");
            opts.cgroup_driver = driver;
        }
        None => tracing::info!(
            "CRI implementation should be updated to support RuntimeConfig. Falling back to using cgroupDriver from kubelet config."
        ),
    }
    tracing::info!(runtime = %runtime_version, endpoint = %opts.runtime_endpoint, "Container runtime connected");
    let mut client_opts = ClientOptions::new("kubelet");
    client_opts.kubeconfig = opts.kubeconfig.clone();
    client_opts.qps = opts.api_qps_burst.0;
    client_opts.burst = opts.api_qps_burst.1;
    let (client, client_certificate) =
        crate::certificate::apiserver_client(&opts, &client_opts, &stop).await?;
    let facts = crate::node::host::gather(&opts.root_dir);
    let cgroups: Arc<dyn crate::cgroups::CgroupManager> =
        Arc::from(cgroup_manager(opts.cgroup_driver)?);
    let ctx = NodeContext {
        pod_logs_dir: opts.pod_logs_dir.clone(),
        cgroups: crate::cgroups::Hierarchy::with_driver(&opts.cgroup_root, opts.cgroup_driver),
        cluster_dns: opts.cluster_dns.clone(),
        cluster_domain: opts.cluster_domain.clone(),
        host_resolv_conf: std::fs::read_to_string(&opts.resolv_conf).unwrap_or_default(),
        memory_capacity: facts.memory,
    };
    let runtime = PodRuntime {
        cri: cri.clone(),
        cgroups,
        ctx,
        root_dir: opts.root_dir.clone(),
        image_manager: Default::default(),
    };
    std::fs::create_dir_all(opts.root_dir.join("pods")).context("create the root dir")?;
    let thresholds =
        crate::eviction::threshold::parse_all(&crate::eviction::threshold::EvictionConfig {
            hard: opts.eviction_hard.clone(),
            ..opts.eviction_soft.clone()
        })?;
    if opts.cgroups_per_qos {
        // enforceNodeAllocatable=pods: kubepods gets capacity minus kube/system reserved
        // (hard eviction thresholds are not part of the cgroup limit, as upstream).
        let reserved = [&opts.kube_reserved, &opts.system_reserved];
        let enforce = opts.enforce_node_allocatable.iter().any(|l| l == "pods");
        let cpu = crate::node::host::allocatable(facts.cpus * 1000, &reserved, "cpu", 0);
        let memory =
            enforce.then(|| crate::node::host::allocatable(facts.memory, &reserved, "memory", 0));
        runtime
            .ctx
            .cgroups
            .ensure_top(runtime.cgroups.as_ref(), cpu, memory)
            .context("create the kubepods cgroups")?;
        tracing::info!(cpu_milli = cpu, memory = ?memory, "Node allocatable enforced on kubepods");
    }
    let (pressure_tx, pressure_rx) = tokio::sync::watch::channel(BTreeSet::new());
    let admission_pressure = pressure_rx.clone();
    // The pod manager starts after node registration; node status reads its pods once it is up.
    let shared_cell: Arc<std::sync::OnceLock<Arc<Shared>>> = Arc::default();
    let cell = shared_cell.clone();
    let node_sync = NodeSync {
        client: client.clone(),
        cri: cri.clone(),
        opts: opts.clone(),
        reserved: (opts.kube_reserved.clone(), opts.system_reserved.clone()),
        pressure: Some(pressure_rx),
        pods: Some(Arc::new(move || {
            cell.get()
                .map(|s| {
                    let pods = s.pods.lock().unwrap_or_else(|e| e.into_inner());
                    pods.values().cloned().collect()
                })
                .unwrap_or_default()
        })),
    };
    // Upstream's birth cry.
    crate::events::Recorder::new(client.clone(), &opts.node_name).node_event(
        &opts.node_name,
        crate::events::EventType::Normal,
        crate::events::reason::STARTING,
        "Starting kubelet.",
    );
    // Registration and node status go on in the background: the kubelet serves /healthz and
    // runs static pods before (and without) an API server, as kubeadm's control plane needs.
    tokio::spawn(node_sync.register_and_run(stop.clone()));
    // The pod network: the podCIDR to the runtime; our conflist only when opted in.
    let (cni_client, cni_opts, cni_cri) = (client.clone(), opts.clone(), cri.clone());
    tokio::spawn(async move {
        if let Some(cidr) = pod_cidr(&cni_client, &cni_opts, Duration::from_secs(600)).await {
            configure_pod_network(&cidr);
            if let Err(e) = crate::cni::update_runtime_config(cni_cri.as_ref(), &cidr).await {
                tracing::warn!(error = %e, "UpdateRuntimeConfig failed");
            }
        }
    });
    let host_ips = opts.node_ips.iter().map(|ip| ip.to_string()).collect();
    let shared = Arc::new(Shared::new(
        client.clone(),
        runtime,
        host_ips,
        crate::node::status::downward_allocatable(&opts, &facts),
        Arc::new(ApiVolumeSource::new(client.clone())),
        runtime_version
            .split("://")
            .next()
            .unwrap_or("containerd")
            .to_string(),
    ));
    let _ = shared_cell.set(shared.clone());
    let health = component_base::server::Health::default();
    health.add_shutdown_check(stop.clone());
    let metrics = component_base::metrics::Metrics::new();
    crate::image::gc::metrics::register(&metrics);
    crate::metrics::register(&metrics);
    // Resource usage for /stats/summary and /metrics/resource; the sampler keeps the CPU
    // rates fresh as upstream's eviction manager does every 10 s.
    let stats = Arc::new(crate::stats::StatsProvider::new(
        shared.clone(),
        opts.node_name.clone(),
    ));
    tokio::spawn(stats.clone().run_sampler(stop.clone()));
    let mut names = vec![opts.node_name.clone()];
    names.extend(opts.node_ips.iter().map(|ip| ip.to_string()));
    let bootstrapped = if opts.server_tls_bootstrap {
        Some(crate::certificate::serving_certificate(
            &opts, &client, &stop,
        )?)
    } else {
        None
    };
    crate::certificate::metrics::register(&metrics, client_certificate, bootstrapped.clone());
    let server_settings = crate::server::ServerSettings {
        healthz: opts.healthz,
        api: opts.server,
        tls: crate::server::tls::TlsSettings {
            files: opts.tls.clone(),
            cert_dir: opts.cert_dir.clone(),
            names,
            client_ca: opts.auth.client_ca_file.clone(),
            bootstrapped,
        },
        auth: opts.auth.clone(),
        node_name: opts.node_name.clone(),
        resources: crate::server::resources::Resources {
            stats: stats.clone(),
            configz: Arc::new(crate::server::configz::document(&opts)),
        },
    };
    crate::server::start(
        shared.clone(),
        health,
        metrics,
        server_settings,
        stop.clone(),
    )
    .await?;
    let statics = opts.static_pod_path.clone().map(|path| {
        tracing::info!(path = %path.display(), "Adding static pod path");
        let rx = crate::static_pods::watch_path(
            path,
            opts.node_name.clone(),
            opts.file_check_frequency,
            stop.clone(),
        );
        tokio::spawn(crate::static_pods::mirror::run(
            client.clone(),
            opts.node_name.clone(),
            rx.clone(),
            Duration::from_secs(10),
            stop.clone(),
        ));
        rx
    });
    // Garbage collection of dead containers (every minute) and unused images (5 minutes).
    let recorder = crate::events::Recorder::new(client.clone(), &opts.node_name);
    let runtime_root = std::path::PathBuf::from("/var/lib/containerd");
    let image_gc = Arc::new(crate::image::gc::ImageGc::new(
        cri.clone(),
        opts.image_gc,
        recorder.clone(),
        &opts.node_name,
        runtime_root.clone(),
    ));
    tokio::spawn(image_gc.clone().run(stop.clone()));
    let pods = shared.clone();
    let pod_of: crate::container_gc::PodLookupFunc = Arc::new(move |uid| pods.pod(uid));
    let container_gc = Arc::new(crate::container_gc::ContainerGc::new(
        cri.clone(),
        shared.runtime.ctx.pod_logs_dir.clone(),
        pod_of,
    ));
    tokio::spawn(
        container_gc
            .clone()
            .run(recorder.clone(), opts.node_name.clone(), stop.clone()),
    );
    let (evict_tx, evict_rx) = tokio::sync::mpsc::unbounded_channel();
    let eviction = crate::eviction::Settings {
        thresholds,
        transition: opts.eviction_pressure_transition_period,
        nodefs: opts.root_dir.clone(),
        imagefs: runtime_root,
        cgroups: shared.runtime.ctx.cgroups.clone(),
        max_pod_grace_period: opts.eviction_max_pod_grace_period,
    };
    let reclaim = crate::eviction::NodeReclaim {
        image_gc: Some(image_gc),
        container_gc: Some(container_gc),
        recorder,
        node_name: opts.node_name.clone(),
    };
    let pods = shared.clone();
    let deps = crate::eviction::Deps {
        active_pods: Arc::new(move || pods.pod_list()),
        runtime: shared.runtime.clone(),
    };
    tokio::spawn(crate::eviction::run_with_reclaim(
        eviction,
        reclaim,
        deps,
        pressure_tx,
        evict_tx,
        stop.clone(),
    ));
    manager::run(
        shared,
        opts.node_name.clone(),
        statics,
        evict_rx,
        admission_pressure,
        stop.clone(),
    )
    .await;
    tracing::info!("Kubelet stopped; containers keep running and are re-adopted on restart");
    Ok(())
}

/// Writes ferrokube's bridge conflist for `cidr` when opted in (`FERROKUBE_CNI_BRIDGE`) and
/// no other party's config is in the conf dir, logging what was done.
fn configure_pod_network(cidr: &str) {
    use crate::cni::Configured;
    let dir = crate::cni::conf_dir();
    let done = crate::cni::BridgeNetwork::from_env()
        .and_then(|net| crate::cni::configure(&dir, net.as_ref(), cidr));
    match done {
        Ok(Configured::NotOptedIn) => tracing::info!(
            pod_cidr = %cidr,
            conf_dir = %dir.display(),
            "Writing no CNI config: the pod network is the cluster's (FERROKUBE_CNI_BRIDGE is unset)"
        ),
        Ok(Configured::Written(p)) => {
            tracing::info!(pod_cidr = %cidr, conflist = %p.display(), "Pod network configured")
        }
        Ok(Configured::LeftToOthers {
            foreign,
            removed_ours,
        }) => tracing::warn!(
            conf_dir = %dir.display(),
            configs = ?foreign,
            removed_ours,
            "Another CNI config is in the conf dir; leaving the pod network to it"
        ),
        Err(e) => tracing::warn!(error = %format!("{e:#}"), "Failed to configure the pod network"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::systemd::dbus::{PRIVATE_SOCKET, SYSTEM_BUS_SOCKET};
    use crate::cgroups::CgroupDriver;

    /// Without systemd (as on the machine the tests run on) the systemd driver refuses to
    /// start, naming the setting and the sockets tried; cgroupfs needs nothing.
    #[test]
    fn systemd_driver_without_systemd_is_a_clear_error() {
        assert!(cgroup_manager(CgroupDriver::Cgroupfs).is_ok());
        let systemd_here = std::path::Path::new(PRIVATE_SOCKET).exists()
            || std::path::Path::new(SYSTEM_BUS_SOCKET).exists()
            || std::env::var_os("DBUS_SYSTEM_BUS_ADDRESS").is_some();
        if systemd_here {
            return;
        }
        let err = format!("{:#}", cgroup_manager(CgroupDriver::Systemd).err().unwrap());
        assert!(err.starts_with("cgroupDriver \"systemd\": "), "{err}");
        assert!(err.contains("cannot use systemd cgroups manager"), "{err}");
        assert!(
            err.contains(PRIVATE_SOCKET) && err.contains(SYSTEM_BUS_SOCKET),
            "{err}"
        );
    }
}
