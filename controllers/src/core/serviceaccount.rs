//! serviceaccount-controller: every active namespace has a `default` ServiceAccount.

use std::sync::Arc;

use futures::future::{BoxFuture, FutureExt};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{ObjectMeta, PostParams};
use kube::Api;

use crate::machinery::context::ControllerContext;
use crate::machinery::informers::Informer;
use crate::machinery::ControllerDescriptor;
use crate::machinery::{informers::handlers as informer, queue::WorkQueue};
use api_helpers::errors;

/// The service accounts every namespace gets.
pub const MANAGED_NAMES: &[&str] = &["default"];

/// The identity it acts as with `--use-service-account-credentials`.
pub const SERVICE_ACCOUNT: &str = "service-account-controller";

/// Registry entry.
pub fn descriptor() -> ControllerDescriptor {
    ControllerDescriptor {
        name: "serviceaccount",
        enabled_by_default: true,
        start,
    }
}

/// Whether the namespace is active (a terminating namespace gets nothing new).
pub fn is_active(ns: &Namespace) -> bool {
    ns.metadata.deletion_timestamp.is_none()
        && ns
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .unwrap_or("Active")
            == "Active"
}

/// The managed service accounts `ns` lacks, given which exist.
pub fn missing(ns: &Namespace, exists: impl Fn(&str) -> bool) -> Vec<ServiceAccount> {
    if !is_active(ns) {
        return Vec::new();
    }
    let namespace = ns.metadata.name.clone();
    MANAGED_NAMES
        .iter()
        .filter(|n| !exists(n))
        .map(|n| ServiceAccount {
            metadata: ObjectMeta {
                name: Some(n.to_string()),
                namespace: namespace.clone(),
                ..Default::default()
            },
            ..Default::default()
        })
        .collect()
}

fn start(ctx: ControllerContext) -> BoxFuture<'static, anyhow::Result<()>> {
    run(ctx).boxed()
}

async fn run(ctx: ControllerContext) -> anyhow::Result<()> {
    let queue: WorkQueue<String> = WorkQueue::new().with_metrics(&ctx.metrics, "serviceaccount");
    let q = queue.clone();
    let namespaces = {
        let shared = ctx.informers().informer::<Namespace>();
        informer::on(&shared, move |ns: &Namespace, _| {
            if let Some(n) = &ns.metadata.name {
                q.add(n.clone());
            }
        });
        shared
    };
    let q = queue.clone();
    let accounts = ctx.informers().informer::<ServiceAccount>();
    informer::on(&accounts, move |sa: &ServiceAccount, change| {
        if change == informer::Change::Deleted && managed(sa) {
            if let Some(ns) = &sa.metadata.namespace {
                q.add(ns.clone());
            }
        }
    });
    informer::wait_synced(&ctx.shutdown, async {
        namespaces.wait_synced().await;
        accounts.wait_synced().await;
    })
    .await?;
    // Upstream runs this controller with one worker.
    let workers = 1;
    let client = ctx.client_for(SERVICE_ACCOUNT).await?;
    let state = Arc::new((namespaces, accounts));
    queue
        .run("serviceaccount", workers, ctx.shutdown.clone(), move |ns| {
            sync(client.clone(), state.clone(), ns)
        })
        .await;
    Ok(())
}

/// Whether `sa` is one of the accounts this controller keeps in every namespace.
fn managed(sa: &ServiceAccount) -> bool {
    sa.metadata
        .name
        .as_deref()
        .is_some_and(|n| MANAGED_NAMES.contains(&n))
}

async fn sync(
    client: kube::Client,
    state: Arc<(Informer<Namespace>, Informer<ServiceAccount>)>,
    name: String,
) -> anyhow::Result<()> {
    let (namespaces, accounts) = &*state;
    let Some(ns) = namespaces.get("", &name) else {
        return Ok(());
    };
    let exists = |sa: &str| accounts.get(&name, sa).is_some();
    let api: Api<ServiceAccount> = Api::namespaced(client, &name);
    for sa in missing(&ns, exists) {
        match api.create(&PostParams::default(), &sa).await {
            Ok(_) => tracing::info!(namespace = %name, "created ServiceAccount default"),
            // Already there (cache lag) or the namespace is terminating: nothing to do.
            Err(e) if errors::is_conflict(&e) || errors::is_namespace_terminating(&e) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::NamespaceStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn ns(name: &str) -> Namespace {
        Namespace {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn active_namespace_without_default_gets_one() {
        let got = missing(&ns("team-a"), |_| false);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].metadata.name.as_deref(), Some("default"));
        assert_eq!(got[0].metadata.namespace.as_deref(), Some("team-a"));
    }

    #[test]
    fn existing_default_is_left_alone() {
        assert!(missing(&ns("team-a"), |n| n == "default").is_empty());
    }

    #[test]
    fn terminating_namespace_gets_nothing() {
        let mut n = ns("gone");
        n.status = Some(NamespaceStatus {
            phase: Some("Terminating".into()),
            ..Default::default()
        });
        assert!(missing(&n, |_| false).is_empty());
        let mut n = ns("gone");
        n.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::now()));
        assert!(missing(&n, |_| false).is_empty());
    }
}
