//! pod-garbage-collector: every 20 s, force-deletes the oldest terminated pods beyond
//! `--terminated-pod-gc-threshold`, pods bound to nodes that no longer exist (after a 40 s
//! quarantine and a live check, marked with a `DisruptionTarget` condition), terminating
//! pods on not-ready nodes tainted `node.kubernetes.io/out-of-service`, and terminating
//! pods that were never scheduled. Pods still running are first marked `Failed`.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::FutureExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::Api;
use serde_json::json;

use crate::machinery::context::ControllerContext;
use crate::machinery::informers::{self, Informer};
use crate::machinery::ControllerDescriptor;
use api_helpers::errors;

/// The identity it acts as with `--use-service-account-credentials`.
pub const SERVICE_ACCOUNT: &str = "pod-garbage-collector";
/// How often the collector runs (upstream's `gcCheckPeriod`).
pub const CHECK_PERIOD: Duration = Duration::from_secs(20);
/// How long a node must be missing before its pods are orphans (`quarantineTime`).
pub const QUARANTINE: Duration = Duration::from_secs(40);
pub use crate::machinery::nodes::{is_ready, out_of_service, OUT_OF_SERVICE_TAINT};

/// Registry entry.
pub fn descriptor() -> ControllerDescriptor {
    ControllerDescriptor {
        name: "pod-garbage-collector-controller",
        enabled_by_default: true,
        start: |ctx| run(ctx).boxed(),
    }
}

/// Why a pod is collected (upstream's metric reason labels).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Over the terminated-pod threshold.
    Terminated,
    /// Bound to a node that was deleted.
    Orphaned,
    /// Terminating on an out-of-service, not-ready node.
    TerminatingOutOfService,
    /// Terminating and never scheduled.
    TerminatingUnscheduled,
}

/// One pod to mark failed (when still running) and force-delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collect {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID (a precondition: a recreated pod of the same name is left alone).
    pub uid: Option<String>,
    /// Why.
    pub reason: Reason,
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// Upstream's `isPodTerminated`: any phase but Pending, Running and Unknown (an empty
/// phase counts as terminated too, as upstream).
pub fn is_terminated(pod: &Pod) -> bool {
    !matches!(phase(pod), "Pending" | "Running" | "Unknown")
}

fn node_name(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("")
}

fn is_evicted(pod: &Pod) -> bool {
    phase(pod) == "Failed"
        && pod.status.as_ref().and_then(|s| s.reason.as_deref()) == Some("Evicted")
}

