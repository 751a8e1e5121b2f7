//! The stats provider: lists sandboxes, running containers and their stats through CRI,
//! reads the node's, pods' and containers' cgroups, the filesystems and /proc, and
//! assembles the Summary. Updating reads (the periodic sampler) refresh the CPU rate
//! cache; API reads use the cached rates, as upstream's summary handler does.

use super::cadvisor;
use super::cgroup::CgroupSample;
use super::cgroupfs::CgroupFs;
use super::cpu_rate::CpuRates;
use super::fs::{disk_usage, files_usage, FsInfo};
use super::summary::{self as assemble, ContainerInput};
use super::types::{
    system_container, ContainerStats, FsStats, NodeStats, PodReference, PodStats, RuntimeStats,
    Summary, Time,
};
use super::volumes::{measure_pod, PodVolumeStats};
use crate::cri::labels::PodRef;
use crate::manager::Shared;
use crate::pod::qos::QosClass;
use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use k8s_cri::v1 as cri;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long measured volume usage is reused (upstream's `volumeStatsAggPeriod` default).
pub const VOLUME_STATS_PERIOD: Duration = Duration::from_secs(60);

/// How often the sampler refreshes the CPU rates (upstream's eviction manager refreshes
/// them on its 10 s monitoring interval).
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(10);

/// Builds Summaries for one node.
pub struct StatsProvider {
    shared: Arc<Shared>,
    node_name: String,
    cgroups: CgroupFs,
    kubelet_started: DateTime<Utc>,
    boot_time: Option<DateTime<Utc>>,
    mem_total: Option<u64>,
    rates: Mutex<CpuRates>,
    volumes: Mutex<HashMap<String, (Instant, PodVolumeStats)>>,
    /// The runtime's sandbox (pause) image, once known (the image label of sandboxes).
    sandbox_image: std::sync::OnceLock<String>,
}

/// What CRI said, gathered before the blocking part.
struct RuntimeView {
    sandboxes: HashMap<String, cri::PodSandbox>,
    containers: HashMap<String, cri::Container>,
    stats: Vec<cri::ContainerStats>,
    image_fs: Option<cri::FilesystemUsage>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl StatsProvider {
    /// A provider for node `node_name` over the kubelet's shared state.
    pub fn new(shared: Arc<Shared>, node_name: String) -> Self {
        StatsProvider {
            shared,
            node_name,
            cgroups: CgroupFs::host(),
            kubelet_started: Utc::now(),
            boot_time: super::host::boot_time(),
            mem_total: super::host::mem_total(),
            rates: Mutex::default(),
            volumes: Mutex::default(),
            sandbox_image: std::sync::OnceLock::new(),
        }
    }

    /// The full Summary (`/stats/summary`); `update` refreshes the CPU rate cache.
    pub async fn summary(self: &Arc<Self>, update: bool) -> Result<Summary> {
        self.collect(update, true).await
    }

    /// CPU and memory only (`?only_cpu_and_memory=true`, `/metrics/resource`).
    pub async fn cpu_and_memory(self: &Arc<Self>) -> Result<Summary> {
        self.collect(false, false).await
    }

    /// Refreshes the CPU rates every [`SAMPLE_INTERVAL`] until `stop`.
    pub async fn run_sampler(self: Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        loop {
            if let Err(e) = self.collect(true, false).await {
                tracing::debug!(error = %format!("{e:#}"), "Stats sampling failed");
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(SAMPLE_INTERVAL) => {}
            }
        }
    }

    async fn runtime_view(&self, full: bool) -> Result<RuntimeView> {
        let c = &self.shared.runtime.cri;
        let (sandboxes, containers, stats, image_fs) = tokio::join!(
            c.list_pod_sandbox(cri::ListPodSandboxRequest { filter: None }),
            c.list_containers(cri::ListContainersRequest { filter: None }),
            c.list_container_stats(cri::ListContainerStatsRequest { filter: None }),
            async {
                if full {
                    Some(c.image_fs_info(cri::ImageFsInfoRequest {}).await)
                } else {
                    None
                }
            },
        );
        let sandboxes = sandboxes.context("failed to list all pod sandboxes")?.items;
        let containers = containers
            .context("failed to list all containers")?
            .containers;
        let stats = stats.context("failed to list all container stats")?.stats;
        let image_fs = match image_fs {
            Some(r) => r
                .context("failed to get imageFs info")?
                .image_filesystems
                .into_iter()
                .next(),
            None => None,
        };
        Ok(RuntimeView {
            sandboxes: assemble::current_sandboxes(sandboxes)
                .into_iter()
                .map(|s| (s.id.clone(), s))
                .collect(),
            containers: assemble::running_containers(containers)
                .into_iter()
                .map(|c| (c.id.clone(), c))
                .collect(),
            stats,
            image_fs,
        })
    }

    async fn collect(self: &Arc<Self>, update: bool, full: bool) -> Result<Summary> {
        let view = self.runtime_view(full).await?;
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.assemble(view, update, full))
            .await
            .context("stats collection panicked")?
    }

    /// The CPU rate of `key` for a reading: updated or cached.
    fn rate(&self, key: &str, sample: &CgroupSample, update: bool) -> Option<u64> {
        let total = sample.cpu_usage_ns?;
        let mut rates = lock(&self.rates);
        if update {
            let at = sample.time.timestamp_nanos_opt().unwrap_or(0);
            rates.update(key, at, total)
        } else {
            rates.get(key)
        }
    }

    fn pod_cgroup(&self, uid: &str) -> Option<String> {
        let h = &self.shared.runtime.ctx.cgroups;
        [
            QosClass::Guaranteed,
            QosClass::Burstable,
            QosClass::BestEffort,
        ]
        .into_iter()
        .map(|q| h.pod(q, uid))
        .find(|p| self.cgroups.exists(p))
    }

    /// The pod's volume usage, measured again once the last measure is older than
    /// [`VOLUME_STATS_PERIOD`].
    fn pod_volumes(&self, uid: &str) -> PodVolumeStats {
        if let Some((at, v)) = lock(&self.volumes).get(uid) {
            if at.elapsed() < VOLUME_STATS_PERIOD {
                return v.clone();
            }
        }
        let Some(pod) = lock(&self.shared.pods).get(uid).cloned() else {
            return PodVolumeStats::default();
        };
        let measured = measure_pod(&pod, &self.shared.runtime.pod_dir(uid));
        lock(&self.volumes).insert(uid.to_string(), (Instant::now(), measured.clone()));
        measured
    }

    fn system_container(&self, name: &str, path: &str, update: bool) -> Option<ContainerStats> {
        let s = self.cgroups.sample(path)?;
        let rate = self.rate(&format!("cgroup:{path}"), &s, update);
        Some(ContainerStats {
            name: name.to_string(),
            start_time: Time(self.cgroups.created(path)),
            cpu: Some(assemble::cpu_of(&s, rate)),
            memory: assemble::memory_of(&s, None),
            swap: assemble::swap_of(&s),
            ..Default::default()
        })
    }

    fn assemble(&self, view: RuntimeView, update: bool, full: bool) -> Result<Summary> {
        let ctx = &self.shared.runtime.ctx;
        let root_dir = &self.shared.runtime.root_dir;
        let root_fs = FsInfo::of(root_dir)
            .with_context(|| format!("failed to get rootFs info of {}", root_dir.display()))?;
        let image_fs_info = view
            .image_fs
            .as_ref()
            .and_then(|f| f.fs_id.as_ref())
            .and_then(|id| FsInfo::of(std::path::Path::new(&id.mountpoint)));
        let mut pods: HashMap<String, (PodStats, Vec<ContainerInput>, String)> = HashMap::new();
        for s in view.stats {
            let Some(attrs) = &s.attributes else { continue };
            let Some(container) = view.containers.get(&attrs.id) else {
                continue;
            };
            let Some(sandbox) = view.sandboxes.get(&container.pod_sandbox_id) else {
                continue;
            };
            let pref = assemble::pod_ref(sandbox);
            let entry = pods.entry(sandbox.id.clone()).or_insert_with(|| {
                (
                    PodStats {
                        pod_ref: pref.clone(),
                        start_time: Time::from_unix_nanos(sandbox.created_at),
                        ..Default::default()
                    },
                    Vec::new(),
                    sandbox.id.clone(),
                )
            });
            let name = container
                .metadata
                .as_ref()
                .map(|m| m.name.clone())
                .unwrap_or_default();
            let pod_cgroup = self.pod_cgroup(&pref.uid);
            let cgroup = pod_cgroup.as_ref().and_then(|p| {
                let path = format!("{p}/{}", container.id);
                if full {
                    self.cgroups.sample_with_processes(&path)
                } else {
                    self.cgroups.sample(&path)
                }
            });
            let nano_cores = match &cgroup {
                Some(c) => self.rate(&container.id, c, update),
                None => s.cpu.as_ref().and_then(|cpu| {
                    let total = cpu.usage_core_nano_seconds.as_ref()?.value;
                    let mut rates = lock(&self.rates);
                    if update {
                        rates.update(&container.id, cpu.timestamp, total)
                    } else {
                        rates.get(&container.id)
                    }
                }),
            };
            let logs = full
                .then(|| {
                    let r = PodRef {
                        namespace: pref.namespace.clone(),
                        name: pref.name.clone(),
                        uid: pref.uid.clone(),
                    };
                    let dir = crate::runtime::config::pod_log_dir(ctx, &r).join(&name);
                    files_usage(&dir, &root_fs).ok()
                })
                .flatten();
            entry.1.push(ContainerInput {
                name,
                created_at: container.created_at,
                cri: Some(s.clone()),
                cgroup,
                nano_cores,
                image_fs: image_fs_info,
                logs,
            });
        }
        let mut out = Vec::with_capacity(pods.len());
        for (_, (mut pod, inputs, sandbox_id)) in pods {
            pod.containers = inputs
                .iter()
                .map(|c| assemble::container_stats(c, full))
                .collect();
            let uid = pod.pod_ref.uid.clone();
            let pod_cgroup = self.pod_cgroup(&uid);
            let pod_sample = pod_cgroup.as_ref().and_then(|p| self.cgroups.sample(p));
            let pod_rate = pod_sample
                .as_ref()
                .and_then(|s| self.rate(&format!("pod:{uid}"), s, update));
            let (cpu, memory) =
                assemble::pod_cpu_memory(pod_sample.as_ref(), pod_rate, &pod.containers);
            pod.cpu = cpu;
            pod.memory = memory;
            pod.swap = pod_sample.as_ref().and_then(assemble::swap_of);
            if full {
                pod.network = pod_cgroup
                    .as_ref()
                    .and_then(|p| {
                        self.cgroups
                            .first_pid(&self.cgroups.container(p, &sandbox_id))
                    })
                    .and_then(super::host::pid_network);
                let volumes = self.pod_volumes(&uid);
                let pod_dir = self.shared.runtime.pod_dir(&uid);
                let pod_logs = files_usage(
                    &crate::runtime::config::pod_log_dir(ctx, &to_pod_ref(&pod.pod_ref)),
                    &root_fs,
                )
                .ok();
                let etc_hosts = disk_usage(&pod_dir.join("etc-hosts"))
                    .ok()
                    .map(|(b, i)| FsStats {
                        time: Time::now(),
                        used_bytes: Some(b),
                        inodes_used: Some(i),
                        ..root_fs.totals(Time::now())
                    });
                pod.ephemeral_storage = Some(assemble::ephemeral_storage(
                    &root_fs,
                    Time::now(),
                    &pod.containers,
                    &volumes.ephemeral,
                    pod_logs.as_ref(),
                    etc_hosts.as_ref(),
                ));
                pod.volume_stats = volumes.ephemeral;
                pod.volume_stats.extend(volumes.persistent);
                pod.process_stats = assemble::process_stats(&inputs);
            }
            out.push(pod);
        }
        out.sort_by(|a, b| a.pod_ref.cmp(&b.pod_ref));
        if update {
            let now = Utc::now().timestamp_nanos_opt().unwrap_or(0);
            lock(&self.rates).expire(now);
            let live: std::collections::HashSet<&str> =
                out.iter().map(|p| p.pod_ref.uid.as_str()).collect();
            lock(&self.volumes).retain(|uid, _| live.contains(uid.as_str()));
        }
        Ok(Summary {
            node: self.node(
                update,
                full,
                &root_fs,
                view.image_fs.as_ref(),
                image_fs_info,
            ),
            pods: out,
        })
    }

    fn node(
        &self,
        update: bool,
        full: bool,
        root_fs: &FsInfo,
        image_fs: Option<&cri::FilesystemUsage>,
        image_fs_info: Option<FsInfo>,
    ) -> NodeStats {
        let root = self.cgroups.sample("/");
        let mut node = NodeStats {
            node_name: self.node_name.clone(),
            start_time: Time(self.boot_time),
            ..Default::default()
        };
        if let Some(s) = &root {
            let rate = self.rate("cgroup:/", s, update);
            node.cpu = Some(assemble::cpu_of(s, rate));
            node.memory = assemble::memory_of(s, self.mem_total);
            node.swap = assemble::swap_of(s);
        }
        let mut system = Vec::new();
        if let Some(own) = self.cgroups.of_pid(std::process::id()) {
            if let Some(mut k) = self.system_container(system_container::KUBELET, &own, update) {
                k.start_time = Time::at(self.kubelet_started);
                system.push(k);
            }
        }
        let kubepods = self.shared.runtime.ctx.cgroups.kubepods();
        system.extend(self.system_container(system_container::PODS, &kubepods, update));
        node.system_containers = system;
        if full {
            node.network = super::host::node_network();
            node.fs = Some(root_fs.whole(Time::now()));
            let image = image_fs.map(|f| FsStats {
                time: Time::from_unix_nanos(f.timestamp),
                used_bytes: f.used_bytes.as_ref().map(|v| v.value),
                inodes_used: f.inodes_used.as_ref().map(|v| v.value),
                ..image_fs_info
                    .map(|i| i.totals(Time::default()))
                    .unwrap_or_default()
            });
            node.runtime = Some(RuntimeStats {
                image_fs: image.clone(),
                container_fs: image,
            });
            node.rlimit = Some(super::host::rlimit());
        }
        node
    }
}

fn to_pod_ref(r: &PodReference) -> PodRef {
    PodRef {
        namespace: r.namespace.clone(),
        name: r.name.clone(),
        uid: r.uid.clone(),
    }
}

/// What `/metrics/cadvisor` needs from CRI: the current sandboxes, the running containers,
/// and image IDs' first tags.
struct CadvisorView {
    sandboxes: Vec<cri::PodSandbox>,
    containers: Vec<cri::Container>,
    image_names: HashMap<String, String>,
    sandbox_image: String,
    image_fs_mountpoint: Option<String>,
}

impl StatsProvider {
    /// The cAdvisor view of the node (`/metrics/cadvisor`): the root, pods and QoS
    /// cgroups, each pod's cgroup, sandbox and running containers, and the machine.
    pub async fn cadvisor(self: &Arc<Self>) -> cadvisor::Scrape {
        let view = match self.cadvisor_view().await {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "Couldn't get containers");
                None
            }
        };
        let this = self.clone();
        let scrape = tokio::task::spawn_blocking(move || cadvisor::Scrape {
            time: Utc::now(),
            machine: cadvisor::machine::read(),
            cgroups: view.map(|v| this.cadvisor_cgroups(v)),
        })
        .await;
        scrape.unwrap_or_else(|e| {
            tracing::error!(error = %e, "cAdvisor collection panicked");
            cadvisor::Scrape {
                time: Utc::now(),
                ..Default::default()
            }
        })
    }

    async fn cadvisor_view(&self) -> Result<CadvisorView> {
        let c = &self.shared.runtime.cri;
        let (sandboxes, containers, listed, image_fs) = tokio::join!(
            c.list_pod_sandbox(cri::ListPodSandboxRequest { filter: None }),
            c.list_containers(cri::ListContainersRequest { filter: None }),
            c.list_images(cri::ListImagesRequest { filter: None }),
            c.image_fs_info(cri::ImageFsInfoRequest {}),
        );
        let image_fs_mountpoint = image_fs.ok().and_then(|r| {
            let fs = r.image_filesystems.into_iter().next()?;
            Some(fs.fs_id?.mountpoint)
        });
        let sandboxes = sandboxes.context("failed to list all pod sandboxes")?.items;
        let containers = containers
            .context("failed to list all containers")?
            .containers;
        // Without image names the containers still count; their image label is CRI's.
        let image_names = match listed {
            Ok(r) => r
                .images
                .into_iter()
                .filter_map(|i| Some((i.id, i.repo_tags.into_iter().next()?)))
                .collect(),
            Err(e) => {
                tracing::debug!(error = %e, "Listing images for /metrics/cadvisor failed");
                HashMap::new()
            }
        };
        Ok(CadvisorView {
            sandbox_image: self.sandbox_image().await,
            image_fs_mountpoint,
            sandboxes: sandboxes
                .into_iter()
                .filter(|s| s.state == cri::PodSandboxState::SandboxReady as i32)
                .collect(),
            containers: assemble::running_containers(containers),
            image_names,
        })
    }

    /// The runtime's sandbox image from its verbose status (containerd reports its CRI
    /// config there), asked once; empty while unknown.
    async fn sandbox_image(&self) -> String {
        if let Some(image) = self.sandbox_image.get() {
            return image.clone();
        }
        match self.shared.runtime.cri.sandbox_image().await {
            Some(image) => self.sandbox_image.get_or_init(|| image).clone(),
            None => String::new(),
        }
    }

    /// The filesystems of the kubelet's root directory and the runtime's image store,
    /// once per device, for the root cgroup's `container_fs_*`.
    fn root_filesystems(&self, view: &CadvisorView) -> Vec<cadvisor::FsUsage> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut paths = vec![self.shared.runtime.root_dir.clone()];
        paths.extend(
            view.image_fs_mountpoint
                .as_ref()
                .map(std::path::PathBuf::from),
        );
        let mut out: Vec<cadvisor::FsUsage> = Vec::new();
        for p in paths {
            let (Some(device), Some(info)) = (
                cadvisor::machine::mount_source(&mountinfo, &p),
                FsInfo::of(&p),
            ) else {
                continue;
            };
            if out.iter().any(|f| f.device == device) {
                continue;
            }
            out.push(cadvisor::FsUsage {
                device,
                limit: info.capacity,
                usage: info.usage,
                inodes: info.inodes,
                inodes_free: info.inodes_free,
            });
        }
        out
    }

    /// One cgroup's reading with `labels`; `None` when the cgroup is gone.
    fn cadvisor_cgroup(
        &self,
        labels: cadvisor::CgroupLabels,
        created: Option<DateTime<Utc>>,
    ) -> Option<cadvisor::CgroupInfo> {
        let (spec, usage) = cadvisor::read::read(&self.cgroups, &labels.id)?;
        Some(cadvisor::CgroupInfo {
            created: created.or_else(|| self.cgroups.created(&labels.id)),
            labels,
            spec,
            usage: Some(usage),
            network: Vec::new(),
            filesystems: Vec::new(),
        })
    }

    fn cadvisor_cgroups(&self, view: CadvisorView) -> Vec<cadvisor::CgroupInfo> {
        let plain = |id: String| cadvisor::CgroupLabels {
            id,
            ..Default::default()
        };
        let mut out = Vec::new();
        if let Some(mut root) = self.cadvisor_cgroup(plain("/".into()), self.boot_time) {
            root.network = super::host::node_network()
                .map(|n| n.interfaces)
                .unwrap_or_default();
            root.filesystems = self.root_filesystems(&view);
            out.push(root);
        }
        let h = &self.shared.runtime.ctx.cgroups;
        let tops = [
            h.kubepods(),
            h.qos(QosClass::Burstable),
            h.qos(QosClass::BestEffort),
        ];
        out.extend(
            tops.into_iter()
                .filter_map(|id| self.cadvisor_cgroup(plain(id), None)),
        );
        let created = |ns: i64| Some(DateTime::from_timestamp_nanos(ns));
        for sandbox in &view.sandboxes {
            let pref = assemble::pod_ref(sandbox);
            let Some(pod_cgroup) = self.pod_cgroup(&pref.uid) else {
                continue;
            };
            let of_pod =
                |id: String, name: &str, container: &str, image: &str| cadvisor::CgroupLabels {
                    id,
                    name: name.to_string(),
                    image: image.to_string(),
                    pod: pref.name.clone(),
                    namespace: pref.namespace.clone(),
                    container: container.to_string(),
                };
            out.extend(self.cadvisor_cgroup(of_pod(pod_cgroup.clone(), "", "", ""), None));
            let sandbox_id = self.cgroups.container(&pod_cgroup, &sandbox.id);
            if let Some(mut s) = self.cadvisor_cgroup(
                of_pod(sandbox_id.clone(), &sandbox.id, "", &view.sandbox_image),
                created(sandbox.created_at),
            ) {
                s.network = self
                    .cgroups
                    .first_pid(&sandbox_id)
                    .and_then(super::host::pid_network)
                    .map(|n| n.interfaces)
                    .unwrap_or_default();
                out.push(s);
            }
            for c in view
                .containers
                .iter()
                .filter(|c| c.pod_sandbox_id == sandbox.id)
            {
                let cri_image = c.image.as_ref().map(|i| i.image.as_str()).unwrap_or("");
                let image = view
                    .image_names
                    .get(&c.image_ref)
                    .or_else(|| view.image_names.get(cri_image))
                    .map(String::as_str)
                    .unwrap_or(cri_image);
                let name = c.metadata.as_ref().map(|m| m.name.as_str()).unwrap_or("");
                out.extend(self.cadvisor_cgroup(
                    of_pod(
                        self.cgroups.container(&pod_cgroup, &c.id),
                        &c.id,
                        name,
                        image,
                    ),
                    created(c.created_at),
                ));
            }
        }
        out
    }
}
