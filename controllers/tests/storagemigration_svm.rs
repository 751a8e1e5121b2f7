//! storage-version-migrator against a real apiserver serving storagemigration.k8s.io
//! v1alpha1 (gate StorageVersionMigrator): a CRD's storage version moves from v1 to v2, a
//! StorageVersionMigration of `widgets` v2 rewrites every object stored as v1 (each one's
//! resourceVersion changes: the apiserver stored it anew as v2), ends Running=False,
//! Succeeded=True with upstream's reasons and the recorded resourceVersion; a second
//! migration rewrites nothing (stored bytes unchanged: resourceVersions stay, as upstream's
//! integration test checks); one of a resource nobody serves fails.

#[path = "lifecycle_support.rs"]
mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use controllers::storagemigration::types::StorageVersionMigration;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams, PostParams};
use kube::Api;
use serde_json::json;

const GATE: &str = "--feature-gates=StorageVersionMigrator=true";

fn crd(storage: &str) -> serde_json::Value {
    let version = |name: &str| {
        json!({"name": name, "served": true, "storage": name == storage,
            "schema": {"openAPIV3Schema": {"type": "object",
                "x-kubernetes-preserve-unknown-fields": true}}})
    };
    json!({
        "metadata": {"name": "widgets.stable.example.com"},
        "spec": {"group": "stable.example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [version("v1"), version("v2")]}
    })
}

fn widgets(version: &str, client: &kube::Client) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("stable.example.com", version, "Widget"),
        "widgets",
    );
    Api::namespaced_with(client.clone(), "default", &ar)
}

async fn resource_versions(api: &Api<DynamicObject>) -> BTreeMap<String, String> {
    api.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|o| {
            (
                o.metadata.name.unwrap(),
                o.metadata.resource_version.unwrap(),
            )
        })
        .collect()
}

async fn migration(
    api: &Api<StorageVersionMigration>,
    name: &str,
    group: &str,
    version: &str,
    resource: &str,
) {
    let svm: StorageVersionMigration = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"resource": {"group": group, "version": version, "resource": resource}}
    }))
    .unwrap();
    api.create(&PostParams::default(), &svm).await.unwrap();
}

fn condition<'a>(
    svm: &'a StorageVersionMigration,
    kind: &str,
) -> Option<&'a controllers::storagemigration::types::MigrationCondition> {
    svm.status.conditions.iter().find(|c| c.type_ == kind)
}

fn finished(svm: &StorageVersionMigration) -> bool {
    ["Succeeded", "Failed"]
        .iter()
        .any(|k| condition(svm, k).is_some_and(|c| c.status == "True"))
}

#[tokio::test]
async fn objects_are_rewritten_in_the_new_storage_version() {
    let cluster = e2e::cluster_or_skip!(
        apiserver_flags = &[
            GATE,
            "--runtime-config=storagemigration.k8s.io/v1alpha1=true"
        ]
    );
    let client = cluster.client();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let created = crds
        .create(
            &PostParams::default(),
            &serde_json::from_value(crd("v1")).unwrap(),
        )
        .await
        .unwrap();
    let v1 = widgets("v1", &client);
    for i in 0..4 {
        let w: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "stable.example.com/v1", "kind": "Widget",
            "metadata": {"name": format!("w{i}")}, "size": i
        }))
        .unwrap();
        // The CRD's endpoint appears a moment after its creation.
        let mut tries = 0;
        while let Err(e) = v1.create(&PostParams::default(), &w).await {
            tries += 1;
            assert!(tries < 100, "creating widget: {e}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // Storage version v1 -> v2.
    let mut moved: CustomResourceDefinition = serde_json::from_value(crd("v2")).unwrap();
    moved.metadata.resource_version = created.metadata.resource_version;
    let mut current = crds.get("widgets.stable.example.com").await.unwrap();
    current.spec = moved.spec;
    crds.replace(
        "widgets.stable.example.com",
        &PostParams::default(),
        &current,
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let v2 = widgets("v2", &client);
    let before = resource_versions(&v2).await;
    assert_eq!(before.len(), 4);

    let mut kcm = support::start_kcm(&cluster, "storage-version-migrator-controller", &[GATE]);
    let svms: Api<StorageVersionMigration> = Api::all(client.clone());
    migration(&svms, "widgets-v2", "stable.example.com", "v2", "widgets").await;
    let done = support::eventually(
        "the migration finished",
        Duration::from_secs(60),
        &mut kcm,
        || async {
            let svm = svms.get("widgets-v2").await?;
            Ok(finished(&svm).then_some(svm))
        },
    )
    .await;
    let succeeded = condition(&done, "Succeeded").expect("Succeeded");
    assert_eq!(
        (succeeded.status.as_str(), succeeded.reason.as_deref()),
        ("True", Some("StorageVersionMigrationSucceeded")),
        "{done:?}"
    );
    let running = condition(&done, "Running").expect("Running");
    assert_eq!(
        (running.status.as_str(), running.reason.as_deref()),
        ("False", Some("StorageVersionMigrationInProgress"))
    );
    let recorded: u64 = done
        .status
        .resource_version
        .as_deref()
        .expect("status.resourceVersion")
        .parse()
        .unwrap();
    let after = resource_versions(&v2).await;
    for (name, rv) in &before {
        assert_ne!(after[name], *rv, "{name} was not rewritten");
        assert!(rv.parse::<u64>().unwrap() <= recorded);
    }

    // Nothing to rewrite the second time: the apiserver writes nothing, as upstream expects.
    migration(
        &svms,
        "widgets-v2-again",
        "stable.example.com",
        "v2",
        "widgets",
    )
    .await;
    let again = support::eventually(
        "the second migration finished",
        Duration::from_secs(60),
        &mut kcm,
        || async {
            let svm = svms.get("widgets-v2-again").await?;
            Ok(finished(&svm).then_some(svm))
        },
    )
    .await;
    assert!(
        condition(&again, "Succeeded").is_some_and(|c| c.status == "True"),
        "{again:?}"
    );
    assert_eq!(resource_versions(&v2).await, after);

    // A resource nobody serves.
    migration(&svms, "gadgets", "stable.example.com", "v1", "gadgets").await;
    let failed = support::eventually(
        "the migration of an unserved resource failed",
        Duration::from_secs(30),
        &mut kcm,
        || async {
            let svm = svms.get("gadgets").await?;
            Ok(finished(&svm).then_some(svm))
        },
    )
    .await;
    let c = condition(&failed, "Failed").expect("Failed");
    assert_eq!(
        (c.reason.as_deref(), c.message.as_deref()),
        (
            Some("StorageVersionMigrationFailed"),
            Some("resource does not exist in discovery")
        )
    );
}
