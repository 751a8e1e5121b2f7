//! storageversion-garbage-collector-controller: removes from every StorageVersion the
//! records of kube-apiservers that are gone (no identity Lease in kube-system), deleting a
//! StorageVersion left without records, as upstream's `pkg/controller/storageversiongc`.
//! Runs under the StorageVersionAPI and APIServerIdentity gates.

use futures::future::FutureExt;
use k8s_openapi::api::apiserverinternal::v1alpha1::{
    ServerStorageVersion, StorageVersion, StorageVersionCondition, StorageVersionStatus,
};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::Api;

use crate::machinery::context::ControllerContext;
use crate::machinery::informers::handlers::{self as informer, Change};
use crate::machinery::queue::WorkQueue;
use crate::machinery::ControllerDescriptor;
use api_helpers::errors;

/// The label naming the component an identity Lease belongs to.
pub const IDENTITY_LABEL: &str = "apiserver.kubernetes.io/identity";
/// The value of [`IDENTITY_LABEL`] on a kube-apiserver's Lease.
pub const KUBE_APISERVER: &str = "kube-apiserver";
/// Where identity Leases live.
pub const LEASE_NAMESPACE: &str = "kube-system";
/// The identity of the controller with `--use-service-account-credentials`.
pub const SERVICE_ACCOUNT: &str = "storage-version-garbage-collector";
/// The condition recording whether all apiservers encode alike.
pub const CONDITION_ALL_EQUAL: &str = "AllEncodingVersionsEqual";

/// Registry entry.
pub fn descriptor() -> ControllerDescriptor {
    ControllerDescriptor {
        name: "storageversion-garbage-collector-controller",
        enabled_by_default: true,
        start: |ctx| run(ctx).boxed(),
    }
}

/// Whether `lease` is a kube-apiserver's identity Lease.
pub fn is_apiserver_lease(lease: &Lease) -> bool {
    lease.metadata.namespace.as_deref() == Some(LEASE_NAMESPACE)
        && lease
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(IDENTITY_LABEL))
            .is_some_and(|v| v == KUBE_APISERVER)
}

fn records(sv: &StorageVersion) -> &[ServerStorageVersion] {
    sv.status.storage_versions.as_deref().unwrap_or_default()
}

/// The records of `sv` kept when only those `valid` accepts stay, or `None` when all are
/// valid (nothing to write).
pub fn valid_records(
    sv: &StorageVersion,
    valid: impl Fn(&str) -> bool,
) -> Option<Vec<ServerStorageVersion>> {
    let kept: Vec<ServerStorageVersion> = records(sv)
        .iter()
        .filter(|r| valid(r.api_server_id.as_deref().unwrap_or_default()))
        .cloned()
        .collect();
    (kept.len() != records(sv).len()).then_some(kept)
}

/// What to write for a StorageVersion whose records shrank.
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    /// No record left: delete it.
    Delete,
    /// The new status (records, common encoding version, its condition).
    Status(StorageVersionStatus),
}

/// The write for `sv` keeping `kept`: deletion when empty, else the status with the common
/// encoding version recomputed and its `AllEncodingVersionsEqual` condition set as the
/// apiserver sets it (transition time moves when the status flips or the version changes).
pub fn update(sv: &StorageVersion, kept: Vec<ServerStorageVersion>, now: Time) -> Update {
    if kept.is_empty() {
        return Update::Delete;
    }
    let old_common = sv.status.common_encoding_version.clone();
    let first = kept[0].encoding_version.clone();
    let common = kept
        .iter()
        .all(|r| r.encoding_version == first)
        .then_some(first)
        .flatten();
    let (status, reason, message) = if common.is_some() {
        (
            "True",
            "CommonEncodingVersionSet",
            "Common encoding version set",
        )
    } else {
        (
            "False",
            "CommonEncodingVersionUnset",
            "Common encoding version unset",
        )
    };
    let force = matches!((&old_common, &common), (Some(a), Some(b)) if a != b);
    let mut conditions = sv.status.conditions.clone().unwrap_or_default();
    let generation = sv.metadata.generation.unwrap_or(0);
    match conditions
        .iter_mut()
        .find(|c| c.type_ == CONDITION_ALL_EQUAL)
    {
        Some(c) => {
            if c.status != status || force {
                c.last_transition_time = Some(now);
            }
            c.status = status.into();
            c.reason = reason.into();
            c.message = message.into();
            c.observed_generation = Some(generation);
        }
        None => conditions.push(StorageVersionCondition {
            type_: CONDITION_ALL_EQUAL.into(),
            status: status.into(),
            reason: reason.into(),
            message: message.into(),
            observed_generation: Some(generation),
            last_transition_time: Some(now),
        }),
    }
    Update::Status(StorageVersionStatus {
        common_encoding_version: common,
        conditions: Some(conditions),
        storage_versions: Some(kept),
    })
}

