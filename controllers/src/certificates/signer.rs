//! certificatesigningrequest-signing-controller: signs approved CSRs of upstream's four
//! built-in signers with the `--cluster-signing-*` CA(s), as upstream's CSRSigningController
//! and its PermissiveSigningPolicy (5 minutes of backdating, never past the CA's NotAfter).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures::future::{BoxFuture, FutureExt};
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::ByteString;
use kube::api::PostParams;
use kube::Api;
use rcgen::{
    CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
    SerialNumber, SubjectPublicKeyInfo,
};
use time::OffsetDateTime;
use x509_parser::prelude::FromDer;

use super::request::{self, CertificateRequest};
use super::{
    has_true_condition, is_approved, run_csr_controller, KUBELET_SERVING, KUBE_APISERVER_CLIENT,
    KUBE_APISERVER_CLIENT_KUBELET, LEGACY_UNKNOWN,
};
use crate::machinery::context::ControllerContext;
use crate::machinery::options::SigningOptions;
use crate::machinery::ControllerDescriptor;
use api_helpers::errors;

/// Upstream's workers per signer.
const WORKERS: usize = 5;
/// How far NotBefore is set in the past (clock skew).
pub const BACKDATE: Duration = Duration::from_secs(5 * 60);
/// Certificates shorter than this keep their whole TTL after NotBefore's backdating.
pub const SHORT: Duration = Duration::from_secs(8 * 3600);
/// The shortest certificate issued, whatever `spec.expirationSeconds` asks.
pub const MIN_DURATION: Duration = Duration::from_secs(10 * 60);

/// Registry entry.
pub fn descriptor() -> ControllerDescriptor {
    ControllerDescriptor {
        name: "csrsigning",
        enabled_by_default: true,
        start,
    }
}

/// A signing CA: its certificate (as issuer) and key, and the end of its validity.
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    not_after: OffsetDateTime,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority")
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl Authority {
    /// Loads the CA from its PEM certificate and PKCS#8 key files.
    pub fn load(cert_file: &Path, key_file: &Path) -> anyhow::Result<Self> {
        let cert = std::fs::read_to_string(cert_file)
            .with_context(|| format!("reading signing certificate {}", cert_file.display()))?;
        let key = std::fs::read_to_string(key_file)
            .with_context(|| format!("reading signing key {}", key_file.display()))?;
        Self::from_pem(&cert, &key).with_context(|| {
            format!(
                "signing CA {} / {}",
                cert_file.display(),
                key_file.display()
            )
        })
    }

    /// The CA from PEM text.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> anyhow::Result<Self> {
        let key = private_key(key_pem)?;
        let (_, block) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
            .map_err(|e| anyhow::anyhow!("certificate is not PEM: {e}"))?;
        let (_, cert) = x509_parser::certificate::X509Certificate::from_der(&block.contents)
            .map_err(|e| anyhow::anyhow!("certificate: {e}"))?;
        let not_after = cert.validity().not_after.to_datetime();
        let issuer = Issuer::from_ca_cert_der(&block.contents.clone().into(), key)
            .map_err(|e| anyhow::anyhow!("certificate: {e}"))?;
        Ok(Authority { issuer, not_after })
    }

    /// Signs `req` (whose signature is verified first) for `usages`, valid for `ttl` from
    /// `now` under upstream's policy. Returns the PEM certificate.
    pub fn sign(
        &self,
        req: &CertificateRequest,
        usages: &[String],
        ttl: Duration,
        now: OffsetDateTime,
    ) -> Result<String, String> {
        request::verify_signature(&req.der)?;
        let (_, csr) =
            x509_parser::certification_request::X509CertificationRequest::from_der(&req.der)
                .map_err(|e| format!("unable to parse certificate request: {e}"))?;
        let info = &csr.certification_request_info;
        let (key_usages, ext_usages) = key_usages(usages)?;
        let (not_before, not_after) = validity(now, ttl, self.not_after)?;
        let mut params = CertificateParams::default();
        // The subject goes in verbatim afterwards (see `der`).
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.subject_alt_names = subject_alt_names(req)?;
        params.serial_number = Some(serial_number()?);
        params.not_before = not_before;
        params.not_after = not_after;
        params.key_usages = key_usages;
        params.extended_key_usages = ext_usages;
        params.is_ca = IsCa::ExplicitNoCa;
        params.use_authority_key_identifier_extension = true;
        let spki = SubjectPublicKeyInfo::from_der(info.subject_pki.raw)
            .map_err(|e| format!("unsupported public key: {e}"))?;
        let cert = params
            .signed_by(&spki, &self.issuer)
            .map_err(|e| format!("failed to sign certificate: {e}"))?;
        let der = super::der::with_subject(cert.der(), info.subject.as_raw(), self.issuer.key())?;
        Ok(pem_certificate(&der))
    }
}

