//! resourceclaim-controller against a real apiserver. Our scheduler does not allocate
//! devices, so the test plays the scheduler and a DRA driver: it publishes a DeviceClass and
//! a driver's ResourceSlice and writes `status.allocation` (with the scheduler's finalizer)
//! on the claims itself.

#[path = "lifecycle_support.rs"]
mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::resource::v1::{
    DeviceClass, ResourceClaim, ResourceClaimTemplate, ResourceSlice,
};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::json;

const DRIVER: &str = "gpu.test.ferrokube.io";
const FINALIZER: &str = "resource.kubernetes.io/delete-protection";
const TIMEOUT: Duration = Duration::from_secs(20);

async fn create<K>(api: &Api<K>, v: serde_json::Value) -> K
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let o: K = serde_json::from_value(v).unwrap();
    api.create(&PostParams::default(), &o).await.unwrap()
}

/// The driver's side: a DeviceClass and a ResourceSlice with two GPUs on node-1.
async fn publish_devices(client: &kube::Client) {
    let classes: Api<DeviceClass> = Api::all(client.clone());
    create(
        &classes,
        json!({"metadata": {"name": "gpu.example.com"}, "spec": {
        "selectors": [{"cel": {"expression": format!("device.driver == '{DRIVER}'")}}]}}),
    )
    .await;
    let slices: Api<ResourceSlice> = Api::all(client.clone());
    create(
        &slices,
        json!({"metadata": {"name": "node-1-gpus"}, "spec": {
        "driver": DRIVER, "nodeName": "node-1",
        "pool": {"name": "node-1", "generation": 1, "resourceSliceCount": 1},
        "devices": [{"name": "gpu-0"}, {"name": "gpu-1"}]}}),
    )
    .await;
}

/// The scheduler's side: the finalizer, then the allocation of `device` (and, when given,
/// the reservation for `pod`).
async fn allocate(claims: &Api<ResourceClaim>, name: &str, device: &str, pod: Option<&Pod>) {
    claims
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": [FINALIZER]}})),
        )
        .await
        .unwrap();
    let mut status = json!({"allocation": {"devices": {"results": [
        {"request": "gpu", "driver": DRIVER, "pool": "node-1", "device": device}]}}});
    if let Some(p) = pod {
        status["reservedFor"] =
            json!([{"resource": "pods", "name": p.metadata.name, "uid": p.metadata.uid}]);
    }
    claims
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": status})),
        )
        .await
        .unwrap();
}

fn reserved(c: &ResourceClaim) -> Vec<String> {
    c.status
        .iter()
        .flat_map(|s| s.reserved_for.iter().flatten())
        .map(|r| r.name.clone())
        .collect()
}

fn allocated(c: &ResourceClaim) -> bool {
    c.status.as_ref().is_some_and(|s| s.allocation.is_some())
}

fn has_finalizer(c: &ResourceClaim) -> bool {
    c.metadata
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == FINALIZER)
}

async fn set_phase(pods: &Api<Pod>, name: &str, phase: &str) {
    pods.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": phase}})),
    )
    .await
    .unwrap();
}

fn pod_with_claims(name: &str, claims: serde_json::Value) -> serde_json::Value {
    json!({"metadata": {"name": name}, "spec": {
        "nodeName": "node-1",
        "containers": [{"name": "c", "image": "busybox"}],
        "resourceClaims": claims}})
}

