//! Keeping a certificate fresh (client-go's certificate manager): at a jittered point
//! 70–90% into the current certificate's lifetime a new key is made, a new CSR sent, the
//! issued pair stored as the new current one and published to its users (the apiserver
//! client, the kubelet API's TLS) through a [`tokio::sync::watch`] channel.

use super::csr::{request_certificate, CertificateRequest, CsrApi, ROTATION_WAIT};
use super::pair::KeyedCertificate;
use super::store::PairStore;
use super::template::{CertificateKind, Template};
use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The current pair as its users see it (`None`: none yet).
pub type CurrentCertificate = watch::Receiver<Option<Arc<KeyedCertificate>>>;

/// When to renew a certificate valid from `not_before` to `not_after`: after
/// `0.7 + 0.2 × jitter` of its lifetime, `jitter` in `[0, 1)` (upstream's
/// `wait.Jitter(total, 0.2) - 0.3 × total`), so that nodes made together spread out.
pub fn rotation_deadline(
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
    jitter: f64,
) -> DateTime<Utc> {
    let total = (not_after - not_before).num_milliseconds().max(0) as f64;
    let offset = total * (0.7 + 0.2 * jitter.clamp(0.0, 1.0));
    not_before + chrono::Duration::milliseconds(offset.round() as i64)
}

/// Whether `current` still answers `template` (same subject; holds every requested name
/// and organization, as upstream's `certSatisfiesTemplate` — extra names do not matter).
pub fn satisfies(current: &KeyedCertificate, template: &Template) -> bool {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(current.tls.cert[0].as_ref()) else {
        return false;
    };
    if current.common_name != template.common_name {
        return false;
    }
    let orgs: Vec<&str> = cert
        .subject()
        .iter_organization()
        .filter_map(|o| o.as_str().ok())
        .collect();
    let (mut dns, mut ips) = (Vec::new(), Vec::new());
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                x509_parser::extensions::GeneralName::DNSName(d) => dns.push(d.to_string()),
                x509_parser::extensions::GeneralName::IPAddress(b) => {
                    let ip = match b.len() {
                        4 => <[u8; 4]>::try_from(*b).ok().map(std::net::IpAddr::from),
                        16 => <[u8; 16]>::try_from(*b).ok().map(std::net::IpAddr::from),
                        _ => None,
                    };
                    ips.extend(ip);
                }
                _ => {}
            }
        }
    }
    template
        .organization
        .iter()
        .all(|o| orgs.contains(&o.as_str()))
        && template.dns_names.iter().all(|d| dns.contains(d))
        && template.ips.iter().all(|ip| ips.contains(ip))
}

/// Retries after a failed rotation: 2 s doubling for five tries, then every 32 s.
pub fn retry_delay(failures: u32) -> Duration {
    Duration::from_secs(2u64 << failures.min(4))
}

/// Renews one kind of certificate for as long as the kubelet runs.
pub struct Rotator {
    /// Client or serving.
    pub kind: CertificateKind,
    /// What to ask for.
    pub template: Template,
    /// Where pairs are kept.
    pub store: PairStore,
    /// Publishes each new pair.
    pub current: watch::Sender<Option<Arc<KeyedCertificate>>>,
    /// Renew at once instead of at the current pair's deadline (upstream's forceRotation,
    /// for a pair that came embedded in the kubeconfig).
    pub rotate_now: bool,
}

impl Rotator {
    /// A rotator starting from the pair in `store` (if any) and a receiver of its pairs.
    pub fn new(
        kind: CertificateKind,
        template: Template,
        store: PairStore,
    ) -> Result<(Self, CurrentCertificate)> {
        let initial = store.current()?.map(Arc::new);
        let (current, rx) = watch::channel(initial);
        Ok((
            Rotator {
                kind,
                template,
                store,
                current,
                rotate_now: false,
            },
            rx,
        ))
    }

    /// When the current certificate is due: now if there is none or it no longer fits
    /// the template.
    fn deadline(&self, jitter: f64) -> DateTime<Utc> {
        match self.current.borrow().as_ref() {
            Some(c) if satisfies(c, &self.template) => {
                rotation_deadline(c.not_before, c.not_after, jitter)
            }
            _ => Utc::now(),
        }
    }

    /// Requests, stores and publishes one new pair.
    pub async fn rotate<C: CsrApi>(&self, api: &C) -> Result<Arc<KeyedCertificate>> {
        let key = rcgen::KeyPair::generate().context("generate a private key")?;
        let request = CertificateRequest {
            kind: self.kind,
            template: &self.template,
            digested_name: false,
            expiration_seconds: None,
            wait: ROTATION_WAIT,
        };
        let cert = request_certificate(api, &request, &key).await?;
        let pair = KeyedCertificate::from_parts(
            &cert,
            key.serialize_pem().as_bytes(),
            "the issued certificate",
        )?;
        let file = self.store.update(&pair)?;
        tracing::info!(kind = ?self.kind, file = %file.display(), expiration = %pair.not_after, "Certificate rotated");
        let pair = Arc::new(pair);
        self.current.send_replace(Some(pair.clone()));
        Ok(pair)
    }