/// The first private key in `pem`: PKCS#8 `PRIVATE KEY`, PKCS#1 `RSA PRIVATE KEY` (as
/// kubeadm writes `ca.key`) or SEC1 `EC PRIVATE KEY`.
pub fn private_key(pem: &str) -> anyhow::Result<KeyPair> {
    for block in x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes()) {
        let block = block.map_err(|e| anyhow::anyhow!("private key is not PEM: {e}"))?;
        let der = match block.label.as_str() {
            "PRIVATE KEY" => block.contents,
            "RSA PRIVATE KEY" => super::der::pkcs8_from_pkcs1(&block.contents),
            "EC PRIVATE KEY" => {
                super::der::pkcs8_from_sec1(&block.contents).map_err(|e| anyhow::anyhow!(e))?
            }
            _ => continue,
        };
        return KeyPair::try_from(der.as_slice())
            .map_err(|e| anyhow::anyhow!("{} PEM block: {e}", block.label));
    }
    anyhow::bail!("no PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY PEM block found")
}

/// The certificate's lifetime: `--cluster-signing-duration` unless `spec.expirationSeconds`
/// asks for less, never under 10 minutes.
pub fn duration(max: Duration, expiration_seconds: Option<i32>) -> Duration {
    let Some(secs) = expiration_seconds else {
        return max;
    };
    let requested = Duration::from_secs(secs.max(0) as u64);
    if requested > max {
        max
    } else if requested < MIN_DURATION {
        MIN_DURATION
    } else {
        requested
    }
}

/// NotBefore and NotAfter as upstream's PermissiveSigningPolicy: NotBefore is backdated;
/// a long certificate's NotAfter is shortened by the backdate; both are capped by the CA.
pub fn validity(
    now: OffsetDateTime,
    ttl: Duration,
    ca_not_after: OffsetDateTime,
) -> Result<(OffsetDateTime, OffsetDateTime), String> {
    let not_before = now - BACKDATE;
    let mut not_after = if ttl < SHORT {
        now + ttl
    } else {
        now + (ttl - BACKDATE)
    };
    if not_after >= ca_not_after {
        not_after = ca_not_after;
    }
    if not_before >= ca_not_after {
        return Err(format!("the signer has expired: NotAfter={ca_not_after}"));
    }
    if now >= ca_not_after {
        return Err(format!(
            "refusing to sign a certificate that expired in the past: NotAfter={ca_not_after}"
        ));
    }
    Ok((not_before, not_after))
}