#[tokio::test]
async fn claims_from_templates_live_and_die_with_their_pods() {
    let cluster = e2e::cluster_or_skip!();
    let client = cluster.client();
    support::ensure_default_service_account(&client).await;
    publish_devices(&client).await;
    let claims: Api<ResourceClaim> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let templates: Api<ResourceClaimTemplate> = Api::namespaced(client.clone(), "default");
    create(&templates, json!({"metadata": {"name": "gpu-template"}, "spec": {
        "metadata": {"labels": {"app": "web"}},
        "spec": {"devices": {"requests": [{"name": "gpu", "exactly": {"deviceClassName": "gpu.example.com"}}]}}}}))
    .await;

    let (mut kcm, port) =
        support::start_kcm_on_port(&cluster, "resourceclaim,garbagecollector", &[]);
    let web: Pod = create(
        &pods,
        pod_with_claims(
            "web",
            json!([{"name": "gpu", "resourceClaimTemplateName": "gpu-template"}]),
        ),
    )
    .await;
    let gone: Pod = create(
        &pods,
        pod_with_claims(
            "gone",
            json!([{"name": "gpu", "resourceClaimTemplateName": "gpu-template"}]),
        ),
    )
    .await;

    // The claim is created and recorded in the pod's status.
    let recorded = |name: &'static str| {
        let pods = pods.clone();
        async move {
            let p = pods.get(name).await?;
            let statuses = p
                .status
                .and_then(|s| s.resource_claim_statuses)
                .unwrap_or_default();
            Ok(statuses
                .into_iter()
                .find(|s| s.name == "gpu")
                .and_then(|s| s.resource_claim_name))
        }
    };
    let web_claim = support::eventually("web's claim recorded", TIMEOUT, &mut kcm, || {
        recorded("web")
    })
    .await;
    let gone_claim = support::eventually("gone's claim recorded", TIMEOUT, &mut kcm, || {
        recorded("gone")
    })
    .await;
    assert!(
        web_claim.starts_with("web-gpu-") && web_claim.len() == "web-gpu-".len() + 5,
        "{web_claim}"
    );
    let claim = claims.get(&web_claim).await.unwrap();
    let ann = claim.metadata.annotations.as_ref().unwrap();
    assert_eq!(ann["resource.kubernetes.io/pod-claim-name"], "gpu");
    assert_eq!(claim.metadata.labels.as_ref().unwrap()["app"], "web");
    assert_eq!(claim.metadata.generate_name.as_deref(), Some("web-gpu-"));
    let owners = claim.metadata.owner_references.as_ref().unwrap();
    assert_eq!(owners.len(), 1);
    let o = &owners[0];
    assert_eq!(
        (o.api_version.as_str(), o.kind.as_str(), o.name.as_str()),
        ("v1", "Pod", "web")
    );
    assert_eq!(Some(&o.uid), web.metadata.uid.as_ref());
    assert_eq!(
        (o.controller, o.block_owner_deletion),
        (Some(true), Some(true))
    );
    let requests = claim
        .spec
        .devices
        .as_ref()
        .unwrap()
        .requests
        .as_ref()
        .unwrap();
    assert_eq!(
        requests[0].exactly.as_ref().unwrap().device_class_name,
        "gpu.example.com"
    );
    // Exactly one claim per pod entry, however often the pods were synced.
    let all = claims.list(&Default::default()).await.unwrap();
    assert_eq!(
        all.items.len(),
        2,
        "{:?}",
        all.items
            .iter()
            .map(|c| &c.metadata.name)
            .collect::<Vec<_>>()
    );

    // Scheduled and allocated (by the test) without a reservation: the controller reserves.
    allocate(&claims, &web_claim, "gpu-0", None).await;
    allocate(&claims, &gone_claim, "gpu-1", Some(&gone)).await;
    support::eventually(
        "web's claim reserved for web",
        TIMEOUT,
        &mut kcm,
        || async { Ok((reserved(&claims.get(&web_claim).await?) == ["web"]).then_some(())) },
    )
    .await;

    // The pod finishes: reservation dropped, deallocated, finalizer removed, claim deleted.
    set_phase(&pods, "web", "Succeeded").await;
    support::eventually("web's claim deleted", TIMEOUT, &mut kcm, || async {
        Ok(claims.get_opt(&web_claim).await?.is_none().then_some(()))
    })
    .await;

    // The pod is deleted: its reservation goes, the claim is deallocated and released, and
    // the garbage collector removes it.
    pods.delete(
        "gone",
        &DeleteParams {
            grace_period_seconds: Some(0),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    support::eventually("gone's claim deleted", TIMEOUT, &mut kcm, || async {
        Ok(claims.get_opt(&gone_claim).await?.is_none().then_some(()))
    })
    .await;

    let metrics = support::scrape_metrics(&cluster, &mut kcm, port).await;
    assert_eq!(
        support::sample(
            &metrics,
            "resourceclaim_controller_creates_total{status=\"success\",admin_access=\"false\"}"
        ),
        Some(2.0),
        "{metrics}"
    );
    assert!(kcm.is_running());
}

#[tokio::test]
async fn a_shared_claim_is_released_consumer_by_consumer() {
    let cluster = e2e::cluster_or_skip!();
    let client = cluster.client();
    support::ensure_default_service_account(&client).await;
    publish_devices(&client).await;
    let claims: Api<ResourceClaim> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    create(
        &claims,
        json!({"metadata": {"name": "shared"}, "spec": {"devices": {"requests": [
        {"name": "gpu", "exactly": {"deviceClassName": "gpu.example.com"}}]}}}),
    )
    .await;
    let mut kcm = support::start_kcm(&cluster, "resourceclaim", &[]);
    let uses_shared = json!([{"name": "gpu", "resourceClaimName": "shared"}]);
    create::<Pod>(&pods, pod_with_claims("a", uses_shared.clone())).await;
    create::<Pod>(&pods, pod_with_claims("b", uses_shared)).await;
    allocate(&claims, "shared", "gpu-0", None).await;

    support::eventually("shared reserved for a and b", TIMEOUT, &mut kcm, || async {
        let mut r = reserved(&claims.get("shared").await?);
        r.sort();
        Ok((r == ["a", "b"]).then_some(()))
    })
    .await;

    // One consumer gone: only its reservation goes; the claim stays allocated.
    pods.delete(
        "a",
        &DeleteParams {
            grace_period_seconds: Some(0),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let c = support::eventually("a's reservation removed", TIMEOUT, &mut kcm, || async {
        let c = claims.get("shared").await?;
        Ok((reserved(&c) == ["b"]).then_some(c))
    })
    .await;
    assert!(allocated(&c) && has_finalizer(&c));

    // The last consumer is done: deallocated, finalizer removed, the claim itself kept
    // (it was not generated for a pod).
    set_phase(&pods, "b", "Failed").await;
    let c = support::eventually("shared deallocated", TIMEOUT, &mut kcm, || async {
        let c = claims.get("shared").await?;
        Ok((reserved(&c).is_empty() && !allocated(&c) && !has_finalizer(&c)).then_some(c))
    })
    .await;
    assert!(c.metadata.deletion_timestamp.is_none());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        claims.get_opt("shared").await.unwrap().is_some(),
        "a user's claim is not deleted"
    );
    assert!(kcm.is_running());
}
