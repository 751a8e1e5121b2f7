//! The device-taint-eviction-controller's loop: pods that use allocated claims are synced
//! whenever they, their claims, ResourceSlices or DeviceTaintRules change; [`super::taints`]
//! says when each is to be evicted; due pods get the `DisruptionTarget` condition and are
//! deleted, later ones are synced again when due.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use component_base::events::{EventRecorder, EventSpec, EventType};
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use k8s_openapi::api::resource::v1::{ResourceClaim, ResourceSlice};
use kube::Api;

use super::rule::DeviceTaintRule;
use super::taints::{allocated_devices, device_taints, eviction_time, pod_eviction_time};
use crate::machinery::context::ControllerContext;
use crate::machinery::informers::handlers::{self as handlers, Change};
use crate::machinery::informers::{self, Informer};
use crate::machinery::pod_eviction::{mark_and_delete, Disruption, EvictionMetrics};
use crate::machinery::queue::WorkQueue;
use crate::resource::claim::names::{is_allocated, reserved_for};

type PodKey = (String, String);

struct State {
    client: kube::Client,
    pods: Informer<Pod>,
    claims: Informer<ResourceClaim>,
    slices: Informer<ResourceSlice>,
    rules: Informer<DeviceTaintRule>,
    recorder: EventRecorder,
    metrics: EvictionMetrics,
    /// Pods (namespace, name, uid) with an eviction scheduled for later.
    pending: Mutex<HashSet<(String, String, String)>>,
    /// Rules already reported as not applicable (reported once each).
    skipped_rules: Mutex<HashSet<String>>,
}

/// Queues the pods `claim` is reserved for.
fn enqueue_consumers(q: &WorkQueue<PodKey>, claim: &ResourceClaim) {
    let ns = claim.metadata.namespace.clone().unwrap_or_default();
    for r in reserved_for(claim) {
        if r.api_group.as_deref().unwrap_or_default().is_empty() && r.resource == "pods" {
            q.add((ns.clone(), r.name.clone()));
        }
    }
}

