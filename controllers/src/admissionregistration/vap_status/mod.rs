//! validatingadmissionpolicy-status-controller: type-checks every new generation of a
//! ValidatingAdmissionPolicy against the schemas of the kinds it matches and writes
//! `status.observedGeneration` and `status.typeChecking.expressionWarnings`, as upstream's
//! `pkg/controller/validatingadmissionpolicystatus` (which writes no conditions).

pub mod check;
pub mod policy;
pub mod schemas;
pub mod types;

use std::sync::Arc;

use futures::future::FutureExt;
use k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicy;
use kube::api::{Patch, PatchParams};
use kube::Api;
use serde_json::json;

use crate::machinery::context::ControllerContext;
use crate::machinery::informers::handlers::{self as informer, Change};
use crate::machinery::informers::Informer;
use crate::machinery::queue::WorkQueue;
use crate::machinery::ControllerDescriptor;
use api_helpers::errors;
use schemas::Schemas;

/// Upstream's controller name: the field manager of the status and the queue's name.
pub const CONTROLLER_NAME: &str = "validatingadmissionpolicy-status";
/// The identity of the controller with `--use-service-account-credentials`.
pub const SERVICE_ACCOUNT: &str = "validatingadmissionpolicy-status-controller";

/// Registry entry.
pub fn descriptor() -> ControllerDescriptor {
    ControllerDescriptor {
        name: "validatingadmissionpolicy-status-controller",
        enabled_by_default: true,
        start: |ctx| run(ctx).boxed(),
    }
}

async fn run(ctx: ControllerContext) -> anyhow::Result<()> {
    let sd = ctx.shutdown.clone();
    let queue: WorkQueue<String> = WorkQueue::new().with_metrics(&ctx.metrics, CONTROLLER_NAME);
    let policies = ctx.informers().informer::<ValidatingAdmissionPolicy>();
    let q = queue.clone();
    informer::on(&policies, move |p: &ValidatingAdmissionPolicy, change| {
        if change == Change::Applied {
            if let Some(name) = &p.metadata.name {
                q.add(name.clone());
            }
        }
    });
    informer::wait_synced(&sd, policies.wait_synced()).await?;
    let client = ctx.client_for(SERVICE_ACCOUNT).await?;
    let api: Api<ValidatingAdmissionPolicy> = Api::all(client.clone());
    let schemas = Arc::new(Schemas::new(client));
    // Upstream starts one worker.
    queue
        .run(CONTROLLER_NAME, 1, sd, move |name| {
            let (api, policies, schemas) = (api.clone(), policies.clone(), schemas.clone());
            async move { reconcile(&api, &policies, &schemas, &name).await }
        })
        .await;
    Ok(())
}

async fn reconcile(
    api: &Api<ValidatingAdmissionPolicy>,
    policies: &Informer<ValidatingAdmissionPolicy>,
    schemas: &Schemas,
    name: &str,
) -> anyhow::Result<()> {
    let Some(p) = policies.get("", name) else {
        return Ok(());
    };
    if !policy::needs_check(&p) {
        return Ok(());
    }
    // Resolve the matched kinds and their schemas; a kind that does not resolve is not
    // checked (type checking must never fail the policy).
    let rules = policy::rules_to_check(&p);
    let mut resolved = std::collections::HashMap::new();
    for gvr in rules.iter().flatten() {
        let kinds = match schemas.kinds_for(gvr).await {
            Ok(k) => k,
            Err(e) => {
                tracing::debug!(policy = name, error = %format!("{e:#}"), "cannot map resource to kind");
                Vec::new()
            }
        };
        resolved.insert(gvr.clone(), kinds);
    }
    let gvks = policy::kinds_to_check(&rules, |gvr| resolved.get(gvr).cloned().unwrap_or_default());
    let mut kinds = Vec::new();
    for gvk in gvks {
        match schemas.schema_for(&gvk).await {
            Ok(Some(t)) => kinds.push((gvk, t)),
            Ok(None) => {}
            Err(e) => {
                tracing::info!(policy = name, %gvk, error = %format!("{e:#}"), "internal error: schema resolution failure")
            }
        }
    }
    let warnings = policy::warnings(&p, &kinds);
    // `expressionWarnings: []` rather than leaving it out: when a re-check finds no warnings
    // where the last found some, server-side apply would otherwise drop the field this
    // manager owned and `typeChecking` with it, and a checked policy would read unchecked.
    let type_checking = json!({"expressionWarnings": warnings});
    let body = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "status": {
            "observedGeneration": p.metadata.generation,
            "typeChecking": type_checking,
        },
    });
    let params = PatchParams::apply(CONTROLLER_NAME).force();
    errors::ignore_not_found(api.patch_status(name, &params, &Patch::Apply(body)).await)?;
    tracing::debug!(policy = name, warnings = warnings.len(), "type checked");
    Ok(())
}
