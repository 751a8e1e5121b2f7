//! namespace-controller: empties a terminating namespace of every namespaced resource the
//! apiserver serves, reports progress in NamespaceDeletion* conditions, then removes the
//! `kubernetes` finalizer so the apiserver deletes the namespace.

use std::time::Duration;

use futures::future::{BoxFuture, FutureExt};
use k8s_openapi::api::core::v1::{Namespace, NamespaceCondition, NamespaceStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, DynamicObject, ListParams, PostParams, PropagationPolicy};
use kube::discovery::verbs;
use kube::Api;

use crate::machinery::context::ControllerContext;
use crate::machinery::discovery::{self, Served};
use crate::machinery::ControllerDescriptor;
use crate::machinery::{informers::handlers as informer, queue::WorkQueue};
use api_helpers::errors;

/// The finalizer this controller owns (`spec.finalizers`).
pub const FINALIZER: &str = "kubernetes";

/// The identity it acts as with `--use-service-account-credentials`.
pub const SERVICE_ACCOUNT: &str = "namespace-controller";

/// Registry entry.
pub fn descriptor() -> ControllerDescriptor {
    ControllerDescriptor {
        name: "namespace",
        enabled_by_default: true,
        start,
    }
}

/// What one pass over the namespace's content found.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Progress {
    /// Discovery failed (some groups unknown).
    pub discovery_error: Option<String>,
    /// Deletions that failed, `resource: message`.
    pub deletion_errors: Vec<String>,
    /// Resources with objects left, with counts (`pods.: 3`).
    pub remaining: Vec<(String, usize)>,
    /// Finalizers still on remaining objects, with how many objects carry each.
    pub finalizers: Vec<(String, usize)>,
}

impl Progress {
    /// Whether the namespace is empty and its finalizer may go.
    pub fn done(&self) -> bool {
        self.discovery_error.is_none()
            && self.deletion_errors.is_empty()
            && self.remaining.is_empty()
    }
}

fn condition(
    type_: &str,
    failed: bool,
    ok_reason: &str,
    bad_reason: &str,
    message: String,
    now: &Time,
) -> NamespaceCondition {
    NamespaceCondition {
        type_: type_.into(),
        status: if failed { "True" } else { "False" }.into(),
        reason: Some(if failed { bad_reason } else { ok_reason }.into()),
        message: Some(if failed { message } else { ok_message(type_) }),
        last_transition_time: Some(now.clone()),
    }
}

fn ok_message(type_: &str) -> String {
    match type_ {
        "NamespaceDeletionDiscoveryFailure" => "All resources successfully discovered",
        "NamespaceDeletionGroupVersionParsingFailure" => {
            "All legacy kube types successfully parsed"
        }
        "NamespaceDeletionContentFailure" => {
            "All content successfully deleted, may be waiting on finalization"
        }
        "NamespaceContentRemaining" => "All content successfully removed",
        _ => "All content-preserving finalizers finished",
    }
    .into()
}

