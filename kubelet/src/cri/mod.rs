//! The container runtime, reached only through CRI v1 over its unix socket
//! (`--container-runtime-endpoint`), so any CRI runtime (containerd, CRI-O) serves.

pub mod labels;

use anyhow::{Context, Result};
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::Channel;

/// The default endpoint, as upstream's kubelet defaults `containerRuntimeEndpoint`.
pub const DEFAULT_ENDPOINT: &str = "unix:///run/containerd/containerd.sock";

/// CRI's runtime and image services over one connection.
#[derive(Clone)]
pub struct Cri {
    /// RuntimeService: sandboxes, containers, status.
    pub runtime: RuntimeServiceClient<Channel>,
    /// ImageService: pull, list, status.
    pub images: ImageServiceClient<Channel>,
    endpoint: String,
}

/// The socket path of an endpoint written `unix:///path` or `/path`.
pub fn socket_path(endpoint: &str) -> Result<&str> {
    let path = endpoint.strip_prefix("unix://").unwrap_or(endpoint);
    anyhow::ensure!(
        path.starts_with('/'),
        "--container-runtime-endpoint {endpoint:?}: only unix sockets (unix:///path) are supported"
    );
    Ok(path)
}

impl Cri {
    /// Connects to the runtime at `endpoint`. gRPC messages up to 16 MiB are accepted, as
    /// upstream's remote runtime client allows.
    pub async fn connect(endpoint: &str) -> Result<Self> {
        let path = socket_path(endpoint)?;
        let channel = containerd_client::connect(path)
            .await
            .with_context(|| format!("connect to the container runtime at {endpoint}"))?;
        const MAX: usize = 16 << 20;
        Ok(Cri {
            runtime: RuntimeServiceClient::new(channel.clone()).max_decoding_message_size(MAX),
            images: ImageServiceClient::new(channel).max_decoding_message_size(MAX),
            endpoint: endpoint.to_string(),
        })
    }

    /// The endpoint this client talks to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The runtime's name and version, e.g. `containerd://1.6.20`, as NodeInfo reports it.
    pub async fn runtime_version(&self) -> Result<String> {
        let v = self
            .runtime
            .clone()
            .version(k8s_cri::v1::VersionRequest {
                version: "v1".into(),
            })
            .await?
            .into_inner();
        Ok(format!(
            "{}://{}",
            v.runtime_name,
            v.runtime_version.trim_start_matches('v')
        ))
    }

    /// CRI's (non-verbose) status of container `id`; `Ok(None)` when the runtime answers
    /// without one.
    pub async fn container_status(
        &self,
        id: &str,
    ) -> Result<Option<k8s_cri::v1::ContainerStatus>, tonic::Status> {
        let r = self
            .runtime
            .clone()
            .container_status(k8s_cri::v1::ContainerStatusRequest {
                container_id: id.to_string(),
                verbose: false,
            })
            .await?;
        Ok(r.into_inner().status)
    }

    /// The runtime's sandbox (pause) image, from its verbose status (containerd reports its
    /// CRI config there); `None` when the runtime does not say.
    pub async fn sandbox_image(&self) -> Option<String> {
        let info = self
            .runtime
            .clone()
            .status(k8s_cri::v1::StatusRequest { verbose: true })
            .await
            .ok()?
            .into_inner()
            .info;
        let config: serde_json::Value = serde_json::from_str(info.get("config")?).ok()?;
        config["sandboxImage"].as_str().map(str::to_string)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_must_be_unix_sockets() {
        assert_eq!(socket_path("unix:///run/x.sock").unwrap(), "/run/x.sock");
        assert_eq!(socket_path("/run/x.sock").unwrap(), "/run/x.sock");
        let err = socket_path("tcp://1.2.3.4:1").unwrap_err().to_string();
        assert!(err.contains("--container-runtime-endpoint"), "{err}");
    }
}
