//! The CSR controllers against a real apiserver: a kubelet's bootstrap CSR is auto-approved
//! (nodeclient), a node's renewal too (selfnodeclient), both are signed by the cluster CA and
//! the issued certificate authenticates to the apiserver; CSRs the approver must not approve
//! stay pending, and a signer's validation failure is reported as upstream does.

#[path = "lifecycle_support.rs"]
mod support;

use std::time::Duration;

use e2e::identity::Identity;
use e2e::pki::CertFiles;
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::api::PostParams;
use kube::Api;
use rcgen::{CertificateParams, DnType, KeyPair};
use serde_json::json;
use x509_parser::prelude::*;

/// Binds `role` to `group`, as kubeadm does for TLS bootstrapping.
async fn bind(client: &kube::Client, name: &str, role: &str, group: &str) {
    let crb: ClusterRoleBinding = serde_json::from_value(json!({
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group}],
    }))
    .unwrap();
    Api::<ClusterRoleBinding>::all(client.clone())
        .create(&PostParams::default(), &crb)
        .await
        .unwrap();
}

/// A PEM CSR for `cn` / `o` and its key.
fn request(cn: &str, o: &str) -> (String, KeyPair) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::OrganizationName, o);
    params.distinguished_name.push(DnType::CommonName, cn);
    (params.serialize_request(&key).unwrap().pem().unwrap(), key)
}

fn csr_object(
    name: &str,
    pem: &str,
    signer: &str,
    usages: &[&str],
    expiration: Option<i32>,
) -> CertificateSigningRequest {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "request": base64_std(pem.as_bytes()),
            "signerName": signer,
            "usages": usages,
            "expirationSeconds": expiration,
        }
    }))
    .unwrap()
}

fn base64_std(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}

async fn issued(
    kcm: &mut e2e::ManagedProcess,
    csrs: &Api<CertificateSigningRequest>,
    name: &str,
) -> (CertificateSigningRequest, Vec<u8>) {
    support::eventually(
        &format!("CSR {name} issued"),
        Duration::from_secs(60),
        kcm,
        || async {
            let c = csrs.get(name).await?;
            let cert = c.status.as_ref().and_then(|s| s.certificate.clone());
            Ok(cert.map(|cert| (c, cert.0)))
        },
    )
    .await
}

fn condition<'a>(
    c: &'a CertificateSigningRequest,
    kind: &str,
) -> Option<&'a k8s_openapi::api::certificates::v1::CertificateSigningRequestCondition> {
    c.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|x| x.type_ == kind)
}

