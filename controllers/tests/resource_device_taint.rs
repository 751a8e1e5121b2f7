//! device-taint-eviction-controller against a real apiserver with DRADeviceTaints on (and
//! resource.k8s.io/v1alpha3 for DeviceTaintRules). The test plays the scheduler and a DRA
//! driver: it publishes devices, allocates claims and reserves them for bound pods.

#[path = "lifecycle_support.rs"]
mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::resource::v1::{DeviceClass, ResourceClaim, ResourceSlice};
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::json;

const DRIVER: &str = "gpu.test.ferrokube.io";
const TIMEOUT: Duration = Duration::from_secs(20);
const GATES: &str = "--feature-gates=DRADeviceTaints=true";

async fn create<K>(api: &Api<K>, v: serde_json::Value) -> K
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let o: K = serde_json::from_value(v).unwrap();
    api.create(&PostParams::default(), &o).await.unwrap()
}

/// A bound pod using claim `claim`, allocated to `device` with `tolerations` and reserved
/// for the pod.
async fn pod_on_device(
    client: &kube::Client,
    name: &str,
    device: &str,
    tolerations: serde_json::Value,
) -> Pod {
    let claims: Api<ResourceClaim> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let claim = format!("{name}-claim");
    create(
        &claims,
        json!({"metadata": {"name": claim}, "spec": {"devices": {"requests": [
        {"name": "gpu", "exactly": {"deviceClassName": "gpu.example.com"}}]}}}),
    )
    .await;
    let pod: Pod = create(
        &pods,
        json!({"metadata": {"name": name}, "spec": {
        "nodeName": "node-1",
        "containers": [{"name": "c", "image": "busybox"}],
        "resourceClaims": [{"name": "gpu", "resourceClaimName": claim}]}}),
    )
    .await;
    let status = json!({"status": {
        "allocation": {"devices": {"results": [{"request": "gpu", "driver": DRIVER,
            "pool": "node-1", "device": device, "tolerations": tolerations}]}},
        "reservedFor": [{"resource": "pods", "name": name, "uid": pod.metadata.uid}]}});
    let c = claims
        .patch_status(&claim, &PatchParams::default(), &Patch::Merge(status))
        .await
        .unwrap();
    let results = c
        .status
        .unwrap()
        .allocation
        .unwrap()
        .devices
        .unwrap()
        .results
        .unwrap();
    assert_eq!(
        results[0].tolerations.as_ref().map_or(0, Vec::len),
        tolerations.as_array().unwrap().len(),
        "the apiserver keeps allocation tolerations only with DRADeviceTaints"
    );
    pod
}

fn evicted(p: &Pod) -> bool {
    let condition = p
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| {
            c.type_ == "DisruptionTarget"
                && c.status == "True"
                && c.reason.as_deref() == Some("DeletionByDeviceTaintManager")
        });
    condition && p.metadata.deletion_timestamp.is_some()
}

#[tokio::test]
async fn pods_on_devices_with_untolerated_no_execute_taints_are_evicted() {
    let cluster = e2e::cluster_or_skip!(
        apiserver_flags = &[GATES, "--runtime-config=resource.k8s.io/v1alpha3=true",]
    );
    let client = cluster.client();
    support::ensure_default_service_account(&client).await;
    let classes: Api<DeviceClass> = Api::all(client.clone());
    create(
        &classes,
        json!({"metadata": {"name": "gpu.example.com"}, "spec": {}}),
    )
    .await;
    // gpu-2 is tainted by its driver; gpu-0 and gpu-1 get tainted by a rule below.
    let slices: Api<ResourceSlice> = Api::all(client.clone());
    create(
        &slices,
        json!({"metadata": {"name": "node-1-gpus"}, "spec": {
        "driver": DRIVER, "nodeName": "node-1",
        "pool": {"name": "node-1", "generation": 1, "resourceSliceCount": 1},
        "devices": [{"name": "gpu-0"}, {"name": "gpu-1"},
            {"name": "gpu-2", "taints": [{"key": "broken", "effect": "NoExecute"}]}]}}),
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    let mut kcm = support::start_kcm(&cluster, "device-taint-eviction", &[GATES]);
    let tolerate_maintenance =
        json!([{"key": "maintenance", "operator": "Exists", "effect": "NoExecute"}]);
    pod_on_device(&client, "victim", "gpu-0", json!([])).await;
    pod_on_device(&client, "tolerant", "gpu-1", tolerate_maintenance).await;
    pod_on_device(&client, "on-broken", "gpu-2", json!([])).await;

    // The driver's own taint.
    support::eventually("on-broken evicted", TIMEOUT, &mut kcm, || async {
        Ok(evicted(&pods.get("on-broken").await?).then_some(()))
    })
    .await;
    assert!(
        !evicted(&pods.get("victim").await.unwrap()),
        "gpu-0 is not tainted yet"
    );

    // An admin's DeviceTaintRule over the whole pool.
    let rules = ApiResource {
        group: "resource.k8s.io".into(),
        version: "v1alpha3".into(),
        api_version: "resource.k8s.io/v1alpha3".into(),
        kind: "DeviceTaintRule".into(),
        plural: "devicetaintrules".into(),
    };
    let rule_api: Api<DynamicObject> = Api::all_with(client.clone(), &rules);
    let rule: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "resource.k8s.io/v1alpha3", "kind": "DeviceTaintRule",
        "metadata": {"name": "maintenance"},
        "spec": {"deviceSelector": {"driver": DRIVER, "pool": "node-1"},
                 "taint": {"key": "maintenance", "value": "planned", "effect": "NoExecute"}}
    }))
    .unwrap();
    rule_api
        .create(&PostParams::default(), &rule)
        .await
        .unwrap();
    let victim = support::eventually("victim evicted", TIMEOUT, &mut kcm, || async {
        let p = pods.get("victim").await?;
        Ok(evicted(&p).then_some(p))
    })
    .await;
    let condition = victim
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "DisruptionTarget")
        .unwrap();
    assert_eq!(
        condition.message.as_deref(),
        Some("Device Taint manager: deleting due to NoExecute taint")
    );
    // The pod whose allocation tolerates the taint stays.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let tolerant = pods.get("tolerant").await.unwrap();
    assert!(
        tolerant.metadata.deletion_timestamp.is_none(),
        "tolerant pod was evicted"
    );
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(client.clone(), "default");
    let reasons: Vec<(String, String)> = events
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("DeviceTaintManagerEviction"))
        .map(|e| {
            (
                e.regarding.and_then(|r| r.name).unwrap_or_default(),
                e.note.unwrap_or_default(),
            )
        })
        .collect();
    assert!(
        reasons.contains(&("victim".into(), "Marking for deletion".into())),
        "{reasons:?}"
    );
    assert!(kcm.is_running());
}
