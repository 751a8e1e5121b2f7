//! Node-level reclaim before evicting pods, as upstream: under disk pressure the kubelet
//! first removes dead containers and every unused image, and evicts a pod only when that
//! did not relieve the pressure. With a dedicated image filesystem, nodefs pressure has
//! nothing to reclaim at node level (logs are the pods'); without one, both signals share
//! the same reclaim.

use super::threshold::Signal;
use crate::container_gc::{self, policy::PodState};
use crate::image::gc::ImageGc;
use crate::manager::Shared;
use std::sync::Arc;

/// A node-level reclaim step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Remove every dead container the kubelet no longer needs (DeleteAllUnusedContainers).
    DeadContainers,
    /// Remove every unused image old enough (DeleteUnusedImages).
    UnusedImages,
}

/// The steps for `signal` (upstream's buildSignalToNodeReclaimFuncs).
pub fn steps(signal: Signal, dedicated_imagefs: bool) -> &'static [Step] {
    const BOTH: &[Step] = &[Step::DeadContainers, Step::UnusedImages];
    match (signal, dedicated_imagefs) {
        (Signal::MemoryAvailable | Signal::PidAvailable, _) => &[],
        (Signal::NodeFsAvailable | Signal::NodeFsInodesFree, true) => &[],
        _ => BOTH,
    }
}

/// Runs the steps for `signal`; errors are logged, as upstream goes on to re-observe.
pub async fn run(
    signal: Signal,
    dedicated_imagefs: bool,
    shared: &Arc<Shared>,
    image_gc: Option<&ImageGc>,
) -> bool {
    let steps = steps(signal, dedicated_imagefs);
    for step in steps {
        let result = match step {
            Step::DeadContainers => {
                let state = |uid: &str| -> PodState { container_gc::pod_state(shared, uid, true) };
                container_gc::collect(shared.runtime.cri.as_ref(), &state)
                    .await
                    .map(|_| ())
            }
            Step::UnusedImages => match image_gc {
                Some(gc) => gc.delete_unused().await.map(|r| {
                    tracing::info!(images = ?r.images, freed = r.freed, "Eviction manager: deleted unused images");
                }),
                None => Ok(()),
            },
        };
        if let Err(e) = result {
            tracing::info!(resource = signal.resource(), error = %format!("{e:#}"), "Eviction manager: unexpected error when attempting to reduce resource pressure");
        }
    }
    !steps.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_signals_reclaim_images_and_containers_first() {
        assert_eq!(
            steps(Signal::NodeFsAvailable, false),
            &[Step::DeadContainers, Step::UnusedImages]
        );
        assert!(steps(Signal::NodeFsInodesFree, true).is_empty());
        assert_eq!(steps(Signal::ImageFsAvailable, true).len(), 2);
        assert!(steps(Signal::MemoryAvailable, false).is_empty());
    }
}
