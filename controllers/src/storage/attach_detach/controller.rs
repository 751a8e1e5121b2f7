//! The controller's I/O: informers feed one reconcile pass at a time (a single-key work
//! queue, at most every [`LOOP_PERIOD`] as upstream's reconciler loop), whose [`plan`] is
//! carried out against the apiserver.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use component_base::events::{EventRecorder, EventSpec, EventType};
use k8s_openapi::api::core::v1::{
    Node, ObjectReference, PersistentVolume, PersistentVolumeClaim, Pod,
};
use k8s_openapi::api::storage::v1::{
    CSIDriver, VolumeAttachment, VolumeAttachmentSource, VolumeAttachmentSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::Api;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use super::actual::{attachment, node_view, NodeView};
use super::desired::{desired_state, VolumeLookup, VolumeToAttach};
use super::names;
use super::reconcile::{
    attach_failed_message, plan, Config, Memory, Observed, PodEvent, FAILED_ATTACH,
};
use crate::machinery::context::ControllerContext;
use crate::machinery::informers::{self, Informer};
use crate::machinery::queue::WorkQueue;
use api_helpers::errors;

/// The controller's identity with `--use-service-account-credentials`, and its events'
/// reporting component.
pub const SERVICE_ACCOUNT: &str = "attachdetach-controller";

/// Upstream's `ReconcilerLoopPeriod`: the shortest time between two passes.
pub const LOOP_PERIOD: Duration = Duration::from_millis(100);

/// `attachdetach_controller_total_volumes{plugin_name, state}`.
#[derive(Clone)]
struct AdcMetrics {
    total: Family<[(&'static str, String); 2], Gauge>,
}

impl AdcMetrics {
    fn register(registry: &component_base::metrics::Metrics) -> Self {
        let m = AdcMetrics {
            total: Family::default(),
        };
        registry.register(
            "attachdetach_controller_total_volumes",
            "[ALPHA] Number of volumes in A/D Controller",
            m.total.clone(),
        );
        m
    }

    fn set(&self, observed: &Observed) {
        let mut counts: BTreeMap<(String, &'static str), i64> = BTreeMap::new();
        for v in observed.desired.values() {
            *counts
                .entry((names::plugin_label(&v.driver), "desired_state_of_world"))
                .or_default() += 1;
        }
        for a in &observed.attachments {
            *counts
                .entry((names::plugin_label(&a.driver), "actual_state_of_world"))
                .or_default() += 1;
        }
        self.total.clear();
        for ((plugin, state), n) in counts {
            self.total
                .get_or_create(&[("plugin_name", plugin), ("state", state.to_string())])
                .set(n);
        }
    }
}

struct State {
    client: kube::Client,
    recorder: EventRecorder,
    pods: Informer<Pod>,
    nodes: Informer<Node>,
    claims: Informer<PersistentVolumeClaim>,
    volumes: Informer<PersistentVolume>,
    drivers: Informer<CSIDriver>,
    attachments: Informer<VolumeAttachment>,
    memory: Mutex<Memory>,
    config: Config,
    metrics: AdcMetrics,
}

impl VolumeLookup for State {
    fn claim(&self, namespace: &str, name: &str) -> Option<Arc<PersistentVolumeClaim>> {
        self.claims.get(namespace, name)
    }
    fn volume(&self, name: &str) -> Option<Arc<PersistentVolume>> {
        self.volumes.get("", name)
    }
    fn driver(&self, name: &str) -> Option<Arc<CSIDriver>> {
        self.drivers.get("", name)
    }
}

/// Whether a pod can need an attach: it names a claim (directly or ephemeral). Other pods
/// do not wake the reconciler.
fn may_need_attach(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .is_some_and(|v| {
            v.iter()
                .any(|v| v.persistent_volume_claim.is_some() || v.ephemeral.is_some())
        })
}

/// Wakes the reconciler on every change of a `K`.
fn wake_on<K>(informer: &Informer<K>, queue: &WorkQueue<()>)
where
    K: kube::Resource + Clone + Send + Sync + 'static,
{
    let q = queue.clone();
    crate::machinery::informers::handlers::on(informer, move |_: &K, _| q.add(()));
}

/// Runs the controller until shutdown.
pub async fn run(ctx: ControllerContext) -> anyhow::Result<()> {
    let sd = ctx.shutdown.clone();
    let queue: WorkQueue<()> = WorkQueue::new().with_metrics(&ctx.metrics, "attachdetach");
    let inf = ctx.informers();
    let (pods, nodes) = (inf.informer::<Pod>(), inf.informer::<Node>());
    let (claims, volumes) = (
        inf.informer::<PersistentVolumeClaim>(),
        inf.informer::<PersistentVolume>(),
    );
    let (drivers, attachments) = (
        inf.informer::<CSIDriver>(),
        inf.informer::<VolumeAttachment>(),
    );
    let q = queue.clone();
    pods.add_handler(move |c| {
        let relevant = match c {
            informers::Change::Added(p) | informers::Change::Deleted(p) => may_need_attach(p),
            informers::Change::Updated { old, new } => may_need_attach(new) && old != new,
        };
        if relevant {
            q.add(());
        }
    });
    let q = queue.clone();
    nodes.add_handler(move |c| {
        let relevant = match c {
            informers::Change::Added(_) | informers::Change::Deleted(_) => true,
            informers::Change::Updated { old, new } => node_view(old) != node_view(new),
        };
        if relevant {
            q.add(());
        }
    });
    wake_on(&claims, &queue);
    wake_on(&volumes, &queue);
    wake_on(&drivers, &queue);
    wake_on(&attachments, &queue);
    informers::wait_synced(&sd, async {
        tokio::join!(
            pods.wait_synced(),
            nodes.wait_synced(),
            claims.wait_synced(),
            volumes.wait_synced(),
            drivers.wait_synced(),
            attachments.wait_synced()
        );
    })
    .await?;
    let client = ctx.client_for(SERVICE_ACCOUNT).await?;
    let state = Arc::new(State {
        recorder: crate::machinery::context::event_recorder(client.clone(), SERVICE_ACCOUNT),
        client,
        pods,
        nodes,
        claims,
        volumes,
        drivers,
        attachments,
        memory: Mutex::default(),
        config: Config {
            disable_force_detach_on_timeout: ctx.options.disable_force_detach_on_timeout,
            ..Config::default()
        },
        metrics: ctx.metrics.families(AdcMetrics::register),
    });
    if !ctx.options.disable_attach_detach_reconcile_sync {
        spawn_resync(&queue, ctx.options.attach_detach_reconcile_sync_period, &sd);
    }
    queue.add(());
    let q = queue.clone();
    queue
        .run("attachdetach", 1, sd, move |()| {
            let (state, q) = (state.clone(), q.clone());
            async move {
                let result = sync(&state).await;
                tokio::time::sleep(LOOP_PERIOD).await;
                if let Some(after) = result? {
                    q.add_after((), after);
                }
                Ok(())
            }
        })
        .await;
    Ok(())
}

/// Upstream's periodic `syncStates` (`--attach-detach-reconcile-sync-period`): a full pass
/// that re-reads every VolumeAttachment's status even when no event came.
fn spawn_resync(queue: &WorkQueue<()>, period: Duration, sd: &tokio_util::sync::CancellationToken) {
    let (q, sd) = (queue.clone(), sd.clone());
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = sd.cancelled() => return,
                _ = tick.tick() => q.add(()),
            }
        }
    });
}

