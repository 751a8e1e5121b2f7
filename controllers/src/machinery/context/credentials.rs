//! `--use-service-account-credentials`: each controller talks to the apiserver as its own
//! service account in kube-system, so RBAC's `system:controller:*` roles apply, as
//! upstream's SAControllerClientBuilder does. Tokens come from the TokenRequest API, are
//! kept in files kube-rs re-reads every minute, and are refreshed well before they expire.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{ObjectMeta, PostParams};
use kube::config::AuthInfo;
use kube::Api;
use std::sync::Arc;
use tokio::sync::{Mutex, OnceCell};
use tokio_util::sync::CancellationToken;

/// Namespace of the controllers' service accounts.
pub const NAMESPACE: &str = "kube-system";
/// Lifetime requested for each token.
const TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// Where controllers' clients come from.
pub enum Credentials {
    /// Every controller uses the manager's client.
    Shared,
    /// Each controller gets a client with its service account's token.
    ServiceAccounts(Box<ServiceAccountClients>),
}

/// Clients per service account, built from the manager's config with the token swapped in.
pub struct ServiceAccountClients {
    base: kube::Config,
    qps: f32,
    burst: u32,
    dir: tempfile::TempDir,
    /// The clients built, by account and rate.
    clients: Mutex<HashMap<String, Arc<OnceCell<kube::Client>>>>,
    /// Each service account's token file, requested once and kept fresh.
    tokens: Mutex<HashMap<String, Arc<OnceCell<PathBuf>>>>,
}

impl Credentials {
    /// Per-service-account clients derived from `base` (the manager's resolved config).
    pub fn service_accounts(base: kube::Config, qps: f32, burst: u32) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("kcm-tokens-")
            .tempdir()
            .context("token directory")?;
        Ok(Credentials::ServiceAccounts(Box::new(
            ServiceAccountClients {
                base,
                qps,
                burst,
                dir,
                clients: Mutex::default(),
                tokens: Mutex::default(),
            },
        )))
    }

    /// The client for `service_account` (see [`super::ControllerContext::client_for`]).
    pub async fn client_for(
        &self,
        service_account: &str,
        manager: &kube::Client,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<kube::Client> {
        match self {
            Credentials::Shared => Ok(manager.clone()),
            Credentials::ServiceAccounts(sa) => {
                sa.client_for(service_account, manager, shutdown, Rate::MANAGER)
                    .await
            }
        }
    }
}

/// A controller's client rate as multiples of `--kube-api-qps` and `--kube-api-burst`
/// (upstream's storage-version-migrator raises its own: QPS ×20, burst ×100).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    /// Multiplies `--kube-api-qps`.
    pub qps_factor: f32,
    /// Multiplies `--kube-api-burst`.
    pub burst_factor: u32,
}

impl Rate {
    /// The manager's own limits.
    pub const MANAGER: Rate = Rate {
        qps_factor: 1.0,
        burst_factor: 1,
    };

    /// `(qps, burst)` scaled; a negative (unlimited) or zero (default) qps keeps its meaning.
    pub fn apply(self, qps: f32, burst: u32) -> (f32, u32) {
        (
            qps * self.qps_factor,
            burst.saturating_mul(self.burst_factor),
        )
    }
}

impl ServiceAccountClients {
    /// The client for `name` at `rate`, built once; its token is requested once per
    /// account, and controllers asking for different accounts get their tokens concurrently (kubeadm runs every controller this way, and one token
    /// request after another held up the start of the last controllers).
    pub(super) async fn client_for(
        &self,
        name: &str,
        manager: &kube::Client,
        shutdown: &CancellationToken,
        rate: Rate,
    ) -> anyhow::Result<kube::Client> {
        let key = format!("{name}@{}x{}", rate.qps_factor, rate.burst_factor);
        let cell = self.clients.lock().await.entry(key).or_default().clone();
        cell.get_or_try_init(|| self.build(name, manager, shutdown, rate))
            .await
            .cloned()
    }

