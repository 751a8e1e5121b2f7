//! e2e: kubelet client TLS bootstrap and client certificate rotation against a real
//! kube-apiserver (bootstrap token authentication, Node+RBAC) and ferrokube's
//! kube-controller-manager approving and signing kubelet client CSRs, set up as `kubeadm
//! init` leaves a cluster for `kubeadm join`: a `bootstrap-token-*` Secret and kubeadm's
//! three ClusterRoleBindings. The kubelet starts with only `--bootstrap-kubeconfig`.
//! The first test also bootstraps the serving certificate (serverTLSBootstrap), whose CSR
//! kube-controller-manager leaves for an administrator to approve, as upstream's does.

#[macro_use]
mod common;

use common::process::KubeletProcess;
use e2e::process::ManagedProcess;
use e2e::TestCluster;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::api::{Api, PostParams};
use kubelet::testing::TestContainerd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

const TOKEN_ID: &str = "abcdef";
const TOKEN_SECRET: &str = "0123456789abcdef";
const BOOTSTRAPPERS: &str = "system:bootstrappers:kubeadm:default-node-token";

/// The bootstrap token Secret and ClusterRoleBindings `kubeadm init` creates.
async fn kubeadm_bootstrap_objects(client: &kube::Client) {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "kube-system");
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": format!("bootstrap-token-{TOKEN_ID}")},
        "type": "bootstrap.kubernetes.io/token",
        "stringData": {
            "token-id": TOKEN_ID,
            "token-secret": TOKEN_SECRET,
            "usage-bootstrap-authentication": "true",
            "usage-bootstrap-signing": "true",
            "auth-extra-groups": BOOTSTRAPPERS,
        }
    }))
    .unwrap();
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let bindings: Api<ClusterRoleBinding> = Api::all(client.clone());
    for (name, role, group) in [
        (
            "kubeadm:kubelet-bootstrap",
            "system:node-bootstrapper",
            BOOTSTRAPPERS,
        ),
        (
            "kubeadm:node-autoapprove-bootstrap",
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            BOOTSTRAPPERS,
        ),
        (
            "kubeadm:node-autoapprove-certificate-rotation",
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            "system:nodes",
        ),
    ] {
        let b: ClusterRoleBinding = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group}],
        }))
        .unwrap();
        bindings.create(&PostParams::default(), &b).await.unwrap();
    }
}

/// kube-controller-manager with only the CSR approving and signing controllers, each with
/// its own service account's credentials (as kubeadm runs it: the approver's
/// `certificate-controller` account may approve, the manager's own user may not), signing
/// with the cluster CA for `signing_duration`.
fn controller_manager(cluster: &TestCluster, signing_duration: &str) -> ManagedProcess {
    let port = e2e::ports::free_port().unwrap();
    let mut args = e2e::components::controller_manager_args(cluster, port, false).unwrap();
    args.push("--controllers=csrapproving,csrsigning".into());
    args.push("--use-service-account-credentials=true".into());
    args.push(format!("--cluster-signing-duration={signing_duration}"));
    cluster
        .spawn_component(e2e::components::KUBE_CONTROLLER_MANAGER, &args)
        .unwrap()
}

/// A kubeconfig with the bootstrap token, as `kubeadm join` writes
/// `bootstrap-kubelet.conf`.
fn bootstrap_kubeconfig(cluster: &TestCluster, dir: &Path) -> PathBuf {
    let path = dir.join("bootstrap-kubelet.conf");
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: kubernetes\n  cluster:\n    server: {}\n    certificate-authority: {}\ncontexts:\n- name: tls-bootstrap-token-user@kubernetes\n  context:\n    cluster: kubernetes\n    user: tls-bootstrap-token-user\ncurrent-context: tls-bootstrap-token-user@kubernetes\nusers:\n- name: tls-bootstrap-token-user\n  user:\n    token: {TOKEN_ID}.{TOKEN_SECRET}\n",
            cluster.url(),
            cluster.pki().ca_cert().display()
        ),
    )
    .unwrap();
    path
}

/// A pod CIDR of this test process's own (the CNI config, hence Ready, needs one).
fn pod_cidr(second_octet: u32) -> String {
    format!("10.{second_octet}.{}.0/24", std::process::id() % 250)
}

