//! Upstream's certificate manager series on `/metrics` (pkg/kubelet/certificate and
//! cmd/kubelet/app), as kube-prometheus's kubelet certificate alerts read them:
//! `kubelet_certificate_manager_client_ttl_seconds` and
//! `kubelet_certificate_manager_server_ttl_seconds` (seconds until the current certificate
//! expires, computed at each scrape; infinity while there is none — prometheus-client
//! writes it `inf`, which Prometheus parses as upstream's `+Inf`), and the renewal error
//! counters `kubelet_certificate_manager_client_expiration_renew_errors` and
//! `kubelet_server_expiration_renew_errors`.

use super::rotation::CurrentCertificate;
use super::template::CertificateKind;
use component_base::metrics::UnsuffixedCounter;
use prometheus_client::encoding::{EncodeMetric, MetricEncoder};
use prometheus_client::metrics::MetricType;
use std::sync::OnceLock;

/// Seconds until `not_after`, truncated (negative once expired); +Inf without a
/// certificate.
pub fn ttl_seconds(
    not_after: Option<chrono::DateTime<chrono::Utc>>,
    now: chrono::DateTime<chrono::Utc>,
) -> f64 {
    match not_after {
        Some(t) => (t - now).num_seconds() as f64,
        None => f64::INFINITY,
    }
}

/// A gauge reading the current certificate's expiry when scraped.
#[derive(Debug)]
struct TtlSeconds(CurrentCertificate);

impl EncodeMetric for TtlSeconds {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let not_after = self.0.borrow().as_ref().map(|p| p.not_after);
        encoder.encode_gauge(&ttl_seconds(not_after, chrono::Utc::now()))
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Gauge
    }
}

fn renew_errors(kind: CertificateKind) -> &'static UnsuffixedCounter {
    static CLIENT: OnceLock<UnsuffixedCounter> = OnceLock::new();
    static SERVER: OnceLock<UnsuffixedCounter> = OnceLock::new();
    match kind {
        CertificateKind::Client => CLIENT.get_or_init(UnsuffixedCounter::default),
        CertificateKind::Serving => SERVER.get_or_init(UnsuffixedCounter::default),
    }
}

/// Counts one failed renewal of `kind`.
pub fn count_renew_error(kind: CertificateKind) {
    renew_errors(kind).inc();
}

/// Registers the series of the certificates the kubelet rotates: the client one's when
/// `client` is given (rotateCertificates), the serving one's when `serving` is
/// (serverTLSBootstrap), as upstream registers them with their managers.
pub fn register(
    metrics: &component_base::metrics::Metrics,
    client: Option<CurrentCertificate>,
    serving: Option<CurrentCertificate>,
) {
    if let Some(current) = client {
        metrics.register(
            "kubelet_certificate_manager_client_ttl_seconds",
            "Gauge of the TTL (time-to-live) of the Kubelet's client certificate. The value is in seconds until certificate expiry (negative if already expired). If client certificate is invalid or unused, the value will be +INF.",
            TtlSeconds(current),
        );
        metrics.register(
            "kubelet_certificate_manager_client_expiration_renew_errors",
            "Counter of certificate renewal errors.",
            renew_errors(CertificateKind::Client).clone(),
        );
    }
    if let Some(current) = serving {
        metrics.register(
            "kubelet_certificate_manager_server_ttl_seconds",
            "Gauge of the shortest TTL (time-to-live) of the Kubelet's serving certificate. The value is in seconds until certificate expiry (negative if already expired). If serving certificate is invalid or unused, the value will be +INF.",
            TtlSeconds(current),
        );
        metrics.register(
            "kubelet_server_expiration_renew_errors",
            "Counter of certificate renewal errors.",
            renew_errors(CertificateKind::Serving).clone(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_counts_down_and_is_infinite_without_a_certificate() {
        let now = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let later = now + chrono::Duration::milliseconds(90_900);
        assert_eq!(ttl_seconds(Some(later), now), 90.0);
        assert_eq!(ttl_seconds(Some(now), later), -90.0);
        assert_eq!(ttl_seconds(None, now), f64::INFINITY);
    }

    #[test]
    fn series_are_rendered_with_upstreams_names() {
        let metrics = component_base::metrics::Metrics::new();
        let (_tx, rx) = tokio::sync::watch::channel(None);
        register(&metrics, Some(rx.clone()), Some(rx));
        count_renew_error(CertificateKind::Serving);
        let text = metrics.render();
        assert!(
            text.contains("kubelet_certificate_manager_client_ttl_seconds inf\n"),
            "{text}"
        );
        assert!(
            text.contains("kubelet_certificate_manager_server_ttl_seconds inf\n"),
            "{text}"
        );
        assert!(
            text.contains("kubelet_certificate_manager_client_expiration_renew_errors "),
            "{text}"
        );
        let errors: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("kubelet_server_expiration_renew_errors "))
            .and_then(|v| v.trim().parse().ok())
            .expect("the serving renew error counter");
        assert!(errors >= 1.0, "{text}");
        assert!(!text.contains("renew_errors_total"), "{text}");
    }
}