fn observe(state: &State) -> Observed {
    let nodes: BTreeMap<String, NodeView> = state
        .nodes
        .list()
        .iter()
        .filter_map(|n| Some((n.metadata.name.clone()?, node_view(n))))
        .collect();
    let pods = state.pods.list();
    let desired = desired_state(
        pods.iter().map(|p| &**p),
        |n| nodes.get(n).is_some_and(|v| v.managed),
        state,
    );
    let attachments = state
        .attachments
        .list()
        .iter()
        .filter_map(|va| {
            let pv = va
                .spec
                .source
                .persistent_volume_name
                .as_deref()
                .and_then(|n| state.volumes.get("", n));
            attachment(va, pv.as_deref(), nodes.get(&va.spec.node_name))
        })
        .collect();
    Observed {
        desired,
        attachments,
        nodes,
    }
}

/// One pass; returns when a timer needs the next one.
async fn sync(state: &State) -> anyhow::Result<Option<Duration>> {
    let observed = observe(state);
    state.metrics.set(&observed);
    let memory = state
        .memory
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let mut plan = plan(&observed, &memory, Instant::now(), &state.config);
    let nodes: Api<Node> = Api::all(state.client.clone());
    let mut failed = BTreeSet::new();
    let mut first_error = None;
    for (node, volumes) in &plan.node_status {
        let attached: Vec<_> = volumes
            .iter()
            .map(|v| serde_json::json!({"name": v, "devicePath": ""}))
            .collect();
        let value = if attached.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::Value::Array(attached)
        };
        let patch = serde_json::json!({"status": {"volumesAttached": value}});
        match nodes
            .patch_status(node, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                tracing::info!(node = %node, volumes = ?volumes, "Updated node status volumesAttached")
            }
            Err(e) => {
                tracing::warn!(node = %node, error = %e, "Could not update node status volumesAttached");
                failed.insert(node.clone());
                first_error.get_or_insert(anyhow::Error::from(e));
            }
        }
    }
    let vas: Api<VolumeAttachment> = Api::all(state.client.clone());
    for d in &plan.detach {
        // The node must stop treating the volume as attached before it goes.
        if failed.contains(&d.node) {
            continue;
        }
        match errors::ignore_not_found(vas.delete(&d.attachment, &DeleteParams::default()).await) {
            Ok(()) => tracing::info!(attachment = %d.attachment, node = %d.node, force = ?d.force,
                "attacherDetacher.DetachVolume started"),
            Err(e) => {
                tracing::warn!(attachment = %d.attachment, error = %e, "DetachVolume.Detach failed");
                first_error.get_or_insert(e.into());
            }
        }
    }
    for v in &plan.attach {
        if let Err(e) = create_attachment(&vas, v).await {
            let msg = attach_failed_message(
                &v.pv,
                &format!("{}: attacher.Attach failed: {e}", names::CSI_PLUGIN),
            );
            plan.events.extend(v.pods.iter().map(|p| PodEvent {
                pod: p.clone(),
                warning: true,
                reason: FAILED_ATTACH,
                message: msg.clone(),
            }));
            plan.memory.attaching.remove(&v.attachment_name());
            first_error.get_or_insert(e.into());
        }
    }
    for e in std::mem::take(&mut plan.events) {
        record(&state.recorder, e);
    }
    *state.memory.lock().unwrap_or_else(|e| e.into_inner()) = plan.memory;
    match first_error {
        Some(e) => Err(e),
        None => Ok(plan.recheck_after),
    }
}

