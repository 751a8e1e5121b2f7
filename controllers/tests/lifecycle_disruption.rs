//! disruption-controller against a real apiserver: PodDisruptionBudget status for
//! minAvailable / maxUnavailable (int and percent) over a ReplicaSet and a StatefulSet's
//! scale subresource, the apiserver's eviction API honouring it, and the SyncFailed
//! fail-safe when a pod's controller cannot be found.

#[path = "lifecycle_support.rs"]
mod support;

use std::time::Duration;

use k8s_openapi::api::apps::v1::{ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use kube::api::{EvictParams, Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::json;

fn template(app: &str) -> serde_json::Value {
    json!({"metadata": {"labels": {"app": app}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
}

/// Creates a Ready pod labelled `app`, controlled by `owner` (apiVersion, kind, name, uid).
async fn ready_pod(pods: &Api<Pod>, name: &str, app: &str, owner: (&str, &str, &str, &str)) {
    let (api_version, kind, owner_name, uid) = owner;
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": app}, "ownerReferences": [{
            "apiVersion": api_version, "kind": kind, "name": owner_name, "uid": uid,
            "controller": true}]},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    pods.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(&json!({"status": {"phase": "Running", "conditions": [
            {"type": "Ready", "status": "True"}]}})),
    )
    .await
    .unwrap();
}

async fn pdb(api: &Api<PodDisruptionBudget>, name: &str, app: &str, rule: serde_json::Value) {
    let mut spec = json!({"selector": {"matchLabels": {"app": app}}});
    spec.as_object_mut()
        .unwrap()
        .extend(rule.as_object().unwrap().clone());
    let b: PodDisruptionBudget =
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap();
    api.create(&PostParams::default(), &b).await.unwrap();
}

/// (currentHealthy, desiredHealthy, expectedPods, disruptionsAllowed, condition reason).
fn summary(s: &PodDisruptionBudgetStatus) -> (i32, i32, i32, i32, String) {
    let reason = s
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "DisruptionAllowed")
        .map(|c| c.reason.clone())
        .unwrap_or_default();
    (
        s.current_healthy,
        s.desired_healthy,
        s.expected_pods,
        s.disruptions_allowed,
        reason,
    )
}

async fn wait_status(
    kcm: &mut e2e::ManagedProcess,
    api: &Api<PodDisruptionBudget>,
    name: &str,
    want: (i32, i32, i32, i32, &str),
) -> PodDisruptionBudget {
    let want = (want.0, want.1, want.2, want.3, want.4.to_string());
    support::eventually(
        &format!("status of {name} = {want:?}"),
        Duration::from_secs(30),
        kcm,
        || async {
            let b = api.get(name).await?;
            // The fail-safe keeps the last observedGeneration, as upstream's.
            let observed = want.4 == "SyncFailed"
                || b.status.as_ref().and_then(|s| s.observed_generation) == b.metadata.generation;
            let ok = observed && b.status.as_ref().is_some_and(|s| summary(s) == want);
            Ok(ok.then_some(b))
        },
    )
    .await
}

