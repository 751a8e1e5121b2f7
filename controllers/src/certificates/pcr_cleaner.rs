//! podcertificaterequest-cleaner-controller (upstream's `PCRCleanerController`,
//! `pkg/controller/certificates/cleaner/pcrcleaner.go`, gate PodCertificateRequest): every
//! five minutes, deletes each PodCertificateRequest created more than 15 minutes ago (every
//! flow is expected to finish faster), with a UID precondition so a recreated request of the
//! same name survives.
//!
//! k8s-openapi 0.29 types PodCertificateRequests as certificates.k8s.io/v1beta1 (the
//! released 1.35 API); the v1.35-dev apiserver here serves them as v1alpha1 only, which is
//! what upstream's controller of this tree reads, so [`PodCertificateRequest`] is a minimal
//! v1alpha1 type holding what the cleaner reads (metadata; the spec kept as JSON).

use std::time::Duration;

use futures::future::FutureExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, Preconditions};
use kube::Api;
use serde::{Deserialize, Serialize};

use crate::machinery::context::ControllerContext;
use crate::machinery::informers::handlers as informer;
use crate::machinery::ControllerDescriptor;
use api_helpers::errors;

/// Upstream's age past which a request is deleted.
pub const THRESHOLD: Duration = Duration::from_secs(15 * 60);
/// Upstream's polling interval.
pub const POLLING_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// The identity it acts as with `--use-service-account-credentials` (upstream's RBAC role
/// `system:controller:podcertificaterequestcleaner`).
pub const SERVICE_ACCOUNT: &str = "podcertificaterequestcleaner";

/// A certificates.k8s.io/v1alpha1 PodCertificateRequest, as far as the cleaner reads it.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct PodCertificateRequest {
    /// Standard object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The request (signer, pod, node, public key, proof of possession), not interpreted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<serde_json::Value>,
    /// The signer's answer, not interpreted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<serde_json::Value>,
}

impl k8s_openapi::Resource for PodCertificateRequest {
    const API_VERSION: &'static str = "certificates.k8s.io/v1alpha1";
    const GROUP: &'static str = "certificates.k8s.io";
    const KIND: &'static str = "PodCertificateRequest";
    const VERSION: &'static str = "v1alpha1";
    const URL_PATH_SEGMENT: &'static str = "podcertificaterequests";
    type Scope = k8s_openapi::NamespaceResourceScope;
}

impl k8s_openapi::Metadata for PodCertificateRequest {
    type Ty = ObjectMeta;
    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// The cleaner with its thresholds (upstream's constructor arguments).
#[derive(Debug, Clone, Copy)]
pub struct PcrCleaner {
    /// Requests created longer ago than this are deleted.
    pub threshold: Duration,
    /// How often every request is looked at.
    pub polling_interval: Duration,
}

impl Default for PcrCleaner {
    fn default() -> Self {
        PcrCleaner {
            threshold: THRESHOLD,
            polling_interval: POLLING_INTERVAL,
        }
    }
}

/// Registry entry (upstream's thresholds).
pub fn descriptor() -> ControllerDescriptor {
    ControllerDescriptor {
        name: "podcertificaterequest-cleaner-controller",
        enabled_by_default: true,
        start: |ctx| PcrCleaner::default().run(ctx).boxed(),
    }
}

impl PcrCleaner {
    /// Whether `pcr` is to be deleted at `now`: created at least `threshold` ago (upstream
    /// keeps it while `now` is before creation + threshold). One without a creation
    /// timestamp is kept.
    pub fn expired(&self, pcr: &PodCertificateRequest, now: jiff::Timestamp) -> bool {
        let Some(created) = &pcr.metadata.creation_timestamp else {
            return false;
        };
        let Ok(threshold) = jiff::SignedDuration::try_from(self.threshold) else {
            return false;
        };
        created
            .0
            .checked_add(threshold)
            .is_ok_and(|deadline| now >= deadline)
    }

