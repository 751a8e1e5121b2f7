//! The narrow interfaces the eviction manager acts through, as upstream's
//! pkg/kubelet/eviction/types.go: it reads the active pods through [`ActivePodsFunc`],
//! reclaims node-level resources through [`ImageGc`] and [`ContainerGc`], and kills a pod by
//! sending an [`super::Eviction`] to the pod manager (upstream's `KillPodFunc`). It never
//! sees the pod manager itself, which wires these in.

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Pod;
use std::sync::Arc;

/// The pods the kubelet currently runs (upstream's `ActivePodsFunc`).
pub type ActivePodsFunc = Arc<dyn Fn() -> Vec<Pod> + Send + Sync>;

/// Removes unused images (upstream's `ImageGC`).
pub trait ImageGc: Send + Sync {
    /// Deletes every unused image old enough (`DeleteUnusedImages`).
    fn delete_unused_images(&self) -> BoxFuture<'_, anyhow::Result<()>>;
}

/// Removes dead containers (upstream's `ContainerGC`).
pub trait ContainerGc: Send + Sync {
    /// Deletes every dead container the kubelet no longer needs, evicted pods' included
    /// (`DeleteAllUnusedContainers`).
    fn delete_all_unused_containers(&self) -> BoxFuture<'_, anyhow::Result<()>>;
}
