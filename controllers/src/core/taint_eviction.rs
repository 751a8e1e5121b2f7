//! taint-eviction-controller: deletes pods bound to nodes with NoExecute taints they do not
//! tolerate, at once or after the shortest matching `tolerationSeconds`.

use std::sync::Arc;
use std::time::Duration;

use component_base::events::{EventRecorder, EventSpec, EventType};
use futures::future::FutureExt;
use k8s_openapi::api::core::v1::{Node, ObjectReference, Pod, Taint};
use kube::Api;

use crate::machinery::context::ControllerContext;
use crate::machinery::informers::{self, Informer};
use crate::machinery::pod_eviction::{mark_and_delete, Disruption, EvictionMetrics};
use crate::machinery::ControllerDescriptor;
use crate::machinery::{informers::handlers as informer, queue::WorkQueue};
use api_helpers::taints::tolerates;

/// Registry entry.
pub fn descriptor() -> ControllerDescriptor {
    ControllerDescriptor {
        name: "taint-eviction-controller",
        enabled_by_default: true,
        start: |ctx| run(ctx).boxed(),
    }
}

/// What to do with one pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Tolerates every NoExecute taint forever (or there are none).
    Keep,
    /// Delete now; the eviction has been due for this long (upstream's time since the
    /// eviction fired, for `taint_eviction_controller_pod_deletion_duration_seconds`).
    EvictNow(Duration),
    /// Delete once this much more time has passed.
    EvictIn(Duration),
}

/// Upstream's rule: a pod not tolerating some NoExecute taint is evicted at once; otherwise
/// after the minimum `tolerationSeconds` of the tolerations used, counted from when each
/// taint was added (`elapsed(taint)`); tolerations without seconds last forever.
pub fn decide(pod: &Pod, node_taints: &[Taint], elapsed: impl Fn(&Taint) -> Duration) -> Decision {
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.clone())
        .unwrap_or_default();
    let mut soonest: Option<Duration> = None;
    // How long the eviction has been due (the longest of the taints that demand it).
    let mut overdue: Option<Duration> = None;
    for taint in node_taints.iter().filter(|t| t.effect == "NoExecute") {
        let matching: Vec<_> = tolerations.iter().filter(|t| tolerates(t, taint)).collect();
        if matching.is_empty() {
            let due = elapsed(taint);
            overdue = Some(overdue.map_or(due, |o| o.max(due)));
            continue;
        }
        // The most lenient matching toleration applies for this taint.
        let allowed = if matching.iter().any(|t| t.toleration_seconds.is_none()) {
            None
        } else {
            matching
                .iter()
                .filter_map(|t| t.toleration_seconds)
                .max()
                .map(|s| Duration::from_secs(s.max(0) as u64))
        };
        if let Some(allowed) = allowed {
            let elapsed = elapsed(taint);
            let left = allowed.saturating_sub(elapsed);
            if left.is_zero() {
                let due = elapsed - allowed;
                overdue = Some(overdue.map_or(due, |o| o.max(due)));
            }
            soonest = Some(soonest.map_or(left, |s| s.min(left)));
        }
    }
    match (overdue, soonest) {
        (Some(due), _) => Decision::EvictNow(due),
        (None, None) => Decision::Keep,
        (None, Some(d)) => Decision::EvictIn(d),
    }
}

struct State {
    client: kube::Client,
    pods: Informer<Pod>,
    nodes: Informer<Node>,
    recorder: EventRecorder,
    metrics: EvictionMetrics,
}

async fn run(ctx: ControllerContext) -> anyhow::Result<()> {
    let queue: WorkQueue<(String, String)> =
        WorkQueue::new().with_metrics(&ctx.metrics, "noexec_taint_pod");
    let sd = ctx.shutdown.clone();
    let q = queue.clone();
    let pods = ctx.informers().informer::<Pod>();
    informer::on(&pods, move |p: &Pod, change| {
        let bound = p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some();
        if let (true, informer::Change::Applied, Some(ns), Some(n)) =
            (bound, change, &p.metadata.namespace, &p.metadata.name)
        {
            q.add((ns.clone(), n.clone()));
        }
    });
    let (q, pod_store) = (queue.clone(), pods.clone());
    let nodes = ctx.informers().informer::<Node>();
    informer::on(&nodes, move |n: &Node, _| {
        let has_no_execute = n
            .spec
            .as_ref()
            .and_then(|s| s.taints.as_ref())
            .is_some_and(|t| t.iter().any(|t| t.effect == "NoExecute"));
        if !has_no_execute {
            return;
        }
        for p in pod_store.list() {
            if p.spec.as_ref().and_then(|s| s.node_name.as_ref()) == n.metadata.name.as_ref() {
                if let (Some(ns), Some(name)) = (&p.metadata.namespace, &p.metadata.name) {
                    q.add((ns.clone(), name.clone()));
                }
            }
        }
    });
    informers::wait_synced(&sd, async {
        pods.wait_synced().await;
        nodes.wait_synced().await;
    })
    .await?;
    let client = ctx.client_for(crate::core::node::SERVICE_ACCOUNT).await?;
    let state = Arc::new(State {
        recorder: crate::machinery::context::event_recorder(client.clone(), "taint-eviction-controller"),
        client,
        pods,
        nodes,
        metrics: ctx.metrics.families(|r| {
            EvictionMetrics::register(
                r,
                "taint_eviction_controller",
                (
                    "[ALPHA] Total number of Pods deleted by TaintEvictionController since its start.",
                    "[ALPHA] Latency, in seconds, between the time when a taint effect has been activated for the Pod and its deletion via TaintEvictionController.",
                ),
            )
        }),
    });
    let q = queue.clone();
    queue
        .run("taint-eviction", 8, sd, move |key| {
            let (state, q) = (state.clone(), q.clone());
            async move {
                if let Some(after) = sync(&state, &key).await? {
                    q.add_after(key, after);
                }
                Ok(())
            }
        })
        .await;
    Ok(())
}

