//! podcertificaterequest-cleaner against a real apiserver serving certificates.k8s.io
//! v1alpha1 PodCertificateRequests (gate PodCertificateRequest): requests a node makes for a
//! pod bound to it — signed proof of possession, NodeRestriction admission in force — are
//! deleted once past the cleaner's age threshold, and not before.
//!
//! Upstream's threshold is 15 minutes, and the apiserver sets `creationTimestamp` itself, so
//! this test runs the controller in-process through its constructor with a threshold of
//! seconds; the binary uses upstream's values (unit-tested).

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use controllers::certificates::pcr_cleaner::{PcrCleaner, PodCertificateRequest};
use controllers::machinery::context::{ControllerContext, ControllerMetrics, Credentials};
use controllers::machinery::informers::InformerFactory;
use controllers::machinery::options::KcmOptions;
use e2e::identity::Identity;
use k8s_openapi::api::core::v1::{Node, Pod, ServiceAccount};
use kube::api::PostParams;
use kube::Api;
use ring::signature::KeyPair as _;
use serde_json::json;
use tokio_util::sync::CancellationToken;

#[path = "lifecycle_support.rs"]
mod support;

const NODE: &str = "pcr-node";
/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410), before the 32 key bytes.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// A request for `pod` on [`NODE`] with a fresh Ed25519 key: the proof of possession is the
/// signature of the pod's UID, as the apiserver's validation checks.
fn request(name: &str, pod: &Pod, node: &Node, sa: &ServiceAccount) -> PodCertificateRequest {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let key = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let pod_uid = pod.metadata.uid.clone().unwrap();
    let mut spki = ED25519_SPKI_PREFIX.to_vec();
    spki.extend_from_slice(key.public_key().as_ref());
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "signerName": "example.com/test-signer",
            "podName": pod.metadata.name, "podUID": pod_uid,
            "serviceAccountName": "default", "serviceAccountUID": sa.metadata.uid,
            "nodeName": NODE, "nodeUID": node.metadata.uid,
            "maxExpirationSeconds": 86400,
            "pkixPublicKey": b64(&spki),
            "proofOfPossession": b64(key.sign(pod_uid.as_bytes()).as_ref()),
        }
    }))
    .unwrap()
}

async fn exists(api: &Api<PodCertificateRequest>, name: &str) -> bool {
    api.get_opt(name).await.unwrap().is_some()
}

#[tokio::test]
async fn requests_past_the_threshold_are_deleted() {
    let cluster = e2e::cluster_or_skip!(
        apiserver_flags = &[
            "--feature-gates=PodCertificateRequest=true",
            "--runtime-config=certificates.k8s.io/v1alpha1=true"
        ]
    );
    let admin = cluster.client();
    support::ensure_default_service_account(&admin).await;
    let sa = Api::<ServiceAccount>::namespaced(admin.clone(), "default")
        .get("default")
        .await
        .unwrap();
    let node: Node = serde_json::from_value(json!({"metadata": {"name": NODE}})).unwrap();
    let node = Api::<Node>::all(admin.clone())
        .create(&PostParams::default(), &node)
        .await
        .unwrap();
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "pcr-pod"},
        "spec": {"nodeName": NODE, "serviceAccountName": "default",
            "automountServiceAccountToken": false,
            "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]}
    }))
    .unwrap();
    let pod = Api::<Pod>::namespaced(admin.clone(), "default")
        .create(&PostParams::default(), &pod)
        .await
        .unwrap();
    // Created as the node (Node authorizer + NodeRestriction admission), as a kubelet does.
    let as_node = cluster
        .client_for(&Identity::Node(NODE.into()))
        .await
        .unwrap();
    let node_api: Api<PodCertificateRequest> = Api::namespaced(as_node, "default");
    let api: Api<PodCertificateRequest> = Api::namespaced(admin.clone(), "default");
    // A request naming another node is refused by NodeRestriction: the objects below are
    // what a kubelet can make.
    let mut foreign = request("foreign", &pod, &node, &sa);
    foreign.spec.as_mut().unwrap()["nodeName"] = json!("other-node");
    let err = node_api
        .create(&PostParams::default(), &foreign)
        .await
        .unwrap_err();
    assert!(
        format!("{err}").contains("not the requesting node"),
        "{err}"
    );

    node_api
        .create(&PostParams::default(), &request("first", &pod, &node, &sa))
        .await
        .unwrap();

    let shutdown = CancellationToken::new();
    let ctx = ControllerContext {
        client: admin.clone(),
        options: Arc::new(KcmOptions::default()),
        shutdown: shutdown.clone(),
        credentials: Arc::new(Credentials::Shared),
        metrics: ControllerMetrics::disabled(),
        informer_factory: Arc::new(InformerFactory::new(admin.clone(), shutdown.clone())),
    };
    let cleaner = PcrCleaner {
        threshold: Duration::from_secs(8),
        polling_interval: Duration::from_millis(500),
    };
    let task = tokio::spawn(cleaner.run(ctx));

    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(exists(&api, "first").await, "deleted before its threshold");
    node_api
        .create(&PostParams::default(), &request("second", &pod, &node, &sa))
        .await
        .unwrap();

    let start = Instant::now();
    while exists(&api, "first").await {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "first request not deleted past its threshold"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The second one, ~4 s younger, is still there.
    assert!(exists(&api, "second").await, "deleted before its threshold");
    while exists(&api, "second").await {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "second request not deleted past its threshold"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    shutdown.cancel();
    task.await.unwrap().unwrap();
}
