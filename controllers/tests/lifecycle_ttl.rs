//! ttl-after-finished-controller and ttl-controller against a real apiserver: a finished
//! Job with `ttlSecondsAfterFinished` is deleted (foreground) once that has passed (an unfinished one
//! and one without a TTL stay), and every node gets `node.alpha.kubernetes.io/ttl: "0"`.

#[path = "lifecycle_support.rs"]
mod support;

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::json;

async fn job(jobs: &Api<Job>, name: &str, ttl: Option<i32>, finished: bool) {
    let mut v = json!({"metadata": {"name": name}, "spec": {"template": {"spec": {
        "restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}});
    if let Some(t) = ttl {
        v["spec"]["ttlSecondsAfterFinished"] = json!(t);
    }
    jobs.create(&PostParams::default(), &serde_json::from_value(v).unwrap())
        .await
        .unwrap();
    if finished {
        let now = jiff::Timestamp::now().to_string();
        jobs.patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(
                &json!({"status": {"startTime": now, "completionTime": now, "succeeded": 1,
                "conditions": [
                    {"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": now},
                    {"type": "Complete", "status": "True", "lastTransitionTime": now}]}}),
            ),
        )
        .await
        .unwrap();
    }
}

#[tokio::test]
async fn finished_jobs_expire_and_nodes_get_ttl() {
    let cluster = e2e::cluster_or_skip!();
    let client = cluster.client();
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({"metadata": {"name": "n1"}})).unwrap();
    nodes.create(&PostParams::default(), &node).await.unwrap();

    job(&jobs, "expires", Some(2), true).await;
    job(&jobs, "running", Some(0), false).await;
    job(&jobs, "kept", None, true).await;
    let started = std::time::Instant::now();
    let mut kcm = support::start_kcm(
        &cluster,
        "ttl-after-finished-controller,ttl-controller",
        &[],
    );
    support::eventually(
        "finished Job deleted in the foreground after its TTL",
        Duration::from_secs(30),
        &mut kcm,
        || async {
            let j = jobs.get("expires").await?;
            let foreground = j.metadata.deletion_timestamp.is_some()
                && j.metadata
                    .finalizers
                    .iter()
                    .flatten()
                    .any(|f| f == "foregroundDeletion");
            Ok(foreground.then_some(()))
        },
    )
    .await;
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "not before its TTL"
    );
    support::eventually(
        "node ttl annotation",
        Duration::from_secs(30),
        &mut kcm,
        || async {
            let n = nodes.get("n1").await?;
            let ttl = n
                .metadata
                .annotations
                .and_then(|a| a.get("node.alpha.kubernetes.io/ttl").cloned());
            Ok((ttl.as_deref() == Some("0")).then_some(()))
        },
    )
    .await;
    assert!(jobs.get_opt("running").await.unwrap().is_some());
    assert!(jobs.get_opt("kept").await.unwrap().is_some());
    kcm.terminate(Duration::from_secs(10)).unwrap();
}
