//! ephemeral-volume-controller against a real apiserver: a pod with a generic ephemeral
//! volume gets the claim `<pod>-<volume>`, made from the template and controlled by the pod.

#[path = "lifecycle_support.rs"]
mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::PostParams;
use kube::Api;
use serde_json::json;

#[tokio::test]
async fn pod_gets_its_ephemeral_claim() {
    let cluster = e2e::cluster_or_skip!();
    let client = cluster.client();
    support::ensure_default_service_account(&client).await;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    let mut kcm = support::start_kcm(&cluster, "ephemeral-volume", &[]);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {
            "containers": [{"name": "c", "image": "busybox"}],
            "volumes": [{"name": "scratch", "ephemeral": {"volumeClaimTemplate": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "fast",
                         "resources": {"requests": {"storage": "1Gi"}}}
            }}}]
        }
    }))
    .unwrap();
    let pod = pods.create(&PostParams::default(), &pod).await.unwrap();

    let claim = support::eventually(
        "ephemeral claim created",
        Duration::from_secs(15),
        &mut kcm,
        || async { Ok(claims.get_opt("web-scratch").await?) },
    )
    .await;
    let spec = claim.spec.as_ref().unwrap();
    assert_eq!(spec.storage_class_name.as_deref(), Some("fast"));
    assert_eq!(
        spec.access_modes.as_deref(),
        Some(&["ReadWriteOnce".to_string()][..])
    );
    assert_eq!(claim.metadata.labels.as_ref().unwrap()["app"], "web");
    let owners = claim.metadata.owner_references.as_ref().unwrap();
    assert_eq!(owners.len(), 1);
    let o = &owners[0];
    assert_eq!((o.api_version.as_str(), o.kind.as_str()), ("v1", "Pod"));
    assert_eq!(o.name, "web");
    assert_eq!(Some(&o.uid), pod.metadata.uid.as_ref());
    assert_eq!(o.controller, Some(true));
    assert_eq!(o.block_owner_deletion, Some(true));
}
