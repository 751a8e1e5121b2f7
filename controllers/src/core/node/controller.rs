//! The node-lifecycle loop: every `--node-monitor-period` (and on every Node or Lease
//! change) each node's health is re-evaluated, its status and taints written when they
//! change, and the pods of a node that stopped being Ready marked not ready.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{ListParams, Patch, PatchParams};
use kube::Api;
use serde_json::json;

use super::{health, taints};
use crate::machinery::context::ControllerContext;
use crate::machinery::informers::Informer;
use crate::machinery::{informers::handlers as informer, queue::WorkQueue};
use api_helpers::errors;

/// Where kubelets keep their heartbeat Leases.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";

struct State {
    client: kube::Client,
    nodes: Informer<Node>,
    leases: Informer<Lease>,
    probes: Mutex<HashMap<String, health::Probe>>,
    ctx: ControllerContext,
}

/// Runs until shutdown.
pub async fn run(ctx: ControllerContext) -> anyhow::Result<()> {
    let queue: WorkQueue<String> =
        WorkQueue::new().with_metrics(&ctx.metrics, "node_lifecycle_controller");
    let sd = ctx.shutdown.clone();
    let q = queue.clone();
    let nodes = ctx.informers().informer::<Node>();
    informer::on(&nodes, move |n: &Node, change| {
        if let (Some(name), informer::Change::Applied) = (&n.metadata.name, change) {
            q.add(name.clone());
        }
    });
    let q = queue.clone();
    // The shared Lease informer holds every namespace's Leases; only kubelets' matter here.
    let leases = ctx.informers().informer::<Lease>();
    informer::on(&leases, move |l: &Lease, _| {
        if l.metadata.namespace.as_deref() != Some(LEASE_NAMESPACE) {
            return;
        }
        if let Some(name) = &l.metadata.name {
            q.add(name.clone());
        }
    });
    informer::wait_synced(&sd, async {
        nodes.wait_synced().await;
        leases.wait_synced().await;
    })
    .await?;
    let state = Arc::new(State {
        client: ctx.client_for(super::SERVICE_ACCOUNT).await?,
        nodes,
        leases,
        probes: Mutex::default(),
        ctx: ctx.clone(),
    });
    // The monitor tick: silence is only noticed by looking.
    let (q, tick_state, tick_sd, period) = (
        queue.clone(),
        state.clone(),
        sd.clone(),
        ctx.options.node_monitor_period,
    );
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(period);
        loop {
            tokio::select! {
                _ = tick_sd.cancelled() => return,
                _ = ticker.tick() => {
                    for n in tick_state.nodes.list() {
                        if let Some(name) = &n.metadata.name {
                            q.add(name.clone());
                        }
                    }
                }
            }
        }
    });
    queue
        .run("node-lifecycle", 1, sd, move |name| {
            sync(state.clone(), name)
        })
        .await;
    Ok(())
}

fn now_time() -> Time {
    Time(jiff::Timestamp::now())
}

async fn sync(state: Arc<State>, name: String) -> anyhow::Result<()> {
    let Some(node) = state.nodes.get("", &name) else {
        state
            .probes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&name);
        return Ok(());
    };
    let lease = state.leases.get(LEASE_NAMESPACE, &name);
    let renew = lease
        .as_ref()
        .and_then(|l| l.spec.as_ref())
        .and_then(|s| s.renew_time.as_ref())
        .map(|t| Time(t.0));
    let now = Instant::now();
    let probe = {
        let mut probes = state.probes.lock().unwrap_or_else(|e| e.into_inner());
        let p = health::observe(
            probes.remove(&name),
            health::heartbeat(&node, renew.as_ref()),
            now,
        );
        probes.insert(name.clone(), p.clone());
        p
    };
    let opts = &state.ctx.options;
    let api: Api<Node> = Api::all(state.client.clone());
    let mut node = node.as_ref().clone();
    let was_ready = taints::ready_status(&node) == Some("True");
    if let Some(conditions) = health::stale_conditions(
        &node,
        &probe,
        now,
        &now_time(),
        opts.node_monitor_grace_period,
        opts.node_startup_grace_period,
    ) {
        tracing::info!(node = %name, "Node stopped posting status; marking its conditions Unknown");
        let patch = json!({"status": {"conditions": conditions}});
        node = match api
            .patch_status(&name, &PatchParams::default(), &Patch::Strategic(&patch))
            .await
        {
            Ok(n) => n,
            Err(e) if errors::is_not_found(&e) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        if was_ready {
            mark_pods_not_ready(&state.client, &name).await?;
        }
    }
    // Upstream's full disruption: when no node is Ready, nothing is evicted.
    let any_ready = state
        .nodes
        .list()
        .iter()
        .any(|n| taints::ready_status(n) == Some("True"))
        || taints::ready_status(&node) == Some("True");
    let want = taints::desired(&node, any_ready, &now_time());
    let have = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    if want != have {
        tracing::info!(node = %name, taints = ?want.iter().map(|t| format!("{}:{}", t.key, t.effect)).collect::<Vec<_>>(), "Updating node taints");
        let patch = json!({"metadata": {"resourceVersion": node.metadata.resource_version}, "spec": {"taints": want}});
        match api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {}
            Err(e) if errors::is_not_found(&e) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Sets the Ready condition of every pod on `node` to False (upstream's MarkPodsNotReady).
async fn mark_pods_not_ready(client: &kube::Client, node: &str) -> anyhow::Result<()> {
    let pods: Api<Pod> = Api::all(client.clone());
    let on_node = pods
        .list(&ListParams::default().fields(&format!("spec.nodeName={node}")))
        .await?;
    for pod in on_node.items {
        let Some(conditions) = pod.status.as_ref().and_then(|s| s.conditions.clone()) else {
            continue;
        };
        if !conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status != "False")
        {
            continue;
        }
        let updated: Vec<_> = conditions
            .into_iter()
            .map(|mut c| {
                if c.type_ == "Ready" {
                    c.status = "False".into();
                    c.last_transition_time = Some(now_time());
                }
                c
            })
            .collect();
        let (Some(ns), Some(name)) = (&pod.metadata.namespace, &pod.metadata.name) else {
            continue;
        };
        let patch = json!({"status": {"conditions": updated}});
        errors::ignore_not_found(
            Api::<Pod>::namespaced(client.clone(), ns)
                .patch_status(name, &PatchParams::default(), &Patch::Strategic(&patch))
                .await,
        )?;
    }
    Ok(())
}