#[tokio::test]
async fn kubelet_client_csrs_are_approved_signed_and_usable() {
    let cluster = e2e::cluster_or_skip!();
    let admin = cluster.client();
    // kubeadm's TLS-bootstrap bindings.
    bind(
        &admin,
        "kubelet-bootstrap",
        "system:node-bootstrapper",
        "system:bootstrappers",
    )
    .await;
    bind(
        &admin,
        "node-autoapprove-bootstrap",
        "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
        "system:bootstrappers",
    )
    .await;
    bind(
        &admin,
        "node-autoapprove-certificate-rotation",
        "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
        "system:nodes",
    )
    .await;
    let mut kcm = support::start_kcm(&cluster, "csrapproving,csrsigning,csrcleaner", &[]);

    // 1. A kubelet bootstrapping with a bootstrap-token-like identity.
    let bootstrapper = Identity::User {
        name: "system:bootstrap:abcdef".into(),
        group: Some("system:bootstrappers".into()),
    };
    let csrs_as_bootstrapper: Api<CertificateSigningRequest> =
        Api::all(cluster.client_for(&bootstrapper).await.unwrap());
    let (pem, key) = request("system:node:worker-1", "system:nodes");
    let usages = ["digital signature", "key encipherment", "client auth"];
    let created = csrs_as_bootstrapper
        .create(
            &PostParams::default(),
            &csr_object(
                "node-csr-worker-1",
                &pem,
                "kubernetes.io/kube-apiserver-client-kubelet",
                &usages,
                Some(3600),
            ),
        )
        .await
        .unwrap();
    assert_eq!(
        created.spec.username.as_deref(),
        Some("system:bootstrap:abcdef")
    );
    let csrs: Api<CertificateSigningRequest> = Api::all(admin.clone());
    let (csr, cert_pem) = issued(&mut kcm, &csrs, "node-csr-worker-1").await;
    let approved = condition(&csr, "Approved").expect("Approved condition");
    assert_eq!(approved.status, "True");
    assert_eq!(approved.reason.as_deref(), Some("AutoApproved"));
    assert_eq!(
        approved.message.as_deref(),
        Some("Auto approving kubelet client certificate after SubjectAccessReview.")
    );

    // The certificate verifies against the signing CA, with the CSR's subject, the client
    // usages, and the requested hour (backdated by 5 minutes).
    let ca_pem = std::fs::read(cluster.pki().ca_cert()).unwrap();
    let (_, ca_block) = parse_x509_pem(&ca_pem).unwrap();
    let ca = ca_block.parse_x509().unwrap();
    let (_, block) = parse_x509_pem(&cert_pem).unwrap();
    let cert = block.parse_x509().unwrap();
    cert.verify_signature(Some(ca.public_key()))
        .expect("signed by the cluster CA");
    assert_eq!(cert.issuer(), ca.subject());
    assert_eq!(
        cert.subject().to_string(),
        "O=system:nodes, CN=system:node:worker-1"
    );
    let eku = cert
        .extended_key_usage()
        .unwrap()
        .expect("extended key usage")
        .value;
    assert!(eku.client_auth && !eku.server_auth);
    let ku = cert.key_usage().unwrap().expect("key usage").value;
    assert!(ku.digital_signature() && ku.key_encipherment() && !ku.key_cert_sign());
    let nb = cert.validity().not_before.timestamp();
    let na = cert.validity().not_after.timestamp();
    assert_eq!(na - nb, 3600 + 300, "1h requested + 5 min backdate");
    let now = jiff::Timestamp::now().as_second();
    assert!((na - now - 3600).abs() < 120, "expires an hour from now");

    // The apiserver authenticates it as the node (SelfSubjectReview echoes the identity the
    // client certificate carries).
    let dir = tempfile::tempdir().unwrap();
    let files = CertFiles {
        cert: dir.path().join("kubelet.crt"),
        key: dir.path().join("kubelet.key"),
    };
    std::fs::write(&files.cert, &cert_pem).unwrap();
    std::fs::write(&files.key, key.serialize_pem()).unwrap();
    let kc = dir.path().join("kubelet.kubeconfig");
    e2e::kubeconfig::write(
        &kc,
        &cluster.url(),
        cluster.pki().ca_cert(),
        &files,
        "system:node:worker-1",
    )
    .unwrap();
    let as_node = e2e::kubeconfig::client(&kc).await.unwrap();
    let review: SelfSubjectReview = Api::all(as_node.clone())
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .expect("the issued certificate authenticates");
    let user = review.status.and_then(|s| s.user_info).expect("userInfo");
    assert_eq!(user.username.as_deref(), Some("system:node:worker-1"));
    assert!(user
        .groups
        .unwrap_or_default()
        .contains(&"system:nodes".to_string()));

    // 2. The node renews its own certificate: selfnodeclient.
    let (pem, _) = request("system:node:worker-1", "system:nodes");
    Api::<CertificateSigningRequest>::all(as_node)
        .create(
            &PostParams::default(),
            &csr_object(
                "renew-worker-1",
                &pem,
                "kubernetes.io/kube-apiserver-client-kubelet",
                &["digital signature", "client auth"],
                None,
            ),
        )
        .await
        .unwrap();
    let (csr, cert_pem) = issued(&mut kcm, &csrs, "renew-worker-1").await;
    assert_eq!(
        condition(&csr, "Approved").unwrap().message.as_deref(),
        Some("Auto approving self kubelet client certificate after SubjectAccessReview.")
    );
    let (_, block) = parse_x509_pem(&cert_pem).unwrap();
    let cert = block.parse_x509().unwrap();
    let lifetime = cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
    // --cluster-signing-duration (8760h) minus the 5-minute backdate, plus the backdate,
    // unless the test CA expires sooner.
    let ca_end = ca.validity().not_after.timestamp();
    assert!(
        lifetime == 8760 * 3600 || cert.validity().not_after.timestamp() == ca_end,
        "lifetime {lifetime}"
    );

    // 3. A CSR for another node's name from a bootstrapper is approvable (nodeclient), but
    //    one from a user without the nodeclient permission stays pending.
    let stranger = Identity::User {
        name: "mallory".into(),
        group: Some("system:bootstrappers-not".into()),
    };
    bind(
        &admin,
        "mallory-can-create",
        "system:node-bootstrapper",
        "system:bootstrappers-not",
    )
    .await;
    let (pem, _) = request("system:node:worker-2", "system:nodes");
    Api::<CertificateSigningRequest>::all(cluster.client_for(&stranger).await.unwrap())
        .create(
            &PostParams::default(),
            &csr_object(
                "mallory-csr",
                &pem,
                "kubernetes.io/kube-apiserver-client-kubelet",
                &usages,
                None,
            ),
        )
        .await
        .unwrap();

    // 4. An admin-approved kube-apiserver-client CSR with a server usage is refused by the
    //    signer with upstream's Failed condition.
    let (pem, _) = request("alice", "devs");
    csrs.create(
        &PostParams::default(),
        &csr_object(
            "alice-bad",
            &pem,
            "kubernetes.io/kube-apiserver-client",
            &["digital signature", "server auth"],
            None,
        ),
    )
    .await
    .unwrap();
    let mut alice = csrs.get("alice-bad").await.unwrap();
    alice.status.get_or_insert_with(Default::default).conditions =
        Some(vec![serde_json::from_value(json!({
            "type": "Approved", "status": "True", "reason": "AdminApproved", "message": "test"
        }))
        .unwrap()]);
    csrs.replace_subresource("approval", "alice-bad", &PostParams::default(), &alice)
        .await
        .unwrap();
    let failed = support::eventually(
        "alice-bad Failed",
        Duration::from_secs(60),
        &mut kcm,
        || async {
            let c = csrs.get("alice-bad").await?;
            Ok(condition(&c, "Failed").cloned())
        },
    )
    .await;
    assert_eq!(failed.reason.as_deref(), Some("SignerValidationFailure"));
    assert_eq!(
        failed.message.as_deref(),
        Some("invalid usage for client certificate: server auth")
    );

    // By now the approver has seen mallory's CSR many times: still neither approved nor issued.
    let m = csrs.get("mallory-csr").await.unwrap();
    assert!(condition(&m, "Approved").is_none(), "{:?}", m.status);
    assert!(m
        .status
        .as_ref()
        .and_then(|s| s.certificate.as_ref())
        .is_none());
}
