//! The container runtime, reached only through CRI v1 over its unix socket
//! (`--container-runtime-endpoint`), so any CRI runtime (containerd, CRI-O) serves.

#[cfg(test)]
pub mod fake;
pub mod labels;
pub mod service;

pub use service::{CriFuture, CriHandle, CriService};

use anyhow::{Context, Result};
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::Channel;

/// The default endpoint, as upstream's kubelet defaults `containerRuntimeEndpoint`.
pub const DEFAULT_ENDPOINT: &str = "unix:///run/containerd/containerd.sock";

/// CRI's runtime and image services over one gRPC connection: the [`CriService`] of a
/// real runtime.
#[derive(Clone)]
pub struct Cri {
    /// RuntimeService: sandboxes, containers, status.
    runtime: RuntimeServiceClient<Channel>,
    /// ImageService: pull, list, status.
    images: ImageServiceClient<Channel>,
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
}

/// The cgroup driver the runtime uses (CRI `RuntimeConfig`), which the kubelet follows
/// over its own setting as upstream (KubeletCgroupDriverFromCRI, GA and locked on since
/// 1.34); `None` when the runtime does not implement the call or says nothing. Other
/// errors are retried twice, 2 s apart, as the runtime may still be starting.
pub async fn cgroup_driver(cri: &dyn CriService) -> Result<Option<crate::cgroups::CgroupDriver>> {
    let mut last = None;
    for attempt in 0..3 {
        if attempt > 0 {
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        }
        match cri
            .runtime_config(k8s_cri::v1::RuntimeConfigRequest {})
            .await
        {
            Ok(r) => return driver_of(r.linux.as_ref()),
            Err(s) if s.code() == tonic::Code::Unimplemented => return Ok(None),
            Err(s) => last = Some(s),
        }
    }
    Err(anyhow::anyhow!(
        "CRI RuntimeConfig: {}",
        last.map(|s| s.message().to_string()).unwrap_or_default()
    ))
}

/// The CRI error as Go's gRPC status prints it (`rpc error: code = NotFound desc = …`),
/// which upstream's waiting message and Failed event carry.
pub fn grpc_error(s: &tonic::Status) -> String {
    format!("rpc error: code = {:?} desc = {}", s.code(), s.message())
}

/// The driver in a `RuntimeConfig` answer; an unknown one is an error, as upstream.
fn driver_of(
    linux: Option<&k8s_cri::v1::LinuxRuntimeConfiguration>,
) -> Result<Option<crate::cgroups::CgroupDriver>> {
    use crate::cgroups::CgroupDriver;
    let Some(linux) = linux else {
        return Ok(None);
    };
    match k8s_cri::v1::CgroupDriver::try_from(linux.cgroup_driver) {
        Ok(k8s_cri::v1::CgroupDriver::Systemd) => Ok(Some(CgroupDriver::Systemd)),
        Ok(k8s_cri::v1::CgroupDriver::Cgroupfs) => Ok(Some(CgroupDriver::Cgroupfs)),
        Err(_) => anyhow::bail!(
            "runtime returned an unknown cgroup driver {}",
            linux.cgroup_driver
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_driver_from_runtime_config() {
        use crate::cgroups::CgroupDriver;
        use k8s_cri::v1::LinuxRuntimeConfiguration as Linux;
        let of = |d: i32| driver_of(Some(&Linux { cgroup_driver: d }));
        assert_eq!(of(0).unwrap(), Some(CgroupDriver::Systemd));
        assert_eq!(of(1).unwrap(), Some(CgroupDriver::Cgroupfs));
        assert_eq!(driver_of(None).unwrap(), None);
        let err = of(7).unwrap_err().to_string();
        assert!(err.contains("unknown cgroup driver 7"), "{err}");
    }

    #[test]
    fn endpoints_must_be_unix_sockets() {
        assert_eq!(socket_path("unix:///run/x.sock").unwrap(), "/run/x.sock");
        assert_eq!(socket_path("/run/x.sock").unwrap(), "/run/x.sock");
        let err = socket_path("tcp://1.2.3.4:1").unwrap_err().to_string();
        assert!(err.contains("--container-runtime-endpoint"), "{err}");
    }
}