async fn run(ctx: ControllerContext) -> anyhow::Result<()> {
    let sd = ctx.shutdown.clone();
    // Upstream's two queues (and their workqueue metric names): deleted apiservers' Leases,
    // and StorageVersions naming an apiserver without one.
    let lease_queue: WorkQueue<String> =
        WorkQueue::new().with_metrics(&ctx.metrics, "storage_version_garbage_collector_leases");
    let sv_queue: WorkQueue<String> = WorkQueue::new().with_metrics(
        &ctx.metrics,
        "storage_version_garbage_collector_storageversions",
    );
    let informers = ctx.informers();
    let leases = informers.informer::<Lease>();
    let svs = informers.informer::<StorageVersion>();
    let q = lease_queue.clone();
    informer::on(&leases, move |l: &Lease, change| {
        if change == Change::Deleted && is_apiserver_lease(l) {
            if let Some(name) = &l.metadata.name {
                q.add(name.clone());
            }
        }
    });
    let (q, cached_leases) = (sv_queue.clone(), leases.clone());
    informer::on(&svs, move |sv: &StorageVersion, change| {
        if change != Change::Applied {
            return;
        }
        let valid = |id: &str| {
            cached_leases
                .get(LEASE_NAMESPACE, id)
                .is_some_and(|l| is_apiserver_lease(&l))
        };
        if valid_records(sv, valid).is_some() {
            if let Some(name) = &sv.metadata.name {
                q.add(name.clone());
            }
        }
    });
    informer::wait_synced(&sd, async {
        leases.wait_synced().await;
        svs.wait_synced().await;
    })
    .await?;
    let client = ctx.client_for(SERVICE_ACCOUNT).await?;
    let svs: Api<StorageVersion> = Api::all(client.clone());
    let leases: Api<Lease> = Api::namespaced(client, LEASE_NAMESPACE);
    tracing::info!("Starting storage version garbage collector");
    let (s, l) = (svs.clone(), leases.clone());
    let by_lease = lease_queue.run("storage-version-gc-leases", 1, sd.clone(), move |id| {
        let (svs, leases) = (s.clone(), l.clone());
        async move { sync_deleted_lease(&svs, &leases, &id).await }
    });
    let by_sv = sv_queue.run("storage-version-gc", 1, sd, move |name| {
        let (svs, leases) = (svs.clone(), leases.clone());
        async move { sync_storage_version(&svs, &leases, &name).await }
    });
    tokio::join!(by_lease, by_sv);
    Ok(())
}

/// Drops the records of `sv` whose apiserver has no identity Lease (read live, as upstream).
async fn sync_storage_version(
    svs: &Api<StorageVersion>,
    leases: &Api<Lease>,
    name: &str,
) -> anyhow::Result<()> {
    let Some(sv) = svs.get_opt(name).await? else {
        return Ok(());
    };
    let mut live = std::collections::BTreeSet::new();
    for r in records(&sv) {
        // A lease that cannot be read counts as gone, as upstream.
        let id = r.api_server_id.as_deref().unwrap_or_default();
        if let Ok(Some(l)) = leases.get_opt(id).await {
            if is_apiserver_lease(&l) {
                live.insert(id.to_string());
            }
        }
    }
    match valid_records(&sv, |id| live.contains(id)) {
        Some(kept) => write(svs, &sv, kept).await,
        None => Ok(()),
    }
}

