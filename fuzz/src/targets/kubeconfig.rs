//! Kubeconfig files: the kubelet's check of an existing `--kubeconfig` before TLS
//! bootstrap (its current context's client certificate, unexpired?).

use chrono::{DateTime, Utc};
use kube::config::Kubeconfig;
use kubelet::certificate::bootstrap::client_certificate_pem;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

/// Parses the text as a kubeconfig and reads its client certificate as the kubelet does.
/// Files named in it are not read (the fuzzer must not open arbitrary paths).
pub fn fuzz(data: &[u8]) {
    let Ok(mut kc) = Kubeconfig::from_yaml(&crate::text(data)) else {
        return;
    };
    for named in &mut kc.auth_infos {
        if let Some(user) = named.auth_info.as_mut() {
            user.client_certificate = None;
        }
    }
    let Ok(Some(pem)) = client_certificate_pem(&kc) else {
        return;
    };
    let now = DateTime::<Utc>::from_timestamp(1_700_000_000, 0).expect("a valid instant");
    for der in CertificateDer::pem_slice_iter(&pem).flatten() {
        if let Ok((_, cert)) = x509_parser::parse_x509_certificate(&der) {
            let _ = now.timestamp() > cert.validity().not_after.timestamp();
        }
    }
}
