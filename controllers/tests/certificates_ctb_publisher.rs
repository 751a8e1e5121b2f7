//! kube-apiserver-serving-clustertrustbundle-publisher against a real apiserver serving
//! certificates.k8s.io/v1beta1 ClusterTrustBundles (gate ClusterTrustBundle): the manager's
//! `--root-ca-file` is published as the signer's bundle named `<signer with : for />:<hex of
//! the first 12 bytes of its SHA-256>`, a tampered bundle of that name is set right, the
//! signer's other bundles are deleted (other signers' are not), a deleted bundle is
//! published again, and the syncs are counted in `clustertrustbundle_publisher_sync_total`.

#[path = "lifecycle_support.rs"]
mod support;

use std::time::Duration;

use k8s_openapi::api::certificates::v1beta1::ClusterTrustBundle;
use kube::api::{DeleteParams, PostParams};
use kube::Api;
use serde_json::json;

const GATE: &str = "--feature-gates=ClusterTrustBundle=true";
const SIGNER: &str = "kubernetes.io/kube-apiserver-serving";

/// A self-signed CA certificate, PEM.
fn some_ca() -> String {
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.self_signed(&rcgen::KeyPair::generate().unwrap())
        .unwrap()
        .pem()
}

fn bundle(name: &str, signer: Option<&str>, pem: &str) -> ClusterTrustBundle {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"signerName": signer, "trustBundle": pem}
    }))
    .unwrap()
}

#[tokio::test]
async fn the_apiserver_ca_is_published_for_its_signer() {
    let cluster = e2e::cluster_or_skip!(
        apiserver_flags = &[
            GATE,
            "--runtime-config=certificates.k8s.io/v1beta1/clustertrustbundles=true"
        ]
    );
    let client = cluster.client();
    let api: Api<ClusterTrustBundle> = Api::all(client.clone());
    let ca = std::fs::read_to_string(cluster.pki().ca_cert()).unwrap();
    let digest = ring::digest::digest(&ring::digest::SHA256, ca.as_bytes());
    let hex: String = digest.as_ref()[..12]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let name = format!("kubernetes.io:kube-apiserver-serving:{hex}");

    // Before the manager starts: the right name with a wrong bundle, a stale bundle of the
    // signer, and one of another signer.
    let pp = PostParams::default();
    api.create(&pp, &bundle(&name, Some(SIGNER), &some_ca()))
        .await
        .unwrap();
    api.create(
        &pp,
        &bundle(
            "kubernetes.io:kube-apiserver-serving:stale",
            Some(SIGNER),
            &some_ca(),
        ),
    )
    .await
    .unwrap();
    let other_pem = some_ca();
    api.create(
        &pp,
        &bundle(
            "example.com:other:keep",
            Some("example.com/other"),
            &other_pem,
        ),
    )
    .await
    .unwrap();

    let (mut kcm, port) = support::start_kcm_on_port(
        &cluster,
        "kube-apiserver-serving-clustertrustbundle-publisher-controller",
        &[GATE],
    );
    support::eventually(
        "the CA published and the stale bundle deleted",
        Duration::from_secs(30),
        &mut kcm,
        || async {
            let ours = api.get(&name).await?;
            let stale = api
                .get_opt("kubernetes.io:kube-apiserver-serving:stale")
                .await?;
            Ok((ours.spec.trust_bundle == ca && stale.is_none()).then_some(()))
        },
    )
    .await;
    let kept = api.get("example.com:other:keep").await.unwrap();
    assert_eq!(kept.spec.trust_bundle, other_pem);

    api.delete(&name, &DeleteParams::default()).await.unwrap();
    let republished = support::eventually(
        "the deleted bundle published again",
        Duration::from_secs(30),
        &mut kcm,
        || async { Ok(api.get_opt(&name).await?) },
    )
    .await;
    assert_eq!(republished.spec.signer_name.as_deref(), Some(SIGNER));
    assert_eq!(republished.spec.trust_bundle, ca);

    let metrics = support::scrape_metrics_until(&cluster, &mut kcm, port, |m| {
        support::sample(m, "clustertrustbundle_publisher_sync_total{code=\"200\"}")
            .is_some_and(|v| v >= 2.0)
    })
    .await;
    assert!(
        metrics.contains("clustertrustbundle_publisher_sync_duration_seconds_bucket"),
        "{metrics}"
    );
    assert!(
        metrics.contains("workqueue_adds_total{name=\"ca_cert_publisher_cluster_trust_bundles\"}"),
        "no work queue metrics"
    );
}
