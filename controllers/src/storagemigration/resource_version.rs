//! Upstream's `resource-version-controller`: a new migration gets the resource's current
//! list resourceVersion in `status.resourceVersion` (the migrator rewrites what is at least
//! that new), or fails when discovery does not serve the resource with the verbs a migration
//! needs.

use anyhow::Context as _;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{APIResource, Time};
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams, PostParams};
use kube::Api;

use super::conditions;
use super::types::{GroupVersionResource, StorageVersionMigration};
use crate::machinery::context::ControllerContext;
use crate::machinery::informers::Informer;
use api_helpers::errors;

/// Upstream's name: its work queue's.
pub const NAME: &str = "resource-version-controller";
/// The verbs a resource must support to be migrated.
pub const VERBS_REQUIRED: [&str; 3] = ["update", "patch", "list"];
/// The namespace upstream lists a namespaced resource in to read the resourceVersion
/// cheaply (it cannot exist: the list is empty, its resourceVersion current).
pub const FAKE_NAMESPACE: &str = "@fake:svm_ns!";

/// What the resource-version loop does with a migration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Finished, or its resourceVersion is already set.
    Nothing,
    /// Look up the resource and record its resourceVersion.
    Record,
}

/// The step for `svm`.
pub fn step(svm: &StorageVersionMigration) -> Step {
    if conditions::is_finished(svm)
        || svm
            .status
            .resource_version
            .as_deref()
            .is_some_and(|rv| !rv.is_empty())
    {
        Step::Nothing
    } else {
        Step::Record
    }
}

/// Whether discovery's entry for `gvr` (`None`: not served) allows a migration; `Err` is the
/// Failed condition's message, as upstream words it.
pub fn migratable(gvr: &GroupVersionResource, served: Option<&APIResource>) -> Result<(), String> {
    let Some(r) = served else {
        return Err("resource does not exist in discovery".into());
    };
    if VERBS_REQUIRED
        .iter()
        .all(|v| r.verbs.iter().any(|have| have == v))
    {
        Ok(())
    } else {
        Err(format!(
            "resource {:?} does not support discovery operations: [{}]",
            gvr.to_string(),
            VERBS_REQUIRED.join(" ")
        ))
    }
}

/// Discovery's entry for `gvr`, `None` when its group version or the resource is not served.
pub async fn discover(
    client: &kube::Client,
    gvr: &GroupVersionResource,
) -> anyhow::Result<Option<APIResource>> {
    let list = if gvr.group.is_empty() {
        client.list_core_api_resources(&gvr.version).await
    } else {
        client.list_api_group_resources(&gvr.api_version()).await
    };
    match list {
        Ok(list) => Ok(list.resources.into_iter().find(|r| r.name == gvr.resource)),
        Err(e) if errors::is_not_found(&e) => Ok(None),
        Err(e) => Err(e).with_context(|| format!("discovery of {}", gvr.api_version())),
    }
}

/// The dynamic API description of `gvr` from its discovery entry.
pub fn api_resource(gvr: &GroupVersionResource, served: &APIResource) -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(&gvr.group, &gvr.version, &served.kind),
        &gvr.resource,
    )
}

pub(super) async fn run(ctx: ControllerContext, client: kube::Client) -> anyhow::Result<()> {
    super::run_loop(&ctx, NAME, 1, client, |client, svms, name| async move {
        sync(&client, &svms, &name).await
    })
    .await
}

async fn sync(
    client: &kube::Client,
    svms: &Informer<StorageVersionMigration>,
    name: &str,
) -> anyhow::Result<()> {
    let Some(svm) = svms.get("", name) else {
        return Ok(());
    };
    if step(&svm) == Step::Nothing {
        return Ok(());
    }
    let svm = (*svm).clone();
    let gvr = svm.spec.resource.clone();
    let api: Api<StorageVersionMigration> = Api::all(client.clone());
    let served = discover(client, &gvr).await?;
    let served = match (migratable(&gvr, served.as_ref()), served) {
        (Ok(()), Some(served)) => served,
        (result, _) => {
            let message = result.err().unwrap_or_default();
            tracing::error!(svm = name, %gvr, %message, "resource is not able to be migrated, not retrying");
            let failed = conditions::failed(svm, &message, Time(jiff::Timestamp::now()));
            errors::ignore_not_found(
                api.replace_status(name, &PostParams::default(), &failed)
                    .await,
            )?;
            return Ok(());
        }
    };
    let ar = api_resource(&gvr, &served);
    let objects: Api<DynamicObject> = if served.namespaced {
        Api::namespaced_with(client.clone(), FAKE_NAMESPACE, &ar)
    } else {
        Api::all_with(client.clone(), &ar)
    };
    let list = objects
        .list_metadata(&ListParams::default().limit(1))
        .await
        .with_context(|| format!("error getting latest resourceVersion for {gvr}"))?;
    let mut updated = svm;
    updated.status.resource_version = list.metadata.resource_version;
    errors::ignore_not_found(
        api.replace_status(name, &PostParams::default(), &updated)
            .await,
    )
    .with_context(|| format!("error updating status for {name}"))?;
    tracing::info!(svm = name, resource_version = ?updated.status.resource_version, "Resource version has been successfully added");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gvr() -> GroupVersionResource {
        GroupVersionResource {
            group: "".into(),
            version: "v1".into(),
            resource: "secrets".into(),
        }
    }

    fn served(verbs: &[&str]) -> APIResource {
        APIResource {
            name: "secrets".into(),
            kind: "Secret".into(),
            namespaced: true,
            verbs: verbs.iter().map(|v| v.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn records_once_and_never_after_the_end() {
        let mut svm = StorageVersionMigration::default();
        assert_eq!(step(&svm), Step::Record);
        svm.status.resource_version = Some(String::new());
        assert_eq!(step(&svm), Step::Record);
        svm.status.resource_version = Some("7".into());
        assert_eq!(step(&svm), Step::Nothing);
        let failed = conditions::failed(
            StorageVersionMigration::default(),
            "x",
            Time(jiff::Timestamp::UNIX_EPOCH),
        );
        assert_eq!(step(&failed), Step::Nothing);
    }

    #[test]
    fn only_served_resources_with_list_patch_update_migrate() {
        assert_eq!(
            migratable(&gvr(), None),
            Err("resource does not exist in discovery".into())
        );
        assert_eq!(
            migratable(
                &gvr(),
                Some(&served(&["get", "list", "patch", "update", "watch"]))
            ),
            Ok(())
        );
        assert_eq!(
            migratable(&gvr(), Some(&served(&["get", "list"]))),
            Err("resource \"/v1, Resource=secrets\" does not support discovery operations: [update patch list]".into())
        );
    }

    #[test]
    fn dynamic_resource_from_discovery() {
        let ar = api_resource(&gvr(), &served(&[]));
        assert_eq!(
            (
                ar.api_version.as_str(),
                ar.kind.as_str(),
                ar.plural.as_str()
            ),
            ("v1", "Secret", "secrets")
        );
    }
}
