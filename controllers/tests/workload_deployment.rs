//! e2e: a Deployment rolls out, rolls out a new template, rolls back (`kubectl rollout
//! undo`), restarts (`kubectl rollout restart`), pauses and resumes — against a real
//! kube-apiserver, with ferrokube's kube-controller-manager as a process.

#[path = "workload_support.rs"]
mod support;

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, PostParams};
use kube::{Api, ResourceExt};
use support::{eventually, fake_kubelet, kubectl, start_kcm, Outcome};
use tokio_util::sync::CancellationToken;

const NS: &str = "default";
const REVISION: &str = "deployment.kubernetes.io/revision";

fn deployment(replicas: i32) -> Deployment {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "busybox:v1"}]}
            }
        }
    }))
    .expect("deployment")
}

/// `(revision, replicas)` of every ReplicaSet with replicas, and whether the rollout of
/// `image` is complete.
async fn rolled_out(
    client: &kube::Client,
    image: &str,
    replicas: i32,
) -> anyhow::Result<Option<Deployment>> {
    let d = Api::<Deployment>::namespaced(client.clone(), NS)
        .get("web")
        .await?;
    let s = d.status.clone().unwrap_or_default();
    let spec = d.spec.as_ref().unwrap();
    let img = spec.template.spec.as_ref().unwrap().containers[0]
        .image
        .clone()
        .unwrap_or_default();
    let progressing = s
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Progressing");
    let done = img == image
        && s.observed_generation >= d.metadata.generation
        && s.updated_replicas == Some(replicas)
        && s.replicas == Some(replicas)
        && s.available_replicas == Some(replicas)
        && progressing.and_then(|c| c.reason.as_deref()) == Some("NewReplicaSetAvailable");
    let rss = Api::<ReplicaSet>::namespaced(client.clone(), NS)
        .list(&ListParams::default())
        .await?;
    let old_with_pods = rss.items.iter().any(|rs| {
        let t = rs
            .spec
            .as_ref()
            .and_then(|s| s.template.as_ref())
            .and_then(|t| t.spec.as_ref());
        let rs_img = t
            .map(|t| t.containers[0].image.clone().unwrap_or_default())
            .unwrap_or_default();
        rs_img != image && rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0) > 0
    });
    Ok((done && !old_with_pods).then_some(d))
}

fn rs_for_image(rss: &[ReplicaSet], image: &str) -> ReplicaSet {
    rss.iter()
        .find(|rs| {
            rs.spec
                .as_ref()
                .unwrap()
                .template
                .as_ref()
                .unwrap()
                .spec
                .as_ref()
                .unwrap()
                .containers[0]
                .image
                .as_deref()
                == Some(image)
        })
        .cloned()
        .unwrap_or_else(|| panic!("no ReplicaSet for {image}"))
}

