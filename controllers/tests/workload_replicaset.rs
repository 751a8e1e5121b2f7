//! e2e: ReplicaSet adopts a matching orphan, releases a relabelled pod, scales down the
//! unready pod first (upstream's victim order), reports status; a ReplicationController
//! shares the logic.

#[path = "workload_support.rs"]
mod support;

use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, ReplicationController, ServiceAccount};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use support::{eventually, fake_kubelet, start_kcm, Outcome};
use tokio_util::sync::CancellationToken;

const NS: &str = "default";

fn owned_by(p: &Pod, uid: &str) -> bool {
    p.owner_references()
        .iter()
        .any(|r| r.uid == uid && r.controller == Some(true))
}

#[tokio::test]
async fn replicaset_adopts_releases_and_deletes_unready_first() {
    let cluster = e2e::cluster_or_skip!();
    let mut kcm = start_kcm(&cluster, "replicaset,replicationcontroller");
    let client = cluster.client();
    let stop = CancellationToken::new();
    let _guard = stop.clone().drop_guard();
    // Pods labelled `unready` stay Pending, the rest become Ready.
    fake_kubelet(client.clone(), NS, stop.clone(), |p| {
        (!p.labels().contains_key("unready")).then_some(Outcome::Ready)
    });
    eventually(
        "default ServiceAccount",
        Duration::from_secs(30),
        &mut kcm,
        || async {
            Ok(Api::<ServiceAccount>::namespaced(cluster.client(), NS)
                .get_opt("default")
                .await?
                .map(|_| ()))
        },
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let orphan: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "orphan", "labels": {"app": "rs", "unready": "yes"}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &orphan).await.unwrap();
    let rs: ReplicaSet = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "rs"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "rs"}},
            "template": {"metadata": {"labels": {"app": "rs"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
        }
    }))
    .unwrap();
    let rs_api: Api<ReplicaSet> = Api::namespaced(client.clone(), NS);
    let uid = rs_api
        .create(&PostParams::default(), &rs)
        .await
        .unwrap()
        .uid()
        .unwrap();

    // The orphan is adopted: 2 created, 3 in status, 2 of them ready.
    eventually(
        "adoption and status",
        Duration::from_secs(60),
        &mut kcm,
        || async {
            let rs = rs_api.get("rs").await?;
            let s = rs.status.unwrap_or_default();
            let list = pods.list(&ListParams::default().labels("app=rs")).await?;
            let adopted = list
                .items
                .iter()
                .any(|p| p.name_any() == "orphan" && owned_by(p, &uid));
            let ok = adopted
                && list.items.len() == 3
                && s.replicas == 3
                && s.ready_replicas == Some(2)
                && s.available_replicas == Some(2)
                && s.fully_labeled_replicas == Some(3)
                && s.observed_generation == Some(1);
            Ok(ok.then_some(()))
        },
    )
    .await;

    // Scale to 2: the unready (adopted) pod goes first.
    rs_api
        .patch(
            "rs",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"replicas": 2}})),
        )
        .await
        .unwrap();
    eventually(
        "unready pod deleted first",
        Duration::from_secs(60),
        &mut kcm,
        || async {
            let list = pods.list(&ListParams::default().labels("app=rs")).await?;
            let live: Vec<_> = list
                .items
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .collect();
            Ok((live.len() == 2 && live.iter().all(|p| p.name_any() != "orphan")).then_some(()))
        },
    )
    .await;

    // Relabel an owned pod: it is released and replaced.
    let victim = pods
        .list(&ListParams::default().labels("app=rs"))
        .await
        .unwrap()
        .items[0]
        .name_any();
    pods.patch(
        &victim,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"metadata": {"labels": {"app": "other"}}})),
    )
    .await
    .unwrap();
    eventually(
        "release and replacement",
        Duration::from_secs(60),
        &mut kcm,
        || async {
            let released = pods.get(&victim).await?;
            let owned = pods
                .list(&ListParams::default().labels("app=rs"))
                .await?
                .items
                .iter()
                .filter(|p| owned_by(p, &uid))
                .count();
            Ok((!owned_by(&released, &uid) && owned == 2).then_some(()))
        },
    )
    .await;

    // A ReplicationController keeps its replicas too.
    let rc: ReplicationController = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "rc"},
        "spec": {"replicas": 2, "selector": {"app": "rc"},
            "template": {"metadata": {"labels": {"app": "rc"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}
    }))
    .unwrap();
    let rc_api: Api<ReplicationController> = Api::namespaced(client.clone(), NS);
    rc_api.create(&PostParams::default(), &rc).await.unwrap();
    eventually("rc ready", Duration::from_secs(60), &mut kcm, || async {
        let s = rc_api.get("rc").await?.status.unwrap_or_default();
        Ok((s.replicas == 2 && s.ready_replicas == Some(2)).then_some(()))
    })
    .await;
}
