//! Upstream's `SVMController`: once a migration has its resourceVersion, marks it Running,
//! rewrites every object of the resource with an empty server-side apply patch whose
//! `metadata.uid` and `metadata.resourceVersion` are preconditions (an object changed or
//! recreated meanwhile conflicts and is skipped: it was written anew anyway), and ends
//! Succeeded, or Failed on any other error. Upstream reads the objects from the garbage
//! collector's monitors, waiting until their cache is at least as new as the recorded
//! resourceVersion; ours lists them with a consistent (etcd) list, which is, and checks it.

use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::json;

use super::conditions;
use super::resource_version::{api_resource, discover};
use super::types::StorageVersionMigration;
use super::CONTROLLER_NAME;
use crate::machinery::context::ControllerContext;
use crate::machinery::informers::Informer;
use api_helpers::errors;

/// Upstream's number of workers.
pub const WORKERS: usize = 5;
/// How long after its creation a migration of a resource that is not served is retried
/// before it fails with "resource not found".
pub const MISSING_RESOURCE_GRACE: Duration = Duration::from_secs(60);

/// What the migrator does with a migration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Finished already.
    Finished,
    /// Its resourceVersion is not recorded yet (the status update requeues it).
    WaitForResourceVersion,
    /// Rewrite every object at least as new as this resourceVersion.
    Migrate(String),
}

/// The step for `svm`.
pub fn step(svm: &StorageVersionMigration) -> Step {
    if conditions::is_finished(svm) {
        return Step::Finished;
    }
    match svm.status.resource_version.as_deref() {
        Some(rv) if !rv.is_empty() => Step::Migrate(rv.to_string()),
        _ => Step::WaitForResourceVersion,
    }
}

/// Whether a migration whose resource is not served fails now (`false`: retry), upstream's
/// minute of grace after creation.
pub fn fail_missing_resource(svm: &StorageVersionMigration, now: jiff::Timestamp) -> bool {
    let Some(created) = &svm.metadata.creation_timestamp else {
        return true;
    };
    let grace = jiff::SignedDuration::try_from(MISSING_RESOURCE_GRACE).unwrap_or_default();
    created.0.checked_add(grace).is_ok_and(|until| until <= now)
}

/// Whether a list at resourceVersion `listed` holds every object of the migration's
/// `recorded` one (both etcd revisions, compared as integers as upstream does; a
/// resourceVersion that is not one is an error).
pub fn fresh_enough(listed: &str, recorded: &str) -> anyhow::Result<bool> {
    let parse = |rv: &str| {
        rv.parse::<i64>()
            .map_err(|e| anyhow::anyhow!("failed to parse resource version {rv:?}: {e}"))
    };
    Ok(parse(listed)? >= parse(recorded)?)
}

/// The apply patch that rewrites an object: only its type, UID and resourceVersion, so it
/// changes no field and fails with a conflict if the object changed meanwhile.
pub fn apply_body(
    api_version: &str,
    kind: &str,
    uid: &str,
    resource_version: &str,
) -> serde_json::Value {
    json!({
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"uid": uid, "resourceVersion": resource_version},
    })
}

pub(super) async fn run(ctx: ControllerContext, client: kube::Client) -> anyhow::Result<()> {
    super::run_loop(
        &ctx,
        CONTROLLER_NAME,
        WORKERS,
        client,
        |client, svms, name| async move { sync(&client, &svms, &name).await },
    )
    .await
}

fn now() -> Time {
    Time(jiff::Timestamp::now())
}

async fn write_status(
    api: &Api<StorageVersionMigration>,
    svm: &StorageVersionMigration,
) -> anyhow::Result<StorageVersionMigration> {
    let name = svm.metadata.name.as_deref().unwrap_or_default();
    Ok(api
        .replace_status(name, &PostParams::default(), svm)
        .await?)
}

