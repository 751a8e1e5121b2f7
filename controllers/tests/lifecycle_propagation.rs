//! Deleting a Deployment with each propagation policy leaves what upstream leaves: Orphan
//! keeps its ReplicaSet and pods (owner references removed from the ReplicaSet), Background
//! removes the Deployment at once and collects ReplicaSet and pods after it, Foreground keeps
//! the Deployment (foregroundDeletion finalizer) until its ReplicaSet and pods are gone.

#[path = "lifecycle_support.rs"]
mod support;

use std::time::Duration;

use e2e::ManagedProcess;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, PostParams, PropagationPolicy};
use kube::Api;
use serde_json::json;

const REPLICAS: usize = 2;

fn deployment(name: &str) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": REPLICAS,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "busybox:1.35"}]}
            }
        }
    }))
    .unwrap()
}

fn policy(p: PropagationPolicy) -> DeleteParams {
    DeleteParams {
        propagation_policy: Some(p),
        ..Default::default()
    }
}

fn selected(app: &str) -> ListParams {
    ListParams::default().labels(&format!("app={app}"))
}

/// Creates Deployment `name` and waits for its ReplicaSet and all its pods.
async fn deploy(
    deployments: &Api<Deployment>,
    rss: &Api<ReplicaSet>,
    pods: &Api<Pod>,
    kcm: &mut ManagedProcess,
    name: &str,
) {
    deployments
        .create(&PostParams::default(), &deployment(name))
        .await
        .unwrap();
    support::eventually(
        &format!("{name}: a ReplicaSet and {REPLICAS} pods"),
        Duration::from_secs(60),
        kcm,
        || async {
            let rs = rss.list(&selected(name)).await?.items.len();
            let p = pods.list(&selected(name)).await?.items.len();
            Ok((rs == 1 && p == REPLICAS).then_some(()))
        },
    )
    .await;
}

#[tokio::test]
async fn deleting_a_deployment_with_each_propagation_policy() {
    let cluster = e2e::cluster_or_skip!();
    let client = cluster.client();
    // No serviceaccount controller here: the default ServiceAccount pods need.
    support::ensure_default_service_account(&client).await;
    let mut kcm = support::start_kcm(
        &cluster,
        "deployment-controller,replicaset-controller,garbage-collector-controller",
        &[],
    );
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let rss: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    // Orphan: the Deployment goes; its ReplicaSet stays, released, and keeps its pods.
    deploy(&deployments, &rss, &pods, &mut kcm, "orphan").await;
    deployments
        .delete("orphan", &policy(PropagationPolicy::Orphan))
        .await
        .unwrap();
    support::eventually(
        "orphan: Deployment gone, ReplicaSet released",
        Duration::from_secs(60),
        &mut kcm,
        || async {
            let gone = deployments.get_opt("orphan").await?.is_none();
            let rs = rss.list(&selected("orphan")).await?.items;
            let released = rs.len() == 1
                && rs[0]
                    .metadata
                    .owner_references
                    .as_ref()
                    .is_none_or(|o| o.is_empty());
            Ok((gone && released).then_some(()))
        },
    )
    .await;
    // Nothing collects them afterwards.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rs = rss.list(&selected("orphan")).await.unwrap().items;
    assert_eq!(rs.len(), 1, "orphaned ReplicaSet kept");
    assert!(rs[0].metadata.deletion_timestamp.is_none());
    let orphan_pods = pods.list(&selected("orphan")).await.unwrap().items;
    assert_eq!(
        orphan_pods.len(),
        REPLICAS,
        "the orphaned ReplicaSet's pods kept"
    );
    assert!(orphan_pods
        .iter()
        .all(|p| p.metadata.deletion_timestamp.is_none()));

    // Background: the Deployment goes at once; ReplicaSet and pods are collected after.
    deploy(&deployments, &rss, &pods, &mut kcm, "background").await;
    deployments
        .delete("background", &policy(PropagationPolicy::Background))
        .await
        .unwrap();
    assert!(
        deployments.get_opt("background").await.unwrap().is_none(),
        "a background deletion removes the owner at once"
    );
    support::eventually(
        "background: ReplicaSet and pods collected",
        Duration::from_secs(60),
        &mut kcm,
        || async {
            let rs = rss.list(&selected("background")).await?.items.len();
            let p = pods.list(&selected("background")).await?.items.len();
            Ok((rs == 0 && p == 0).then_some(()))
        },
    )
    .await;

    // Foreground: the Deployment stays, with the foregroundDeletion finalizer, until its
    // ReplicaSet (and through it the pods) are gone.
    deploy(&deployments, &rss, &pods, &mut kcm, "foreground").await;
    // The apiserver answers a foreground delete with the owner still present, marked.
    let d = deployments
        .delete("foreground", &policy(PropagationPolicy::Foreground))
        .await
        .unwrap()
        .left()
        .expect("a foreground deletion keeps the owner while dependents exist");
    assert!(d.metadata.deletion_timestamp.is_some());
    assert!(d
        .metadata
        .finalizers
        .unwrap_or_default()
        .contains(&"foregroundDeletion".to_string()));
    support::eventually(
        "foreground: Deployment, ReplicaSet and pods gone",
        Duration::from_secs(60),
        &mut kcm,
        || async {
            let d = deployments.get_opt("foreground").await?.is_none();
            let rs = rss.list(&selected("foreground")).await?.items.len();
            let p = pods.list(&selected("foreground")).await?.items.len();
            Ok((d && rs == 0 && p == 0).then_some(()))
        },
    )
    .await;

    // The orphaned ReplicaSet is still there at the end.
    assert_eq!(rss.list(&selected("orphan")).await.unwrap().items.len(), 1);
}