fn summary(items: &[(String, usize)], what: &str) -> String {
    items
        .iter()
        .map(|(name, n)| format!("{name} has {n} {what}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The five NamespaceDeletion* conditions upstream reports for `progress`, keeping the
/// transition time of conditions whose status did not change.
pub fn conditions(
    progress: &Progress,
    previous: &[NamespaceCondition],
    now: Time,
) -> Vec<NamespaceCondition> {
    let mut out = vec![
        condition(
            "NamespaceDeletionDiscoveryFailure",
            progress.discovery_error.is_some(),
            "ResourcesDiscovered",
            "DiscoveryFailed",
            progress.discovery_error.clone().unwrap_or_default(),
            &now,
        ),
        condition(
            "NamespaceDeletionGroupVersionParsingFailure",
            false,
            "ParsedGroupVersions",
            "GroupVersionParsingFailed",
            String::new(),
            &now,
        ),
        condition(
            "NamespaceDeletionContentFailure",
            !progress.deletion_errors.is_empty(),
            "ContentDeleted",
            "ContentDeletionFailed",
            format!(
                "Failed to delete all resource types, {} remaining: {}",
                progress.deletion_errors.len(),
                progress.deletion_errors.join(", ")
            ),
            &now,
        ),
        condition(
            "NamespaceContentRemaining",
            !progress.remaining.is_empty(),
            "ContentRemoved",
            "SomeResourcesRemain",
            format!(
                "Some resources are remaining: {}",
                summary(&progress.remaining, "resource instances")
            ),
            &now,
        ),
        condition(
            "NamespaceFinalizersRemaining",
            !progress.finalizers.is_empty(),
            "ContentHasNoFinalizers",
            "SomeFinalizersRemain",
            format!(
                "Some content in the namespace has finalizers remaining: {}",
                summary(&progress.finalizers, "resource instances").replace(" has ", " in ")
            ),
            &now,
        ),
    ];
    for c in &mut out {
        if let Some(p) = previous
            .iter()
            .find(|p| p.type_ == c.type_ && p.status == c.status)
        {
            c.last_transition_time = p.last_transition_time.clone();
        }
    }
    out
}

/// The namespace with the `kubernetes` finalizer removed from `spec.finalizers`, or `None`
/// if it has none.
pub fn without_finalizer(ns: &Namespace) -> Option<Namespace> {
    let finalizers = ns.spec.as_ref().and_then(|s| s.finalizers.as_ref())?;
    if !finalizers.iter().any(|f| f == FINALIZER) {
        return None;
    }
    let mut ns = ns.clone();
    if let Some(spec) = ns.spec.as_mut() {
        spec.finalizers = Some(
            finalizers
                .iter()
                .filter(|f| *f != FINALIZER)
                .cloned()
                .collect(),
        );
    }
    Some(ns)
}

fn start(ctx: ControllerContext) -> BoxFuture<'static, anyhow::Result<()>> {
    run(ctx).boxed()
}

async fn run(ctx: ControllerContext) -> anyhow::Result<()> {
    let queue: WorkQueue<String> =
        WorkQueue::with_backoff(Duration::from_millis(5), Duration::from_secs(60))
            .with_metrics(&ctx.metrics, "namespace");
    let q = queue.clone();
    let store = {
        let shared = ctx.informers().informer::<Namespace>();
        informer::on(&shared, move |ns: &Namespace, change| {
            if let (Some(name), informer::Change::Applied, Some(_)) =
                (&ns.metadata.name, change, &ns.metadata.deletion_timestamp)
            {
                q.add(name.clone());
            }
        });
        shared
    };
    informer::wait_synced(&ctx.shutdown, async {
        store.wait_synced().await;
    })
    .await?;
    let client = ctx.client_for(SERVICE_ACCOUNT).await?;
    let q = queue.clone();
    let resync = ctx.options.namespace_sync_period;
    queue
        .run(
            "namespace",
            ctx.options.concurrency.namespace,
            ctx.shutdown.clone(),
            move |name| {
                let (client, q) = (client.clone(), q.clone());
                async move {
                    if let Some(after) = sync(&client, &name).await? {
                        q.add_after(name, after.min(resync));
                    }
                    Ok(())
                }
            },
        )
        .await;
    Ok(())
}

/// One pass: returns when to look again if content remains.
async fn sync(client: &kube::Client, name: &str) -> anyhow::Result<Option<Duration>> {
    let api: Api<Namespace> = Api::all(client.clone());
    let Some(ns) = api.get_opt(name).await? else {
        return Ok(None);
    };
    if ns.metadata.deletion_timestamp.is_none() || without_finalizer(&ns).is_none() {
        return Ok(None);
    }
    let progress = delete_content(client, name).await;
    let previous = ns
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let mut updated = ns.clone();
    let status = updated.status.get_or_insert_with(NamespaceStatus::default);
    status.conditions = Some(conditions(
        &progress,
        &previous,
        Time(jiff::Timestamp::now()),
    ));
    if status.conditions.as_ref() != Some(&previous) {
        match api
            .replace_status(name, &PostParams::default(), &updated)
            .await
        {
            Ok(n) => updated = n,
            Err(e) if errors::is_not_found(&e) => return Ok(None),
            Err(e) if errors::is_conflict(&e) => return Ok(Some(Duration::from_millis(100))),
            Err(e) => return Err(e.into()),
        }
    }
    if !progress.done() {
        tracing::info!(namespace = name, remaining = ?progress.remaining, errors = ?progress.deletion_errors, "Namespace content remains");
        return Ok(Some(if progress.remaining.is_empty() {
            Duration::from_secs(5)
        } else {
            Duration::from_secs(2)
        }));
    }
    let Some(finalized) = without_finalizer(&updated) else {
        return Ok(None);
    };
    match api
        .replace_subresource("finalize", name, &PostParams::default(), &finalized)
        .await
    {
        Ok(_) => {
            tracing::info!(
                namespace = name,
                "Namespace content removed, finalizer released"
            );
            Ok(None)
        }
        Err(e) if errors::is_not_found(&e) => Ok(None),
        Err(e) if errors::is_conflict(&e) => Ok(Some(Duration::from_millis(100))),
        Err(e) => Err(e.into()),
    }
}

/// Splits the namespace's deletable resources as upstream's OrderedNamespaceDeletion
/// (KEP-5080, on by default since 1.34) deletes them: the core group's pods first, then, once
/// no pod is left, everything else (so a pod never outlives the Secrets, ConfigMaps or
/// ServiceAccounts it uses).
pub fn deletion_order(deletable: Vec<Served>) -> (Vec<Served>, Vec<Served>) {
    deletable
        .into_iter()
        .partition(|s| s.resource.group.is_empty() && s.resource.plural == "pods")
}

/// Deletes the namespace's pods, then (once none is left) every other namespaced resource,
/// and lists what is left.
async fn delete_content(client: &kube::Client, namespace: &str) -> Progress {
    let mut progress = Progress::default();
    let served = match discovery::served(client).await {
        Ok(s) => s,
        Err(e) => {
            progress.discovery_error = Some(format!("Discovery failed for some groups: {e}"));
            return progress;
        }
    };
    let (pods, rest) = deletion_order(discovery::deletable_namespaced(&served));
    delete_resources(client, namespace, &pods, &mut progress).await;
    if progress.remaining.is_empty() && progress.deletion_errors.is_empty() {
        delete_resources(client, namespace, &rest, &mut progress).await;
    }
    progress
}

/// Deletes every object of `resources` in `namespace` (background propagation), recording
/// failures, what remains and the finalizers holding it in `progress`.
async fn delete_resources(
    client: &kube::Client,
    namespace: &str,
    resources: &[Served],
    progress: &mut Progress,
) {
    let background = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..Default::default()
    };
    for s in resources {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &s.resource);
        // Most types are empty in most namespaces: one list (of at most one item) spares
        // them the delete-collection and the second list. Nothing new can appear meanwhile:
        // the API server refuses creation in a terminating namespace.
        match api.list_metadata(&ListParams::default().limit(1)).await {
            Ok(list) if list.items.is_empty() => continue,
            Err(e) if errors::is_not_found(&e) => continue,
            _ => {}
        }
        if let Err(e) = delete_all(&api, s, &background).await {
            progress
                .deletion_errors
                .push(format!("{}: {e}", s.group_resource()));
            continue;
        }
        match api.list_metadata(&ListParams::default()).await {
            Ok(list) if !list.items.is_empty() => {
                progress
                    .remaining
                    .push((s.group_resource(), list.items.len()));
                for item in &list.items {
                    for f in item.metadata.finalizers.iter().flatten() {
                        match progress.finalizers.iter_mut().find(|(n, _)| n == f) {
                            Some((_, count)) => *count += 1,
                            None => progress.finalizers.push((f.clone(), 1)),
                        }
                    }
                }
            }
            Ok(_) => {}
            Err(e) if errors::is_not_found(&e) => {}
            Err(e) => progress
                .deletion_errors
                .push(format!("{}: {e}", s.group_resource())),
        }
    }
}

