//! certificatesigningrequest-cleaner-controller: every hour, deletes CSRs upstream's
//! CSRCleanerController deletes — issued or denied or failed more than an hour ago, pending
//! for a day, approved but unissued for a day, or whose certificate has expired.

use std::time::Duration;

use futures::future::{BoxFuture, FutureExt};
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::DeleteParams;
use kube::Api;

use super::is_issued;
use crate::machinery::context::ControllerContext;
use crate::machinery::informers::handlers as informer;
use crate::machinery::ControllerDescriptor;
use api_helpers::errors;

/// How often every CSR is looked at.
pub const POLLING_INTERVAL: Duration = Duration::from_secs(3600);
/// Approved-and-issued, denied and failed CSRs are kept this long.
pub const APPROVED_EXPIRATION: Duration = Duration::from_secs(3600);
/// Pending (and approved-but-unissued) CSRs are kept this long.
pub const PENDING_EXPIRATION: Duration = Duration::from_secs(24 * 3600);

/// Registry entry.
pub fn descriptor() -> ControllerDescriptor {
    ControllerDescriptor {
        name: "csrcleaner",
        enabled_by_default: true,
        start,
    }
}

/// Why the CSR is to be deleted at `now`, or `None` to keep it (upstream's checks, in order).
pub fn reason_to_delete(
    csr: &CertificateSigningRequest,
    now: jiff::Timestamp,
) -> Option<&'static str> {
    let conditions = csr
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default();
    let older = |t: Option<&Time>, d: Duration| {
        t.is_some_and(|t| now.duration_since(t.0).unsigned_abs() > d && t.0 < now)
    };
    let cond = |kind: &str, d: Duration| {
        conditions
            .iter()
            .any(|c| c.type_ == kind && older(c.last_update_time.as_ref(), d))
    };
    let issued = is_issued(csr);
    if issued && cond("Approved", APPROVED_EXPIRATION) {
        return Some("approved and issued more than an hour ago");
    }
    if cond("Denied", APPROVED_EXPIRATION) {
        return Some("denied more than an hour ago");
    }
    if cond("Failed", APPROVED_EXPIRATION) {
        return Some("failed more than an hour ago");
    }
    if conditions.is_empty() && older(csr.metadata.creation_timestamp.as_ref(), PENDING_EXPIRATION)
    {
        return Some("pending for more than a day");
    }
    if issued && conditions.iter().any(|c| c.type_ == "Approved") && is_expired(csr, now) {
        return Some("its certificate has expired");
    }
    if !issued && cond("Approved", PENDING_EXPIRATION) {
        return Some("approved but unissued for more than a day");
    }
    None
}

/// Whether the first certificate in `status.certificate` expired before `now` (an
/// unparseable one is not expired, as upstream).
pub fn is_expired(csr: &CertificateSigningRequest, now: jiff::Timestamp) -> bool {
    let Some(pem) = csr.status.as_ref().and_then(|s| s.certificate.as_ref()) else {
        return false;
    };
    let Ok((_, block)) = x509_parser::pem::parse_x509_pem(&pem.0) else {
        return false;
    };
    let Ok(cert) = block.parse_x509() else {
        return false;
    };
    now.as_second() > cert.validity().not_after.timestamp()
}

fn start(ctx: ControllerContext) -> BoxFuture<'static, anyhow::Result<()>> {
    run(ctx).boxed()
}

async fn run(ctx: ControllerContext) -> anyhow::Result<()> {
    let store = ctx.informers().informer::<CertificateSigningRequest>();
    let s = store.clone();
    informer::wait_synced(&ctx.shutdown, async move {
        s.wait_synced().await;
    })
    .await?;
    let api: Api<CertificateSigningRequest> =
        Api::all(ctx.client_for(super::SERVICE_ACCOUNT).await?);
    loop {
        let now = jiff::Timestamp::now();
        for csr in store.list() {
            let Some(why) = reason_to_delete(&csr, now) else {
                continue;
            };
            let name = csr.metadata.name.clone().unwrap_or_default();
            match errors::ignore_not_found(api.delete(&name, &DeleteParams::default()).await) {
                Ok(()) => tracing::info!(csr = %name, reason = why, "cleaned CSR"),
                Err(e) => tracing::error!(csr = %name, error = %e, "unable to delete CSR"),
            }
        }
        tokio::select! {
            _ = ctx.shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(POLLING_INTERVAL) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::certificates::v1::{
        CertificateSigningRequestCondition, CertificateSigningRequestStatus,
    };
    use k8s_openapi::ByteString;

    fn ago(now: jiff::Timestamp, secs: i64) -> Time {
        Time(now - jiff::SignedDuration::from_secs(secs))
    }

    fn csr(
        created: Time,
        conds: &[(&str, Time)],
        cert: Option<String>,
    ) -> CertificateSigningRequest {
        let mut c = CertificateSigningRequest::default();
        c.metadata.creation_timestamp = Some(created);
        c.status = Some(CertificateSigningRequestStatus {
            conditions: Some(
                conds
                    .iter()
                    .map(|(t, at)| CertificateSigningRequestCondition {
                        type_: t.to_string(),
                        status: "True".into(),
                        last_update_time: Some(at.clone()),
                        ..Default::default()
                    })
                    .collect(),
            ),
            certificate: cert.map(|c| ByteString(c.into_bytes())),
        });
        c
    }

    fn cert_pem(not_after: time::OffsetDateTime) -> String {
        let mut p = rcgen::CertificateParams::default();
        p.not_before = not_after - time::Duration::days(2);
        p.not_after = not_after;
        p.self_signed(&rcgen::KeyPair::generate().unwrap())
            .unwrap()
            .pem()
    }

    #[test]
    fn deadlines_as_upstream() {
        let now = jiff::Timestamp::now();
        let fresh = cert_pem(time::OffsetDateTime::now_utc() + time::Duration::days(30));
        let expired = cert_pem(time::OffsetDateTime::now_utc() - time::Duration::hours(1));
        // pending: kept for 24h
        assert!(reason_to_delete(&csr(ago(now, 23 * 3600), &[], None), now).is_none());
        assert!(reason_to_delete(&csr(ago(now, 25 * 3600), &[], None), now).is_some());
        // approved and issued: 1h after approval
        let c = csr(
            ago(now, 7200),
            &[("Approved", ago(now, 1800))],
            Some(fresh.clone()),
        );
        assert!(reason_to_delete(&c, now).is_none());
        let c = csr(
            ago(now, 7200),
            &[("Approved", ago(now, 3700))],
            Some(fresh.clone()),
        );
        assert_eq!(
            reason_to_delete(&c, now),
            Some("approved and issued more than an hour ago")
        );
        // approved but unissued: 24h
        let c = csr(ago(now, 7200), &[("Approved", ago(now, 3700))], None);
        assert!(reason_to_delete(&c, now).is_none());
        let c = csr(ago(now, 90000), &[("Approved", ago(now, 86500))], None);
        assert!(reason_to_delete(&c, now).is_some());
        // denied / failed: 1h
        let c = csr(ago(now, 7200), &[("Denied", ago(now, 3700))], None);
        assert_eq!(
            reason_to_delete(&c, now),
            Some("denied more than an hour ago")
        );
        let c = csr(ago(now, 7200), &[("Failed", ago(now, 60))], None);
        assert!(reason_to_delete(&c, now).is_none());
        // issued with an expired certificate: at once
        let c = csr(ago(now, 600), &[("Approved", ago(now, 60))], Some(expired));
        assert_eq!(
            reason_to_delete(&c, now),
            Some("its certificate has expired")
        );
    }
}
