//! Applies reconcile steps through CRI: creates sandboxes (pod cgroup, log directory),
//! starts containers (image per pull policy, env, mounts), stops them gracefully (preStop,
//! then SIGTERM → SIGKILL after the grace period, which CRI's StopContainer implements)
//! and cleans a pod up completely.

use super::config::{self, ContainerInputs, NodeContext};
use super::images::{self, ImageError};
use super::observe;
use super::runtime_class;
use crate::cgroups::CgroupManager;
use crate::cri::labels::PodRef;
use crate::cri::CriHandle;
use crate::events::{reason, EventType, Recorder};
use crate::pod::env::{self, EnvSources};
use crate::pod::observed::{ContainerState, ObservedPod};
use crate::pod::qos::{self, QosClass};
use crate::pod::reconcile::{compute_pod_actions_probed, ContainerKind, PodActions, ProbeKill};
use anyhow::{Context, Result};
use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::{Container, Pod};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How soon a container that failed to start for a reason other than an image pull (e.g.
/// CreateContainerConfigError) is tried again, as upstream's pod worker back-off period.
pub const START_RETRY: Duration = Duration::from_secs(10);

/// How long a failed StopContainer waits for the runtime to report the container exited
/// (the runtime handles a container's exit event asynchronously).
const EXIT_SETTLE: Duration = Duration::from_secs(2);

/// What a pod needs from outside the runtime to start its containers.
#[derive(Debug, Clone, Default)]
pub struct PodInputs {
    /// For environment variables.
    pub env: EnvSources,
    /// Host directories of the pod's volumes, by volume name.
    pub volumes: HashMap<String, PathBuf>,
    /// Running containers a failed liveness or startup probe condemns, by CRI id.
    pub unhealthy: BTreeMap<String, ProbeKill>,
    /// Where the pod's events go (Pulled, Created, Started, Killing, hook failures…).
    pub recorder: Recorder,
    /// The node's IPs: a hostNetwork pod's IPs, for httpGet hooks.
    pub host_ips: Vec<String>,
    /// The runtime handler of the pod's RuntimeClass (`None`: it names none, the default
    /// handler), or why it could not be read.
    pub runtime_handler: Option<Result<String, String>>,
}

impl PodInputs {
    /// The IP hooks and probes address by default: the sandbox's, else the node's.
    pub fn pod_ip(&self, sandbox_ips: &[String]) -> String {
        sandbox_ips
            .first()
            .or(self.host_ips.first())
            .cloned()
            .unwrap_or_default()
    }
}

/// Why a pod's sandbox could not be made; the text is what upstream's
/// `FailedCreatePodSandBox` event says after its prefix.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The pod's RuntimeClass could not be read (missing, or the API failed).
    #[error("{0}")]
    RuntimeClass(String),
    /// The runtime refused RunPodSandbox (e.g. no such handler, CNI failure).
    #[error("{}", crate::cri::grpc_error(.0))]
    Runtime(tonic::Status),
    /// The node side failed: the pod cgroup or the log/pod directories.
    #[error("{0:#}")]
    Node(anyhow::Error),
}

/// A container that could not start, with upstream's waiting reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartFailure {
    /// e.g. `ErrImagePull`, `CreateContainerConfigError`, `RunContainerError`.
    pub reason: String,
    /// Details.
    pub message: String,
}

/// The outcome of one sync of one pod.
#[derive(Debug, Clone, Default)]
pub struct SyncResult {
    /// The runtime's state after the sync.
    pub observed: ObservedPod,
    /// Containers waiting on something: name → (reason, message).
    pub waiting: BTreeMap<String, (String, String)>,
    /// When to sync again at the latest.
    pub requeue_after: Option<Duration>,
}

/// The kubelet's runtime side: CRI plus the node's cgroups and directories.
#[derive(Clone)]
pub struct PodRuntime {
    /// The container runtime (CRI).
    pub cri: CriHandle,
    /// The node's cgroup hierarchy.
    pub cgroups: Arc<dyn CgroupManager>,
    /// Settings for CRI configs.
    pub ctx: NodeContext,
    /// `--root-dir` (`/var/lib/kubelet`).
    pub root_dir: PathBuf,
    /// Image pulls and their back-off.
    pub image_manager: images::ImageManager,
}

