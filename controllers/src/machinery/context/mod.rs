//! What every controller is started with.

pub mod credentials;
pub mod metrics;

use std::sync::Arc;

use component_base::events::EventRecorder;
use tokio_util::sync::CancellationToken;

use crate::machinery::informers::InformerFactory;
use crate::machinery::options::KcmOptions;
pub use credentials::{Credentials, Rate};
pub use metrics::ControllerMetrics;

/// Shared handles a controller's `start` function receives. Cheap to clone.
#[derive(Clone)]
pub struct ControllerContext {
    /// Client for the kube-apiserver with the manager's own identity (already rate-limited
    /// by `--kube-api-qps/-burst`). Controllers should prefer [`ControllerContext::client_for`].
    pub client: kube::Client,
    /// The parsed command line.
    pub options: Arc<KcmOptions>,
    /// Cancelled on SIGTERM or when leadership is lost: controllers stop at once.
    pub shutdown: CancellationToken,
    /// Per-controller identities (`--use-service-account-credentials`).
    pub credentials: Arc<Credentials>,
    /// The manager's metrics (served on /metrics): work queues and controllers register here.
    pub metrics: ControllerMetrics,
    /// The shared informers every controller reads from (upstream's
    /// `ControllerContext.InformerFactory`), over the manager's own client (upstream's
    /// `shared-informers` client is the root one too) and stopped with `shutdown`: one per
    /// context, so a term of leadership starts its own watches.
    pub informer_factory: Arc<InformerFactory>,
}

impl ControllerContext {
    /// The shared informers: one watch per resource type for every controller of the
    /// context.
    pub fn informers(&self) -> &InformerFactory {
        &self.informer_factory
    }

    /// A client acting as the controller's service account `kube-system/<name>` (upstream's
    /// names, e.g. `replicaset-controller`, `generic-garbage-collector`) when
    /// `--use-service-account-credentials` is set, else the manager's own client.
    pub async fn client_for(&self, service_account: &str) -> anyhow::Result<kube::Client> {
        self.credentials
            .client_for(service_account, &self.client, &self.shutdown)
            .await
    }

    /// Like [`ControllerContext::client_for`], with the client's rate limits at `rate`
    /// times `--kube-api-qps`/`--kube-api-burst` (a client of its own, as upstream builds
    /// for controllers that raise their limits).
    pub async fn client_for_rate(
        &self,
        service_account: &str,
        rate: Rate,
    ) -> anyhow::Result<kube::Client> {
        match &*self.credentials {
            _ if rate == Rate::MANAGER => self.client_for(service_account).await,
            Credentials::ServiceAccounts(accounts) => {
                accounts
                    .client_for(service_account, &self.client, &self.shutdown, rate)
                    .await
            }
            Credentials::Shared => {
                let options = self.options.client_options();
                let config = component_base::client::config(&options).await?;
                let (qps, burst) = rate.apply(options.qps, options.burst);
                Ok(component_base::client::client_from_config(
                    config, qps, burst,
                )?)
            }
        }
    }
}

/// An event recorder for `controller` writing with `client`, its instance named after this
/// host as upstream's (`<controller>-<hostname>`), with client-go's spam filter as
/// upstream's recorders (a burst of 25 events per object, then one per 5 minutes).
pub fn event_recorder(client: kube::Client, controller: &str) -> EventRecorder {
    let host = component_base::hostname::hostname();
    EventRecorder::new(client, controller, &format!("{controller}-{host}")).with_spam_filter()
}
