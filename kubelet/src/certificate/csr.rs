//! Asking the certificates API for a certificate (client-go's `util/certificate/csr`):
//! create a CertificateSigningRequest, or find the one already made under the same
//! name, then wait until it is issued, denied or failed. The API is reached through
//! [`CsrApi`], which the tests fake.

use super::template::{CertificateKind, Template};
use anyhow::{bail, Context, Result};
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use kube::api::{Api, PostParams};
use rcgen::{KeyPair, PublicKeyData};
use std::future::Future;
use std::time::Duration;

/// How long the bootstrap waits for its certificate (upstream: one hour).
pub const BOOTSTRAP_WAIT: Duration = Duration::from_secs(3600);
/// How long a rotation waits for its certificate (upstream: 15 minutes).
pub const ROTATION_WAIT: Duration = Duration::from_secs(15 * 60);

/// Where a request stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Neither issued nor refused yet.
    Pending,
    /// Approved, with the PEM certificate.
    Issued(Vec<u8>),
    /// Denied by an approver (`reason: message`).
    Denied(String),
    /// The signer failed (`reason: message`).
    Failed(String),
}

/// Reads a request's conditions and certificate: a Denied or Failed condition ends it;
/// Approved counts once the signer has put the certificate in.
pub fn decision(csr: &CertificateSigningRequest) -> Decision {
    let Some(status) = &csr.status else {
        return Decision::Pending;
    };
    let explain = |c: &k8s_openapi::api::certificates::v1::CertificateSigningRequestCondition| {
        format!(
            "reason: {}, message: {}",
            c.reason.as_deref().unwrap_or(""),
            c.message.as_deref().unwrap_or("")
        )
    };
    for c in status.conditions.iter().flatten() {
        match c.type_.as_str() {
            "Denied" => return Decision::Denied(explain(c)),
            "Failed" => return Decision::Failed(explain(c)),
            "Approved" => {
                if let Some(cert) = status.certificate.as_ref().filter(|c| !c.0.is_empty()) {
                    return Decision::Issued(cert.0.clone());
                }
            }
            _ => {}
        }
    }
    Decision::Pending
}

/// Why a create failed.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// A request of that name exists.
    #[error("already exists")]
    AlreadyExists,
    /// Anything else.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// The three calls a certificate request needs.
pub trait CsrApi: Send + Sync {
    /// Creates `csr` and returns it as stored (with its name and uid).
    fn create(
        &self,
        csr: &CertificateSigningRequest,
    ) -> impl Future<Output = Result<CertificateSigningRequest, CreateError>> + Send;
    /// Reads the request `name`.
    fn get(&self, name: &str) -> impl Future<Output = Result<CertificateSigningRequest>> + Send;
    /// Waits (watching) until the request `name` is decided, or `timeout` passes.
    fn wait_decided(
        &self,
        name: &str,
        timeout: Duration,
    ) -> impl Future<Output = Result<CertificateSigningRequest>> + Send;
}

impl CsrApi for kube::Client {
    async fn create(
        &self,
        csr: &CertificateSigningRequest,
    ) -> Result<CertificateSigningRequest, CreateError> {
        let api: Api<CertificateSigningRequest> = Api::all(self.clone());
        match api.create(&PostParams::default(), csr).await {
            Ok(c) => Ok(c),
            Err(e) if api_helpers::errors::is_conflict(&e) => Err(CreateError::AlreadyExists),
            Err(e) => Err(CreateError::Other(
                anyhow::Error::new(e).context("cannot create certificate signing request"),
            )),
        }
    }

    async fn get(&self, name: &str) -> Result<CertificateSigningRequest> {
        let api: Api<CertificateSigningRequest> = Api::all(self.clone());
        api.get(name)
            .await
            .with_context(|| format!("cannot retrieve certificate signing request {name}"))
    }

