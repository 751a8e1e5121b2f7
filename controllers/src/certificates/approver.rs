//! certificatesigningrequest-approving-controller: approves kubelet client CSRs
//! (`kubernetes.io/kube-apiserver-client-kubelet`) whose requester may create
//! `certificatesigningrequests/nodeclient` (or `/selfnodeclient` for its own node name), as
//! upstream's sarApprover.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context as _;
use futures::future::{BoxFuture, FutureExt};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::PostParams;
use kube::Api;

use super::request::{self, CertificateRequest};
use super::{approval, is_issued, run_csr_controller, KUBE_APISERVER_CLIENT_KUBELET};
use crate::machinery::context::ControllerContext;
use crate::machinery::ControllerDescriptor;
use api_helpers::errors;

/// Upstream's worker count for csrapproving.
const WORKERS: usize = 5;

/// Registry entry.
pub fn descriptor() -> ControllerDescriptor {
    ControllerDescriptor {
        name: "csrapproving",
        enabled_by_default: true,
        start,
    }
}

/// One kind of CSR the approver knows, the permission that approves it, and the message.
#[derive(Debug)]
pub struct Recognizer {
    /// The `certificatesigningrequests` subresource checked by SubjectAccessReview.
    pub subresource: &'static str,
    /// The Approved condition's message.
    pub message: &'static str,
    recognize: fn(&CertificateSigningRequest, &CertificateRequest) -> bool,
}

/// Upstream's recognizers, in order: the node's own client certificate, then any node's.
pub const RECOGNIZERS: [Recognizer; 2] = [
    Recognizer {
        subresource: "selfnodeclient",
        message: "Auto approving self kubelet client certificate after SubjectAccessReview.",
        recognize: is_self_node_client,
    },
    Recognizer {
        subresource: "nodeclient",
        message: "Auto approving kubelet client certificate after SubjectAccessReview.",
        recognize: is_node_client,
    },
];

fn is_node_client(csr: &CertificateSigningRequest, req: &CertificateRequest) -> bool {
    csr.spec.signer_name == KUBE_APISERVER_CLIENT_KUBELET
        && request::validate_kubelet_client(req, csr.spec.usages.as_deref().unwrap_or_default())
            .is_ok()
}

fn is_self_node_client(csr: &CertificateSigningRequest, req: &CertificateRequest) -> bool {
    csr.spec.username.as_deref() == Some(req.common_name.as_str()) && is_node_client(csr, req)
}

/// Whether the CSR still needs a decision: no certificate, no Approved/Denied condition.
pub fn is_pending(csr: &CertificateSigningRequest) -> bool {
    !is_issued(csr) && approval(csr) == (false, false)
}

/// The recognizers that match `csr`, in the order their permission is to be checked.
pub fn candidates(
    csr: &CertificateSigningRequest,
    req: &CertificateRequest,
) -> Vec<&'static Recognizer> {
    RECOGNIZERS
        .iter()
        .filter(|r| (r.recognize)(csr, req))
        .collect()
}