async fn sync(state: &State, (ns, name): &(String, String)) -> anyhow::Result<Option<Duration>> {
    let Some(pod) = state.pods.get(ns, name) else {
        return Ok(None);
    };
    if pod.metadata.deletion_timestamp.is_some() {
        return Ok(None);
    }
    let Some(node_name) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
        return Ok(None);
    };
    let Some(node) = state.nodes.get("", &node_name) else {
        return Ok(None);
    };
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let now = jiff::Timestamp::now();
    let elapsed = |t: &Taint| {
        t.time_added
            .as_ref()
            .map(|at| Duration::try_from(now.duration_since(at.0)).unwrap_or_default())
            .unwrap_or_default()
    };
    match decide(&pod, &taints, elapsed) {
        Decision::Keep => Ok(None),
        Decision::EvictIn(d) => Ok(Some(d)),
        Decision::EvictNow(overdue) => {
            tracing::info!(pod = %format!("{ns}/{name}"), node = %node_name, "Deleting pod (NoExecute taint)");
            let event = EventSpec {
                regarding: ObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: Some(name.clone()),
                    namespace: Some(ns.clone()),
                    uid: pod.metadata.uid.clone(),
                    ..Default::default()
                },
                related: None,
                type_: EventType::Normal,
                reason: "TaintManagerEviction".into(),
                action: "Delete".into(),
                note: format!("Marking for deletion Pod {ns}/{name}"),
            };
            let recorder = state.recorder.clone();
            tokio::spawn(async move { recorder.record(event).await });
            let api: Api<Pod> = Api::namespaced(state.client.clone(), ns);
            let why = Disruption {
                reason: "DeletionByTaintManager",
                message: "Taint manager: deleting due to NoExecute taint",
            };
            mark_and_delete(&api, &pod, &why, None).await?;
            state.metrics.deletions.inc();
            state.metrics.latency.observe(overdue.as_secs_f64());
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(tolerations: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {"containers": [], "tolerations": tolerations}})).unwrap()
    }

    fn unreachable() -> Vec<Taint> {
        vec![Taint {
            key: "node.kubernetes.io/unreachable".into(),
            effect: "NoExecute".into(),
            ..Default::default()
        }]
    }

    #[test]
    fn untolerated_taint_evicts_now() {
        assert_eq!(
            decide(&pod(json!([])), &unreachable(), |_| Duration::from_secs(7)),
            Decision::EvictNow(Duration::from_secs(7))
        );
    }

    #[test]
    fn toleration_seconds_delay_eviction_from_time_added() {
        let p = pod(
            json!([{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}]),
        );
        assert_eq!(
            decide(&p, &unreachable(), |_| Duration::from_secs(100)),
            Decision::EvictIn(Duration::from_secs(200))
        );
        assert_eq!(
            decide(&p, &unreachable(), |_| Duration::from_secs(300)),
            Decision::EvictNow(Duration::ZERO)
        );
        assert_eq!(
            decide(&p, &unreachable(), |_| Duration::from_secs(312)),
            Decision::EvictNow(Duration::from_secs(12))
        );
    }

    #[test]
    fn forever_tolerations_and_no_taints_keep() {
        let p = pod(json!([{"operator": "Exists"}]));
        assert_eq!(
            decide(&p, &unreachable(), |_| Duration::from_secs(1_000_000)),
            Decision::Keep
        );
        assert_eq!(
            decide(&pod(json!([])), &[], |_| Duration::ZERO),
            Decision::Keep
        );
        let no_schedule = vec![Taint {
            key: "x".into(),
            effect: "NoSchedule".into(),
            ..Default::default()
        }];
        assert_eq!(
            decide(&pod(json!([])), &no_schedule, |_| Duration::ZERO),
            Decision::Keep
        );
    }
}
