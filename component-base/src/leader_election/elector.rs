//! The candidate loop around [`super::record`]: read, decide, write, and run the leader's
//! work only while the Lease is held.

use super::config::LeaderElectionConfiguration;
use super::record::{next_attempt, observe, released, Attempt, Observed};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{ObjectMeta, PostParams};
use kube::Api;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Returned when a leader could not renew within its renew deadline: its work has been
/// cancelled, and upstream's components exit on this.
#[derive(Debug, thiserror::Error)]
#[error("leader election lost: could not renew Lease {namespace}/{name} within {deadline:?}")]
pub struct LeadershipLost {
    /// The Lease's namespace.
    pub namespace: String,
    /// The Lease's name.
    pub name: String,
    /// The renew deadline that passed.
    pub deadline: Duration,
}

/// What the elector knows now, for health checks.
#[derive(Debug, Clone, Default)]
pub struct LeaderState {
    /// Whether this candidate currently leads.
    pub is_leader: bool,
    /// When the Lease was last renewed by this candidate.
    pub last_renew: Option<Instant>,
}

/// One candidate for one Lease.
pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaderElectionConfiguration,
    identity: String,
    observed: Option<Observed>,
    resource_version: Option<String>,
    state: Arc<Mutex<LeaderState>>,
    gauge: Family<Vec<(String, String)>, Gauge>,
}

impl LeaderElector {
    /// A candidate named `identity` for the Lease the config names.
    pub fn new(
        client: kube::Client,
        config: LeaderElectionConfiguration,
        identity: String,
    ) -> Self {
        let api = Api::namespaced(client, &config.resource_namespace);
        LeaderElector {
            api,
            config,
            identity,
            observed: None,
            resource_version: None,
            state: Arc::default(),
            gauge: Family::default(),
        }
    }

    /// Registers `leader_election_master_status{name}` (1 while leading).
    pub fn register_metrics(&self, metrics: &crate::metrics::Metrics) {
        metrics.register(
            "leader_election_master_status",
            "Gauge of if the reporting system is master of the relevant lease, 0 indicates backup, 1 indicates master. 'name' is the string used to identify the lease. Please make sure to group by name.",
            self.gauge.clone(),
        );
    }