    async fn build(
        &self,
        name: &str,
        manager: &kube::Client,
        shutdown: &CancellationToken,
        rate: Rate,
    ) -> anyhow::Result<kube::Client> {
        let token = self
            .tokens
            .lock()
            .await
            .entry(name.to_string())
            .or_default()
            .clone();
        let file = token
            .get_or_try_init(|| self.issue(name, manager, shutdown))
            .await?
            .clone();
        let mut cfg = self.base.clone();
        cfg.auth_info = AuthInfo {
            token_file: Some(file.display().to_string()),
            ..Default::default()
        };
        if let Ok(ua) = http::HeaderValue::from_str(&format!(
            "{}/{name}",
            component_base::version::user_agent("kube-controller-manager")
        )) {
            cfg.headers.retain(|(k, _)| k != http::header::USER_AGENT);
            cfg.headers.push((http::header::USER_AGENT, ua));
        }
        let (qps, burst) = rate.apply(self.qps, self.burst);
        Ok(component_base::client::client_from_config(cfg, qps, burst)?)
    }

    /// Requests the first token of `name` into its file and keeps it fresh.
    async fn issue(
        &self,
        name: &str,
        manager: &kube::Client,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<PathBuf> {
        let file = self.dir.path().join(name);
        // Retried until it succeeds: an API server restarting while the controllers start
        // delays them rather than ending the manager.
        component_base::retry::until_ok(
            shutdown,
            || refresh(manager, name, &file),
            |attempt, e| {
                tracing::warn!(service_account = %name, attempt, error = %format!("{e:#}"), "Token request failed; retrying")
            },
        )
        .await
        .with_context(|| {
            format!("token for service account {NAMESPACE}/{name}: shut down before one was issued")
        })?;
        tokio::spawn(keep_fresh(
            manager.clone(),
            name.to_string(),
            file.clone(),
            shutdown.clone(),
        ));
        Ok(file)
    }
}

/// Ensures the service account exists and writes a fresh token for it to `file`.
async fn refresh(manager: &kube::Client, name: &str, file: &PathBuf) -> anyhow::Result<()> {
    let api: Api<ServiceAccount> = Api::namespaced(manager.clone(), NAMESPACE);
    if api.get_opt(name).await?.is_none() {
        let sa = ServiceAccount {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            ..Default::default()
        };
        match api.create(&PostParams::default(), &sa).await {
            Ok(_) => {}
            Err(e) if api_helpers::errors::is_conflict(&e) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![],
            expiration_seconds: Some(TOKEN_LIFETIME.as_secs() as i64),
            ..Default::default()
        },
        ..Default::default()
    };
    let issued = api
        .create_token_request(name, &PostParams::default(), &request)
        .await?;
    let token = issued
        .status
        .map(|s| s.token)
        .filter(|t| !t.is_empty())
        .context("TokenRequest returned no token")?;
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, token)?;
    std::fs::rename(&tmp, file)?;
    Ok(())
}

/// Refreshes the token at 70% of its lifetime (retrying every 10 s on failure) until shutdown.
async fn keep_fresh(
    manager: kube::Client,
    name: String,
    file: PathBuf,
    shutdown: CancellationToken,
) {
    let mut wait = TOKEN_LIFETIME.mul_f32(0.7);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        wait = match refresh(&manager, &name, &file).await {
            Ok(()) => TOKEN_LIFETIME.mul_f32(0.7),
            Err(e) => {
                tracing::warn!(service_account = %name, error = %format!("{e:#}"), "Token refresh failed");
                Duration::from_secs(10)
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::Rate;

    #[test]
    fn rate_scales_qps_and_burst_keeping_unlimited_and_default() {
        let svm = Rate {
            qps_factor: 20.0,
            burst_factor: 100,
        };
        assert_eq!(svm.apply(20.0, 30), (400.0, 3000));
        assert_eq!(Rate::MANAGER.apply(20.0, 30), (20.0, 30));
        // -1 (unlimited) stays unlimited, 0 (client-go's default) stays the default.
        assert!(svm.apply(-1.0, 30).0 < 0.0);
        assert_eq!(svm.apply(0.0, 0), (0.0, 0));
        assert_eq!(svm.apply(1.0, u32::MAX).1, u32::MAX);
    }
}
