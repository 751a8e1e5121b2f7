//! token-cleaner: deletes bootstrap-token Secrets once their `expiration` has passed, and
//! looks again at the moment a token expires.

use futures::future::{BoxFuture, FutureExt};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, Preconditions};
use kube::Api;

use super::token;
use crate::machinery::context::ControllerContext;
use crate::machinery::informers;
use crate::machinery::ControllerDescriptor;
use crate::machinery::{informers::handlers as informer, queue::WorkQueue};
use api_helpers::errors;

/// The identity it acts as with `--use-service-account-credentials`.
pub const SERVICE_ACCOUNT: &str = "token-cleaner";

/// Registry entry (off unless named in `--controllers`).
pub fn descriptor() -> ControllerDescriptor {
    ControllerDescriptor {
        name: "tokencleaner",
        enabled_by_default: false,
        start,
    }
}

fn start(ctx: ControllerContext) -> BoxFuture<'static, anyhow::Result<()>> {
    run(ctx).boxed()
}

async fn run(ctx: ControllerContext) -> anyhow::Result<()> {
    let queue: WorkQueue<String> = WorkQueue::new().with_metrics(&ctx.metrics, "token_cleaner");
    let q = queue.clone();
    // The shared Secrets informer, filtered in the handler as upstream's.
    let store = ctx.informers().informer::<Secret>();
    informer::on(&store, move |s: &Secret, change| {
        if let (Some(n), informer::Change::Applied) = (&s.metadata.name, change) {
            if token::is_bootstrap_token(s) {
                q.add(n.clone());
            }
        }
    });
    informers::wait_synced(&ctx.shutdown, store.wait_synced()).await?;
    let api: Api<Secret> =
        Api::namespaced(ctx.client_for(SERVICE_ACCOUNT).await?, token::NAMESPACE);
    let requeue = queue.clone();
    queue
        .run(
            "tokencleaner",
            1,
            ctx.shutdown.clone(),
            move |name: String| {
                let secret = store
                    .get(token::NAMESPACE, &name)
                    .filter(|s| token::is_bootstrap_token(s));
                let api = api.clone();
                let requeue = requeue.clone();
                async move {
                    let Some(secret) = secret else {
                        return Ok(());
                    };
                    match token::expiration(&secret, jiff::Timestamp::now()) {
                        (_, true) => delete(&api, &secret).await,
                        (Some(left), false) => {
                            requeue.add_after(name, left);
                            Ok(())
                        }
                        (None, false) => Ok(()),
                    }
                }
            },
        )
        .await;
    Ok(())
}

async fn delete(api: &Api<Secret>, secret: &Secret) -> anyhow::Result<()> {
    let name = secret.metadata.name.as_deref().unwrap_or_default();
    let params = DeleteParams {
        preconditions: secret.metadata.uid.clone().map(|uid| Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(name, &params).await {
        Ok(_) => {
            tracing::info!(secret = %format!("{}/{name}", token::NAMESPACE), "deleted expired bootstrap token");
            Ok(())
        }
        Err(e) if errors::is_not_found(&e) || errors::is_conflict(&e) => Ok(()),
        // Upstream logs and waits for the next event; a retry with backoff is kinder.
        Err(e) => Err(anyhow::Error::new(e).context(format!("deleting bootstrap token {name}"))),
    }
}
