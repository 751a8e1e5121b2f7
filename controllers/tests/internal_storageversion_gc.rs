//! storageversion-garbage-collector-controller against a real apiserver serving
//! internal.apiserver.k8s.io (gates StorageVersionAPI + APIServerIdentity): records of an
//! apiserver without an identity Lease are dropped (the common encoding version
//! recomputed), a StorageVersion left without records is deleted, and deleting a live
//! apiserver's Lease removes its records.

#[path = "lifecycle_support.rs"]
mod support;

use std::time::Duration;

use k8s_openapi::api::apiserverinternal::v1alpha1::StorageVersion;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{DeleteParams, PostParams};
use kube::Api;
use serde_json::json;

const GATES: &str = "--feature-gates=StorageVersionAPI=true,APIServerIdentity=true";

/// Creates StorageVersion `name` with a record per (apiserver id, encoding version).
async fn storage_version(api: &Api<StorageVersion>, name: &str, records: &[(&str, &str)]) {
    let sv: StorageVersion =
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": {}})).unwrap();
    let created = api.create(&PostParams::default(), &sv).await.unwrap();
    let mut with_status = serde_json::to_value(&created).unwrap();
    with_status["status"] = json!({"storageVersions": records.iter().map(|(id, v)| json!({
        "apiServerID": id, "encodingVersion": v, "decodableVersions": [v]})).collect::<Vec<_>>()});
    // The apiserver insists on the common version when all records agree.
    if records.iter().all(|(_, v)| *v == records[0].1) {
        with_status["status"]["commonEncodingVersion"] = json!(records[0].1);
    }
    let with_status: StorageVersion = serde_json::from_value(with_status).unwrap();
    api.replace_status(name, &PostParams::default(), &with_status)
        .await
        .unwrap();
}

fn ids(sv: &StorageVersion) -> Vec<String> {
    sv.status
        .storage_versions
        .iter()
        .flatten()
        .filter_map(|r| r.api_server_id.clone())
        .collect()
}

#[tokio::test]
async fn records_of_departed_apiservers_are_collected() {
    let cluster = e2e::cluster_or_skip!(
        apiserver_flags = &[
            GATES,
            "--runtime-config=internal.apiserver.k8s.io/v1alpha1=true"
        ]
    );
    let client = cluster.client();
    let svs: Api<StorageVersion> = Api::all(client.clone());
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    let lease: Lease = serde_json::from_value(json!({
        "metadata": {"name": "apiserver-fake", "labels": {"apiserver.kubernetes.io/identity": "kube-apiserver"}},
        "spec": {"holderIdentity": "apiserver-fake", "leaseDurationSeconds": 3600,
            "renewTime": jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string()}
    }))
    .unwrap();
    leases.create(&PostParams::default(), &lease).await.unwrap();
    storage_version(
        &svs,
        "stable.example.com.widgets",
        &[
            ("apiserver-fake", "stable.example.com/v1"),
            ("apiserver-gone", "stable.example.com/v1beta1"),
        ],
    )
    .await;
    storage_version(
        &svs,
        "stable.example.com.gadgets",
        &[("apiserver-gone", "stable.example.com/v1")],
    )
    .await;

    let mut kcm = support::start_kcm(
        &cluster,
        "storageversion-garbage-collector-controller",
        &[GATES],
    );
    let widgets = support::eventually(
        "the departed apiserver's record dropped",
        Duration::from_secs(30),
        &mut kcm,
        || async {
            let sv = svs.get("stable.example.com.widgets").await?;
            Ok((ids(&sv) == ["apiserver-fake"]).then_some(sv))
        },
    )
    .await;
    assert_eq!(
        widgets.status.common_encoding_version.as_deref(),
        Some("stable.example.com/v1")
    );
    let condition = widgets.status.conditions.unwrap_or_default();
    assert!(
        condition
            .iter()
            .any(|c| c.type_ == "AllEncodingVersionsEqual"
                && c.status == "True"
                && c.reason == "CommonEncodingVersionSet"),
        "{condition:?}"
    );
    support::eventually(
        "the StorageVersion without records deleted",
        Duration::from_secs(30),
        &mut kcm,
        || async {
            Ok(svs
                .get_opt("stable.example.com.gadgets")
                .await?
                .is_none()
                .then_some(()))
        },
    )
    .await;

    // The last apiserver of `widgets` goes: its Lease's deletion takes the object along.
    leases
        .delete("apiserver-fake", &DeleteParams::default())
        .await
        .unwrap();
    support::eventually(
        "the StorageVersion of the deleted Lease's apiserver deleted",
        Duration::from_secs(30),
        &mut kcm,
        || async {
            Ok(svs
                .get_opt("stable.example.com.widgets")
                .await?
                .is_none()
                .then_some(()))
        },
    )
    .await;
}