    /// This candidate's identity.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// A `leaderElection` health check as upstream's HealthzAdaptor: failing when this
    /// candidate leads but has not renewed for longer than the lease duration plus `timeout`.
    pub fn health_check(
        &self,
        timeout: Duration,
    ) -> impl Fn() -> Result<(), String> + Send + Sync + Clone + 'static {
        let state = self.state.clone();
        let limit = self.config.lease_duration.0 + timeout;
        move || {
            let s = state.lock().unwrap_or_else(|p| p.into_inner()).clone();
            match (s.is_leader, s.last_renew) {
                (true, Some(at)) if at.elapsed() > limit => Err(format!(
                    "failed election to renew leadership on lease within {limit:?}"
                )),
                _ => Ok(()),
            }
        }
    }

    fn set_leader(&self, leading: bool) {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_leader = leading;
        self.gauge
            .get_or_create(&vec![("name".into(), self.config.resource_name.clone())])
            .set(leading as i64);
    }

    /// One try: read, decide, write. `Ok(true)` when this candidate holds the Lease after it.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let now = Instant::now();
        let wall = k8s_openapi::jiff::Timestamp::now();
        let current = self.api.get_opt(&self.config.resource_name).await?;
        if let Some(lease) = &current {
            self.observed = Some(observe(
                self.observed.take(),
                &lease.spec.clone().unwrap_or_default(),
                now,
            ));
            self.resource_version = lease.metadata.resource_version.clone();
        } else {
            self.observed = None;
        }
        let attempt = next_attempt(
            self.observed.as_ref(),
            &self.identity,
            self.config.lease_duration.0,
            now,
            wall,
        );
        let written = match attempt {
            Attempt::HeldBy(holder) => {
                tracing::debug!(lease = %self.config.resource_name, %holder, "Lease is held by another candidate");
                return Ok(false);
            }
            Attempt::Create(spec) => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.config.resource_name.clone()),
                        namespace: Some(self.config.resource_namespace.clone()),
                        ..Default::default()
                    },
                    spec: Some(spec),
                };
                self.api.create(&PostParams::default(), &lease).await
            }
            Attempt::Update(spec) => self.write(spec).await,
        };
        let lease = match written {
            Ok(lease) => lease,
            Err(e) if api_helpers::errors::is_conflict(&e) => return Ok(false),
            Err(e) => return Err(e),
        };
        self.resource_version = lease.metadata.resource_version.clone();
        self.observed = Some(Observed {
            spec: lease.spec.unwrap_or_default(),
            at: now,
        });
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .last_renew = Some(now);
        Ok(true)
    }

    async fn write(
        &self,
        spec: k8s_openapi::api::coordination::v1::LeaseSpec,
    ) -> Result<Lease, kube::Error> {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.config.resource_name.clone()),
                namespace: Some(self.config.resource_namespace.clone()),
                resource_version: self.resource_version.clone(),
                ..Default::default()
            },
            spec: Some(spec),
        };
        self.api
            .replace(&self.config.resource_name, &PostParams::default(), &lease)
            .await
    }

    /// Steps down if leading: writes the released record.
    pub async fn release(&mut self) {
        let Some(observed) = &self.observed else {
            return;
        };
        if observed.spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        let spec = released(&observed.spec, k8s_openapi::jiff::Timestamp::now());
        match self.write(spec).await {
            Ok(_) => tracing::info!(lease = %self.config.resource_name, "Released leader lease"),
            Err(e) => {
                tracing::warn!(lease = %self.config.resource_name, error = %e, "Failed to release leader lease")
            }
        }
        self.set_leader(false);
    }

    /// Campaigns until leading, runs `work` with a token cancelled when leadership ends, and
    /// renews meanwhile. Returns when `shutdown` is cancelled (after cancelling and awaiting
    /// `work`, then releasing the Lease), when `work` returns (releasing too), or with
    /// [`LeadershipLost`] when renewal failed past the deadline (work cancelled at once).
    pub async fn run<F, Fut>(mut self, shutdown: CancellationToken, work: F) -> anyhow::Result<()>
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let lease = format!(
            "{}/{}",
            self.config.resource_namespace, self.config.resource_name
        );
        tracing::info!(%lease, identity = %self.identity, "Attempting to acquire leader lease");
        self.set_leader(false);
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(%lease, error = %e, "Error retrieving or writing leader lease")
                }
            }
            let jitter = 1.0 + rand::random::<f64>() * 1.2;
            let wait = self.config.retry_period.0.mul_f64(jitter);
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep(wait) => {}
            }
        }
        tracing::info!(%lease, identity = %self.identity, "Successfully acquired lease");
        self.set_leader(true);
        let leading = shutdown.child_token();
        let mut task = tokio::spawn(work(leading.clone()));
        let mut last_renew = Instant::now();
        let mut ticker = tokio::time::interval(self.config.retry_period.0);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => {
                    leading.cancel();
                    let _ = tokio::time::timeout(Duration::from_secs(30), &mut task).await;
                    self.release().await;
                    return Ok(());
                }
                done = &mut task => {
                    self.release().await;
                    return match done {
                        Ok(result) => result,
                        Err(e) => Err(anyhow::anyhow!("leader work panicked: {e}")),
                    };
                }
                _ = ticker.tick() => {
                    let renewed = tokio::time::timeout(self.config.renew_deadline.0, self.try_acquire_or_renew()).await;
                    match renewed {
                        Ok(Ok(true)) => last_renew = Instant::now(),
                        Ok(Ok(false)) => tracing::warn!(%lease, "Failed to renew lease: held by another candidate"),
                        Ok(Err(e)) => tracing::warn!(%lease, error = %e, "Failed to renew lease"),
                        Err(_) => tracing::warn!(%lease, "Timed out renewing lease"),
                    }
                    let lost = match &self.observed {
                        Some(o) => o.spec.holder_identity.as_deref() != Some(self.identity.as_str()),
                        None => false,
                    };
                    if lost || last_renew.elapsed() > self.config.renew_deadline.0 {
                        leading.cancel();
                        task.abort();
                        self.set_leader(false);
                        tracing::error!(%lease, "Leader election lost");
                        return Err(LeadershipLost {
                            namespace: self.config.resource_namespace.clone(),
                            name: self.config.resource_name.clone(),
                            deadline: self.config.renew_deadline.0,
                        }
                        .into());
                    }
                }
            }
        }
    }
}