    async fn wait_decided(
        &self,
        name: &str,
        timeout: Duration,
    ) -> Result<CertificateSigningRequest> {
        let api: Api<CertificateSigningRequest> = Api::all(self.clone());
        let decided = |c: Option<&CertificateSigningRequest>| {
            c.is_some_and(|c| decision(c) != Decision::Pending)
        };
        let wait = kube::runtime::wait::await_condition(api, name, decided);
        match tokio::time::timeout(timeout, wait).await {
            Err(_) => bail!("timed out after {timeout:?} waiting for certificate signing request {name} to be approved and issued"),
            Ok(Err(e)) => Err(e).with_context(|| format!("watch certificate signing request {name}")),
            Ok(Ok(Some(c))) => Ok(c),
            Ok(Ok(None)) => bail!("certificate signing request {name} was deleted"),
        }
    }
}

/// One certificate to ask for.
#[derive(Debug, Clone)]
pub struct CertificateRequest<'a> {
    /// Client or serving.
    pub kind: CertificateKind,
    /// Subject and names.
    pub template: &'a Template,
    /// A fixed name (the bootstrap's digested one); `None` lets the apiserver name it
    /// from `csr-`.
    pub digested_name: bool,
    /// `spec.expirationSeconds` (the kubelet leaves it to the signer).
    pub expiration_seconds: Option<i32>,
    /// How long to wait for the certificate.
    pub wait: Duration,
}

/// The CertificateSigningRequest object for `req` signed by `key`.
pub fn csr_object(
    req: &CertificateRequest<'_>,
    key: &KeyPair,
) -> Result<CertificateSigningRequest> {
    let usages = req.kind.usages(false);
    let metadata = if req.digested_name {
        ObjectMeta {
            name: Some(req.template.bootstrap_csr_name(key, &usages)),
            ..Default::default()
        }
    } else {
        ObjectMeta {
            generate_name: Some("csr-".into()),
            ..Default::default()
        }
    };
    Ok(CertificateSigningRequest {
        metadata,
        spec: CertificateSigningRequestSpec {
            request: ByteString(req.template.csr_pem(key)?.into_bytes()),
            signer_name: req.kind.signer_name().into(),
            usages: Some(usages.into_iter().map(String::from).collect()),
            expiration_seconds: req.expiration_seconds,
            ..Default::default()
        },
        status: None,
    })
}

/// Whether an existing request of our name asks for what we would (same signer, usages
/// and public key), so that its certificate fits our key (client-go's `ensureCompatible`).
fn ensure_compatible(
    existing: &CertificateSigningRequest,
    ours: &CertificateSigningRequest,
    key: &KeyPair,
) -> Result<()> {
    let name = existing.metadata.name.as_deref().unwrap_or_default();
    if existing.spec.signer_name != ours.spec.signer_name {
        bail!(
            "certificate signing request {name} is for signer {:?}, not {:?}",
            existing.spec.signer_name,
            ours.spec.signer_name
        );
    }
    if existing.spec.usages != ours.spec.usages {
        bail!(
            "certificate signing request {name} asks for usages {:?}, not {:?}",
            existing.spec.usages,
            ours.spec.usages
        );
    }
    let der = rustls_pki_types::pem::PemObject::from_pem_slice(&existing.spec.request.0)
        .map(|d: rustls_pki_types::CertificateSigningRequestDer| d.as_ref().to_vec())
        .with_context(|| format!("certificate signing request {name}: unreadable request"))?;
    let (_, parsed) = <x509_parser::certification_request::X509CertificationRequest as x509_parser::prelude::FromDer<_>>::from_der(&der)
        .map_err(|e| anyhow::anyhow!("certificate signing request {name}: {e}"))?;
    if parsed.certification_request_info.subject_pki.raw != key.subject_public_key_info().as_slice()
    {
        bail!("certificate signing request {name} is for another private key");
    }
    Ok(())
}

