//! pod-garbage-collector against a real apiserver: terminated pods beyond
//! `--terminated-pod-gc-threshold` are force-deleted oldest first, and a terminating pod
//! that was never scheduled is marked Failed and force-deleted.
//! (Orphans of deleted nodes wait a 40 s quarantine; that path is unit-tested.)

#[path = "lifecycle_support.rs"]
mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::json;

fn pod(name: &str, finalizers: &[&str]) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": "podgc"}, "finalizers": finalizers},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}
    }))
    .unwrap()
}

#[tokio::test]
async fn terminated_and_unscheduled_terminating_pods_are_collected() {
    let cluster = e2e::cluster_or_skip!();
    let client = cluster.client();
    support::ensure_default_service_account(&client).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    // Four finished pods (created in name order: a is the oldest) and one that runs.
    for name in ["a", "b", "c", "d", "running"] {
        pods.create(&PostParams::default(), &pod(name, &[]))
            .await
            .unwrap();
    }
    for (name, phase) in [
        ("a", "Succeeded"),
        ("b", "Failed"),
        ("c", "Succeeded"),
        ("d", "Failed"),
        ("running", "Running"),
    ] {
        pods.patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"phase": phase}})),
        )
        .await
        .unwrap();
    }
    // A terminating pod that was never scheduled (a finalizer keeps it visible).
    let hold = "ferrokube.test/hold";
    pods.create(&PostParams::default(), &pod("stuck", &[hold]))
        .await
        .unwrap();
    pods.delete("stuck", &DeleteParams::default())
        .await
        .unwrap();

    let mut kcm = support::start_kcm(
        &cluster,
        "pod-garbage-collector-controller",
        &["--terminated-pod-gc-threshold=2"],
    );
    // The first pass runs as soon as the caches sync.
    let remaining = support::eventually(
        "the two oldest terminated pods deleted",
        Duration::from_secs(30),
        &mut kcm,
        || async {
            let list = pods
                .list(&ListParams::default().labels("app=podgc"))
                .await?;
            let mut names: Vec<String> = list
                .items
                .into_iter()
                .filter_map(|p| p.metadata.name)
                .collect();
            names.sort();
            Ok(
                (!names.contains(&"a".to_string()) && !names.contains(&"b".to_string()))
                    .then_some(names),
            )
        },
    )
    .await;
    assert_eq!(
        remaining,
        ["c", "d", "running", "stuck"],
        "exactly the excess goes"
    );

    let stuck = support::eventually(
        "unscheduled terminating pod marked Failed",
        Duration::from_secs(30),
        &mut kcm,
        || async {
            let p = pods.get("stuck").await?;
            let failed = p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed");
            Ok(failed.then_some(p))
        },
    )
    .await;
    assert!(stuck.metadata.deletion_timestamp.is_some());
    // Releasing the finalizer lets the (force-)deleted pod go at once.
    pods.patch(
        "stuck",
        &PatchParams::default(),
        &Patch::Merge(&json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    support::eventually(
        "stuck pod gone",
        Duration::from_secs(10),
        &mut kcm,
        || async { Ok(pods.get_opt("stuck").await?.is_none().then_some(())) },
    )
    .await;
    // The running pod and the two newest finished ones were kept.
    for name in ["c", "d", "running"] {
        assert!(pods.get_opt(name).await.unwrap().is_some(), "{name} kept");
    }
    kcm.terminate(Duration::from_secs(10)).unwrap();
}
