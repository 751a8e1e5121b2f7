//! Static pods: pods the kubelet runs from manifests in `staticPodPath`
//! (`--pod-manifest-path`), re-read every `fileCheckFrequency`, with mirror pods in the API.

pub mod mirror;
pub mod source;

use k8s_openapi::api::core::v1::Pod;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Watches `path` and publishes the static pods it holds whenever they change (the first
/// read happens before this returns, so the pod manager starts with them).
pub fn watch_path(
    path: PathBuf,
    node_name: String,
    period: Duration,
    stop: CancellationToken,
) -> watch::Receiver<Vec<Pod>> {
    let (tx, rx) = watch::channel(source::read_path(&path, &node_name));
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tx.closed() => return,
                _ = tokio::time::sleep(period) => {}
            }
            let pods = source::read_path(&path, &node_name);
            tx.send_if_modified(|old| {
                let changed = *old != pods;
                if changed {
                    *old = pods;
                }
                changed
            });
        }
    });
    rx
}