async fn sync(
    client: &kube::Client,
    svms: &Informer<StorageVersionMigration>,
    name: &str,
) -> anyhow::Result<()> {
    let Some(cached) = svms.get("", name) else {
        return Ok(());
    };
    let Step::Migrate(resource_version) = step(&cached) else {
        return Ok(());
    };
    let svm = (*cached).clone();
    let gvr = svm.spec.resource.clone();
    let api: Api<StorageVersionMigration> = Api::all(client.clone());
    let Some(served) = discover(client, &gvr).await? else {
        if !fail_missing_resource(&svm, jiff::Timestamp::now()) {
            anyhow::bail!("resource {gvr} is not served, requeuing to attempt again");
        }
        write_status(&api, &conditions::failed(svm, "resource not found", now())).await?;
        return Ok(());
    };
    let ar = api_resource(&gvr, &served);
    let svm = write_status(&api, &conditions::running(svm, now())).await?;
    let all: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
    // A consistent list (no resourceVersion: read from etcd) is at least as new as the
    // recorded one; checked as upstream checks its cache.
    let objects = all
        .list_metadata(&ListParams::default())
        .await
        .with_context(|| format!("listing {gvr}"))?;
    let listed = objects
        .metadata
        .resource_version
        .as_deref()
        .unwrap_or_default();
    if !fresh_enough(listed, &resource_version)? {
        anyhow::bail!("list of {gvr} is not up to date, requeuing to attempt again. listResourceVersion: {listed}, migration resourceVersion: {resource_version}");
    }
    let patch_params = PatchParams::apply(CONTROLLER_NAME);
    let mut migrated = 0usize;
    for o in &objects.items {
        let m = &o.metadata;
        let (ns, obj) = (
            m.namespace.as_deref(),
            m.name.as_deref().unwrap_or_default(),
        );
        let api_for: Api<DynamicObject> = match ns {
            Some(ns) if served.namespaced => Api::namespaced_with(client.clone(), ns, &ar),
            _ => Api::all_with(client.clone(), &ar),
        };
        let body = apply_body(
            &ar.api_version,
            &ar.kind,
            m.uid.as_deref().unwrap_or_default(),
            m.resource_version.as_deref().unwrap_or_default(),
        );
        match api_for
            .patch(obj, &patch_params, &Patch::Apply(&body))
            .await
        {
            Ok(_) => migrated += 1,
            Err(e) if errors::is_conflict(&e) => {
                tracing::debug!(namespace = ?ns, name = obj, %gvr, "Resource ignored due to conflict");
            }
            Err(e) => {
                tracing::warn!(namespace = ?ns, name = obj, %gvr, error = %e, "Failed to migrate the resource");
                let failed =
                    conditions::failed(svm, "migration encountered unhandled error", now());
                write_status(&api, &failed).await?;
                return Ok(());
            }
        }
    }
    write_status(&api, &conditions::succeeded(svm, now())).await?;
    tracing::info!(svm = name, %gvr, objects = migrated, "Finished migrating");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_only_with_a_resource_version_and_until_finished() {
        let mut svm = StorageVersionMigration::default();
        assert_eq!(step(&svm), Step::WaitForResourceVersion);
        svm.status.resource_version = Some("12".into());
        assert_eq!(step(&svm), Step::Migrate("12".into()));
        let svm = conditions::running(svm, now());
        assert_eq!(
            step(&svm),
            Step::Migrate("12".into()),
            "a Running one is resumed"
        );
        assert_eq!(step(&conditions::succeeded(svm, now())), Step::Finished);
    }

    #[test]
    fn a_missing_resource_fails_after_a_minute() {
        let created: jiff::Timestamp = "2025-06-01T00:00:00Z".parse().unwrap();
        let mut svm = StorageVersionMigration::default();
        svm.metadata.creation_timestamp = Some(Time(created));
        let at = |s: i64| created + jiff::SignedDuration::from_secs(s);
        assert!(!fail_missing_resource(&svm, at(59)));
        assert!(fail_missing_resource(&svm, at(60)));
    }

    #[test]
    fn the_list_must_be_as_new_as_the_recorded_version() {
        assert!(fresh_enough("213", "213").unwrap());
        assert!(fresh_enough("1000", "999").unwrap());
        assert!(!fresh_enough("211", "213").unwrap());
        let err = fresh_enough("", "1").unwrap_err().to_string();
        assert!(
            err.contains("failed to parse resource version \"\""),
            "{err}"
        );
    }

    #[test]
    fn the_patch_sets_no_field() {
        let body = apply_body("v1", "Secret", "u-1", "42");
        assert_eq!(
            body,
            json!({"apiVersion": "v1", "kind": "Secret",
                "metadata": {"uid": "u-1", "resourceVersion": "42"}})
        );
    }
}