/// The subject (CN, O) of a CSR's PKCS#10 request.
fn request_subject(csr: &CertificateSigningRequest) -> (String, Vec<String>) {
    let pem = String::from_utf8(csr.spec.request.0.clone()).unwrap();
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    use base64::Engine;
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    let (_, req) =
        <x509_parser::certification_request::X509CertificationRequest as x509_parser::prelude::FromDer<_>>::from_der(&der).unwrap();
    let s = &req.certification_request_info.subject;
    let cn = s
        .iter_common_name()
        .next()
        .unwrap()
        .as_str()
        .unwrap()
        .to_string();
    let o = s
        .iter_organization()
        .map(|o| o.as_str().unwrap().to_string())
        .collect();
    (cn, o)
}

/// The timestamped `kubelet-client-*.pem` files in `dir`.
fn client_pem_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p| {
        let n = p.file_name().unwrap().to_string_lossy();
        n.starts_with("kubelet-client-20") && n.ends_with(".pem")
    });
    files.sort();
    files
}

/// The certificate the kubelet API on `port` presents to a client trusting only the
/// cluster CA and connecting to 127.0.0.1 (the node's InternalIP), or why the handshake
/// failed.
async fn served_certificate(port: u16, ca: &Path) -> Result<Vec<u8>, String> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    let ip = rustls_pki_types::ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
    let tls = connector
        .connect(ip, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let cert = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    Ok(cert)
}

fn is_approved(csr: &CertificateSigningRequest) -> bool {
    let status = csr.status.as_ref();
    status.and_then(|s| s.conditions.as_ref()).is_some_and(|c| {
        c.iter()
            .any(|c| c.type_ == "Approved" && c.status == "True")
    }) && status
        .and_then(|s| s.certificate.as_ref())
        .is_some_and(|c| !c.0.is_empty())
}

/// kubeadm's bootstrap objects, our kcm approving and signing with `signing_duration`, and a
/// kubelet started (not yet Ready) with only a bootstrap kubeconfig, `config` and the pod
/// CIDR `10.<cidr>.0.0/24`; `tag` names the kubelet.
async fn bootstrapped_kubelet<'a>(
    cluster: &'a TestCluster,
    containerd: &'a TestContainerd,
    (tag, cidr): (&str, u32),
    signing_duration: &str,
    config: serde_json::Value,
) -> (ManagedProcess, KubeletProcess<'a>) {
    kubeadm_bootstrap_objects(&cluster.client()).await;
    let kcm = controller_manager(cluster, signing_duration);
    let bootstrap = bootstrap_kubeconfig(cluster, &containerd.dir().join("kubelet"));
    let kubelet = KubeletProcess::builder(cluster, containerd, tag)
        .bootstrap_kubeconfig(&bootstrap)
        .config(config)
        .flag(format!("--pod-cidr={}", pod_cidr(cidr)))
        .start();
    (kcm, kubelet)
}

