//! An in-memory container runtime for unit tests (the test double of [`CriService`], as
//! youki's `TestHelperSyscall` is of its `Syscall`): it keeps sandboxes, containers and
//! images as state, records every call, and fails the calls a test asks it to fail.
//! Containers never run anything: a test makes one exit with [`FakeCri::exit`].

use super::service::{CriFuture, CriService};
use k8s_cri::v1 as cri;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;

/// One sandbox the fake holds.
#[derive(Debug, Clone)]
pub struct FakeSandbox {
    /// Its config as the kubelet sent it.
    pub config: cri::PodSandboxConfig,
    /// The runtime handler asked for.
    pub runtime_handler: String,
    /// Ready until stopped.
    pub ready: bool,
    /// Creation time, ns.
    pub created_at: i64,
}

/// One container the fake holds.
#[derive(Debug, Clone)]
pub struct FakeContainer {
    /// Its sandbox.
    pub sandbox_id: String,
    /// Its config as the kubelet sent it.
    pub config: cri::ContainerConfig,
    /// CRI state.
    pub state: cri::ContainerState,
    /// Created/started/finished, ns (0: not yet).
    pub created_at: i64,
    /// When it started, ns.
    pub started_at: i64,
    /// When it exited, ns.
    pub finished_at: i64,
    /// Exit code once exited.
    pub exit_code: i32,
    /// The timeout of the last StopContainer.
    pub stop_timeout: Option<i64>,
}

/// Everything the fake holds.
#[derive(Debug, Default)]
pub struct FakeState {
    /// Sandboxes by ID.
    pub sandboxes: BTreeMap<String, FakeSandbox>,
    /// Containers by ID.
    pub containers: BTreeMap<String, FakeContainer>,
    /// Images present: reference → (ID, size).
    pub images: BTreeMap<String, (String, u64)>,
    /// Every call, in order: the RPC name and its main argument.
    pub calls: Vec<(String, String)>,
    /// Errors to return, per RPC name, first queued first.
    pub errors: HashMap<String, VecDeque<tonic::Status>>,
    /// What ExecSync answers: (exit code, stdout).
    pub exec_result: Option<(i32, Vec<u8>)>,
    next_id: u64,
    clock: i64,
}

/// The in-memory runtime.
#[derive(Debug, Default)]
pub struct FakeCri {
    state: Mutex<FakeState>,
}

/// The IP every ready fake sandbox has.
pub const SANDBOX_IP: &str = "10.244.0.7";

impl FakeCri {
    /// A runtime holding `images` (references), nothing else.
    pub fn with_images(images: &[&str]) -> Self {
        let fake = FakeCri::default();
        {
            let mut s = fake.lock();
            for (i, image) in images.iter().enumerate() {
                s.images
                    .insert(image.to_string(), (format!("sha256:{i:064x}"), 1000));
            }
        }
        fake
    }

    /// The state, for assertions and arrangement.
    pub fn lock(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().expect("fake CRI lock")
    }

    /// The next call of `rpc` (e.g. `"StartContainer"`) fails with `status`.
    pub fn fail_next(&self, rpc: &str, status: tonic::Status) {
        self.lock()
            .errors
            .entry(rpc.to_string())
            .or_default()
            .push_back(status);
    }

    /// The names of the calls made so far, in order.
    pub fn call_names(&self) -> Vec<String> {
        self.lock().calls.iter().map(|(n, _)| n.clone()).collect()
    }

    /// The calls of `rpc` made so far, by argument.
    pub fn calls_of(&self, rpc: &str) -> Vec<String> {
        self.lock()
            .calls
            .iter()
            .filter(|(n, _)| n == rpc)
            .map(|(_, a)| a.clone())
            .collect()
    }

    /// Forgets the recorded calls.
    pub fn clear_calls(&self) {
        self.lock().calls.clear();
    }

    /// Makes container `id` exit with `code`, as a process ending.
    pub fn exit(&self, id: &str, code: i32) {
        let mut s = self.lock();
        let now = s.tick();
        if let Some(c) = s.containers.get_mut(id) {
            c.state = cri::ContainerState::ContainerExited;
            c.finished_at = now;
            c.exit_code = code;
        }
    }