/// Upstream's usage names mapped to key usages and (sorted as Go's enum) extended key usages.
pub fn key_usages(
    usages: &[String],
) -> Result<(Vec<KeyUsagePurpose>, Vec<ExtendedKeyUsagePurpose>), String> {
    let mut ku = Vec::new();
    let mut eku: BTreeMap<u8, ExtendedKeyUsagePurpose> = BTreeMap::new();
    let mut unrecognized = Vec::new();
    for u in usages {
        let k = match u.as_str() {
            "signing" | "digital signature" => Some(KeyUsagePurpose::DigitalSignature),
            "content commitment" => Some(KeyUsagePurpose::ContentCommitment),
            "key encipherment" => Some(KeyUsagePurpose::KeyEncipherment),
            "key agreement" => Some(KeyUsagePurpose::KeyAgreement),
            "data encipherment" => Some(KeyUsagePurpose::DataEncipherment),
            "cert sign" => Some(KeyUsagePurpose::KeyCertSign),
            "crl sign" => Some(KeyUsagePurpose::CrlSign),
            "encipher only" => Some(KeyUsagePurpose::EncipherOnly),
            "decipher only" => Some(KeyUsagePurpose::DecipherOnly),
            _ => None,
        };
        if let Some(k) = k {
            if !ku.contains(&k) {
                ku.push(k);
            }
            continue;
        }
        use ExtendedKeyUsagePurpose as E;
        let e = match u.as_str() {
            "any" => (0, E::Any),
            "server auth" => (1, E::ServerAuth),
            "client auth" => (2, E::ClientAuth),
            "code signing" => (3, E::CodeSigning),
            "email protection" | "s/mime" => (4, E::EmailProtection),
            "ipsec end system" => (5, E::Other(vec![1, 3, 6, 1, 5, 5, 7, 3, 5])),
            "ipsec tunnel" => (6, E::Other(vec![1, 3, 6, 1, 5, 5, 7, 3, 6])),
            "ipsec user" => (7, E::Other(vec![1, 3, 6, 1, 5, 5, 7, 3, 7])),
            "timestamping" => (8, E::TimeStamping),
            "ocsp signing" => (9, E::OcspSigning),
            "microsoft sgc" => (10, E::Other(vec![1, 3, 6, 1, 4, 1, 311, 10, 3, 3])),
            "netscape sgc" => (11, E::Other(vec![2, 16, 840, 1, 113730, 4, 1])),
            _ => {
                unrecognized.push(format!("{u:?}"));
                continue;
            }
        };
        eku.insert(e.0, e.1);
    }
    if !unrecognized.is_empty() {
        return Err(format!(
            "unrecognized usage values: [{}]",
            unrecognized.join(" ")
        ));
    }
    Ok((ku, eku.into_values().collect()))
}

/// The checks a signer makes before signing (upstream's isRequestForSignerFunc). An error
/// marks the CSR Failed with reason SignerValidationFailure.
pub fn validate_for_signer(
    signer_name: &str,
    req: &CertificateRequest,
    usages: &[String],
) -> Result<(), String> {
    match signer_name {
        KUBELET_SERVING => request::validate_kubelet_serving(req, usages),
        KUBE_APISERVER_CLIENT_KUBELET => request::validate_kubelet_client(req, usages),
        KUBE_APISERVER_CLIENT => request::validate_apiserver_client_usages(usages),
        _ => Ok(()),
    }
}

fn subject_alt_names(req: &CertificateRequest) -> Result<Vec<SanType>, String> {
    let bad = |e: rcgen::Error| format!("subjectAltName: {e}");
    let mut sans = Vec::new();
    for d in &req.dns_names {
        sans.push(SanType::DnsName(d.clone().try_into().map_err(bad)?));
    }
    for ip in &req.ip_addresses {
        sans.push(SanType::IpAddress(*ip));
    }
    for e in &req.email_addresses {
        sans.push(SanType::Rfc822Name(e.clone().try_into().map_err(bad)?));
    }
    for u in &req.uris {
        sans.push(SanType::URI(u.clone().try_into().map_err(bad)?));
    }
    Ok(sans)
}

/// `der` as a PEM `CERTIFICATE` block.
fn pem_certificate(der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// A random positive serial below 2^128, as upstream.
fn serial_number() -> Result<SerialNumber, String> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| "unable to generate a serial number".to_string())?;
    bytes[0] &= 0x7f;
    Ok(SerialNumber::from_slice(&bytes))
}

/// Which CA files sign for which signer: with per-signer flags only those signers run;
/// otherwise `--cluster-signing-cert-file/-key-file` sign for all four; with neither, none.
pub fn signer_files(opts: &SigningOptions) -> Vec<(&'static str, PathBuf, PathBuf)> {
    let specific = [
        (KUBELET_SERVING, &opts.kubelet_serving),
        (KUBE_APISERVER_CLIENT_KUBELET, &opts.kubelet_client),
        (KUBE_APISERVER_CLIENT, &opts.kube_apiserver_client),
        (LEGACY_UNKNOWN, &opts.legacy_unknown),
    ];
    if specific.iter().any(|(_, f)| f.is_some()) {
        return specific
            .into_iter()
            .filter_map(|(s, f)| f.clone().map(|(c, k)| (s, c, k)))
            .collect();
    }
    match (&opts.cert_file, &opts.key_file) {
        (Some(c), Some(k)) => specific
            .iter()
            .map(|(s, _)| (*s, c.clone(), k.clone()))
            .collect(),
        _ => Vec::new(),
    }
}

