//! The kubelet's seam to the container runtime: the CRI v1 calls it makes, as one trait
//! (upstream's cri-api `RuntimeService` + `ImageManagerService` interfaces). The gRPC
//! client [`super::Cri`] implements it for a real runtime; unit tests use an in-memory
//! fake (`cri::fake`). Requests and responses are CRI's own messages, errors gRPC
//! statuses, so callers keep deciding from the status code (e.g. `NotFound` is "gone").

use futures::future::BoxFuture;
use k8s_cri::v1 as cri;
use std::sync::Arc;

/// What one CRI call returns: the response message or the runtime's gRPC status.
pub type CriFuture<'a, T> = BoxFuture<'a, Result<T, tonic::Status>>;

/// How the kubelet holds its runtime: shared, behind the [`CriService`] seam.
pub type CriHandle = Arc<dyn CriService>;

/// Declares the trait's methods, one per CRI RPC, and the gRPC client's implementation.
macro_rules! cri_service {
    (
        provided { $($provided:tt)* }
        $( $(#[$doc:meta])* $client:ident . $method:ident ( $req:ident ) -> $resp:ident; )*
    ) => {
        /// The CRI v1 calls the kubelet makes (runtime and image services), and a few
        /// answers derived from them.
        pub trait CriService: Send + Sync {
            $(
                $(#[$doc])*
                fn $method(&self, request: cri::$req) -> CriFuture<'_, cri::$resp>;
            )*
            $($provided)*
        }

        /// A shared runtime is the runtime (so `&handle` serves where `&dyn CriService` is
        /// asked).
        impl<T: CriService + ?Sized> CriService for Arc<T> {
            $(
                fn $method(&self, request: cri::$req) -> CriFuture<'_, cri::$resp> {
                    (**self).$method(request)
                }
            )*
        }

        impl CriService for super::Cri {
            $(
                fn $method(&self, request: cri::$req) -> CriFuture<'_, cri::$resp> {
                    let mut client = self.$client.clone();
                    Box::pin(async move { Ok(client.$method(request).await?.into_inner()) })
                }
            )*
        }
    };
}

cri_service! {
    provided {
        /// The runtime's name and version, e.g. `containerd://1.6.20`, as NodeInfo reports it.
        fn runtime_version(&self) -> CriFuture<'_, String> {
            Box::pin(async move {
                let v = self
                    .version(cri::VersionRequest {
                        version: "v1".into(),
                    })
                    .await?;
                Ok(format!(
                    "{}://{}",
                    v.runtime_name,
                    v.runtime_version.trim_start_matches('v')
                ))
            })
        }

        /// CRI's (non-verbose) status of container `id`; `Ok(None)` when the runtime
        /// answers without one.
        fn container_status_of<'a>(
            &'a self,
            id: &'a str,
        ) -> CriFuture<'a, Option<cri::ContainerStatus>> {
            Box::pin(async move {
                let r = self
                    .container_status(cri::ContainerStatusRequest {
                        container_id: id.to_string(),
                        verbose: false,
                    })
                    .await?;
                Ok(r.status)
            })
        }

        /// The runtime's sandbox (pause) image, from its verbose status (containerd reports
        /// its CRI config there); `None` when the runtime does not say.
        fn sandbox_image(&self) -> BoxFuture<'_, Option<String>> {
            Box::pin(async move {
                let info = self
                    .status(cri::StatusRequest { verbose: true })
                    .await
                    .ok()?
                    .info;
                let config: serde_json::Value = serde_json::from_str(info.get("config")?).ok()?;
                config["sandboxImage"].as_str().map(str::to_string)
            })
        }
    }
    /// The runtime's name and version.
    runtime.version(VersionRequest) -> VersionResponse;
    /// The runtime's conditions (RuntimeReady, NetworkReady); verbose adds its config.
    runtime.status(StatusRequest) -> StatusResponse;
    /// The runtime's configuration (the cgroup driver).
    runtime.runtime_config(RuntimeConfigRequest) -> RuntimeConfigResponse;
    /// Tells the runtime the node's pod CIDR.
    runtime.update_runtime_config(UpdateRuntimeConfigRequest) -> UpdateRuntimeConfigResponse;
    /// Creates and starts a pod sandbox.
    runtime.run_pod_sandbox(RunPodSandboxRequest) -> RunPodSandboxResponse;
    /// Stops a sandbox's processes and tears its network down.
    runtime.stop_pod_sandbox(StopPodSandboxRequest) -> StopPodSandboxResponse;
    /// Removes a stopped sandbox.
    runtime.remove_pod_sandbox(RemovePodSandboxRequest) -> RemovePodSandboxResponse;
    /// One sandbox's status (its network).
    runtime.pod_sandbox_status(PodSandboxStatusRequest) -> PodSandboxStatusResponse;
    /// The sandboxes matching a filter.
    runtime.list_pod_sandbox(ListPodSandboxRequest) -> ListPodSandboxResponse;
    /// Creates a container in a sandbox.
    runtime.create_container(CreateContainerRequest) -> CreateContainerResponse;
    /// Starts a created container.
    runtime.start_container(StartContainerRequest) -> StartContainerResponse;
    /// Stops a container: SIGTERM, SIGKILL after the timeout.
    runtime.stop_container(StopContainerRequest) -> StopContainerResponse;
    /// Removes a container.
    runtime.remove_container(RemoveContainerRequest) -> RemoveContainerResponse;
    /// The containers matching a filter.
    runtime.list_containers(ListContainersRequest) -> ListContainersResponse;
    /// One container's status.
    runtime.container_status(ContainerStatusRequest) -> ContainerStatusResponse;
    /// Runs a command in a container and waits for it (hooks, exec probes).
    runtime.exec_sync(ExecSyncRequest) -> ExecSyncResponse;
    /// The streaming URL of an exec session.
    runtime.exec(ExecRequest) -> ExecResponse;
    /// The streaming URL of an attach session.
    runtime.attach(AttachRequest) -> AttachResponse;
    /// The streaming URL of a port forward.
    runtime.port_forward(PortForwardRequest) -> PortForwardResponse;
    /// Usage of the containers matching a filter.
    runtime.list_container_stats(ListContainerStatsRequest) -> ListContainerStatsResponse;
    /// The images the runtime holds.
    images.list_images(ListImagesRequest) -> ListImagesResponse;
    /// One image's status; no image when absent.
    images.image_status(ImageStatusRequest) -> ImageStatusResponse;
    /// Pulls an image.
    images.pull_image(PullImageRequest) -> PullImageResponse;
    /// Removes an image.
    images.remove_image(RemoveImageRequest) -> RemoveImageResponse;
    /// The filesystems the image store uses.
    images.image_fs_info(ImageFsInfoRequest) -> ImageFsInfoResponse;
}