    /// The IDs of the containers named `name` (the container's metadata name), oldest first.
    pub fn containers_named(&self, name: &str) -> Vec<String> {
        self.lock()
            .containers
            .iter()
            .filter(|(_, c)| c.config.metadata.as_ref().is_some_and(|m| m.name == name))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// The state of container `id`.
    pub fn state_of(&self, id: &str) -> Option<cri::ContainerState> {
        self.lock().containers.get(id).map(|c| c.state)
    }

    /// Records `rpc(arg)` and returns the error queued for it, if any.
    fn enter(&self, rpc: &str, arg: &str) -> Result<(), tonic::Status> {
        let mut s = self.lock();
        s.calls.push((rpc.to_string(), arg.to_string()));
        match s.errors.get_mut(rpc).and_then(VecDeque::pop_front) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Answers at once with `f`'s result, after recording the call.
    fn answer<T: Send + 'static>(
        &self,
        rpc: &str,
        arg: &str,
        f: impl FnOnce(&mut FakeState) -> Result<T, tonic::Status>,
    ) -> CriFuture<'_, T> {
        let result = self.enter(rpc, arg).and_then(|()| f(&mut self.lock()));
        Box::pin(std::future::ready(result))
    }
}

impl FakeState {
    /// A fresh ID with `prefix`.
    fn id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}{:04}", self.next_id)
    }

    /// Real time, strictly increasing across calls (ns).
    fn tick(&mut self) -> i64 {
        let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
        self.clock = now.max(self.clock + 1);
        self.clock
    }
}

fn not_found(what: &str, id: &str) -> tonic::Status {
    tonic::Status::not_found(format!("{what} {id:?} not found"))
}