/// What to write back for an approved CSR of `signer_name`, or `None` to leave it.
pub fn decide(
    csr: &CertificateSigningRequest,
    authority: &Authority,
    max: Duration,
    now: OffsetDateTime,
) -> anyhow::Result<Option<CertificateSigningRequest>> {
    if !is_approved(csr) || has_true_condition(csr, "Failed") || super::is_issued(csr) {
        return Ok(None);
    }
    let name = csr.metadata.name.as_deref().unwrap_or_default();
    let req = request::parse(&csr.spec.request.0)
        .map_err(|e| anyhow::anyhow!("unable to parse csr {name:?}: {e}"))?;
    let usages = csr.spec.usages.as_deref().unwrap_or_default();
    let mut out = csr.clone();
    let status = out.status.get_or_insert_with(Default::default);
    if let Err(e) = validate_for_signer(&csr.spec.signer_name, &req, usages) {
        status
            .conditions
            .get_or_insert_with(Vec::new)
            .push(CertificateSigningRequestCondition {
                type_: "Failed".into(),
                status: "True".into(),
                reason: Some("SignerValidationFailure".into()),
                message: Some(e),
                last_update_time: Some(Time(jiff::Timestamp::now())),
                ..Default::default()
            });
        return Ok(Some(out));
    }
    let ttl = duration(max, csr.spec.expiration_seconds);
    let pem = authority
        .sign(&req, usages, ttl, now)
        .map_err(|e| anyhow::anyhow!("error auto signing csr: {e}"))?;
    status.certificate = Some(ByteString(pem.into_bytes()));
    Ok(Some(out))
}

fn start(ctx: ControllerContext) -> BoxFuture<'static, anyhow::Result<()>> {
    run(ctx).boxed()
}