#[tokio::test]
async fn budgets_track_pods_and_scale_and_gate_evictions() {
    let cluster = e2e::cluster_or_skip!();
    let client = cluster.client();
    support::ensure_default_service_account(&client).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let budgets: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), "default");

    // A ReplicaSet of 3 (no replicaset controller runs: the test makes its pods).
    let rs: ReplicaSet = serde_json::from_value(json!({"metadata": {"name": "web"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": template("web")}}))
    .unwrap();
    let rs = Api::<ReplicaSet>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &rs)
        .await
        .unwrap();
    let rs_uid = rs.metadata.uid.unwrap();
    for i in 0..3 {
        ready_pod(
            &pods,
            &format!("web-{i}"),
            "web",
            ("apps/v1", "ReplicaSet", "web", &rs_uid),
        )
        .await;
    }
    // Another of 3 for the maxUnavailable budget (eviction wants one budget per pod).
    let rs: ReplicaSet = serde_json::from_value(json!({"metadata": {"name": "api"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "api"}}, "template": template("api")}}))
    .unwrap();
    let rs = Api::<ReplicaSet>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &rs)
        .await
        .unwrap();
    let api_uid = rs.metadata.uid.unwrap();
    for i in 0..3 {
        ready_pod(
            &pods,
            &format!("api-{i}"),
            "api",
            ("apps/v1", "ReplicaSet", "api", &api_uid),
        )
        .await;
    }
    // A StatefulSet of 2 whose scale subresource gives the expected count.
    let sts: StatefulSet = serde_json::from_value(json!({"metadata": {"name": "db"},
        "spec": {"replicas": 2, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}}, "template": template("db")}}))
    .unwrap();
    let sts = Api::<StatefulSet>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &sts)
        .await
        .unwrap();
    let sts_uid = sts.metadata.uid.unwrap();
    ready_pod(
        &pods,
        "db-0",
        "db",
        ("apps/v1", "StatefulSet", "db", &sts_uid),
    )
    .await;
    // A pod whose controller does not exist.
    ready_pod(
        &pods,
        "lonely-0",
        "lonely",
        (
            "apps/v1",
            "ReplicaSet",
            "gone",
            "00000000-0000-0000-0000-000000000001",
        ),
    )
    .await;

    pdb(&budgets, "web-min", "web", json!({"minAvailable": 2})).await;
    pdb(&budgets, "api-max", "api", json!({"maxUnavailable": "34%"})).await;
    pdb(&budgets, "db-max", "db", json!({"maxUnavailable": 1})).await;
    pdb(&budgets, "lonely", "lonely", json!({"minAvailable": "50%"})).await;

    let mut kcm = support::start_kcm(&cluster, "disruption-controller", &[]);
    wait_status(
        &mut kcm,
        &budgets,
        "web-min",
        (3, 2, 3, 1, "SufficientPods"),
    )
    .await;
    // maxUnavailable 34% of 3 rounds up to 2.
    wait_status(
        &mut kcm,
        &budgets,
        "api-max",
        (3, 1, 3, 2, "SufficientPods"),
    )
    .await;
    // Scale 2, one pod ready: desired 1, nothing to spare.
    wait_status(
        &mut kcm,
        &budgets,
        "db-max",
        (1, 1, 2, 0, "InsufficientPods"),
    )
    .await;
    let lonely = wait_status(&mut kcm, &budgets, "lonely", (0, 0, 0, 0, "SyncFailed")).await;
    let cond = lonely.status.unwrap().conditions.unwrap();
    assert!(
        cond[0]
            .message
            .contains("found no controllers for pod \"lonely-0\""),
        "{}",
        cond[0].message
    );

    // The eviction API spends a disruption; the controller then re-derives the budget.
    pods.evict("web-0", &EvictParams::default()).await.unwrap();
    wait_status(
        &mut kcm,
        &budgets,
        "web-min",
        (2, 2, 2, 0, "InsufficientPods"),
    )
    .await;
    // kube's default client retries 429 (15 times, honouring Retry-After); ask once.
    let kubeconfig = kube::config::Kubeconfig::read_from(cluster.kubeconfig()).unwrap();
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    config.default_retry = false;
    let once: Api<Pod> = Api::namespaced(kube::Client::try_from(config).unwrap(), "default");
    let err = once
        .evict("web-1", &EvictParams::default())
        .await
        .expect_err("web-min allows no more disruptions");
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 429),
        "{err}"
    );

    // A pod turning unready lowers currentHealthy.
    pods.patch_status(
        "api-2",
        &PatchParams::default(),
        &Patch::Merge(&json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}})),
    )
    .await
    .unwrap();
    wait_status(
        &mut kcm,
        &budgets,
        "api-max",
        (2, 1, 3, 1, "SufficientPods"),
    )
    .await;
    kcm.terminate(Duration::from_secs(10)).unwrap();
}