#[tokio::test]
async fn deployment_rolls_out_back_restarts_and_pauses() {
    let cluster = e2e::cluster_or_skip!();
    let mut kcm = start_kcm(&cluster, "deployment,replicaset");
    let client = cluster.client();
    let stop = CancellationToken::new();
    let _guard = stop.clone().drop_guard();
    fake_kubelet(client.clone(), NS, stop.clone(), |_| Some(Outcome::Ready));
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NS);
    let rs_api: Api<ReplicaSet> = Api::namespaced(client.clone(), NS);
    // The default ServiceAccount must exist before pods are admitted.
    eventually(
        "default ServiceAccount",
        Duration::from_secs(30),
        &mut kcm,
        || async {
            let sa: Api<k8s_openapi::api::core::v1::ServiceAccount> =
                Api::namespaced(cluster.client(), NS);
            Ok(sa.get_opt("default").await?.map(|_| ()))
        },
    )
    .await;
    deployments
        .create(&PostParams::default(), &deployment(3))
        .await
        .expect("create");

    // 1. First rollout: revision 1, three ready pods.
    let d = eventually("rollout of v1", Duration::from_secs(60), &mut kcm, || {
        rolled_out(&client, "busybox:v1", 3)
    })
    .await;
    assert_eq!(d.annotations().get(REVISION).map(String::as_str), Some("1"));
    let pods = Api::<Pod>::namespaced(client.clone(), NS)
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap();
    assert_eq!(
        pods.items
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .count(),
        3
    );
    assert!(pods
        .items
        .iter()
        .all(|p| p.labels().contains_key("pod-template-hash")));
    let available = d
        .status
        .as_ref()
        .unwrap()
        .conditions
        .as_ref()
        .unwrap()
        .iter()
        .find(|c| c.type_ == "Available")
        .cloned()
        .unwrap();
    assert_eq!(
        (available.status.as_str(), available.reason.as_deref()),
        ("True", Some("MinimumReplicasAvailable"))
    );

    // 2. New template: revision 2, old ReplicaSet scaled to 0.
    kubectl(
        &cluster,
        &["set", "image", "deployment/web", "c=busybox:v2"],
    );
    let d = eventually("rollout of v2", Duration::from_secs(60), &mut kcm, || {
        rolled_out(&client, "busybox:v2", 3)
    })
    .await;
    assert_eq!(d.annotations().get(REVISION).map(String::as_str), Some("2"));

    // 3. kubectl rollout undo: the v1 ReplicaSet comes back as revision 3.
    kubectl(&cluster, &["rollout", "undo", "deployment/web"]);
    let d = eventually("rollback to v1", Duration::from_secs(60), &mut kcm, || {
        rolled_out(&client, "busybox:v1", 3)
    })
    .await;
    assert_eq!(d.annotations().get(REVISION).map(String::as_str), Some("3"));
    let rss = rs_api.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(rss.len(), 2, "rollback reuses the v1 ReplicaSet");
    let v1 = rs_for_image(&rss, "busybox:v1");
    assert_eq!(
        v1.annotations().get(REVISION).map(String::as_str),
        Some("3")
    );
    assert_eq!(
        v1.annotations()
            .get("deployment.kubernetes.io/revision-history")
            .map(String::as_str),
        Some("1")
    );

    // 4. kubectl rollout restart: a new template (restartedAt), revision 4.
    kubectl(&cluster, &["rollout", "restart", "deployment/web"]);
    eventually(
        "restart rollout",
        Duration::from_secs(60),
        &mut kcm,
        || async {
            let d = rolled_out(&client, "busybox:v1", 3).await?;
            Ok(d.filter(|d| d.annotations().get(REVISION).map(String::as_str) == Some("4")))
        },
    )
    .await;
    kubectl(
        &cluster,
        &["rollout", "status", "deployment/web", "--timeout=30s"],
    );

    // 5. Paused: a template change makes no new ReplicaSet; resume rolls it out.
    kubectl(&cluster, &["rollout", "pause", "deployment/web"]);
    kubectl(
        &cluster,
        &["set", "image", "deployment/web", "c=busybox:v3"],
    );
    eventually(
        "DeploymentPaused condition",
        Duration::from_secs(30),
        &mut kcm,
        || async {
            let d = deployments.get("web").await?;
            let paused = d
                .status
                .iter()
                .flat_map(|s| s.conditions.iter().flatten())
                .any(|c| {
                    c.type_ == "Progressing" && c.reason.as_deref() == Some("DeploymentPaused")
                });
            Ok(paused.then_some(()))
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss = rs_api.list(&ListParams::default()).await.unwrap().items;
    assert!(
        rss.iter().all(|rs| rs
            .spec
            .as_ref()
            .unwrap()
            .template
            .as_ref()
            .unwrap()
            .spec
            .as_ref()
            .unwrap()
            .containers[0]
            .image
            .as_deref()
            != Some("busybox:v3")),
        "paused Deployment must not roll out"
    );
    // Scaling while paused still works.
    kubectl(&cluster, &["scale", "deployment/web", "--replicas=5"]);
    eventually(
        "scale while paused",
        Duration::from_secs(30),
        &mut kcm,
        || async {
            let d = deployments.get("web").await?;
            Ok((d.status.as_ref().and_then(|s| s.available_replicas) == Some(5)).then_some(()))
        },
    )
    .await;
    kubectl(&cluster, &["rollout", "resume", "deployment/web"]);
    eventually(
        "rollout of v3 after resume",
        Duration::from_secs(60),
        &mut kcm,
        || rolled_out(&client, "busybox:v3", 5),
    )
    .await;
}