async fn run(ctx: ControllerContext) -> anyhow::Result<()> {
    let files = signer_files(&ctx.options.signing);
    if files.is_empty() {
        tracing::info!("Skipping CSR signer controller because no csr cert/key was specified");
        return Ok(());
    }
    let mut authorities = BTreeMap::new();
    for (signer, cert, key) in files {
        let ca = Authority::load(&cert, &key)
            .with_context(|| format!("failed to init {signer} certificate controller"))?;
        authorities.insert(signer, Arc::new(ca));
    }
    let authorities = Arc::new(authorities);
    let max = ctx.options.signing.duration;
    let client = ctx.client_for(super::SERVICE_ACCOUNT).await?;
    run_csr_controller(&ctx, "csrsigning", WORKERS, move |csr| {
        let authorities = authorities.clone();
        let client = client.clone();
        async move {
            let Some(ca) = authorities.get(csr.spec.signer_name.as_str()) else {
                return Ok(());
            };
            let Some(update) = decide(&csr, ca, max, OffsetDateTime::now_utc())? else {
                return Ok(());
            };
            let name = csr.metadata.name.clone().unwrap_or_default();
            let api: Api<CertificateSigningRequest> = Api::all(client);
            match api
                .replace_status(&name, &PostParams::default(), &update)
                .await
            {
                Ok(_) => {
                    tracing::info!(csr = %name, signer = %csr.spec.signer_name, "signed CSR");
                    Ok(())
                }
                Err(e) if errors::is_conflict(&e) || errors::is_not_found(&e) => Ok(()),
                Err(e) => Err(anyhow::Error::new(e).context("error updating signature for csr")),
            }
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`decide`] with a one-hour signing duration, now.
    fn decide_now(
        csr: &CertificateSigningRequest,
        authority: &Authority,
    ) -> anyhow::Result<Option<CertificateSigningRequest>> {
        decide(
            csr,
            authority,
            Duration::from_secs(3600),
            OffsetDateTime::now_utc(),
        )
    }
    use crate::certificates::request::tests::make_csr;
    use k8s_openapi::api::certificates::v1::{
        CertificateSigningRequestSpec, CertificateSigningRequestStatus,
    };
    use rcgen::{BasicConstraints, CertifiedIssuer, DnType};

    fn ca(valid_days: i64) -> (Authority, String) {
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "test-ca");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = OffsetDateTime::now_utc() - ::time::Duration::days(1);
        params.not_after = OffsetDateTime::now_utc() + ::time::Duration::days(valid_days);
        let key = KeyPair::generate().unwrap();
        let key_pem = key.serialize_pem();
        let ca = CertifiedIssuer::self_signed(params, key).unwrap();
        let cert_pem = ca.pem();
        (Authority::from_pem(&cert_pem, &key_pem).unwrap(), cert_pem)
    }

    fn u(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn approved_csr(
        signer: &str,
        cn: &str,
        orgs: &[&str],
        sans: &[&str],
        usages: &[&str],
    ) -> CertificateSigningRequest {
        let (pem, _) = make_csr(cn, orgs, sans);
        CertificateSigningRequest {
            metadata: kube::api::ObjectMeta {
                name: Some("c1".into()),
                ..Default::default()
            },
            spec: CertificateSigningRequestSpec {
                request: ByteString(pem.into_bytes()),
                signer_name: signer.into(),
                usages: Some(u(usages)),
                ..Default::default()
            },
            status: Some(CertificateSigningRequestStatus {
                conditions: Some(vec![CertificateSigningRequestCondition {
                    type_: "Approved".into(),
                    status: "True".into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn duration_honours_expiration_seconds_within_bounds() {
        let max = Duration::from_secs(8760 * 3600);
        assert_eq!(duration(max, None), max);
        assert_eq!(duration(max, Some(60)), MIN_DURATION);
        assert_eq!(duration(max, Some(3600)), Duration::from_secs(3600));
        assert_eq!(
            duration(Duration::from_secs(7200), Some(86400)),
            Duration::from_secs(7200)
        );
    }

    #[test]
    fn validity_backdates_and_caps_at_the_ca() {
        let now = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let far = now + ::time::Duration::days(3650);
        let (nb, na) = validity(now, Duration::from_secs(3600), far).unwrap();
        assert_eq!(nb, now - ::time::Duration::minutes(5));
        assert_eq!(na, now + ::time::Duration::hours(1));
        let (_, na) = validity(now, Duration::from_secs(24 * 3600), far).unwrap();
        assert_eq!(
            na,
            now + ::time::Duration::hours(24) - ::time::Duration::minutes(5)
        );
        let soon = now + ::time::Duration::minutes(30);
        assert_eq!(
            validity(now, Duration::from_secs(3600), soon).unwrap().1,
            soon
        );
        assert!(validity(
            now,
            Duration::from_secs(3600),
            now - ::time::Duration::minutes(10)
        )
        .unwrap_err()
        .contains("the signer has expired"));
        assert!(validity(
            now,
            Duration::from_secs(3600),
            now - ::time::Duration::minutes(1)
        )
        .unwrap_err()
        .contains("refusing to sign"));
    }

    #[test]
    fn usages_map_and_unknown_ones_fail() {
        let (ku, eku) = key_usages(&u(&[
            "client auth",
            "digital signature",
            "server auth",
            "key encipherment",
        ]))
        .unwrap();
        assert_eq!(
            ku,
            [
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment
            ]
        );
        assert_eq!(
            eku,
            [
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth
            ]
        );
        assert_eq!(
            key_usages(&u(&["client auth", "frobnicate"])).unwrap_err(),
            "unrecognized usage values: [\"frobnicate\"]"
        );
    }

    #[test]
    fn signs_a_kubelet_client_csr_with_subject_usages_and_expiry() {
        let (authority, ca_pem) = ca(365);
        let mut csr = approved_csr(
            KUBE_APISERVER_CLIENT_KUBELET,
            "system:node:n1",
            &["system:nodes"],
            &[],
            &["digital signature", "client auth"],
        );
        csr.spec.expiration_seconds = Some(3600);
        let now = OffsetDateTime::now_utc();
        let out = decide(&csr, &authority, Duration::from_secs(8760 * 3600), now)
            .unwrap()
            .unwrap();
        let pem = out.status.unwrap().certificate.unwrap().0;
        let (_, block) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
        let cert = block.parse_x509().unwrap();
        let (_, ca_block) = x509_parser::pem::parse_x509_pem(ca_pem.as_bytes()).unwrap();
        let ca_cert = ca_block.parse_x509().unwrap();
        cert.verify_signature(Some(ca_cert.public_key())).unwrap();
        assert_eq!(
            cert.subject().to_string(),
            "O=system:nodes, CN=system:node:n1"
        );
        assert_eq!(cert.issuer().to_string(), "CN=test-ca");
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.server_auth);
        let ku = cert.key_usage().unwrap().unwrap().value;
        assert!(ku.digital_signature() && !ku.key_encipherment());
        assert!(!cert.basic_constraints().unwrap().unwrap().value.ca);
        let nb = cert.validity().not_before.timestamp();
        let na = cert.validity().not_after.timestamp();
        assert_eq!(nb, (now - ::time::Duration::minutes(5)).unix_timestamp());
        assert_eq!(na, (now + ::time::Duration::hours(1)).unix_timestamp());
    }

    #[test]
    fn invalid_request_for_signer_is_marked_failed() {
        let (authority, _) = ca(365);
        let csr = approved_csr(
            KUBE_APISERVER_CLIENT,
            "alice",
            &["devs"],
            &[],
            &["server auth"],
        );
        let out = decide_now(&csr, &authority).unwrap().unwrap();
        let status = out.status.unwrap();
        assert!(status.certificate.is_none());
        let failed = status
            .conditions
            .unwrap()
            .into_iter()
            .find(|c| c.type_ == "Failed")
            .unwrap();
        assert_eq!(failed.reason.as_deref(), Some("SignerValidationFailure"));
        assert_eq!(
            failed.message.as_deref(),
            Some("invalid usage for client certificate: server auth")
        );
    }

    #[test]
    fn pending_denied_and_issued_csrs_are_left_alone() {
        let (authority, _) = ca(365);
        let mut csr = approved_csr(LEGACY_UNKNOWN, "x", &[], &[], &["client auth"]);
        csr.status = None;
        assert!(decide(
            &csr,
            &authority,
            Duration::from_secs(3600),
            OffsetDateTime::now_utc()
        )
        .unwrap()
        .is_none());
        let mut csr = approved_csr(LEGACY_UNKNOWN, "x", &[], &[], &["client auth"]);
        csr.status
            .as_mut()
            .unwrap()
            .conditions
            .as_mut()
            .unwrap()
            .push(CertificateSigningRequestCondition {
                type_: "Denied".into(),
                status: "True".into(),
                ..Default::default()
            });
        assert!(decide(
            &csr,
            &authority,
            Duration::from_secs(3600),
            OffsetDateTime::now_utc()
        )
        .unwrap()
        .is_none());
    }

    /// A CSR made with `openssl req -subj "/O=devs/O=admins/CN=alice"` (P-256 key): a user
    /// in two groups.
    const TWO_GROUPS_CSR: &str = "-----BEGIN CERTIFICATE REQUEST-----
MIHrMIGSAgEAMDAxDTALBgNVBAoMBGRldnMxDzANBgNVBAoMBmFkbWluczEOMAwG
A1UEAwwFYWxpY2UwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAASo/nXDmNk4BskH
W/0qu7jjutGr7ZPC1mzHED3LMs7qoG0hxMlLGQJ+pz5ne/rfJJNRq6c/2AU/WbV4
PQBktynhoAAwCgYIKoZIzj0EAwIDSAAwRQIgOo0UJiOguFxgeASP4l4Oltf091lJ
c7blAf4VxYAbVv0CIQDwGt7zABjWjwsYPFMVQh75MqrPaa6aO1ZhmHV4LOX8Ig==
-----END CERTIFICATE REQUEST-----
";

    #[test]
    fn subject_with_repeated_attributes_is_kept_whole() {
        let (authority, ca_pem) = ca(365);
        let mut csr = approved_csr(KUBE_APISERVER_CLIENT, "x", &[], &[], &["client auth"]);
        csr.spec.request = ByteString(TWO_GROUPS_CSR.as_bytes().to_vec());
        let out = decide_now(&csr, &authority).unwrap().unwrap();
        let pem = out.status.unwrap().certificate.unwrap().0;
        let (_, block) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
        let cert = block.parse_x509().unwrap();
        assert_eq!(cert.subject().to_string(), "O=devs, O=admins, CN=alice");
        let (_, ca_block) = x509_parser::pem::parse_x509_pem(ca_pem.as_bytes()).unwrap();
        cert.verify_signature(Some(ca_block.parse_x509().unwrap().public_key()))
            .unwrap();
    }

    #[test]
    fn signer_files_follow_upstream_precedence() {
        let mut o = SigningOptions {
            cert_file: Some("/ca.crt".into()),
            key_file: Some("/ca.key".into()),
            ..Default::default()
        };
        assert_eq!(signer_files(&o).len(), 4);
        o.cert_file = None;
        o.key_file = None;
        assert!(signer_files(&o).is_empty());
        o.kubelet_serving = Some(("/s.crt".into(), "/s.key".into()));
        let f = signer_files(&o);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].0, KUBELET_SERVING);
    }

    /// A CA made by openssl with `key_args` (its key as openssl writes it), or `None` when
    /// openssl is missing.
    fn openssl_ca(key_args: &[&str]) -> Option<(String, String)> {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("ca.key");
        let crt = dir.path().join("ca.crt");
        let gen = std::process::Command::new("openssl")
            .args(key_args)
            .arg("-out")
            .arg(&key)
            .output()
            .ok()?;
        assert!(
            gen.status.success(),
            "{}",
            String::from_utf8_lossy(&gen.stderr)
        );
        let req = std::process::Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-new",
                "-days",
                "30",
                "-subj",
                "/CN=kubernetes",
                "-key",
            ])
            .arg(&key)
            .arg("-out")
            .arg(&crt)
            .output()
            .ok()?;
        assert!(
            req.status.success(),
            "{}",
            String::from_utf8_lossy(&req.stderr)
        );
        Some((
            std::fs::read_to_string(crt).unwrap(),
            std::fs::read_to_string(key).unwrap(),
        ))
    }

    fn signs_with_openssl_ca(key_args: &[&str], label: &str) {
        let Some((cert_pem, key_pem)) = openssl_ca(key_args) else {
            eprintln!("SKIPPED: no openssl");
            return;
        };
        assert!(key_pem.contains(label), "{key_pem}");
        let authority = Authority::from_pem(&cert_pem, &key_pem).unwrap();
        let csr = approved_csr(
            KUBE_APISERVER_CLIENT,
            "alice",
            &["devs"],
            &[],
            &["client auth"],
        );
        let out = decide_now(&csr, &authority).unwrap().unwrap();
        let pem = out.status.unwrap().certificate.unwrap().0;
        let (_, block) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
        let (_, ca_block) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).unwrap();
        block
            .parse_x509()
            .unwrap()
            .verify_signature(Some(ca_block.parse_x509().unwrap().public_key()))
            .unwrap();
    }

    #[test]
    fn kubeadm_style_rsa_pkcs1_ca_key_signs() {
        signs_with_openssl_ca(&["genrsa", "-traditional"], "BEGIN RSA PRIVATE KEY");
    }

    #[test]
    fn sec1_ec_ca_key_signs() {
        signs_with_openssl_ca(
            &["ecparam", "-name", "prime256v1", "-genkey", "-noout"],
            "BEGIN EC PRIVATE KEY",
        );
    }

    #[test]
    fn unusable_keys_get_a_clear_error() {
        let err = Authority::from_pem("x", "no pem here").unwrap_err();
        assert!(format!("{err:#}").contains("no PRIVATE KEY"), "{err:#}");
    }
}