    /// Sleeps until each deadline and rotates, retrying failures, until `stop`.
    pub async fn run<C: CsrApi>(mut self, api: C, stop: CancellationToken) {
        loop {
            let deadline = if std::mem::take(&mut self.rotate_now) {
                Utc::now()
            } else {
                self.deadline(rand::random::<f64>())
            };
            let wait = (deadline - Utc::now()).to_std().unwrap_or_default();
            tracing::info!(kind = ?self.kind, %deadline, "Waiting for next certificate rotation");
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            let mut failures = 0;
            loop {
                let attempt = tokio::select! {
                    _ = stop.cancelled() => return,
                    r = self.rotate(&api) => r,
                };
                match attempt {
                    Ok(_) => break,
                    Err(e) => {
                        super::metrics::count_renew_error(self.kind);
                        tracing::warn!(kind = ?self.kind, error = %format!("{e:#}"), "Failed to rotate the certificate");
                        tokio::select! {
                            _ = stop.cancelled() => return,
                            _ = tokio::time::sleep(retry_delay(failures)) => {}
                        }
                        failures += 1;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certificate::csr::tests::FakeCsrApi;
    use crate::certificate::pair::tests::pair;
    use crate::certificate::template::client_template;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap()
    }

    #[test]
    fn deadline_is_70_to_90_percent_into_the_lifetime() {
        assert_eq!(rotation_deadline(at(0), at(1000), 0.0), at(700));
        assert_eq!(rotation_deadline(at(0), at(1000), 0.5), at(800));
        let last = rotation_deadline(at(0), at(1000), 0.999_999);
        assert!(last > at(899) && last <= at(900), "{last}");
        // A year-long certificate issued with upstream's 5 minutes of backdating.
        let year = 365 * 24 * 3600;
        let d = rotation_deadline(at(-300), at(year - 300), 0.25);
        assert_eq!(d, at(-300 + year * 75 / 100));
    }

    #[test]
    fn retries_back_off_to_32_seconds() {
        let delays: Vec<u64> = (0..7).map(|n| retry_delay(n).as_secs()).collect();
        assert_eq!(delays, [2, 4, 8, 16, 32, 32, 32]);
    }

    /// A CA issuing real certificates for the requests the fake API receives.
    fn ca_issuing(lifetime: chrono::Duration) -> FakeCsrApi {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(vec![]).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        drop(ca);
        FakeCsrApi::issuing(move |csr| {
            let req = rcgen::CertificateSigningRequestParams::from_pem(
                std::str::from_utf8(&csr.spec.request.0).unwrap(),
            )
            .unwrap();
            let mut params = req.params;
            params.not_before = rcgen::date_time_ymd(2000, 1, 1)
                + std::time::Duration::from_secs((Utc::now().timestamp() - 946_684_800) as u64);
            params.not_after =
                params.not_before + std::time::Duration::from_secs(lifetime.num_seconds() as u64);
            params
                .signed_by(&req.public_key, &issuer)
                .unwrap()
                .pem()
                .into_bytes()
        })
    }

    #[tokio::test]
    async fn rotation_stores_a_new_pair_and_publishes_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = PairStore::new(dir.path(), CertificateKind::Client);
        let (c, k) = pair(
            "system:node:n1",
            Utc::now() - chrono::Duration::hours(1),
            Utc::now() + chrono::Duration::hours(1),
        );
        store
            .update(&KeyedCertificate::from_parts(c.as_bytes(), k.as_bytes(), "t").unwrap())
            .unwrap();
        let (rotator, mut rx) = Rotator::new(
            CertificateKind::Client,
            client_template("n1"),
            store.clone(),
        )
        .unwrap();
        let first = rx.borrow_and_update().clone().unwrap();
        assert!(
            !satisfies(&first, &rotator.template),
            "no system:nodes organization: rotate now"
        );
        assert!(rotator.deadline(0.0) <= Utc::now());
        let api = ca_issuing(chrono::Duration::hours(2));
        let stop = CancellationToken::new();
        let task = tokio::spawn(rotator.run(api, stop.clone()));
        tokio::time::timeout(Duration::from_secs(10), rx.changed())
            .await
            .unwrap()
            .unwrap();
        let second = rx.borrow().clone().unwrap();
        assert_eq!(second.common_name, "system:node:n1");
        assert_ne!(second.key_pem, first.key_pem, "a new key each rotation");
        assert!(satisfies(&second, &client_template("n1")));
        assert_eq!(
            store.current().unwrap().unwrap().cert_pem,
            second.cert_pem,
            "stored and linked"
        );
        // The next deadline is 70–90% into the new certificate's two hours: no second
        // rotation now.
        assert!(
            tokio::time::timeout(Duration::from_millis(300), rx.changed())
                .await
                .is_err()
        );
        stop.cancel();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn rotate_now_renews_a_valid_pair_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = PairStore::new(dir.path(), CertificateKind::Client);
        let api = ca_issuing(chrono::Duration::hours(2));
        let (first, _) = Rotator::new(
            CertificateKind::Client,
            client_template("n1"),
            store.clone(),
        )
        .unwrap();
        let valid = first.rotate(&api).await.unwrap();
        assert!(satisfies(&valid, &first.template));
        let (mut rotator, mut rx) =
            Rotator::new(CertificateKind::Client, client_template("n1"), store).unwrap();
        rx.borrow_and_update();
        rotator.rotate_now = true;
        let stop = CancellationToken::new();
        let task = tokio::spawn(rotator.run(api, stop.clone()));
        tokio::time::timeout(Duration::from_secs(10), rx.changed())
            .await
            .expect("rotated at once, not at the deadline")
            .unwrap();
        assert_ne!(rx.borrow().as_ref().unwrap().cert_pem, valid.cert_pem);
        stop.cancel();
        task.await.unwrap();
    }
}
