//! The certificate controllers: csrapproving (auto-approves kubelet client CSRs after a
//! SubjectAccessReview), csrsigning (signs approved CSRs with the `--cluster-signing-*` CAs)
//! and csrcleaner (deletes old and expired CSRs), and the root-ca-cert-publisher
//! ([`root_ca`]); the podcertificaterequest-cleaner ([`pcr_cleaner`]) and the
//! kube-apiserver-serving ClusterTrustBundle publisher ([`ctb_publisher`]).

pub mod approver;
pub mod cleaner;
pub mod ctb_publisher;
pub mod der;
pub mod pcr_cleaner;
pub mod request;
pub mod root_ca;
pub mod signer;

use std::future::Future;
use std::sync::Arc;

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;

use crate::machinery::context::ControllerContext;
use crate::machinery::{informers::handlers as informer, queue::WorkQueue};

/// The identity all three act as with `--use-service-account-credentials`.
pub const SERVICE_ACCOUNT: &str = "certificate-controller";

/// `kubernetes.io/kube-apiserver-client`.
pub const KUBE_APISERVER_CLIENT: &str = "kubernetes.io/kube-apiserver-client";
/// `kubernetes.io/kube-apiserver-client-kubelet`.
pub const KUBE_APISERVER_CLIENT_KUBELET: &str = "kubernetes.io/kube-apiserver-client-kubelet";
/// `kubernetes.io/kubelet-serving`.
pub const KUBELET_SERVING: &str = "kubernetes.io/kubelet-serving";
/// `kubernetes.io/legacy-unknown`.
pub const LEGACY_UNKNOWN: &str = "kubernetes.io/legacy-unknown";

/// Whether the CSR has a condition of `kind` whose status is `True` (or empty, as upstream).
pub fn has_true_condition(csr: &CertificateSigningRequest, kind: &str) -> bool {
    conditions(csr).any(|c| c.type_ == kind && (c.status.is_empty() || c.status == "True"))
}

/// Upstream's `GetCertApprovalCondition`: whether an Approved and a Denied condition exist.
pub fn approval(csr: &CertificateSigningRequest) -> (bool, bool) {
    (
        conditions(csr).any(|c| c.type_ == "Approved"),
        conditions(csr).any(|c| c.type_ == "Denied"),
    )
}

/// Approved and not denied.
pub fn is_approved(csr: &CertificateSigningRequest) -> bool {
    matches!(approval(csr), (true, false))
}

/// Whether `status.certificate` is set.
pub fn is_issued(csr: &CertificateSigningRequest) -> bool {
    csr.status
        .as_ref()
        .and_then(|s| s.certificate.as_ref())
        .is_some_and(|c| !c.0.is_empty())
}

fn conditions(
    csr: &CertificateSigningRequest,
) -> impl Iterator<Item = &k8s_openapi::api::certificates::v1::CertificateSigningRequestCondition> {
    csr.status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default()
        .iter()
}

/// Upstream's CertificateController: a CSR informer whose every add/update queues the CSR,
/// and `workers` workers calling `handle` with the cached object until shutdown.
pub(crate) async fn run_csr_controller<F, Fut>(
    ctx: &ControllerContext,
    name: &'static str,
    workers: usize,
    handle: F,
) -> anyhow::Result<()>
where
    F: Fn(Arc<CertificateSigningRequest>) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    // Upstream names every CertificateController's queue "certificate".
    let queue: WorkQueue<String> = WorkQueue::new().with_metrics(&ctx.metrics, "certificate");
    let q = queue.clone();
    let store = ctx.informers().informer::<CertificateSigningRequest>();
    informer::on(&store, move |csr: &CertificateSigningRequest, change| {
        if let (Some(n), informer::Change::Applied) = (&csr.metadata.name, change) {
            q.add(n.clone());
        }
    });
    let s = store.clone();
    informer::wait_synced(&ctx.shutdown, async move {
        s.wait_synced().await;
    })
    .await?;
    tracing::info!(controller = name, "starting certificate controller");
    queue
        .run(name, workers, ctx.shutdown.clone(), move |key: String| {
            let csr = store.get("", &key);
            let handle = handle.clone();
            async move {
                match csr {
                    Some(csr) => handle(csr).await,
                    None => Ok(()),
                }
            }
        })
        .await;
    Ok(())
}
