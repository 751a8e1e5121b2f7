//! Node-level reclaim before evicting pods, as upstream: under disk pressure the kubelet
//! first removes dead containers and every unused image, and evicts a pod only when that
//! did not relieve the pressure. With a dedicated image filesystem, nodefs pressure has
//! nothing to reclaim at node level (logs are the pods'); without one, both signals share
//! the same reclaim.

use super::threshold::Signal;
use super::types::{ContainerGc, ImageGc};

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
    container_gc: Option<&dyn ContainerGc>,
    image_gc: Option<&dyn ImageGc>,
) -> bool {
    let steps = steps(signal, dedicated_imagefs);
    for step in steps {
        let result = match step {
            Step::DeadContainers => match container_gc {
                Some(gc) => gc.delete_all_unused_containers().await,
                None => Ok(()),
            },
            Step::UnusedImages => match image_gc {
                Some(gc) => gc.delete_unused_images().await,
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

    /// Records which collector ran; fails when told to.
    #[derive(Default)]
    struct Recording {
        calls: std::sync::Mutex<Vec<&'static str>>,
        fail: bool,
    }

    impl Recording {
        fn note(&self, what: &'static str) -> futures::future::BoxFuture<'_, anyhow::Result<()>> {
            self.calls.lock().unwrap().push(what);
            let fail = self.fail;
            Box::pin(async move {
                anyhow::ensure!(!fail, "{what} failed");
                Ok(())
            })
        }
    }

    impl ContainerGc for Recording {
        fn delete_all_unused_containers(
            &self,
        ) -> futures::future::BoxFuture<'_, anyhow::Result<()>> {
            self.note("containers")
        }
    }

    impl ImageGc for Recording {
        fn delete_unused_images(&self) -> futures::future::BoxFuture<'_, anyhow::Result<()>> {
            self.note("images")
        }
    }

    #[tokio::test]
    async fn reclaim_runs_the_collectors_of_the_signal_in_order() {
        let gc = Recording::default();
        assert!(run(Signal::ImageFsAvailable, true, Some(&gc), Some(&gc)).await);
        assert_eq!(*gc.calls.lock().unwrap(), ["containers", "images"]);

        let gc = Recording::default();
        assert!(!run(Signal::MemoryAvailable, false, Some(&gc), Some(&gc)).await);
        assert!(gc.calls.lock().unwrap().is_empty());

        // A failing step does not stop the next one (upstream re-observes either way).
        let gc = Recording {
            fail: true,
            ..Default::default()
        };
        assert!(run(Signal::NodeFsAvailable, false, Some(&gc), Some(&gc)).await);
        assert_eq!(*gc.calls.lock().unwrap(), ["containers", "images"]);

        // Without collectors there is nothing to run, but the signal still had steps.
        assert!(run(Signal::NodeFsAvailable, false, None, None).await);
    }
}