fn grace_period(pod: &Pod) -> i64 {
    pod.metadata
        .deletion_grace_period_seconds
        .or_else(|| {
            pod.spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
        })
        .unwrap_or(30)
        .max(0)
}

/// Where and as what a container starts: its sandbox, the pod's IPs, the restart count to
/// record and, for a targeted ephemeral container, the target's CRI id.
#[derive(Debug, Clone)]
pub struct StartAt<'a> {
    /// The ready sandbox to create the container in.
    pub sandbox_id: &'a str,
    /// The sandbox's IPs (the pod's IPs).
    pub pod_ips: &'a [String],
    /// The restart count to record.
    pub restart_count: i32,
    /// The CRI id of the container whose process namespace this one joins.
    pub pid_target: Option<String>,
}

/// The CRI id of the running container that ephemeral container `name` targets in this
/// sandbox, `None` when it targets none; an error (the container waits and is tried again)
/// when the target is not running, as upstream's `getTargetID`.
fn ephemeral_pid_target(
    pod: &Pod,
    observed: &ObservedPod,
    sandbox_id: &str,
    name: &str,
) -> Result<Option<String>, StartFailure> {
    let Some(target) = crate::pod::containers::ephemeral_target(pod, name) else {
        return Ok(None);
    };
    observed
        .latest(target, Some(sandbox_id))
        .filter(|o| o.state == ContainerState::Running)
        .map(|o| Some(o.id.clone()))
        .ok_or_else(|| StartFailure {
            reason: "CreateContainerConfigError".into(),
            message: format!("unable to find target container {target}"),
        })
}

fn find_container<'a>(pod: &'a Pod, name: &str) -> Option<Cow<'a, Container>> {
    crate::pod::containers::find(pod, name).map(|(_, c)| c)
}

impl PodRuntime {
    /// The pod's directory under the root dir.
    pub fn pod_dir(&self, uid: &str) -> PathBuf {
        self.root_dir.join("pods").join(uid)
    }

    /// Creates the QoS cgroups (`kubepods`, `burstable`, `besteffort`).
    pub fn ensure_qos_cgroups(&self, allocatable_milli_cpu: i64) -> Result<()> {
        self.ctx
            .cgroups
            .ensure_top(self.cgroups.as_ref(), allocatable_milli_cpu, None)
            .context("create the kubepods cgroups")
    }