/// Evicted pods first, then oldest first, then by name (upstream's
/// `byEvictionAndCreationTimestamp`).
fn collection_order(a: &Pod, b: &Pod) -> std::cmp::Ordering {
    is_evicted(b)
        .cmp(&is_evicted(a))
        .then_with(|| {
            let ts = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
            ts(a).cmp(&ts(b))
        })
        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

/// Node names pods are bound to that are not among `nodes` (candidates for quarantine).
pub fn missing_nodes(pods: &[Arc<Pod>], nodes: &[Arc<Node>]) -> BTreeSet<String> {
    let known: BTreeSet<&str> = nodes
        .iter()
        .filter_map(|n| n.metadata.name.as_deref())
        .collect();
    pods.iter()
        .map(|p| node_name(p))
        .filter(|n| !n.is_empty() && !known.contains(n))
        .map(str::to_string)
        .collect()
}

/// Everything one collection pass deletes, given the pods and nodes observed, the
/// threshold (<= 0 disables terminated-pod collection) and the nodes confirmed deleted.
pub fn plan(
    pods: &[Arc<Pod>],
    nodes: &[Arc<Node>],
    threshold: i32,
    deleted_nodes: &BTreeSet<String>,
) -> Vec<Collect> {
    let collect = |p: &Pod, reason| Collect {
        namespace: p.metadata.namespace.clone().unwrap_or_default(),
        name: p.metadata.name.clone().unwrap_or_default(),
        uid: p.metadata.uid.clone(),
        reason,
    };
    let mut out: Vec<Collect> = Vec::new();
    if threshold > 0 {
        let mut terminated: Vec<&Pod> = pods
            .iter()
            .map(|p| p.as_ref())
            .filter(|p| is_terminated(p))
            .collect();
        let excess = terminated.len().saturating_sub(threshold as usize);
        if excess > 0 {
            terminated.sort_by(|a, b| collection_order(a, b));
            out.extend(
                terminated[..excess]
                    .iter()
                    .map(|p| collect(p, Reason::Terminated)),
            );
        }
    }
    let node = |name: &str| {
        nodes
            .iter()
            .find(|n| n.metadata.name.as_deref() == Some(name))
    };
    let mut out_of_service_pods: Vec<&Pod> = pods
        .iter()
        .map(|p| p.as_ref())
        .filter(|p| p.metadata.deletion_timestamp.is_some())
        .filter(|p| node(node_name(p)).is_some_and(|n| !is_ready(n) && out_of_service(n)))
        .collect();
    out_of_service_pods.sort_by(|a, b| collection_order(a, b));
    out.extend(
        out_of_service_pods
            .iter()
            .map(|p| collect(p, Reason::TerminatingOutOfService)),
    );
    out.extend(
        pods.iter()
            .filter(|p| deleted_nodes.contains(node_name(p)))
            .map(|p| collect(p, Reason::Orphaned)),
    );
    out.extend(
        pods.iter()
            .filter(|p| p.metadata.deletion_timestamp.is_some() && node_name(p).is_empty())
            .map(|p| collect(p, Reason::TerminatingUnscheduled)),
    );
    // A pod matched by several rules is collected once (the first reason wins).
    let mut seen = BTreeSet::new();
    out.retain(|c| seen.insert((c.namespace.clone(), c.name.clone())));
    out
}

/// Quarantine bookkeeping: remembers when each node was first seen missing and returns
/// the nodes missing for at least `quarantine` (to be confirmed with a live lookup).
/// Nodes no longer missing are forgotten.
pub fn quarantined(
    first_missing: &mut HashMap<String, Instant>,
    missing: &BTreeSet<String>,
    now: Instant,
    quarantine: Duration,
) -> Vec<String> {
    first_missing.retain(|n, _| missing.contains(n));
    for n in missing {
        first_missing.entry(n.clone()).or_insert(now);
    }
    let mut due: Vec<String> = first_missing
        .iter()
        .filter(|(_, since)| now.duration_since(**since) >= quarantine)
        .map(|(n, _)| n.clone())
        .collect();
    due.sort();
    due
}

/// The status patch that marks a still-running pod `Failed` (with the DisruptionTarget
/// condition for orphans), or `None` when the pod already finished.
pub fn failed_status_patch(pod: &Pod, reason: Reason, now: &str) -> Option<serde_json::Value> {
    if matches!(phase(pod), "Succeeded" | "Failed") {
        return None;
    }
    let mut status = json!({"phase": "Failed"});
    if reason == Reason::Orphaned {
        status["conditions"] = json!([{
            "type": "DisruptionTarget",
            "status": "True",
            "reason": "DeletionByPodGC",
            "message": "PodGC: node no longer exists",
            "lastTransitionTime": now,
        }]);
    }
    Some(json!({"metadata": {"uid": pod.metadata.uid}, "status": status}))
}

struct State {
    client: kube::Client,
    pods: Informer<Pod>,
    nodes: Informer<Node>,
    threshold: i32,
}

async fn run(ctx: ControllerContext) -> anyhow::Result<()> {
    let sd = ctx.shutdown.clone();
    let pods = ctx.informers().informer::<Pod>();
    let nodes = ctx.informers().informer::<Node>();
    informers::wait_synced(&sd, async {
        pods.wait_synced().await;
        nodes.wait_synced().await;
    })
    .await?;
    let state = State {
        client: ctx.client_for(SERVICE_ACCOUNT).await?,
        pods,
        nodes,
        threshold: ctx.options.terminated_pod_gc_threshold,
    };
    let mut first_missing = HashMap::new();
    loop {
        collect_once(&state, &mut first_missing).await;
        tokio::select! {
            _ = sd.cancelled() => return Ok(()),
            _ = tokio::time::sleep(CHECK_PERIOD) => {}
        }
    }
}

/// One pass: confirm quarantined nodes are gone, then delete what [`plan`] says.
async fn collect_once(state: &State, first_missing: &mut HashMap<String, Instant>) {
    let pods = state.pods.list();
    let nodes = state.nodes.list();
    let missing = missing_nodes(&pods, &nodes);
    let node_api: Api<Node> = Api::all(state.client.clone());
    let mut deleted = BTreeSet::new();
    for name in quarantined(first_missing, &missing, Instant::now(), QUARANTINE) {
        match node_api.get_opt(&name).await {
            Ok(None) => {
                deleted.insert(name);
            }
            Ok(Some(_)) => {}
            Err(e) => tracing::warn!(node = %name, error = %e, "Error while getting node"),
        }
    }
    let work = plan(&pods, &nodes, state.threshold, &deleted);
    if work.is_empty() {
        return;
    }
    tracing::info!(pods = work.len(), "Garbage collecting pods");
    let now = jiff::Timestamp::now().to_string();
    let deletions = work.into_iter().map(|c| {
        let pod = pods
            .iter()
            .find(|p| {
                p.metadata.namespace.as_deref() == Some(&c.namespace)
                    && p.metadata.name.as_deref() == Some(&c.name)
            })
            .cloned();
        let now = now.clone();
        async move {
            let Some(pod) = pod else { return };
            if let Err(e) = mark_failed_and_delete(state, &pod, &c, &now).await {
                tracing::warn!(pod = %format!("{}/{}", c.namespace, c.name), reason = ?c.reason, error = %e, "PodGC failed to delete pod");
            } else {
                tracing::info!(pod = %format!("{}/{}", c.namespace, c.name), reason = ?c.reason, "PodGC force deleted pod");
            }
        }
    });
    futures::future::join_all(deletions).await;
}

async fn mark_failed_and_delete(
    state: &State,
    pod: &Pod,
    c: &Collect,
    now: &str,
) -> Result<(), kube::Error> {
    let api: Api<Pod> = Api::namespaced(state.client.clone(), &c.namespace);
    if let Some(patch) = failed_status_patch(pod, c.reason, now) {
        errors::ignore_not_found(
            api.patch_status(&c.name, &PatchParams::default(), &Patch::Strategic(&patch))
                .await,
        )?;
    }
    let dp = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: c.uid.clone(),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(&c.name, &dp).await {
        Ok(_) => Ok(()),
        // Gone, or a different pod of that name now (uid precondition failed).
        Err(e) if errors::is_not_found(&e) || errors::is_conflict(&e) => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, created: &str, extra: serde_json::Value) -> Arc<Pod> {
        let mut v = json!({"metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}"),
            "creationTimestamp": created}, "spec": {"containers": []}});
        merge(&mut v, extra);
        Arc::new(serde_json::from_value(v).unwrap())
    }

    fn merge(a: &mut serde_json::Value, b: serde_json::Value) {
        match (a, b) {
            (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
                for (k, v) in b {
                    merge(a.entry(k).or_insert(serde_json::Value::Null), v);
                }
            }
            (a, b) => *a = b,
        }
    }

    fn node(name: &str, ready: bool, taints: serde_json::Value) -> Arc<Node> {
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"taints": taints},
            "status": {"conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}}))
            .unwrap(),
        )
    }

    fn names(c: &[Collect]) -> Vec<(&str, Reason)> {
        c.iter().map(|c| (c.name.as_str(), c.reason)).collect()
    }

    #[test]
    fn terminated_over_threshold_oldest_and_evicted_first() {
        let done = |phase: &str| json!({"status": {"phase": phase}});
        let pods = vec![
            pod("new", "2026-01-03T00:00:00Z", done("Succeeded")),
            pod("old", "2026-01-01T00:00:00Z", done("Failed")),
            pod("mid", "2026-01-02T00:00:00Z", done("Succeeded")),
            pod(
                "evicted",
                "2026-01-04T00:00:00Z",
                json!({"status": {"phase": "Failed", "reason": "Evicted"}}),
            ),
            pod("running", "2025-01-01T00:00:00Z", done("Running")),
        ];
        let c = plan(&pods, &[], 2, &BTreeSet::new());
        assert_eq!(
            names(&c),
            vec![("evicted", Reason::Terminated), ("old", Reason::Terminated)]
        );
        assert!(plan(&pods, &[], 4, &BTreeSet::new()).is_empty());
        assert!(plan(&pods, &[], 0, &BTreeSet::new()).is_empty(), "disabled");
    }

    #[test]
    fn orphans_of_deleted_nodes() {
        let on = |n: &str| json!({"spec": {"nodeName": n}, "status": {"phase": "Running"}});
        let pods = vec![
            pod("a", "2026-01-01T00:00:00Z", on("gone")),
            pod("b", "2026-01-01T00:00:00Z", on("here")),
            pod("c", "2026-01-01T00:00:00Z", on("late")),
        ];
        let nodes = vec![node("here", true, json!([]))];
        assert_eq!(
            missing_nodes(&pods, &nodes),
            BTreeSet::from(["gone".to_string(), "late".to_string()])
        );
        let deleted = BTreeSet::from(["gone".to_string()]);
        assert_eq!(
            names(&plan(&pods, &nodes, 10, &deleted)),
            vec![("a", Reason::Orphaned)]
        );
    }

    #[test]
    fn quarantine_waits_and_forgets_reappeared_nodes() {
        let mut first = HashMap::new();
        let t0 = Instant::now();
        let missing = BTreeSet::from(["x".to_string(), "y".to_string()]);
        assert!(quarantined(&mut first, &missing, t0, QUARANTINE).is_empty());
        let later = t0 + QUARANTINE;
        assert_eq!(
            quarantined(&mut first, &missing, later, QUARANTINE),
            vec!["x".to_string(), "y".to_string()]
        );
        // y came back, then went missing again: its clock restarts.
        let only_x = BTreeSet::from(["x".to_string()]);
        quarantined(&mut first, &only_x, later, QUARANTINE);
        assert_eq!(
            quarantined(&mut first, &missing, later, QUARANTINE),
            vec!["x".to_string()]
        );
    }

    #[test]
    fn terminating_unscheduled_and_out_of_service() {
        let deleting = |n: Option<&str>| {
            json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"nodeName": n}, "status": {"phase": "Running"}})
        };
        let pods = vec![
            pod("unscheduled", "2026-01-01T00:00:00Z", deleting(None)),
            pod("oos", "2026-01-01T00:00:00Z", deleting(Some("down"))),
            pod("healthy", "2026-01-01T00:00:00Z", deleting(Some("up"))),
            pod(
                "notaint",
                "2026-01-01T00:00:00Z",
                deleting(Some("notready")),
            ),
        ];
        let taint = json!([{"key": OUT_OF_SERVICE_TAINT, "effect": "NoExecute"}]);
        let nodes = vec![
            node("down", false, taint.clone()),
            node("up", true, taint),
            node("notready", false, json!([])),
        ];
        assert_eq!(
            names(&plan(&pods, &nodes, 0, &BTreeSet::new())),
            vec![
                ("oos", Reason::TerminatingOutOfService),
                ("unscheduled", Reason::TerminatingUnscheduled)
            ]
        );
    }

    #[test]
    fn running_pods_are_marked_failed_orphans_with_disruption_target() {
        let running = pod(
            "p",
            "2026-01-01T00:00:00Z",
            json!({"status": {"phase": "Running"}}),
        );
        let p = failed_status_patch(&running, Reason::Orphaned, "now").unwrap();
        assert_eq!(p["status"]["phase"], "Failed");
        assert_eq!(p["metadata"]["uid"], "uid-p");
        assert_eq!(p["status"]["conditions"][0]["type"], "DisruptionTarget");
        assert_eq!(p["status"]["conditions"][0]["reason"], "DeletionByPodGC");
        let p = failed_status_patch(&running, Reason::TerminatingUnscheduled, "now").unwrap();
        assert!(p["status"].get("conditions").is_none());
        let done = pod(
            "d",
            "2026-01-01T00:00:00Z",
            json!({"status": {"phase": "Succeeded"}}),
        );
        assert!(failed_status_patch(&done, Reason::Orphaned, "now").is_none());
    }
}