/// Once apiserver `id`'s Lease is really gone, drops its records everywhere.
async fn sync_deleted_lease(
    svs: &Api<StorageVersion>,
    leases: &Api<Lease>,
    id: &str,
) -> anyhow::Result<()> {
    if leases.get_opt(id).await?.is_some() {
        return Ok(());
    }
    let mut failed = Vec::new();
    for sv in svs.list(&ListParams::default()).await?.items {
        if let Some(kept) = valid_records(&sv, |s| s != id) {
            if let Err(e) = write(svs, &sv, kept).await {
                failed.push(format!("{e:#}"));
            }
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("lease {id}: {}", failed.join("; "))
    }
}

async fn write(
    svs: &Api<StorageVersion>,
    sv: &StorageVersion,
    kept: Vec<ServerStorageVersion>,
) -> anyhow::Result<()> {
    let name = sv.metadata.name.as_deref().unwrap_or_default();
    match update(sv, kept, Time(jiff::Timestamp::now())) {
        Update::Delete => {
            errors::ignore_not_found(svs.delete(name, &DeleteParams::default()).await)?;
            tracing::info!(
                storageversion = name,
                "deleted StorageVersion of departed apiservers"
            );
        }
        Update::Status(status) => {
            let mut updated = sv.clone();
            updated.status = status;
            errors::ignore_not_found(
                svs.replace_status(name, &PostParams::default(), &updated)
                    .await,
            )?;
            tracing::info!(
                storageversion = name,
                "removed records of departed apiservers"
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sv(records: &[(&str, &str)]) -> StorageVersion {
        serde_json::from_value(json!({
            "metadata": {"name": "apps.deployments", "generation": 1},
            "spec": {},
            "status": {"storageVersions": records.iter().map(|(id, v)| json!({
                "apiServerID": id, "encodingVersion": v, "decodableVersions": [v]})).collect::<Vec<_>>()}
        }))
        .unwrap()
    }

    fn now() -> Time {
        Time("2025-06-01T00:00:00Z".parse().unwrap())
    }

    #[test]
    fn only_kube_apiserver_identity_leases_count() {
        let lease = |ns: &str, label: Option<&str>| -> Lease {
            let mut v = json!({"metadata": {"name": "apiserver-1", "namespace": ns}});
            if let Some(l) = label {
                v["metadata"]["labels"] = json!({IDENTITY_LABEL: l});
            }
            serde_json::from_value(v).unwrap()
        };
        assert!(is_apiserver_lease(&lease(
            "kube-system",
            Some("kube-apiserver")
        )));
        assert!(!is_apiserver_lease(&lease("kube-system", Some("other"))));
        assert!(!is_apiserver_lease(&lease("kube-system", None)));
        assert!(!is_apiserver_lease(&lease(
            "default",
            Some("kube-apiserver")
        )));
    }

    #[test]
    fn records_of_departed_apiservers_are_dropped() {
        let s = sv(&[("a", "apps/v1"), ("gone", "apps/v1beta1")]);
        assert_eq!(valid_records(&s, |id| id == "a" || id == "gone"), None);
        let kept = valid_records(&s, |id| id == "a").unwrap();
        assert_eq!(kept.len(), 1);
        let Update::Status(status) = update(&s, kept, now()) else {
            panic!("expected a status update");
        };
        assert_eq!(status.common_encoding_version.as_deref(), Some("apps/v1"));
        let c = &status.conditions.unwrap()[0];
        assert_eq!(
            (c.type_.as_str(), c.status.as_str(), c.reason.as_str()),
            (
                "AllEncodingVersionsEqual",
                "True",
                "CommonEncodingVersionSet"
            )
        );
        assert_eq!(c.message, "Common encoding version set");
        assert_eq!(c.observed_generation, Some(1));
    }

    #[test]
    fn a_storage_version_without_records_is_deleted() {
        let s = sv(&[("gone", "apps/v1")]);
        let kept = valid_records(&s, |_| false).unwrap();
        assert_eq!(update(&s, kept, now()), Update::Delete);
    }

    #[test]
    fn disagreeing_survivors_unset_the_common_version() {
        let s = sv(&[("a", "apps/v1"), ("b", "apps/v1beta1"), ("gone", "apps/v1")]);
        let kept = valid_records(&s, |id| id != "gone").unwrap();
        let Update::Status(status) = update(&s, kept, now()) else {
            panic!("expected a status update");
        };
        assert_eq!(status.common_encoding_version, None);
        let c = &status.conditions.unwrap()[0];
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "CommonEncodingVersionUnset")
        );
    }

    #[test]
    fn the_transition_time_moves_only_on_a_change() {
        let mut s = sv(&[("a", "apps/v1"), ("gone", "apps/v1")]);
        let earlier = Time("2020-01-01T00:00:00Z".parse().unwrap());
        s.status.common_encoding_version = Some("apps/v1".into());
        s.status.conditions = Some(vec![StorageVersionCondition {
            type_: CONDITION_ALL_EQUAL.into(),
            status: "True".into(),
            reason: "CommonEncodingVersionSet".into(),
            message: "Common encoding version set".into(),
            observed_generation: Some(1),
            last_transition_time: Some(earlier.clone()),
        }]);
        let kept = valid_records(&s, |id| id == "a").unwrap();
        let Update::Status(status) = update(&s, kept, now()) else {
            panic!("expected a status update");
        };
        assert_eq!(
            status.conditions.unwrap()[0].last_transition_time,
            Some(earlier)
        );
    }
}