    /// One sync: applies reconcile steps until the pod needs nothing more right now.
    /// Start failures become waiting reasons, as upstream reports them.
    pub async fn sync_pod(
        &self,
        pod: &Pod,
        terminating: bool,
        inputs: &PodInputs,
    ) -> Result<SyncResult> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let mut result = SyncResult::default();
        for _ in 0..16 {
            let observed = observe::observe_pod(&self.cri, &uid).await?;
            let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
            let actions =
                compute_pod_actions_probed(pod, &observed, terminating, now, &inputs.unhealthy);
            for (name, (why, _)) in &actions.waiting {
                if why == "CrashLoopBackOff" {
                    let msg = format!(
                        "Back-off restarting failed container {name} in pod {}",
                        crate::hooks::pod_desc(pod)
                    );
                    inputs.recorder.pod_event(
                        pod,
                        Some(name),
                        EventType::Warning,
                        reason::BACK_OFF,
                        &msg,
                    );
                }
            }
            result.waiting.extend(actions.waiting.clone());
            result.requeue_after = actions.requeue_after;
            result.observed = observed.clone();
            if actions.is_noop() {
                return Ok(result);
            }
            let failures = self.apply(pod, &observed, &actions, inputs).await?;
            if !failures.is_empty() {
                let retry = failures
                    .iter()
                    .map(|(name, f)| self.retry_after(pod, name, f))
                    .min();
                for (name, f) in failures {
                    result.waiting.insert(name, (f.reason, f.message));
                }
                result.observed = observe::observe_pod(&self.cri, &uid).await?;
                result.requeue_after = retry;
                return Ok(result);
            }
        }
        Ok(result)
    }

    /// When to try a container that could not start again: an image pull when its
    /// back-off is over, anything else after [`START_RETRY`].
    fn retry_after(&self, pod: &Pod, name: &str, f: &StartFailure) -> Duration {
        if !matches!(f.reason.as_str(), "ErrImagePull" | "ImagePullBackOff") {
            return START_RETRY;
        }
        let image = find_container(pod, name)
            .and_then(|c| c.image.clone())
            .unwrap_or_default();
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        // A little past the end of the window, so the next sync is outside it.
        self.image_manager.backoff_remaining(uid, &image) + Duration::from_millis(50)
    }

    /// Applies one step; returns containers that could not start.
    pub async fn apply(
        &self,
        pod: &Pod,
        observed: &ObservedPod,
        actions: &PodActions,
        inputs: &PodInputs,
    ) -> Result<Vec<(String, StartFailure)>> {
        if actions.kill_pod {
            self.kill_pod_with(pod, observed, grace_period(pod), inputs)
                .await?;
        }
        if let Some(attempt) = actions.create_sandbox {
            self.create_sandbox(pod, attempt, inputs).await?;
            return Ok(Vec::new());
        }
        let pod_ip = inputs.pod_ip(observed.sandbox().map(|s| &s.ips[..]).unwrap_or(&[]));
        for (id, name, why) in &actions.kill {
            tracing::info!(pod = ?pod.metadata.name, container = %name, reason = %why, "Killing container");
            let c = find_container(pod, name);
            let c = c.as_deref();
            let grace = actions
                .kill_grace
                .get(id)
                .copied()
                .unwrap_or_else(|| grace_period(pod));
            let message = (why != "not started").then_some(why.as_str());
            let hooks = HookContext {
                pod,
                inputs,
                pod_ip: &pod_ip,
                message,
            };
            self.kill_container_with(id, c, grace, Some(&hooks)).await?;
        }
        let mut failures = Vec::new();
        let Some(sandbox) = observed.sandbox().filter(|s| s.ready) else {
            return Ok(failures);
        };
        for start in &actions.start {
            let Some(c) = find_container(pod, &start.name) else {
                continue;
            };
            let pid_target = match start.kind {
                ContainerKind::Ephemeral => {
                    match ephemeral_pid_target(pod, observed, &sandbox.id, &c.name) {
                        Ok(target) => target,
                        Err(f) => {
                            failures.push((c.name.clone(), f));
                            continue;
                        }
                    }
                }
                _ => None,
            };
            let at = StartAt {
                sandbox_id: &sandbox.id,
                pod_ips: &sandbox.ips,
                restart_count: start.restart_count,
                pid_target,
            };
            if let Err(f) = self.start_container(pod, &c, &at, inputs).await {
                tracing::warn!(pod = ?pod.metadata.name, container = %c.name, reason = %f.reason, message = %f.message, "Container did not start");
                failures.push((c.name.clone(), f));
            }
        }
        Ok(failures)
    }

    /// Creates the pod cgroup and log directory, then the sandbox with the handler of the
    /// pod's RuntimeClass. A sandbox that cannot be made is a `FailedCreatePodSandBox`
    /// event, as upstream's.
    pub async fn create_sandbox(
        &self,
        pod: &Pod,
        attempt: u32,
        inputs: &PodInputs,
    ) -> Result<String> {
        let created = self.try_create_sandbox(pod, attempt, inputs).await;
        if let Err(why) = &created {
            inputs.recorder.pod_event(
                pod,
                None,
                EventType::Warning,
                reason::FAILED_CREATE_POD_SANDBOX,
                &runtime_class::sandbox_failure_message(&why.to_string()),
            );
        }
        created.map_err(anyhow::Error::new)
    }

    async fn try_create_sandbox(
        &self,
        pod: &Pod,
        attempt: u32,
        inputs: &PodInputs,
    ) -> Result<String, SandboxError> {
        let runtime_handler = inputs
            .runtime_handler
            .clone()
            .unwrap_or(Ok(String::new()))
            .map_err(SandboxError::RuntimeClass)?;
        self.run_sandbox(pod, attempt, runtime_handler).await
    }

    async fn run_sandbox(
        &self,
        pod: &Pod,
        attempt: u32,
        runtime_handler: String,
    ) -> Result<String, SandboxError> {
        let r = config::pod_ref(pod);
        let qos_class = qos::qos_class(pod);
        let limits = qos::pod_cgroup_config(pod);
        let cgroup = self.ctx.cgroups.pod(qos_class, &r.uid);
        self.cgroups
            .apply(&cgroup, &limits)
            .with_context(|| format!("create pod cgroup {cgroup}"))
            .map_err(SandboxError::Node)?;
        let sandbox = config::sandbox_config(&self.ctx, pod, attempt);
        std::fs::create_dir_all(&sandbox.log_directory)
            .with_context(|| format!("create {}", sandbox.log_directory))
            .map_err(SandboxError::Node)?;
        std::fs::create_dir_all(self.pod_dir(&r.uid).join("containers"))
            .map_err(|e| SandboxError::Node(e.into()))?;
        let response = self
            .cri
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(sandbox),
                runtime_handler,
            })
            .await
            .map_err(SandboxError::Runtime)?;
        Ok(response.pod_sandbox_id)
    }

    /// Resolves env, image and mounts, then creates and starts one container.
    pub async fn start_container(
        &self,
        pod: &Pod,
        c: &Container,
        at: &StartAt<'_>,
        inputs: &PodInputs,
    ) -> Result<String, StartFailure> {
        let (sandbox_id, pod_ips, restart_count) = (at.sandbox_id, at.pod_ips, at.restart_count);
        let image = c.image.clone().unwrap_or_default();
        let recorder = &inputs.recorder;
        let event = |type_: EventType, why: &str, msg: &str| {
            recorder.pod_event(pod, Some(&c.name), type_, why, msg)
        };
        if let Err(e) = self
            .image_manager
            .ensure_image(self.cri.as_ref(), pod, c, recorder)
            .await
        {
            event(
                EventType::Warning,
                reason::FAILED,
                &format!("Error: {}", e.reason()),
            );
            return Err(e.into());
        }
        // A container whose config cannot be built (env, mounts, subPaths) waits with
        // CreateContainerConfigError and a Failed event, as upstream's startContainer.
        let config_error = |message: String| {
            event(
                EventType::Warning,
                reason::FAILED,
                &format!("Error: {message}"),
            );
            StartFailure {
                reason: "CreateContainerConfigError".into(),
                message,
            }
        };
        let mut sources = inputs.env.clone();
        sources.pod_ips = pod_ips.to_vec();
        let env = env::container_env(pod, c, &sources).map_err(|e| config_error(e.to_string()))?;
        let command = env::command_line(c, &env);
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let pod_dir = self.pod_dir(&uid);
        let mount_sources =
            crate::volumes::subpath::mount_sources(&pod_dir, c, &inputs.volumes, &env)
                .map_err(config_error)?;
        let termination_log = config::termination_log_path(&pod_dir, &c.name, restart_count);
        let io_err = |e: std::io::Error| config_error(e.to_string());
        if let Some(dir) = termination_log.parent() {
            std::fs::create_dir_all(dir).map_err(io_err)?;
        }
        std::fs::write(&termination_log, b"").map_err(io_err)?;
        // World-writable, as upstream: a container running as any user writes its message.
        std::fs::set_permissions(
            &termination_log,
            std::os::unix::fs::PermissionsExt::from_mode(0o666),
        )
        .map_err(io_err)?;
        let host_network = pod
            .spec
            .as_ref()
            .and_then(|s| s.host_network)
            .unwrap_or(false);
        let etc_hosts = if host_network {
            None
        } else {
            let path = pod_dir.join("etc-hosts");
            std::fs::write(&path, etc_hosts_file(pod, pod_ips)).map_err(io_err)?;
            Some(path)
        };
        let container_inputs = ContainerInputs {
            env,
            command,
            mount_sources,
            termination_log: Some(termination_log),
            etc_hosts,
            image,
            pid_target: at.pid_target.clone(),
        };
        let sandbox_config = config::sandbox_config(&self.ctx, pod, 0);
        let cfg = config::container_config(&self.ctx, pod, c, restart_count, &container_inputs);
        let rt = &self.cri;
        let created = rt
            .create_container(cri::CreateContainerRequest {
                pod_sandbox_id: sandbox_id.to_string(),
                config: Some(cfg),
                sandbox_config: Some(sandbox_config),
            })
            .await
            .map_err(|s| {
                event(
                    EventType::Warning,
                    reason::FAILED,
                    &format!("Error: {}", s.message()),
                );
                StartFailure {
                    reason: "CreateContainerError".into(),
                    message: s.message().to_string(),
                }
            })?
            .container_id;
        event(EventType::Normal, reason::CREATED, "Container created");
        rt.start_container(cri::StartContainerRequest {
            container_id: created.clone(),
        })
        .await
        .map_err(|s| {
            let msg = crate::events::scrub_id(s.message(), &created, &c.name);
            event(EventType::Warning, reason::FAILED, &format!("Error: {msg}"));
            StartFailure {
                reason: "RunContainerError".into(),
                message: s.message().to_string(),
            }
        })?;
        event(EventType::Normal, reason::STARTED, "Container started");
        // The postStart hook runs before the container counts as started; when it fails the
        // container is killed and restarts per the restart policy, as upstream.
        if let Some(post_start) = c.lifecycle.as_ref().and_then(|l| l.post_start.as_ref()) {
            let pod_ip = inputs.pod_ip(pod_ips);
            if let Err(msg) =
                crate::hooks::run(self.cri.as_ref(), pod, c, &created, post_start, &pod_ip).await
            {
                tracing::warn!(pod = ?pod.metadata.name, container = %c.name, error = %msg, "Failed to execute PostStartHook");
                event(
                    EventType::Warning,
                    reason::FAILED_POST_START_HOOK,
                    "PostStartHook failed",
                );
                let hooks = HookContext {
                    pod,
                    inputs,
                    pod_ip: &pod_ip,
                    message: Some("FailedPostStartHook"),
                };
                if let Err(e) = self
                    .kill_container_with(&created, Some(c), grace_period(pod), Some(&hooks))
                    .await
                {
                    tracing::warn!(container = %c.name, error = %format!("{e:#}"), "Failed to kill container");
                }
                return Err(StartFailure {
                    reason: "PostStartHookError".into(),
                    message: msg.to_string(),
                });
            }
        }
        Ok(created)
    }

    /// Stops one container: its preStop hook (within the grace period), then CRI's
    /// StopContainer (SIGTERM, SIGKILL when the rest of the grace period is over).
    pub async fn kill_container(
        &self,
        id: &str,
        c: Option<&Container>,
        grace_secs: i64,
    ) -> Result<()> {
        self.kill_container_with(id, c, grace_secs, None).await
    }

    /// [`PodRuntime::kill_container`], recording a Killing event (and FailedPreStopHook)
    /// when the pod is known.
    async fn kill_container_with(
        &self,
        id: &str,
        c: Option<&Container>,
        grace_secs: i64,
        ctx: Option<&HookContext<'_>>,
    ) -> Result<()> {
        let pod_ip = ctx.map(|x| x.pod_ip).unwrap_or("");
        self.kill_container_at(id, c, grace_secs, ctx, pod_ip).await
    }

    /// [`PodRuntime::kill_container_with`] with HTTP hooks aimed at `pod_ip`.
    async fn kill_container_at(
        &self,
        id: &str,
        c: Option<&Container>,
        grace_secs: i64,
        ctx: Option<&HookContext<'_>>,
        pod_ip: &str,
    ) -> Result<()> {
        let started = std::time::Instant::now();
        if let (Some(ctx), Some(c)) = (ctx, c) {
            let message = ctx
                .message
                .map(str::to_string)
                .unwrap_or_else(|| format!("Stopping container {}", c.name));
            ctx.inputs.recorder.pod_event(
                ctx.pod,
                Some(&c.name),
                EventType::Normal,
                reason::KILLING,
                &message,
            );
        }
        let pre_stop = c
            .and_then(|c| c.lifecycle.as_ref())
            .and_then(|l| l.pre_stop.as_ref());
        if let (Some(hook), Some(c)) = (pre_stop, c) {
            let placeholder = Pod::default();
            let pod = ctx.map(|x| x.pod).unwrap_or(&placeholder);
            let limit = Duration::from_secs(grace_secs.max(0) as u64);
            let run = crate::hooks::run(self.cri.as_ref(), pod, c, id, hook, pod_ip);
            match tokio::time::timeout(limit, run).await {
                Ok(Ok(())) => {}
                Ok(Err(msg)) => {
                    tracing::warn!(container = %c.name, error = %msg, "PreStop hook failed");
                    if let Some(ctx) = ctx {
                        ctx.inputs.recorder.pod_event(
                            ctx.pod,
                            Some(&c.name),
                            EventType::Warning,
                            reason::FAILED_PRE_STOP_HOOK,
                            "PreStopHook failed",
                        );
                    }
                }
                Err(_) => {
                    tracing::info!(container = %c.name, grace_secs, "PreStop hook not completed in grace period")
                }
            }
        }
        // Upstream gives at least 2 seconds after the hook.
        let left = (grace_secs - started.elapsed().as_secs() as i64).max(2);
        let stopped = self
            .cri
            .stop_container(cri::StopContainerRequest {
                container_id: id.to_string(),
                timeout: left,
            })
            .await;
        match stopped {
            Ok(_) => Ok(()),
            // Gone already: nothing left to stop, as upstream's killContainer.
            Err(s) if s.code() == tonic::Code::NotFound => Ok(()),
            // A container that exits while it is being stopped can make the runtime fail
            // the call (containerd: "ttrpc: closed"); what counts is whether it still runs
            // once the runtime has taken note of the exit.
            Err(s) if self.exits_soon(id).await => {
                tracing::debug!(container = %id, error = %s.message(), "StopContainer failed but the container has exited");
                Ok(())
            }
            Err(s) => Err(anyhow::Error::new(s).context(format!("StopContainer {id}"))),
        }
    }

    /// Whether CRI reports container `id` exited (or gone) within [`EXIT_SETTLE`].
    async fn exits_soon(&self, id: &str) -> bool {
        let deadline = std::time::Instant::now() + EXIT_SETTLE;
        loop {
            if self.has_exited(id).await {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether CRI reports container `id` exited (or no longer knows it).
    async fn has_exited(&self, id: &str) -> bool {
        match self.cri.container_status_of(id).await {
            Ok(status) => {
                status.is_some_and(|s| s.state == cri::ContainerState::ContainerExited as i32)
            }
            Err(s) => s.code() == tonic::Code::NotFound,
        }
    }

    /// Stops every container of the pod in parallel, then its sandboxes.
    pub async fn kill_pod(&self, pod: &Pod, observed: &ObservedPod, grace_secs: i64) -> Result<()> {
        self.kill_pod_inner(pod, observed, grace_secs, None).await
    }

    /// [`PodRuntime::kill_pod`] with events and hooks addressed through `inputs`.
    pub async fn kill_pod_with(
        &self,
        pod: &Pod,
        observed: &ObservedPod,
        grace_secs: i64,
        inputs: &PodInputs,
    ) -> Result<()> {
        self.kill_pod_inner(pod, observed, grace_secs, Some(inputs))
            .await
    }

    async fn kill_pod_inner(
        &self,
        pod: &Pod,
        observed: &ObservedPod,
        grace_secs: i64,
        inputs: Option<&PodInputs>,
    ) -> Result<()> {
        let sandbox_ips = observed.sandbox().map(|s| &s.ips[..]).unwrap_or(&[]);
        // Without inputs (an orphan's restored pod) HTTP hooks aim at the sandbox's IP.
        let pod_ip = match inputs {
            Some(i) => i.pod_ip(sandbox_ips),
            None => sandbox_ips.first().cloned().unwrap_or_default(),
        };
        let ctx = inputs.map(|inputs| HookContext {
            pod,
            inputs,
            pod_ip: &pod_ip,
            message: None,
        });
        let running = observed
            .containers
            .iter()
            .filter(|c| matches!(c.state, ContainerState::Running | ContainerState::Created));
        let specs: Vec<_> = running.map(|c| (c, find_container(pod, &c.name))).collect();
        let kills = specs.iter().map(|(c, spec)| {
            self.kill_container_at(&c.id, spec.as_deref(), grace_secs, ctx.as_ref(), &pod_ip)
        });
        for r in futures::future::join_all(kills).await {
            r?;
        }
        for sb in observed.sandboxes.iter().filter(|s| s.ready) {
            let stopped = self
                .cri
                .stop_pod_sandbox(cri::StopPodSandboxRequest {
                    pod_sandbox_id: sb.id.clone(),
                })
                .await;
            match stopped {
                Err(s) if s.code() != tonic::Code::NotFound => {
                    return Err(anyhow::Error::new(s).context(format!("StopPodSandbox {}", sb.id)))
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The pod a running orphan (a pod deleted while the kubelet was down) was created from,
    /// as far as its containers' annotations record it (see [`super::restore`]).
    pub async fn restore_pod(&self, r: &PodRef, observed: &ObservedPod) -> Pod {
        let mut containers = Vec::new();
        for c in observed
            .containers
            .iter()
            .filter(|c| matches!(c.state, ContainerState::Running | ContainerState::Created))
        {
            let status = self.cri.container_status_of(&c.id).await.ok().flatten();
            let annotations = status.map(|s| s.annotations).unwrap_or_default();
            containers.push((c.name.clone(), annotations));
        }
        super::restore::restored_pod(r, &containers)
    }

    /// Removes everything of a pod that has stopped: containers, sandboxes, the pod cgroup
    /// and the pod directory (logs stay, as upstream's log GC owns them).
    pub async fn remove_pod(&self, r: &PodRef, observed: &ObservedPod) -> Result<()> {
        let rt = &self.cri;
        for c in &observed.containers {
            rt.remove_container(cri::RemoveContainerRequest {
                container_id: c.id.clone(),
            })
            .await?;
        }
        for sb in &observed.sandboxes {
            rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: sb.id.clone(),
            })
            .await?;
            rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: sb.id.clone(),
            })
            .await?;
        }
        for qos_class in [
            QosClass::Guaranteed,
            QosClass::Burstable,
            QosClass::BestEffort,
        ] {
            let path = self.ctx.cgroups.pod(qos_class, &r.uid);
            if self.cgroups.exists(&path) {
                self.cgroups
                    .remove(&path)
                    .with_context(|| format!("remove cgroup {path}"))?;
            }
        }
        crate::volumes::teardown_pod_dir(&self.pod_dir(&r.uid))?;
        Ok(())
    }
}

/// What killing a container of a known pod needs for its events and hooks.
struct HookContext<'a> {
    pod: &'a Pod,
    inputs: &'a PodInputs,
    pod_ip: &'a str,
    /// The Killing event's message; `Stopping container <name>` when `None`.
    message: Option<&'a str>,
}

/// The kubelet-managed /etc/hosts of a pod, as upstream writes it.
pub fn etc_hosts_file(pod: &Pod, pod_ips: &[String]) -> String {
    let mut out = String::from(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
    );
    let spec = pod.spec.as_ref();
    let hostname = config::hostname(pod);
    let fqdn = spec.and_then(|s| s.subdomain.clone()).map(|sub| {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        format!("{hostname}.{sub}.{ns}.svc.cluster.local")
    });
    for ip in pod_ips {
        match &fqdn {
            Some(f) => out.push_str(&format!("{ip}\t{f}\t{hostname}\n")),
            None => out.push_str(&format!("{ip}\t{hostname}\n")),
        }
    }
    let aliases = spec
        .and_then(|s| s.host_aliases.clone())
        .unwrap_or_default();
    if !aliases.is_empty() {
        out.push_str("\n# Entries added by HostAliases.\n");
        for a in aliases {
            out.push_str(&format!(
                "{}\t{}\n",
                a.ip,
                a.hostnames.unwrap_or_default().join("\t")
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests;

/// An [`ImageError`] as a start failure.
impl From<ImageError> for StartFailure {
    fn from(e: ImageError) -> Self {
        StartFailure {
            reason: e.reason().into(),
            message: e.message(),
        }
    }
}