/// Upstream's CSI attacher: a VolumeAttachment named after handle, driver and node, for the
/// PersistentVolume; one that exists already is waited for, not recreated.
async fn create_attachment(
    vas: &Api<VolumeAttachment>,
    v: &VolumeToAttach,
) -> Result<(), kube::Error> {
    let va = VolumeAttachment {
        metadata: ObjectMeta {
            name: Some(v.attachment_name()),
            ..Default::default()
        },
        spec: VolumeAttachmentSpec {
            attacher: v.driver.clone(),
            node_name: v.node.clone(),
            source: VolumeAttachmentSource {
                persistent_volume_name: Some(v.pv.clone()),
                ..Default::default()
            },
        },
        status: None,
    };
    match vas.create(&PostParams::default(), &va).await {
        Ok(_) => {
            tracing::info!(attachment = %v.attachment_name(), volume = %v.volume, node = %v.node,
                "attacherDetacher.AttachVolume started");
            Ok(())
        }
        Err(e) if errors::is_already_exists(&e) => Ok(()),
        Err(e) => Err(e),
    }
}

fn record(recorder: &EventRecorder, e: PodEvent) {
    let spec = EventSpec {
        regarding: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some(e.pod.name),
            namespace: Some(e.pod.namespace),
            uid: Some(e.pod.uid),
            ..Default::default()
        },
        related: None,
        type_: EventType::warning_if(e.warning),
        reason: e.reason.to_string(),
        action: if e.warning { "AttachVolume" } else { "Attach" }.to_string(),
        note: e.message,
    };
    recorder.emit(spec);
}