/// Creates the request for `req` with `key` (or takes over a compatible one of the same
/// name) and waits for its certificate; a denied or failed request is an error naming it.
pub async fn request_certificate<C: CsrApi>(
    api: &C,
    req: &CertificateRequest<'_>,
    key: &KeyPair,
) -> Result<Vec<u8>> {
    let ours = csr_object(req, key)?;
    let created = match api.create(&ours).await {
        Ok(c) => c,
        Err(CreateError::AlreadyExists) if req.digested_name => {
            let name = ours.metadata.name.as_deref().unwrap_or_default();
            tracing::info!(csr = name, "csr for this node already exists, reusing");
            let existing = api.get(name).await?;
            ensure_compatible(&existing, &ours, key).context("retrieved csr is not compatible")?;
            existing
        }
        Err(CreateError::AlreadyExists) => {
            bail!("cannot create certificate signing request: already exists")
        }
        Err(CreateError::Other(e)) => return Err(e),
    };
    let name = created.metadata.name.clone().unwrap_or_default();
    let uid = created.metadata.uid.clone();
    tracing::info!(csr = %name, signer = req.kind.signer_name(), "Waiting for the certificate signing request to be approved and issued");
    let done = api.wait_decided(&name, req.wait).await?;
    if done.metadata.uid != uid {
        bail!(
            "certificate signing request {name} was recreated (uid changed) while waiting for it"
        );
    }
    match decision(&done) {
        Decision::Issued(cert) => Ok(cert),
        Decision::Denied(why) => bail!("certificate signing request {name} is denied, {why}"),
        Decision::Failed(why) => bail!("certificate signing request {name} failed, {why}"),
        Decision::Pending => bail!("certificate signing request {name} is still pending"),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use k8s_openapi::api::certificates::v1::{
        CertificateSigningRequestCondition, CertificateSigningRequestStatus,
    };
    use std::sync::Mutex;

    fn condition(type_: &str, reason: &str) -> CertificateSigningRequestCondition {
        CertificateSigningRequestCondition {
            type_: type_.into(),
            status: "True".into(),
            reason: Some(reason.into()),
            message: Some(format!("{reason} by test")),
            ..Default::default()
        }
    }

    /// An in-memory certificates API whose `decide` answers each request.
    pub(crate) struct FakeCsrApi {
        pub stored: Mutex<Vec<CertificateSigningRequest>>,
        pub decide: Box<
            dyn Fn(&CertificateSigningRequest) -> CertificateSigningRequestStatus + Send + Sync,
        >,
    }

    impl FakeCsrApi {
        pub(crate) fn new(
            decide: impl Fn(&CertificateSigningRequest) -> CertificateSigningRequestStatus
                + Send
                + Sync
                + 'static,
        ) -> Self {
            FakeCsrApi {
                stored: Mutex::new(Vec::new()),
                decide: Box::new(decide),
            }
        }

        /// Approves every request with `cert` as the issued certificate.
        pub(crate) fn issuing(
            cert: impl Fn(&CertificateSigningRequest) -> Vec<u8> + Send + Sync + 'static,
        ) -> Self {
            Self::new(move |csr| CertificateSigningRequestStatus {
                certificate: Some(ByteString(cert(csr))),
                conditions: Some(vec![condition("Approved", "AutoApproved")]),
            })
        }
    }

    impl CsrApi for FakeCsrApi {
        async fn create(
            &self,
            csr: &CertificateSigningRequest,
        ) -> Result<CertificateSigningRequest, CreateError> {
            let mut stored = self.stored.lock().unwrap();
            let mut csr = csr.clone();
            if csr.metadata.name.is_none() {
                csr.metadata.name = Some(format!("csr-{}", stored.len()));
            }
            if stored.iter().any(|c| c.metadata.name == csr.metadata.name) {
                return Err(CreateError::AlreadyExists);
            }
            csr.metadata.uid = Some(format!("uid-{}", stored.len()));
            stored.push(csr.clone());
            Ok(csr)
        }

        async fn get(&self, name: &str) -> Result<CertificateSigningRequest> {
            let stored = self.stored.lock().unwrap();
            stored
                .iter()
                .find(|c| c.metadata.name.as_deref() == Some(name))
                .cloned()
                .context("not found")
        }

        async fn wait_decided(
            &self,
            name: &str,
            _timeout: Duration,
        ) -> Result<CertificateSigningRequest> {
            let mut stored = self.stored.lock().unwrap();
            let csr = stored
                .iter_mut()
                .find(|c| c.metadata.name.as_deref() == Some(name))
                .context("not found")?;
            csr.status = Some((self.decide)(csr));
            Ok(csr.clone())
        }
    }

    fn request(template: &Template, digested: bool) -> CertificateRequest<'_> {
        CertificateRequest {
            kind: CertificateKind::Client,
            template,
            digested_name: digested,
            expiration_seconds: None,
            wait: Duration::from_secs(1),
        }
    }

    #[test]
    fn decision_reads_conditions_and_certificate() {
        let mut csr = CertificateSigningRequest::default();
        assert_eq!(decision(&csr), Decision::Pending);
        csr.status = Some(CertificateSigningRequestStatus {
            conditions: Some(vec![condition("Approved", "AutoApproved")]),
            certificate: None,
        });
        assert_eq!(
            decision(&csr),
            Decision::Pending,
            "approved but not signed yet"
        );
        csr.status.as_mut().unwrap().certificate = Some(ByteString(b"PEM".to_vec()));
        assert_eq!(decision(&csr), Decision::Issued(b"PEM".to_vec()));
        csr.status = Some(CertificateSigningRequestStatus {
            conditions: Some(vec![condition("Denied", "NotMine")]),
            certificate: None,
        });
        assert_eq!(
            decision(&csr),
            Decision::Denied("reason: NotMine, message: NotMine by test".into())
        );
        csr.status.as_mut().unwrap().conditions =
            Some(vec![condition("Failed", "SignerValidationFailure")]);
        assert!(
            matches!(decision(&csr), Decision::Failed(m) if m.contains("SignerValidationFailure"))
        );
    }

    #[test]
    fn object_has_upstreams_signer_usages_and_names() {
        let key = KeyPair::generate().unwrap();
        let t = super::super::template::client_template("n1");
        let bootstrap = csr_object(&request(&t, true), &key).unwrap();
        assert!(bootstrap
            .metadata
            .name
            .as_deref()
            .unwrap()
            .starts_with("node-csr-"));
        assert_eq!(
            bootstrap.spec.signer_name,
            "kubernetes.io/kube-apiserver-client-kubelet"
        );
        assert_eq!(
            bootstrap.spec.usages.as_deref().unwrap(),
            ["digital signature", "client auth"]
        );
        assert!(String::from_utf8_lossy(&bootstrap.spec.request.0)
            .starts_with("-----BEGIN CERTIFICATE REQUEST-----"));
        let rotation = csr_object(&request(&t, false), &key).unwrap();
        assert_eq!(rotation.metadata.name, None);
        assert_eq!(rotation.metadata.generate_name.as_deref(), Some("csr-"));
    }

    #[tokio::test]
    async fn issued_certificate_is_returned_and_a_same_name_request_reused() {
        let api = FakeCsrApi::issuing(|_| b"CERT".to_vec());
        let key = KeyPair::generate().unwrap();
        let t = super::super::template::client_template("n1");
        assert_eq!(
            request_certificate(&api, &request(&t, true), &key)
                .await
                .unwrap(),
            b"CERT"
        );
        // A restart with the same key finds its request instead of failing.
        assert_eq!(
            request_certificate(&api, &request(&t, true), &key)
                .await
                .unwrap(),
            b"CERT"
        );
        assert_eq!(api.stored.lock().unwrap().len(), 1);
        // Another key under a colliding name is refused.
        let other = KeyPair::generate().unwrap();
        let mut theirs = csr_object(&request(&t, true), &other).unwrap();
        theirs.metadata.name = csr_object(&request(&t, true), &key).unwrap().metadata.name;
        let e = ensure_compatible(
            &theirs,
            &csr_object(&request(&t, true), &key).unwrap(),
            &key,
        )
        .unwrap_err();
        assert!(format!("{e:#}").contains("another private key"), "{e:#}");
    }

    #[tokio::test]
    async fn denied_request_is_an_error_naming_it() {
        let api = FakeCsrApi::new(|_| CertificateSigningRequestStatus {
            conditions: Some(vec![condition("Denied", "NotMine")]),
            certificate: None,
        });
        let key = KeyPair::generate().unwrap();
        let t = super::super::template::client_template("n1");
        let e = request_certificate(&api, &request(&t, false), &key)
            .await
            .unwrap_err();
        assert_eq!(format!("{e:#}"), "certificate signing request csr-0 is denied, reason: NotMine, message: NotMine by test");
    }
}