/// The SubjectAccessReview asking whether the CSR's requester may `create`
/// `certificatesigningrequests/<subresource>`.
pub fn review(csr: &CertificateSigningRequest, subresource: &str) -> SubjectAccessReview {
    SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: csr.spec.username.clone(),
            uid: csr.spec.uid.clone(),
            groups: csr.spec.groups.clone(),
            extra: csr.spec.extra.as_ref().map(|e| {
                e.iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect::<BTreeMap<_, _>>()
            }),
            resource_attributes: Some(ResourceAttributes {
                group: Some("certificates.k8s.io".into()),
                resource: Some("certificatesigningrequests".into()),
                verb: Some("create".into()),
                subresource: Some(subresource.into()),
                version: Some("*".into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// `csr` with upstream's Approved/AutoApproved condition appended.
pub fn approved(csr: &CertificateSigningRequest, message: &str) -> CertificateSigningRequest {
    let mut csr = csr.clone();
    let status = csr.status.get_or_insert_with(Default::default);
    status
        .conditions
        .get_or_insert_with(Vec::new)
        .push(CertificateSigningRequestCondition {
            type_: "Approved".into(),
            status: "True".into(),
            reason: Some("AutoApproved".into()),
            message: Some(message.into()),
            last_update_time: Some(Time(jiff::Timestamp::now())),
            ..Default::default()
        });
    csr
}

fn start(ctx: ControllerContext) -> BoxFuture<'static, anyhow::Result<()>> {
    run(ctx).boxed()
}

async fn run(ctx: ControllerContext) -> anyhow::Result<()> {
    let client = ctx.client_for(super::SERVICE_ACCOUNT).await?;
    run_csr_controller(&ctx, "csrapproving", WORKERS, move |csr| {
        handle(client.clone(), csr)
    })
    .await
}

async fn handle(client: kube::Client, csr: Arc<CertificateSigningRequest>) -> anyhow::Result<()> {
    if !is_pending(&csr) {
        return Ok(());
    }
    let name = csr.metadata.name.clone().unwrap_or_default();
    let req = request::parse(&csr.spec.request.0)
        .map_err(|e| anyhow::anyhow!("unable to parse csr {name:?}: {e}"))?;
    let mut tried = Vec::new();
    for r in candidates(&csr, &req) {
        tried.push(r.subresource);
        let sar: SubjectAccessReview = Api::all(client.clone())
            .create(&PostParams::default(), &review(&csr, r.subresource))
            .await
            .context("SubjectAccessReview")?;
        if sar.status.is_some_and(|s| s.allowed) {
            let api: Api<CertificateSigningRequest> = Api::all(client.clone());
            match api
                .replace_subresource(
                    "approval",
                    &name,
                    &PostParams::default(),
                    &approved(&csr, r.message),
                )
                .await
            {
                Ok(_) => {
                    tracing::info!(csr = %name, subresource = r.subresource, "approved CSR");
                    return Ok(());
                }
                // A stale copy: the update event brings the new one.
                Err(e) if errors::is_conflict(&e) || errors::is_not_found(&e) => return Ok(()),
                Err(e) => {
                    return Err(anyhow::Error::new(e).context("error updating approval for csr"))
                }
            }
        }
    }
    if !tried.is_empty() {
        anyhow::bail!(
            "recognized csr {name:?} as {tried:?} but subject access review was not approved"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certificates::request::tests::make_csr;
    use k8s_openapi::api::certificates::v1::{
        CertificateSigningRequestSpec, CertificateSigningRequestStatus,
    };
    use k8s_openapi::ByteString;

    fn csr(
        user: &str,
        cn: &str,
        signer: &str,
        usages: &[&str],
    ) -> (CertificateSigningRequest, CertificateRequest) {
        let (pem, _) = make_csr(cn, &["system:nodes"], &[]);
        let c = CertificateSigningRequest {
            metadata: Default::default(),
            spec: CertificateSigningRequestSpec {
                request: ByteString(pem.clone().into_bytes()),
                signer_name: signer.into(),
                username: Some(user.into()),
                groups: Some(vec!["system:bootstrappers".into()]),
                usages: Some(usages.iter().map(|s| s.to_string()).collect()),
                ..Default::default()
            },
            status: None,
        };
        (c, request::parse(pem.as_bytes()).unwrap())
    }

    const CLIENT: &[&str] = &["digital signature", "key encipherment", "client auth"];

    #[test]
    fn bootstrap_token_csr_is_a_nodeclient_candidate_only() {
        let (c, r) = csr(
            "system:bootstrap:abcdef",
            "system:node:n1",
            KUBE_APISERVER_CLIENT_KUBELET,
            CLIENT,
        );
        let got: Vec<_> = candidates(&c, &r).iter().map(|r| r.subresource).collect();
        assert_eq!(got, ["nodeclient"]);
    }

    #[test]
    fn node_renewing_its_own_certificate_tries_selfnodeclient_first() {
        let (c, r) = csr(
            "system:node:n1",
            "system:node:n1",
            KUBE_APISERVER_CLIENT_KUBELET,
            CLIENT,
        );
        let got: Vec<_> = candidates(&c, &r).iter().map(|r| r.subresource).collect();
        assert_eq!(got, ["selfnodeclient", "nodeclient"]);
    }

    #[test]
    fn other_signers_and_bad_usages_are_not_recognized() {
        let (c, r) = csr("u", "system:node:n1", super::super::KUBELET_SERVING, CLIENT);
        assert!(candidates(&c, &r).is_empty());
        let (c, r) = csr(
            "u",
            "system:node:n1",
            KUBE_APISERVER_CLIENT_KUBELET,
            &["server auth"],
        );
        assert!(candidates(&c, &r).is_empty());
    }

    #[test]
    fn review_asks_for_create_on_the_subresource_as_the_requester() {
        let (c, _) = csr(
            "system:bootstrap:abcdef",
            "system:node:n1",
            KUBE_APISERVER_CLIENT_KUBELET,
            CLIENT,
        );
        let sar = review(&c, "nodeclient");
        assert_eq!(sar.spec.user.as_deref(), Some("system:bootstrap:abcdef"));
        assert_eq!(
            sar.spec.groups.as_deref(),
            Some(&["system:bootstrappers".to_string()][..])
        );
        let ra = sar.spec.resource_attributes.unwrap();
        assert_eq!(ra.group.as_deref(), Some("certificates.k8s.io"));
        assert_eq!(ra.resource.as_deref(), Some("certificatesigningrequests"));
        assert_eq!(ra.subresource.as_deref(), Some("nodeclient"));
        assert_eq!(ra.verb.as_deref(), Some("create"));
    }

    #[test]
    fn approval_condition_and_pending_state() {
        let (c, _) = csr("u", "system:node:n1", KUBE_APISERVER_CLIENT_KUBELET, CLIENT);
        assert!(is_pending(&c));
        let a = approved(&c, RECOGNIZERS[1].message);
        let cond = &a.status.as_ref().unwrap().conditions.as_ref().unwrap()[0];
        assert_eq!(cond.type_, "Approved");
        assert_eq!(cond.status, "True");
        assert_eq!(cond.reason.as_deref(), Some("AutoApproved"));
        assert_eq!(
            cond.message.as_deref(),
            Some("Auto approving kubelet client certificate after SubjectAccessReview.")
        );
        assert!(!is_pending(&a));
        let mut denied = c.clone();
        denied.status = Some(CertificateSigningRequestStatus {
            conditions: Some(vec![CertificateSigningRequestCondition {
                type_: "Denied".into(),
                status: "True".into(),
                ..Default::default()
            }]),
            ..Default::default()
        });
        assert!(!is_pending(&denied));
    }
}
