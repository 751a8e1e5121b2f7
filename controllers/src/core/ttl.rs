//! ttl-controller: sets every node's `node.alpha.kubernetes.io/ttl` annotation (how long
//! kubelets may cache Secrets and ConfigMaps) from the cluster's size, stepping between
//! upstream's size ranges with hysteresis.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use futures::future::FutureExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Patch, PatchParams};
use kube::Api;
use serde_json::json;

use crate::machinery::context::ControllerContext;
use crate::machinery::informers::handlers::{self as informer, Change};
use crate::machinery::queue::WorkQueue;
use crate::machinery::ControllerDescriptor;
use api_helpers::errors;

/// The annotation.
pub const TTL_ANNOTATION: &str = "node.alpha.kubernetes.io/ttl";
/// The identity it acts as with `--use-service-account-credentials`.
pub const SERVICE_ACCOUNT: &str = "ttl-controller";

/// Upstream's `ttlBoundaries`: (sizeMin, sizeMax, ttl seconds). Overlapping ranges give
/// hysteresis: step up above sizeMax, down below sizeMin.
pub const BOUNDARIES: &[(usize, usize, i64)] = &[
    (0, 100, 0),
    (90, 500, 15),
    (450, 1000, 30),
    (900, 2000, 60),
    (1800, 10000, 300),
    (9000, usize::MAX, 600),
];

/// Registry entry.
pub fn descriptor() -> ControllerDescriptor {
    ControllerDescriptor {
        name: "ttl-controller",
        enabled_by_default: true,
        start: |ctx| run(ctx).boxed(),
    }
}

/// The boundary step for `nodes` nodes, moving from `step` as far as needed.
pub fn step_for(mut step: usize, nodes: usize) -> usize {
    while nodes > BOUNDARIES[step].1 && step + 1 < BOUNDARIES.len() {
        step += 1;
    }
    while nodes < BOUNDARIES[step].0 && step > 0 {
        step -= 1;
    }
    step
}

/// The annotation patch a node needs for `ttl`, or `None` when it already has it.
pub fn annotation_patch(node: &Node, ttl: i64) -> Option<serde_json::Value> {
    let want = ttl.to_string();
    let have = node
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(TTL_ANNOTATION));
    (have != Some(&want)).then(|| json!({"metadata": {"annotations": {TTL_ANNOTATION: want}}}))
}

struct Sizing {
    nodes: AtomicUsize,
    step: Mutex<usize>,
}

impl Sizing {
    /// Applies a node add/delete; returns whether the TTL changed (every node needs it).
    fn apply(&self, delta: isize) -> bool {
        let n = if delta >= 0 {
            self.nodes.fetch_add(delta as usize, Ordering::SeqCst) + delta as usize
        } else {
            self.nodes.fetch_sub((-delta) as usize, Ordering::SeqCst) - (-delta) as usize
        };
        let mut step = self.step.lock().unwrap_or_else(|e| e.into_inner());
        let next = step_for(*step, n);
        let changed = next != *step;
        *step = next;
        changed
    }

    fn ttl(&self) -> i64 {
        BOUNDARIES[*self.step.lock().unwrap_or_else(|e| e.into_inner())].2
    }
}

async fn run(ctx: ControllerContext) -> anyhow::Result<()> {
    let sd = ctx.shutdown.clone();
    let queue: WorkQueue<String> = WorkQueue::new().with_metrics(&ctx.metrics, "ttlcontroller");
    let sizing = Arc::new(Sizing {
        nodes: AtomicUsize::new(0),
        step: Mutex::new(0),
    });
    let seen: Arc<Mutex<std::collections::HashSet<String>>> = Arc::default();
    let (q, sz) = (queue.clone(), sizing.clone());
    let nodes = ctx.informers().informer::<Node>();
    let store = nodes.clone();
    informer::on(&nodes, move |n: &Node, change| {
        let Some(name) = n.metadata.name.clone() else {
            return;
        };
        let delta = {
            let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
            match change {
                Change::Applied => isize::from(seen.insert(name.clone())),
                Change::Deleted => -isize::from(seen.remove(&name)),
            }
        };
        if delta != 0 && sz.apply(delta) {
            // The TTL changed: every node needs the new value.
            for node in store.list() {
                if let Some(n) = &node.metadata.name {
                    q.add(n.clone());
                }
            }
        }
        if change == Change::Applied {
            q.add(name);
        }
    });
    informer::wait_synced(&sd, async {
        nodes.wait_synced().await;
    })
    .await?;
    let client = ctx.client_for(SERVICE_ACCOUNT).await?;
    queue
        .run("ttl", 5, sd, move |name| {
            let (client, nodes, sizing) = (client.clone(), nodes.clone(), sizing.clone());
            async move {
                let Some(node) = nodes.get("", &name) else {
                    return Ok(());
                };
                if let Some(patch) = annotation_patch(&node, sizing.ttl()) {
                    let api: Api<Node> = Api::all(client);
                    errors::ignore_not_found(
                        api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                            .await,
                    )?;
                }
                Ok(())
            }
        })
        .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_with_hysteresis() {
        assert_eq!(step_for(0, 1), 0);
        assert_eq!(step_for(0, 100), 0);
        assert_eq!(step_for(0, 101), 1);
        assert_eq!(BOUNDARIES[step_for(0, 101)].2, 15);
        // Back down only below 90.
        assert_eq!(step_for(1, 95), 1);
        assert_eq!(step_for(1, 89), 0);
        // Large jumps move several steps.
        assert_eq!(BOUNDARIES[step_for(0, 20000)].2, 600);
        assert_eq!(step_for(5, 3), 0);
    }

    #[test]
    fn patches_only_when_different() {
        let mut node: Node = serde_json::from_value(json!({"metadata": {"name": "n"}})).unwrap();
        let p = annotation_patch(&node, 0).unwrap();
        assert_eq!(p["metadata"]["annotations"][TTL_ANNOTATION], "0");
        node.metadata.annotations = Some([(TTL_ANNOTATION.to_string(), "0".to_string())].into());
        assert!(annotation_patch(&node, 0).is_none());
        assert!(annotation_patch(&node, 15).is_some());
    }
}
