//! The garbage collector with each propagation policy, on plain ConfigMaps as owners and
//! dependents (what it does is independent of the kinds).

#[path = "lifecycle_support.rs"]
mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, PropagationPolicy};
use kube::Api;
use serde_json::json;

async fn pair(cms: &Api<ConfigMap>, owner: &str, dependent: &str, dependent_finalizers: &[&str]) {
    let o: ConfigMap = serde_json::from_value(json!({"metadata": {"name": owner}})).unwrap();
    let o = cms.create(&PostParams::default(), &o).await.unwrap();
    let d: ConfigMap = serde_json::from_value(json!({"metadata": {"name": dependent, "finalizers": dependent_finalizers,
        "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": owner, "uid": o.metadata.uid.unwrap(), "blockOwnerDeletion": true}]}}))
    .unwrap();
    cms.create(&PostParams::default(), &d).await.unwrap();
}

fn policy(p: PropagationPolicy) -> DeleteParams {
    DeleteParams {
        propagation_policy: Some(p),
        ..Default::default()
    }
}

#[tokio::test]
async fn propagation_policies() {
    let cluster = e2e::cluster_or_skip!();
    let (mut kcm, metrics_port) = support::start_kcm_on_port(&cluster, "garbagecollector", &[]);
    let cms: Api<ConfigMap> = Api::namespaced(cluster.client(), "default");

    // Background: the owner goes at once, the dependent is collected.
    pair(&cms, "bg-owner", "bg-dep", &[]).await;
    cms.delete("bg-owner", &policy(PropagationPolicy::Background))
        .await
        .unwrap();
    support::eventually(
        "bg-dep collected",
        Duration::from_secs(60),
        &mut kcm,
        || async { Ok(cms.get_opt("bg-dep").await?.is_none().then_some(())) },
    )
    .await;

    // Orphan: the dependent stays, without its owner reference.
    pair(&cms, "or-owner", "or-dep", &[]).await;
    cms.delete("or-owner", &policy(PropagationPolicy::Orphan))
        .await
        .unwrap();
    support::eventually(
        "or-owner deleted",
        Duration::from_secs(60),
        &mut kcm,
        || async { Ok(cms.get_opt("or-owner").await?.is_none().then_some(())) },
    )
    .await;
    let dep = cms.get("or-dep").await.unwrap();
    assert!(dep.metadata.owner_references.unwrap_or_default().is_empty());
    assert!(dep.metadata.deletion_timestamp.is_none());

    // Foreground: the owner waits (foregroundDeletion finalizer) until its blocking
    // dependent is gone.
    pair(&cms, "fg-owner", "fg-dep", &["example.com/hold"]).await;
    cms.delete("fg-owner", &policy(PropagationPolicy::Foreground))
        .await
        .unwrap();
    support::eventually(
        "fg-dep being deleted",
        Duration::from_secs(60),
        &mut kcm,
        || async {
            Ok(cms
                .get("fg-dep")
                .await?
                .metadata
                .deletion_timestamp
                .map(|_| ()))
        },
    )
    .await;
    let owner = cms.get("fg-owner").await.unwrap();
    assert!(owner
        .metadata
        .finalizers
        .unwrap_or_default()
        .contains(&"foregroundDeletion".to_string()));
    cms.patch(
        "fg-dep",
        &PatchParams::default(),
        &Patch::Merge(&json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    support::eventually(
        "fg-owner released",
        Duration::from_secs(60),
        &mut kcm,
        || async { Ok(cms.get_opt("fg-owner").await?.is_none().then_some(())) },
    )
    .await;

    // A dependent created with an owner that never existed is collected as dangling.
    let d: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "dangling",
        "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "ghost", "uid": "00000000-0000-0000-0000-000000000001"}]}}))
    .unwrap();
    cms.create(&PostParams::default(), &d).await.unwrap();
    support::eventually(
        "dangling collected",
        Duration::from_secs(60),
        &mut kcm,
        || async { Ok(cms.get_opt("dangling").await?.is_none().then_some(())) },
    )
    .await;

    // /metrics under upstream's names: the work queue did the work above, and against a
    // healthy apiserver every discovery round found resources and its monitors listed in
    // time, so no resources sync error was counted (the counter is there, at zero).
    let metrics = support::scrape_metrics(&cluster, &mut kcm, metrics_port).await;
    let sample = |series: &str| {
        support::sample(&metrics, series).unwrap_or_else(|| panic!("no {series} in\n{metrics}"))
    };
    assert!(sample(r#"workqueue_adds_total{name="garbage_collector_attempt_to_delete"}"#) >= 4.0);
    assert_eq!(
        sample("garbagecollector_controller_resources_sync_error_total"),
        0.0
    );
    kcm.terminate(Duration::from_secs(10)).unwrap();
}

/// A circle of blocking owner references (a owned by c, b by a, c by b) deleted in the
/// foreground from a drains instead of every member waiting on the next (conformance:
/// "Garbage collector should not be blocked by dependency circle").
#[tokio::test]
async fn foreground_deletion_of_a_dependency_circle_completes() {
    let cluster = e2e::cluster_or_skip!();
    let mut kcm = support::start_kcm(&cluster, "garbagecollector", &[]);
    let cms: Api<ConfigMap> = Api::namespaced(cluster.client(), "default");
    let mut uids = Vec::new();
    for name in ["circle-a", "circle-b", "circle-c"] {
        let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
        uids.push(
            cms.create(&PostParams::default(), &cm)
                .await
                .unwrap()
                .metadata
                .uid
                .unwrap(),
        );
    }
    // a <- c, b <- a, c <- b: each owned by the previous one around the circle.
    for (dependent, (owner, uid)) in [
        ("circle-a", ("circle-c", &uids[2])),
        ("circle-b", ("circle-a", &uids[0])),
        ("circle-c", ("circle-b", &uids[1])),
    ] {
        let patch = json!({"metadata": {"ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap",
            "name": owner, "uid": uid, "controller": true, "blockOwnerDeletion": true}]}});
        cms.patch(dependent, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
    }
    cms.delete("circle-a", &policy(PropagationPolicy::Foreground))
        .await
        .unwrap();
    support::eventually(
        "every member of the circle deleted",
        Duration::from_secs(60),
        &mut kcm,
        || async {
            let mut left = Vec::new();
            for name in ["circle-a", "circle-b", "circle-c"] {
                if cms.get_opt(name).await?.is_some() {
                    left.push(name);
                }
            }
            Ok(left.is_empty().then_some(()))
        },
    )
    .await;
    kcm.terminate(Duration::from_secs(10)).unwrap();
}

/// A dependent with a valid owner survives the foreground deletion of its other owner: it
/// only loses that reference (conformance, Serial: "should not delete dependents that have
/// both valid owner and owner that's waiting for dependents to be deleted").
#[tokio::test]
async fn foreground_deletion_keeps_dependents_with_another_valid_owner() {
    let cluster = e2e::cluster_or_skip!();
    let mut kcm = support::start_kcm(&cluster, "garbagecollector", &[]);
    let cms: Api<ConfigMap> = Api::namespaced(cluster.client(), "default");
    let mut uids = Vec::new();
    for name in ["going", "staying"] {
        let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
        uids.push(
            cms.create(&PostParams::default(), &cm)
                .await
                .unwrap()
                .metadata
                .uid
                .unwrap(),
        );
    }
    let dependent: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "shared-dep",
        "ownerReferences": [
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "going", "uid": uids[0], "blockOwnerDeletion": true},
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "staying", "uid": uids[1]}
        ]}}))
    .unwrap();
    cms.create(&PostParams::default(), &dependent)
        .await
        .unwrap();
    cms.delete("going", &policy(PropagationPolicy::Foreground))
        .await
        .unwrap();
    support::eventually(
        "the foreground-deleted owner gone",
        Duration::from_secs(60),
        &mut kcm,
        || async { Ok(cms.get_opt("going").await?.is_none().then_some(())) },
    )
    .await;
    let kept = cms
        .get_opt("shared-dep")
        .await
        .unwrap()
        .expect("a dependent with a valid owner was deleted");
    let owners: Vec<String> = kept
        .metadata
        .owner_references
        .unwrap_or_default()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(
        owners,
        ["staying"],
        "only the deleted owner's reference goes"
    );
    kcm.terminate(Duration::from_secs(10)).unwrap();
}