/// Runs the controller until shutdown.
pub async fn run(ctx: ControllerContext) -> anyhow::Result<()> {
    let sd = ctx.shutdown.clone();
    let queue: WorkQueue<PodKey> = WorkQueue::new();
    let pods = ctx.informers().informer::<Pod>();
    let q = queue.clone();
    handlers::on(&pods, move |p: &Pod, change| {
        let uses_claims = p
            .spec
            .as_ref()
            .is_some_and(|s| s.resource_claims.as_ref().is_some_and(|c| !c.is_empty()));
        if change == Change::Applied && uses_claims {
            if let (Some(ns), Some(n)) = (&p.metadata.namespace, &p.metadata.name) {
                q.add((ns.clone(), n.clone()));
            }
        }
    });
    let claims = ctx.informers().informer::<ResourceClaim>();
    let q = queue.clone();
    handlers::on(&claims, move |c: &ResourceClaim, _| {
        enqueue_consumers(&q, c)
    });
    // A slice or rule change may taint any allocated device: every consumer is looked at.
    let everyone = {
        let (q, claims) = (queue.clone(), claims.clone());
        move || {
            for c in claims.list().iter().filter(|c| is_allocated(c)) {
                enqueue_consumers(&q, c);
            }
        }
    };
    let slices = ctx.informers().informer::<ResourceSlice>();
    let e = everyone.clone();
    handlers::on(&slices, move |_: &ResourceSlice, _| e());
    let rules = ctx.informers().informer::<DeviceTaintRule>();
    handlers::on(&rules, move |_: &DeviceTaintRule, _| everyone());

    informers::wait_synced(&sd, async {
        tokio::join!(
            pods.wait_synced(),
            claims.wait_synced(),
            slices.wait_synced(),
            rules.wait_synced()
        );
    })
    .await?;
    let client = ctx.client_for(super::SERVICE_ACCOUNT).await?;
    let state = Arc::new(State {
        recorder: crate::machinery::context::event_recorder(
            client.clone(),
            "device-taint-eviction-controller",
        ),
        client,
        pods,
        claims,
        slices,
        rules,
        metrics: ctx.metrics.families(|r| {
            EvictionMetrics::register(
                r,
                "device_taint_eviction_controller",
                (
                    "[ALPHA] Total number of Pods deleted by DeviceTaintEvictionController since its start.",
                    "[ALPHA] Latency, in seconds, between the time when a device taint effect has been activated and a Pod's deletion via DeviceTaintEvictionController.",
                ),
            )
        }),
        pending: Mutex::default(),
        skipped_rules: Mutex::default(),
    });
    tracing::info!(controller = "device-taint-eviction-controller", "Starting");
    let q = queue.clone();
    queue
        .run("device-taint-eviction", 8, sd, move |key| {
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

impl State {
    /// When `claim`'s allocation is to be evicted, from the current slices and rules.
    fn claim_eviction(&self, claim: &ResourceClaim) -> Option<jiff::Timestamp> {
        let slices = self.slices.list();
        let rules = self.rules.list();
        eviction_time(allocated_devices(claim), |r| {
            device_taints(
                slices.iter().map(|s| s.as_ref()),
                rules.iter().map(|r| r.as_ref()),
                (&r.driver, &r.pool, &r.device),
                |rule, why| {
                    let first = self
                        .skipped_rules
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(rule.to_string());
                    if first {
                        tracing::warn!(rule, reason = %why, "DeviceTaintRule not applied");
                    }
                },
            )
            .unwrap_or_default()
        })
    }

    fn event(&self, ns: &str, name: &str, uid: Option<String>, note: &str) {
        let event = EventSpec {
            regarding: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(name.into()),
                namespace: Some(ns.into()),
                uid,
                ..Default::default()
            },
            related: None,
            type_: EventType::Normal,
            reason: "DeviceTaintManagerEviction".into(),
            action: "Delete".into(),
            note: note.into(),
        };
        let recorder = self.recorder.clone();
        tokio::spawn(async move { recorder.record(event).await });
    }
}

async fn sync(state: &State, (ns, name): &PodKey) -> anyhow::Result<Option<Duration>> {
    let Some(pod) = state.pods.get(ns, name) else {
        return Ok(None);
    };
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let pending_key = (ns.clone(), name.clone(), uid.clone());
    let due = if pod.metadata.deletion_timestamp.is_some() {
        None
    } else {
        pod_eviction_time(
            &pod,
            |c| state.claims.get(ns, c).map(|c| (*c).clone()),
            |c| state.claim_eviction(c),
        )
    };
    let now = jiff::Timestamp::now();
    {
        let mut pending = state.pending.lock().unwrap_or_else(|e| e.into_inner());
        let Some(at) = due else {
            if pending.remove(&pending_key) && pod.metadata.deletion_timestamp.is_none() {
                state.event(ns, name, Some(uid), "Cancelling deletion");
            }
            return Ok(None);
        };
        if at > now {
            pending.insert(pending_key);
            let wait = Duration::try_from(at.duration_since(now)).unwrap_or_default();
            return Ok(Some(wait));
        }
        pending.remove(&pending_key);
    }
    let Some(at) = due else { return Ok(None) };
    tracing::info!(pod = %format!("{ns}/{name}"), "Deleting pod");
    state.event(ns, name, Some(uid.clone()), "Marking for deletion");
    let api: Api<Pod> = Api::namespaced(state.client.clone(), ns);
    let why = Disruption {
        reason: "DeletionByDeviceTaintManager",
        message: "Device Taint manager: deleting due to NoExecute taint",
    };
    // Only the pod we decided on: one of another uid under the same name is left alone.
    if mark_and_delete(&api, &pod, &why, Some(uid)).await? {
        state.metrics.deletions.inc();
        let late = now.duration_since(at).as_secs_f64().max(0.0);
        state.metrics.latency.observe(late);
    }
    Ok(None)
}