#[tokio::test]
async fn kubelet_bootstraps_its_client_certificate_with_a_bootstrap_token() {
    let (cluster, containerd) = cluster_and_containerd_or_skip!();
    let client = cluster.client();
    let (_kcm, mut kubelet) = bootstrapped_kubelet(
        &cluster,
        &containerd,
        ("tlsb", 91),
        "8760h",
        serde_json::json!({"serverTLSBootstrap": true}),
    )
    .await;
    let node_name = kubelet.node_name.clone();
    assert!(
        !kubelet.kubeconfig.exists(),
        "the kubelet writes --kubeconfig"
    );
    let node = kubelet.wait_ready(Duration::from_secs(120)).await;
    assert_eq!(node.metadata.name.as_deref(), Some(node_name.as_str()));

    // One digested node-csr-* request from the bootstrap token, approved and issued.
    let csrs: Api<CertificateSigningRequest> = Api::all(client.clone());
    let client_csrs = || async {
        let mut list = csrs.list(&Default::default()).await.unwrap().items;
        list.retain(|c| c.spec.signer_name == "kubernetes.io/kube-apiserver-client-kubelet");
        list
    };
    let list = client_csrs().await;
    assert_eq!(list.len(), 1, "{list:#?}");
    let csr = &list[0];
    let name = csr.metadata.name.clone().unwrap();
    assert!(name.starts_with("node-csr-"), "{name}");
    assert_eq!(
        csr.spec.signer_name,
        "kubernetes.io/kube-apiserver-client-kubelet"
    );
    assert_eq!(
        csr.spec.usages.as_deref().unwrap(),
        ["digital signature", "client auth"]
    );
    assert_eq!(
        csr.spec.username.as_deref(),
        Some(format!("system:bootstrap:{TOKEN_ID}").as_str())
    );
    assert!(csr
        .spec
        .groups
        .as_ref()
        .unwrap()
        .contains(&BOOTSTRAPPERS.to_string()));
    assert_eq!(
        request_subject(csr),
        (
            format!("system:node:{node_name}"),
            vec!["system:nodes".to_string()]
        )
    );
    assert!(is_approved(csr), "{csr:#?}");

    // The pair in the cert dir, private, named by the current link and the kubeconfig.
    let pki = kubelet.dir.join("root/pki");
    let files = client_pem_files(&pki);
    assert_eq!(files.len(), 1, "{files:?}");
    let mode = std::fs::metadata(&files[0]).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{}", files[0].display());
    let current = pki.join("kubelet-client-current.pem");
    assert_eq!(std::fs::read_link(&current).unwrap(), files[0]);
    assert!(
        !pki.join("kubelet-client.key.tmp").exists(),
        "pending key removed"
    );
    let pem = std::fs::read_to_string(&files[0]).unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----") && pem.contains("PRIVATE KEY-----"));
    let kubeconfig = std::fs::read_to_string(&kubelet.kubeconfig).unwrap();
    let kc: serde_yaml::Value = serde_yaml::from_str(&kubeconfig).unwrap();
    let user = &kc["users"][0]["user"];
    assert_eq!(
        user["client-certificate"].as_str(),
        current.to_str(),
        "{kubeconfig}"
    );
    assert_eq!(
        user["client-key"].as_str(),
        current.to_str(),
        "{kubeconfig}"
    );
    let cluster_entry = &kc["clusters"][0]["cluster"];
    assert_eq!(
        cluster_entry["server"].as_str(),
        Some(cluster.url().as_str())
    );
    assert_eq!(
        cluster_entry["certificate-authority"].as_str(),
        cluster.pki().ca_cert().to_str()
    );
    // The node's own identity: the kubeconfig authenticates as system:node:<name>.
    let as_node = e2e::kubeconfig::client(&kubelet.kubeconfig).await.unwrap();
    let leases: Api<Lease> = Api::namespaced(as_node, "kube-node-lease");
    let lease = leases.get(&node_name).await.unwrap();
    assert_eq!(
        lease.spec.unwrap().holder_identity.as_deref(),
        Some(node_name.as_str())
    );

    // The serving certificate: requested by the node itself for its addresses, left
    // pending by kube-controller-manager, served once an administrator approves it.
    let serving = kubelet
        .wait("a kubelet-serving CSR", Duration::from_secs(30), || async {
            let list = csrs.list(&Default::default()).await.ok()?.items;
            list.into_iter()
                .find(|c| c.spec.signer_name == "kubernetes.io/kubelet-serving")
        })
        .await;
    let serving_name = serving.metadata.name.clone().unwrap();
    assert!(serving_name.starts_with("csr-"), "{serving_name}");
    assert_eq!(
        serving.spec.username.as_deref(),
        Some(format!("system:node:{node_name}").as_str())
    );
    assert_eq!(
        serving.spec.usages.as_deref().unwrap(),
        ["digital signature", "server auth"]
    );
    assert_eq!(
        request_subject(&serving),
        (
            format!("system:node:{node_name}"),
            vec!["system:nodes".to_string()]
        )
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pending = csrs.get(&serving_name).await.unwrap();
    assert!(
        pending
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_none_or(|c| c.is_empty()),
        "not auto-approved: {pending:#?}"
    );
    let port = kubelet.port;
    let refused = served_certificate(port, cluster.pki().ca_cert()).await;
    assert!(refused.is_err(), "no serving certificate before approval");
    let approve = cluster
        .kubectl(&["certificate", "approve", &serving_name])
        .unwrap();
    assert!(
        approve.status.success(),
        "{}",
        String::from_utf8_lossy(&approve.stderr)
    );
    let served = kubelet
        .wait(
            "the issued serving certificate on the kubelet port",
            Duration::from_secs(30),
            || async { served_certificate(port, cluster.pki().ca_cert()).await.ok() },
        )
        .await;
    let (_, leaf) = x509_parser::parse_x509_certificate(&served).unwrap();
    let cn = leaf
        .subject()
        .iter_common_name()
        .next()
        .unwrap()
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(cn, format!("system:node:{node_name}"));
    let server_current = pki.join("kubelet-server-current.pem");
    let target = std::fs::read_link(&server_current).unwrap();
    assert!(
        target
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("kubelet-server-20"),
        "{target:?}"
    );
    assert_eq!(
        std::fs::metadata(&target).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // A restart with a valid kubeconfig asks for nothing more.
    kubelet.restart();
    kubelet.wait_ready(Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(client_csrs().await.len(), 1);
    assert!(kubelet
        .log()
        .contains("Kubeconfig exists and is valid, skipping bootstrap"));
    kubelet.stop();
}

#[tokio::test]
async fn kubelet_rotates_its_client_certificate_and_stays_ready() {
    let (cluster, containerd) = cluster_and_containerd_or_skip!();
    let client = cluster.client();
    // 2 minutes after 5 minutes of backdating: each certificate is due 0–80 s after issue.
    let (_kcm, mut kubelet) = bootstrapped_kubelet(
        &cluster,
        &containerd,
        ("tlsr", 92),
        "2m",
        serde_json::json!({"rotateCertificates": true}),
    )
    .await;
    let node_name = kubelet.node_name.clone();
    kubelet.wait_ready(Duration::from_secs(120)).await;
    let pki = kubelet.dir.join("root/pki");
    let current = pki.join("kubelet-client-current.pem");
    let first = std::fs::read_link(&current).unwrap();

    // With rotation on, the bootstrap request is the certificate manager's (csr-*).
    let csrs: Api<CertificateSigningRequest> = Api::all(client.clone());
    let list = csrs.list(&Default::default()).await.unwrap().items;
    assert!(
        list.iter()
            .all(|c| c.metadata.name.as_deref().unwrap().starts_with("csr-")),
        "{list:#?}"
    );
    let by_token = list
        .iter()
        .filter(|c| c.spec.username.as_deref() == Some(&format!("system:bootstrap:{TOKEN_ID}")))
        .count();
    assert_eq!(by_token, 1);

    // A renewal: a new timestamped file, the link moved, requested as the node itself.
    let rotated = kubelet
        .wait(
            "a rotated client certificate",
            Duration::from_secs(180),
            || async {
                let now = std::fs::read_link(&current).ok()?;
                (now != first).then_some(now)
            },
        )
        .await;
    assert!(client_pem_files(&pki).contains(&rotated), "{rotated:?}");
    assert!(client_pem_files(&pki).contains(&first), "old pairs stay");
    let list = csrs.list(&Default::default()).await.unwrap().items;
    let node_user = format!("system:node:{node_name}");
    let renewal = list
        .iter()
        .find(|c| c.spec.username.as_deref() == Some(node_user.as_str()))
        .expect("a CSR made with the node's own certificate");
    assert!(
        is_approved(renewal) || renewal.status.is_none(),
        "{renewal:#?}"
    );
    assert!(kubelet.log().contains("Certificate rotated"));

    // Still Ready and renewing its Lease with the new certificate.
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let renewed_at = |l: Lease| l.spec.and_then(|s| s.renew_time).map(|t| t.0);
    let before = renewed_at(leases.get(&node_name).await.unwrap());
    kubelet
        .wait(
            "the lease renewed after rotation",
            Duration::from_secs(30),
            || async {
                let now = renewed_at(leases.get(&node_name).await.ok()?);
                (now > before).then_some(())
            },
        )
        .await;
    kubelet.wait_ready(Duration::from_secs(5)).await;
    let log = kubelet.log();
    assert!(
        log.contains("Certificate rotation detected, shutting down client connections"),
        "{}",
        kubelet.log_tail(30)
    );
    kubelet.stop();
}
