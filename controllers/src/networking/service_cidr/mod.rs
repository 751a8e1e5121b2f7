//! service-cidr-controller: keeps the `networking.k8s.io/service-cidr-finalizer` and the
//! `Ready` condition on every ServiceCIDR, and releases a deleting one once no
//! allocator-managed IPAddress lies in it alone (upstream's `pkg/controller/servicecidrs`).

pub mod decide;
pub mod prefix;

use std::time::Duration;

use component_base::events::{EventRecorder, EventSpec, EventType};
use futures::future::FutureExt;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::networking::v1::{IPAddress, ServiceCIDR};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::Api;
use serde_json::json;

use crate::machinery::context::{event_recorder, ControllerContext};
use crate::machinery::informers::handlers::{self as informer, Change};
use crate::machinery::informers::Informer;
use crate::machinery::queue::WorkQueue;
use crate::machinery::ControllerDescriptor;
use api_helpers::errors;
use decide::{Plan, Ready, FINALIZER};

/// Upstream's controller name (field manager and event source).
pub const CONTROLLER_NAME: &str = "service-cidr-controller";
/// The identity of the controller with `--use-service-account-credentials`.
pub const SERVICE_ACCOUNT: &str = "service-cidrs-controller";
/// Upstream runs five workers.
const WORKERS: usize = 5;
/// A key is dropped after this many failed syncs in a row, as upstream.
const MAX_RETRIES: u32 = 15;

/// Registry entry.
pub fn descriptor() -> ControllerDescriptor {
    ControllerDescriptor {
        name: CONTROLLER_NAME,
        enabled_by_default: true,
        start: |ctx| run(ctx).boxed(),
    }
}

struct State {
    api: Api<ServiceCIDR>,
    cidrs: Informer<ServiceCIDR>,
    ips: Informer<IPAddress>,
    queue: WorkQueue<String>,
    recorder: EventRecorder,
}

async fn run(ctx: ControllerContext) -> anyhow::Result<()> {
    let sd = ctx.shutdown.clone();
    // Upstream's queue is named "ipaddresses".
    let queue: WorkQueue<String> = WorkQueue::new()
        .with_metrics(&ctx.metrics, "ipaddresses")
        .with_max_retries(MAX_RETRIES);
    let informers = ctx.informers();
    let cidrs = informers.informer::<ServiceCIDR>();
    let ips = informers.informer::<IPAddress>();
    let (q, all) = (queue.clone(), cidrs.clone());
    informer::on(&cidrs, move |c: &ServiceCIDR, change| {
        if let Some(name) = &c.metadata.name {
            q.add(name.clone());
        }
        // A new range may release (or stop releasing) the ranges it overlaps.
        if change == Change::Applied {
            let list = all.list();
            let refs: Vec<&ServiceCIDR> = list.iter().map(|c| c.as_ref()).collect();
            for name in decide::overlapping(c, &refs) {
                q.add(name.to_string());
            }
        }
    });
    let (q, all) = (queue.clone(), cidrs.clone());
    informer::on(&ips, move |ip: &IPAddress, _| {
        let list = all.list();
        let refs: Vec<&ServiceCIDR> = list.iter().map(|c| c.as_ref()).collect();
        for name in decide::containing(ip, &refs) {
            q.add(name.to_string());
        }
    });
    informer::wait_synced(&sd, async {
        cidrs.wait_synced().await;
        ips.wait_synced().await;
    })
    .await?;
    let client = ctx.client_for(SERVICE_ACCOUNT).await?;
    let state = std::sync::Arc::new(State {
        api: Api::all(client.clone()),
        cidrs,
        ips,
        queue: queue.clone(),
        recorder: event_recorder(client, CONTROLLER_NAME),
    });
    tracing::info!(controller = CONTROLLER_NAME, "Starting");
    queue
        .run("service-cidr", WORKERS, sd, move |name| {
            let state = state.clone();
            async move { sync(&state, &name).await }
        })
        .await;
    Ok(())
}

async fn sync(state: &State, name: &str) -> anyhow::Result<()> {
    let Some(cidr) = state.cidrs.get("", name) else {
        return Ok(());
    };
    let deleted_ago = cidr.metadata.deletion_timestamp.as_ref().map(|t| {
        Duration::try_from(jiff::Timestamp::now().duration_since(t.0)).unwrap_or_default()
    });
    let (all, ips) = (state.cidrs.list(), state.ips.list());
    let all: Vec<&ServiceCIDR> = all.iter().map(|c| c.as_ref()).collect();
    let ips: Vec<&IPAddress> = ips.iter().map(|i| i.as_ref()).collect();
    match decide::plan(&cidr, &all, &ips, deleted_ago) {
        Plan::Live {
            add_finalizer,
            ready,
        } => {
            if add_finalizer {
                let patch = json!({"metadata": {"finalizers": [FINALIZER]}});
                errors::ignore_not_found(
                    state
                        .api
                        .patch(name, &PatchParams::default(), &Patch::Strategic(&patch))
                        .await,
                )?;
                tracing::debug!(servicecidr = name, "Added protection finalizer");
            }
            if let Some(ready) = ready {
                if let Err(e) = apply_ready(&state.api, name, &ready).await {
                    tracing::info!(servicecidr = name, error = %e, "error updating default ServiceCIDR status");
                    state
                        .recorder
                        .record(EventSpec {
                            regarding: reference(&cidr),
                            related: None,
                            type_: EventType::Warning,
                            reason: "KubernetesServiceCIDRError".into(),
                            action: "Update".into(),
                            note: "The ServiceCIDR Status can not be set to Ready=True".into(),
                        })
                        .await;
                    return Err(e.into());
                }
            }
        }
        Plan::Blocked(ready) => {
            tracing::info!(
                servicecidr = name,
                "Deleting ServiceCIDR blocked by IP addresses"
            );
            if let Some(ready) = ready {
                apply_ready(&state.api, name, &ready).await?;
            }
        }
        Plan::WaitGrace(after) => state.queue.add_after(name.to_string(), after),
        Plan::Release => {
            let patch = json!({"metadata": {"$deleteFromPrimitiveList/finalizers": [FINALIZER]}});
            errors::ignore_not_found(
                state
                    .api
                    .patch(name, &PatchParams::default(), &Patch::Strategic(&patch))
                    .await,
            )?;
            tracing::info!(servicecidr = name, "Removed protection finalizer");
        }
        Plan::Nothing => {}
    }
    Ok(())
}

/// Server-side applies the `Ready` condition to the status, owning it as upstream does.
async fn apply_ready(api: &Api<ServiceCIDR>, name: &str, ready: &Ready) -> kube::Result<()> {
    let body = json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "ServiceCIDR",
        "metadata": {"name": name},
        "status": {"conditions": [{
            "type": decide::CONDITION_READY,
            "status": ready.status,
            "reason": ready.reason,
            "message": ready.message,
            "lastTransitionTime": Time(jiff::Timestamp::now()),
        }]},
    });
    let params = PatchParams::apply(CONTROLLER_NAME).force();
    errors::ignore_not_found(api.patch_status(name, &params, &Patch::Apply(body)).await)
}

fn reference(c: &ServiceCIDR) -> ObjectReference {
    ObjectReference {
        api_version: Some("networking.k8s.io/v1".into()),
        kind: Some("ServiceCIDR".into()),
        name: c.metadata.name.clone(),
        uid: c.metadata.uid.clone(),
        resource_version: c.metadata.resource_version.clone(),
        ..Default::default()
    }
}
