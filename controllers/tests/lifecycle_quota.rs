//! resourcequota-controller against a real apiserver: usage shows in status, the
//! apiserver's quota admission then refuses a pod over quota, and deleting or finishing a
//! pod gives the quota back (replenishment, well before the 5m resync).

#[path = "lifecycle_support.rs"]
mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, ResourceQuota, ServiceAccount};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::json;

fn pod(name: &str, cpu: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox",
            "resources": {"requests": {"cpu": cpu, "memory": "16Mi"}, "limits": {"cpu": cpu, "memory": "16Mi"}}}]}
    }))
    .unwrap()
}

/// `status.used` of the quota as strings, once it has every key of `want`.
async fn used(
    quotas: &Api<ResourceQuota>,
) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    let q = quotas.get("compute").await?;
    Ok(q.status
        .and_then(|s| s.used)
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect())
}

#[tokio::test]
async fn usage_is_reported_and_enforced() {
    let cluster = e2e::cluster_or_skip!();
    let mut kcm = support::start_kcm(&cluster, "serviceaccount,resourcequota", &[]);
    let client = cluster.client();
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
    support::eventually(
        "default ServiceAccount",
        Duration::from_secs(30),
        &mut kcm,
        || async { Ok(sas.get_opt("default").await?) },
    )
    .await;
    let quotas: Api<ResourceQuota> = Api::namespaced(client.clone(), "default");
    let rq: ResourceQuota = serde_json::from_value(json!({
        "metadata": {"name": "compute"},
        "spec": {"hard": {"pods": "2", "requests.cpu": "1", "limits.memory": "1Gi", "services": "5",
            "configmaps": "4", "count/deployments.apps": "3", "count/pods": "10"}}
    }))
    .unwrap();
    quotas.create(&PostParams::default(), &rq).await.unwrap();
    let want = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let initial = want(&[
        ("pods", "0"),
        ("count/pods", "0"),
        ("requests.cpu", "0"),
        ("limits.memory", "0"),
        ("services", "1"), // the `kubernetes` Service
        ("configmaps", "0"),
        ("count/deployments.apps", "0"),
    ]);
    support::eventually(
        "initial usage",
        Duration::from_secs(30),
        &mut kcm,
        || async { Ok((used(&quotas).await? == initial).then_some(())) },
    )
    .await;
    let q = quotas.get("compute").await.unwrap();
    assert_eq!(q.status.unwrap().hard.unwrap()["requests.cpu"].0, "1");

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod("a", "500m"))
        .await
        .unwrap();
    pods.create(&PostParams::default(), &pod("b", "400m"))
        .await
        .unwrap();
    let two = want(&[
        ("pods", "2"),
        ("count/pods", "2"),
        ("requests.cpu", "900m"),
        ("limits.memory", "32Mi"),
        ("services", "1"),
        ("configmaps", "0"),
        ("count/deployments.apps", "0"),
    ]);
    support::eventually(
        "usage of two pods",
        Duration::from_secs(30),
        &mut kcm,
        || async { Ok((used(&quotas).await? == two).then_some(())) },
    )
    .await;
    // The apiserver enforces what status.used says (waited for above). Admission charged
    // both creates itself; the controller must not then recompute from informer caches
    // that have not seen the pods yet and write a lower usage back — it syncs a quota on
    // spec changes and replenishing events, not on admission's status writes (the CI
    // failure of 2026-11-24 was exactly that race).
    let err = pods
        .create(&PostParams::default(), &pod("c", "100m"))
        .await
        .expect_err("a third pod exceeds pods=2");
    match err {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 403, "{s:?}");
            assert!(
                s.message.contains("exceeded quota: compute"),
                "{}",
                s.message
            );
        }
        e => panic!("unexpected error {e}"),
    }

    // A finished pod stops counting towards pods and compute (but still counts as an object).
    pods.patch_status(
        "b",
        &PatchParams::default(),
        &Patch::Merge(&json!({"status": {"phase": "Succeeded"}})),
    )
    .await
    .unwrap();
    support::eventually(
        "finished pod replenished",
        Duration::from_secs(30),
        &mut kcm,
        || async {
            let u = used(&quotas).await?;
            Ok(
                (u["pods"] == "1" && u["requests.cpu"] == "500m" && u["count/pods"] == "2")
                    .then_some(()),
            )
        },
    )
    .await;
    // A deleted pod gives everything back.
    pods.delete("a", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    support::eventually(
        "deleted pod replenished",
        Duration::from_secs(30),
        &mut kcm,
        || async {
            let u = used(&quotas).await?;
            Ok(
                (u["pods"] == "0" && u["requests.cpu"] == "0" && u["count/pods"] == "1")
                    .then_some(()),
            )
        },
    )
    .await;
    pods.create(&PostParams::default(), &pod("c", "100m"))
        .await
        .expect("room again after replenishment");
    kcm.terminate(Duration::from_secs(10)).unwrap();
}