fn matches(labels: &HashMap<String, String>, selector: &HashMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

impl FakeContainer {
    fn status(&self, id: &str) -> cri::ContainerStatus {
        cri::ContainerStatus {
            id: id.to_string(),
            metadata: self.config.metadata.clone(),
            state: self.state as i32,
            created_at: self.created_at,
            started_at: self.started_at,
            finished_at: self.finished_at,
            exit_code: self.exit_code,
            image: self.config.image.clone(),
            image_ref: self
                .config
                .image
                .as_ref()
                .map(|i| i.image.clone())
                .unwrap_or_default(),
            labels: self.config.labels.clone(),
            annotations: self.config.annotations.clone(),
            log_path: self.config.log_path.clone(),
            reason: match self.state {
                cri::ContainerState::ContainerExited if self.exit_code == 0 => "Completed".into(),
                cri::ContainerState::ContainerExited => "Error".into(),
                _ => String::new(),
            },
            ..Default::default()
        }
    }
}

impl CriService for FakeCri {
    fn version(&self, _: cri::VersionRequest) -> CriFuture<'_, cri::VersionResponse> {
        self.answer("Version", "", |_| {
            Ok(cri::VersionResponse {
                version: "0.1.0".into(),
                runtime_name: "fake".into(),
                runtime_version: "v1.0.0".into(),
                runtime_api_version: "v1".into(),
            })
        })
    }

    fn status(&self, _: cri::StatusRequest) -> CriFuture<'_, cri::StatusResponse> {
        self.answer("Status", "", |_| {
            let ready = |t: &str| cri::RuntimeCondition {
                r#type: t.into(),
                status: true,
                ..Default::default()
            };
            Ok(cri::StatusResponse {
                status: Some(cri::RuntimeStatus {
                    conditions: vec![ready("RuntimeReady"), ready("NetworkReady")],
                }),
                ..Default::default()
            })
        })
    }

    fn runtime_config(
        &self,
        _: cri::RuntimeConfigRequest,
    ) -> CriFuture<'_, cri::RuntimeConfigResponse> {
        self.answer("RuntimeConfig", "", |_| {
            Err(tonic::Status::unimplemented("RuntimeConfig"))
        })
    }

    fn update_runtime_config(
        &self,
        r: cri::UpdateRuntimeConfigRequest,
    ) -> CriFuture<'_, cri::UpdateRuntimeConfigResponse> {
        let cidr = r
            .runtime_config
            .and_then(|c| c.network_config)
            .map(|n| n.pod_cidr)
            .unwrap_or_default();
        self.answer("UpdateRuntimeConfig", &cidr, |_| Ok(Default::default()))
    }

    fn run_pod_sandbox(
        &self,
        r: cri::RunPodSandboxRequest,
    ) -> CriFuture<'_, cri::RunPodSandboxResponse> {
        let config = r.config.unwrap_or_default();
        let name = config
            .metadata
            .as_ref()
            .map(|m| format!("{}/{}#{}", m.namespace, m.name, m.attempt))
            .unwrap_or_default();
        self.answer("RunPodSandbox", &name, move |s| {
            let id = s.id("sb");
            let created_at = s.tick();
            s.sandboxes.insert(
                id.clone(),
                FakeSandbox {
                    config,
                    runtime_handler: r.runtime_handler,
                    ready: true,
                    created_at,
                },
            );
            Ok(cri::RunPodSandboxResponse { pod_sandbox_id: id })
        })
    }

    fn stop_pod_sandbox(
        &self,
        r: cri::StopPodSandboxRequest,
    ) -> CriFuture<'_, cri::StopPodSandboxResponse> {
        let id = r.pod_sandbox_id;
        self.answer("StopPodSandbox", &id.clone(), move |s| {
            let now = s.tick();
            let sb = s
                .sandboxes
                .get_mut(&id)
                .ok_or_else(|| not_found("sandbox", &id))?;
            sb.ready = false;
            for c in s.containers.values_mut().filter(|c| c.sandbox_id == id) {
                if c.state != cri::ContainerState::ContainerExited {
                    c.state = cri::ContainerState::ContainerExited;
                    c.finished_at = now;
                    c.exit_code = 137;
                }
            }
            Ok(Default::default())
        })
    }

    fn remove_pod_sandbox(
        &self,
        r: cri::RemovePodSandboxRequest,
    ) -> CriFuture<'_, cri::RemovePodSandboxResponse> {
        let id = r.pod_sandbox_id;
        self.answer("RemovePodSandbox", &id.clone(), move |s| {
            s.sandboxes.remove(&id);
            s.containers.retain(|_, c| c.sandbox_id != id);
            Ok(Default::default())
        })
    }

    fn pod_sandbox_status(
        &self,
        r: cri::PodSandboxStatusRequest,
    ) -> CriFuture<'_, cri::PodSandboxStatusResponse> {
        let id = r.pod_sandbox_id;
        self.answer("PodSandboxStatus", &id.clone(), move |s| {
            let sb = s
                .sandboxes
                .get(&id)
                .ok_or_else(|| not_found("sandbox", &id))?;
            Ok(cri::PodSandboxStatusResponse {
                status: Some(cri::PodSandboxStatus {
                    id: id.clone(),
                    metadata: sb.config.metadata.clone(),
                    state: if sb.ready { 0 } else { 1 },
                    created_at: sb.created_at,
                    network: Some(cri::PodSandboxNetworkStatus {
                        ip: SANDBOX_IP.into(),
                        additional_ips: Vec::new(),
                    }),
                    labels: sb.config.labels.clone(),
                    annotations: sb.config.annotations.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            })
        })
    }

    fn list_pod_sandbox(
        &self,
        r: cri::ListPodSandboxRequest,
    ) -> CriFuture<'_, cri::ListPodSandboxResponse> {
        let selector = r.filter.map(|f| f.label_selector).unwrap_or_default();
        self.answer("ListPodSandbox", "", move |s| {
            let items = s
                .sandboxes
                .iter()
                .filter(|(_, sb)| matches(&sb.config.labels, &selector))
                .map(|(id, sb)| cri::PodSandbox {
                    id: id.clone(),
                    metadata: sb.config.metadata.clone(),
                    state: if sb.ready { 0 } else { 1 },
                    created_at: sb.created_at,
                    labels: sb.config.labels.clone(),
                    annotations: sb.config.annotations.clone(),
                    runtime_handler: sb.runtime_handler.clone(),
                })
                .collect();
            Ok(cri::ListPodSandboxResponse { items })
        })
    }

    fn create_container(
        &self,
        r: cri::CreateContainerRequest,
    ) -> CriFuture<'_, cri::CreateContainerResponse> {
        let config = r.config.unwrap_or_default();
        let name = config
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default();
        let sandbox_id = r.pod_sandbox_id;
        self.answer("CreateContainer", &name, move |s| {
            if !s.sandboxes.get(&sandbox_id).is_some_and(|sb| sb.ready) {
                return Err(not_found("ready sandbox", &sandbox_id));
            }
            let id = s.id("c");
            let created_at = s.tick();
            s.containers.insert(
                id.clone(),
                FakeContainer {
                    sandbox_id,
                    config,
                    state: cri::ContainerState::ContainerCreated,
                    created_at,
                    started_at: 0,
                    finished_at: 0,
                    exit_code: 0,
                    stop_timeout: None,
                },
            );
            Ok(cri::CreateContainerResponse { container_id: id })
        })
    }

    fn start_container(
        &self,
        r: cri::StartContainerRequest,
    ) -> CriFuture<'_, cri::StartContainerResponse> {
        let id = r.container_id;
        self.answer("StartContainer", &id.clone(), move |s| {
            let now = s.tick();
            let c = s
                .containers
                .get_mut(&id)
                .ok_or_else(|| not_found("container", &id))?;
            c.state = cri::ContainerState::ContainerRunning;
            c.started_at = now;
            Ok(Default::default())
        })
    }

    fn stop_container(
        &self,
        r: cri::StopContainerRequest,
    ) -> CriFuture<'_, cri::StopContainerResponse> {
        let id = r.container_id;
        self.answer("StopContainer", &id.clone(), move |s| {
            let now = s.tick();
            let c = s
                .containers
                .get_mut(&id)
                .ok_or_else(|| not_found("container", &id))?;
            c.stop_timeout = Some(r.timeout);
            if c.state != cri::ContainerState::ContainerExited {
                c.state = cri::ContainerState::ContainerExited;
                c.finished_at = now;
                c.exit_code = 137;
            }
            Ok(Default::default())
        })
    }

    fn remove_container(
        &self,
        r: cri::RemoveContainerRequest,
    ) -> CriFuture<'_, cri::RemoveContainerResponse> {
        let id = r.container_id;
        self.answer("RemoveContainer", &id.clone(), move |s| {
            s.containers.remove(&id);
            Ok(Default::default())
        })
    }

    fn list_containers(
        &self,
        r: cri::ListContainersRequest,
    ) -> CriFuture<'_, cri::ListContainersResponse> {
        let filter = r.filter.unwrap_or_default();
        self.answer("ListContainers", "", move |s| {
            let containers = s
                .containers
                .iter()
                .filter(|(_, c)| matches(&c.config.labels, &filter.label_selector))
                .filter(|(_, c)| {
                    filter.pod_sandbox_id.is_empty() || c.sandbox_id == filter.pod_sandbox_id
                })
                .map(|(id, c)| cri::Container {
                    id: id.clone(),
                    pod_sandbox_id: c.sandbox_id.clone(),
                    metadata: c.config.metadata.clone(),
                    image: c.config.image.clone(),
                    image_ref: c
                        .config
                        .image
                        .as_ref()
                        .map(|i| i.image.clone())
                        .unwrap_or_default(),
                    state: c.state as i32,
                    created_at: c.created_at,
                    labels: c.config.labels.clone(),
                    annotations: c.config.annotations.clone(),
                    ..Default::default()
                })
                .collect();
            Ok(cri::ListContainersResponse { containers })
        })
    }

    fn container_status(
        &self,
        r: cri::ContainerStatusRequest,
    ) -> CriFuture<'_, cri::ContainerStatusResponse> {
        let id = r.container_id;
        self.answer("ContainerStatus", &id.clone(), move |s| {
            let c = s
                .containers
                .get(&id)
                .ok_or_else(|| not_found("container", &id))?;
            Ok(cri::ContainerStatusResponse {
                status: Some(c.status(&id)),
                ..Default::default()
            })
        })
    }

    fn exec_sync(&self, r: cri::ExecSyncRequest) -> CriFuture<'_, cri::ExecSyncResponse> {
        let arg = format!("{} {}", r.container_id, r.cmd.join(" "));
        self.answer("ExecSync", &arg, |s| {
            let (exit_code, stdout) = s.exec_result.clone().unwrap_or_default();
            Ok(cri::ExecSyncResponse {
                stdout,
                stderr: Vec::new(),
                exit_code,
            })
        })
    }

    fn exec(&self, r: cri::ExecRequest) -> CriFuture<'_, cri::ExecResponse> {
        self.answer("Exec", &r.container_id, |_| {
            Err(tonic::Status::unimplemented("streaming"))
        })
    }

    fn attach(&self, r: cri::AttachRequest) -> CriFuture<'_, cri::AttachResponse> {
        self.answer("Attach", &r.container_id, |_| {
            Err(tonic::Status::unimplemented("streaming"))
        })
    }

    fn port_forward(&self, r: cri::PortForwardRequest) -> CriFuture<'_, cri::PortForwardResponse> {
        self.answer("PortForward", &r.pod_sandbox_id, |_| {
            Err(tonic::Status::unimplemented("streaming"))
        })
    }

    fn list_container_stats(
        &self,
        _: cri::ListContainerStatsRequest,
    ) -> CriFuture<'_, cri::ListContainerStatsResponse> {
        self.answer("ListContainerStats", "", |_| Ok(Default::default()))
    }

    fn list_images(&self, _: cri::ListImagesRequest) -> CriFuture<'_, cri::ListImagesResponse> {
        self.answer("ListImages", "", |s| {
            let images = s
                .images
                .iter()
                .map(|(tag, (id, size))| cri::Image {
                    id: id.clone(),
                    repo_tags: vec![tag.clone()],
                    size: *size,
                    ..Default::default()
                })
                .collect();
            Ok(cri::ListImagesResponse { images })
        })
    }

    fn image_status(&self, r: cri::ImageStatusRequest) -> CriFuture<'_, cri::ImageStatusResponse> {
        let image = r.image.map(|i| i.image).unwrap_or_default();
        self.answer("ImageStatus", &image.clone(), move |s| {
            let image = s.images.get(&image).map(|(id, size)| cri::Image {
                id: id.clone(),
                repo_tags: vec![image.clone()],
                size: *size,
                ..Default::default()
            });
            Ok(cri::ImageStatusResponse {
                image,
                ..Default::default()
            })
        })
    }

    fn pull_image(&self, r: cri::PullImageRequest) -> CriFuture<'_, cri::PullImageResponse> {
        let image = r.image.map(|i| i.image).unwrap_or_default();
        self.answer("PullImage", &image.clone(), move |s| {
            let n = s.images.len();
            let id = s
                .images
                .entry(image)
                .or_insert_with(|| (format!("sha256:{n:064x}"), 1000))
                .0
                .clone();
            Ok(cri::PullImageResponse { image_ref: id })
        })
    }

    fn remove_image(&self, r: cri::RemoveImageRequest) -> CriFuture<'_, cri::RemoveImageResponse> {
        let image = r.image.map(|i| i.image).unwrap_or_default();
        self.answer("RemoveImage", &image.clone(), move |s| {
            s.images
                .retain(|tag, (id, _)| *tag != image && *id != image);
            Ok(Default::default())
        })
    }

    fn image_fs_info(&self, _: cri::ImageFsInfoRequest) -> CriFuture<'_, cri::ImageFsInfoResponse> {
        self.answer("ImageFsInfo", "", |_| Ok(Default::default()))
    }
}