async fn delete_all(
    api: &Api<DynamicObject>,
    s: &Served,
    dp: &DeleteParams,
) -> Result<(), kube::Error> {
    if s.supports(verbs::DELETE_COLLECTION) {
        return errors::ignore_not_found(api.delete_collection(dp, &ListParams::default()).await);
    }
    for item in api.list_metadata(&ListParams::default()).await?.items {
        if item.metadata.deletion_timestamp.is_some() {
            continue;
        }
        if let Some(name) = &item.metadata.name {
            errors::ignore_not_found(api.delete(name, dp).await)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::NamespaceSpec;

    fn at(secs: i64) -> Time {
        Time(jiff::Timestamp::from_second(secs).unwrap())
    }

    #[test]
    fn empty_namespace_reports_all_clear() {
        let c = conditions(&Progress::default(), &[], at(10));
        assert_eq!(c.len(), 5);
        assert!(c.iter().all(|c| c.status == "False"), "{c:?}");
        assert_eq!(c[3].reason.as_deref(), Some("ContentRemoved"));
        assert_eq!(
            c[3].message.as_deref(),
            Some("All content successfully removed")
        );
    }

    #[test]
    fn remaining_content_and_finalizers_are_reported() {
        let p = Progress {
            remaining: vec![("pods".into(), 2)],
            finalizers: vec![("example.com/keep".into(), 1)],
            ..Default::default()
        };
        assert!(!p.done());
        let c = conditions(&p, &[], at(10));
        let remaining = c
            .iter()
            .find(|c| c.type_ == "NamespaceContentRemaining")
            .unwrap();
        assert_eq!(remaining.status, "True");
        assert_eq!(remaining.reason.as_deref(), Some("SomeResourcesRemain"));
        assert_eq!(
            remaining.message.as_deref(),
            Some("Some resources are remaining: pods has 2 resource instances")
        );
        let fin = c
            .iter()
            .find(|c| c.type_ == "NamespaceFinalizersRemaining")
            .unwrap();
        assert_eq!(fin.message.as_deref(), Some("Some content in the namespace has finalizers remaining: example.com/keep in 1 resource instances"));
    }

    #[test]
    fn unchanged_conditions_keep_their_transition_time() {
        let first = conditions(&Progress::default(), &[], at(10));
        let again = conditions(&Progress::default(), &first, at(20));
        assert_eq!(again, first);
        let failed = conditions(
            &Progress {
                discovery_error: Some("x".into()),
                ..Default::default()
            },
            &first,
            at(30),
        );
        assert_eq!(failed[0].last_transition_time, Some(at(30)));
        assert_eq!(failed[1].last_transition_time, Some(at(10)));
    }

    #[test]
    fn finalizer_removal_keeps_other_finalizers() {
        let ns = Namespace {
            spec: Some(NamespaceSpec {
                finalizers: Some(vec!["kubernetes".into(), "example.com/x".into()]),
            }),
            ..Default::default()
        };
        let out = without_finalizer(&ns).unwrap();
        assert_eq!(out.spec.unwrap().finalizers.unwrap(), vec!["example.com/x"]);
        assert!(without_finalizer(&Namespace::default()).is_none());
    }

    #[test]
    fn core_pods_go_before_everything_else() {
        use crate::machinery::discovery::testing::served;
        let verbs = ["list", "delete"];
        let (first, rest) = deletion_order(vec![
            served("", "ConfigMap", &verbs),
            served("metrics.example.com", "Pod", &verbs),
            served("", "Pod", &verbs),
            served("apps", "Deployment", &verbs),
        ]);
        let names = |v: &[Served]| v.iter().map(Served::group_resource).collect::<Vec<_>>();
        assert_eq!(names(&first), ["pods"]);
        assert_eq!(
            names(&rest),
            ["configmaps", "pods.metrics.example.com", "deployments.apps"]
        );
    }
}
