//! Leader election on `coordination.k8s.io/v1` Leases, with client-go's semantics: candidates
//! poll every retry period (jittered), the leader renews every retry period and gives up when
//! it cannot renew within the renew deadline, and a leader that shuts down releases the Lease
//! so another candidate takes over at once. kube-rs has none, so this is the one for ferrokube.

mod config;
mod elector;
mod record;

pub use config::LeaderElectionConfiguration;
pub use elector::{LeaderElector, LeaderState, LeadershipLost};
pub use record::{next_attempt, observe, released, Attempt, Observed};

/// Upstream's identity for a candidate: `<hostname>_<uuid>`.
pub fn default_identity() -> String {
    format!("{}_{}", crate::hostname::hostname(), random_uuid())
}

/// A random (version 4) UUID in its usual text form.
pub fn random_uuid() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Runs `work` as a component's main loop: under leader election when `config.leader_elect`
/// (registering the `leader_election_master_status` metric and the `leaderElection` health
/// check on `/healthz` and `/livez`), or directly otherwise. `work` gets a token cancelled
/// on shutdown or when leadership is lost; a lost lease comes back as [`LeadershipLost`],
/// on which upstream's components exit non-zero.
pub async fn lead_or_run<F, Fut>(
    client: kube::Client,
    config: &LeaderElectionConfiguration,
    health: &crate::server::Health,
    metrics: &crate::metrics::Metrics,
    shutdown: tokio_util::sync::CancellationToken,
    work: F,
) -> anyhow::Result<()>
where
    F: FnOnce(tokio_util::sync::CancellationToken) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    if !config.leader_elect {
        return work(shutdown).await;
    }
    config.validate().map_err(|e| anyhow::anyhow!(e))?;
    let elector = LeaderElector::new(client, config.clone(), default_identity());
    elector.register_metrics(metrics);
    let check = elector.health_check(std::time::Duration::from_secs(20));
    health.healthz.add("leaderElection", check.clone());
    health.livez.add("leaderElection", check);
    elector.run(shutdown, work).await
}