    /// Runs until `ctx.shutdown`: every `polling_interval`, deletes the expired requests of
    /// the shared informer's cache.
    pub async fn run(self, ctx: ControllerContext) -> anyhow::Result<()> {
        let store = ctx.informers().informer::<PodCertificateRequest>();
        let s = store.clone();
        informer::wait_synced(&ctx.shutdown, async move { s.wait_synced().await }).await?;
        let client = ctx.client_for(SERVICE_ACCOUNT).await?;
        tracing::info!("Starting PodCertificateRequest cleaner controller");
        loop {
            let now = jiff::Timestamp::now();
            for pcr in store.list().iter().filter(|p| self.expired(p, now)) {
                if let Err(e) = delete(&client, pcr).await {
                    tracing::error!(error = %format!("{e:#}"), "Error while attempting to clean PodCertificateRequest");
                }
            }
            tokio::select! {
                _ = ctx.shutdown.cancelled() => {
                    tracing::info!("Shutting down PodCertificateRequest cleaner controller");
                    return Ok(());
                }
                _ = tokio::time::sleep(self.polling_interval) => {}
            }
        }
    }
}

/// Deletes `pcr` if it is still the same object (UID precondition); gone already is fine.
async fn delete(client: &kube::Client, pcr: &PodCertificateRequest) -> anyhow::Result<()> {
    let ns = pcr.metadata.namespace.as_deref().unwrap_or_default();
    let name = pcr.metadata.name.as_deref().unwrap_or_default();
    let api: Api<PodCertificateRequest> = Api::namespaced(client.clone(), ns);
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: pcr.metadata.uid.clone(),
            resource_version: None,
        }),
        ..Default::default()
    };
    errors::ignore_not_found(api.delete(name, &params).await).map_err(|e| {
        anyhow::anyhow!("unable to delete PodCertificateRequest \"{ns}/{name}\": {e}")
    })?;
    tracing::info!(pcr = %format!("{ns}/{name}"), "Deleted PodCertificateRequest past its age threshold");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn created(at: Option<jiff::Timestamp>) -> PodCertificateRequest {
        let mut p = PodCertificateRequest::default();
        p.metadata.creation_timestamp = at.map(Time);
        p
    }

    #[test]
    fn upstream_thresholds() {
        let c = PcrCleaner::default();
        assert_eq!(c.threshold, Duration::from_secs(900));
        assert_eq!(c.polling_interval, Duration::from_secs(300));
    }

    #[test]
    fn deleted_once_the_threshold_has_passed() {
        let c = PcrCleaner::default();
        let now: jiff::Timestamp = "2025-06-01T12:00:00Z".parse().unwrap();
        let ago = |s: i64| Some(now - jiff::SignedDuration::from_secs(s));
        assert!(!c.expired(&created(ago(14 * 60 + 59)), now));
        assert!(c.expired(&created(ago(15 * 60)), now));
        assert!(c.expired(&created(ago(3600)), now));
        // Created "in the future" (clock skew): kept.
        assert!(!c.expired(&created(ago(-60)), now));
        assert!(!c.expired(&created(None), now));
        let short = PcrCleaner {
            threshold: Duration::from_secs(5),
            polling_interval: Duration::from_secs(1),
        };
        assert!(short.expired(&created(ago(5)), now));
        assert!(!short.expired(&created(ago(4)), now));
    }

    #[test]
    fn v1alpha1_objects_parse() {
        let p: PodCertificateRequest = serde_json::from_value(serde_json::json!({
            "apiVersion": "certificates.k8s.io/v1alpha1", "kind": "PodCertificateRequest",
            "metadata": {"name": "r", "namespace": "default", "uid": "u1",
                "creationTimestamp": "2025-06-01T12:00:00Z"},
            "spec": {"signerName": "example.com/s", "podName": "p"}
        }))
        .unwrap();
        assert_eq!(p.metadata.uid.as_deref(), Some("u1"));
        assert_eq!(
            <PodCertificateRequest as k8s_openapi::Resource>::URL_PATH_SEGMENT,
            "podcertificaterequests"
        );
    }
}
