//! Credentials for reading components' `/metrics`, as a Prometheus scraper would have them.

use anyhow::{Context, Result};
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{
    TokenRequest, TokenRequestSpec, TokenReview, TokenReviewSpec,
};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleRef, Subject};
use kube::api::{Api, ObjectMeta, PostParams};

use crate::wait;

/// The service account created for scraping, in `default`.
pub const SCRAPER: &str = "metrics-scraper";

/// Creates (once) a ServiceAccount bound to upstream's bootstrap `system:monitoring`
/// ClusterRole (get on `/metrics`, `/healthz`, ...) and returns a fresh token for it.
pub async fn metrics_reader_token(client: &kube::Client) -> Result<String> {
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
    let account = ServiceAccount {
        metadata: ObjectMeta {
            name: Some(SCRAPER.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    ignore_conflict(accounts.create(&PostParams::default(), &account).await)?;
    let bindings: Api<ClusterRoleBinding> = Api::all(client.clone());
    let binding = ClusterRoleBinding {
        metadata: ObjectMeta {
            name: Some(SCRAPER.into()),
            ..Default::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: "system:monitoring".into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: SCRAPER.into(),
            namespace: Some("default".into()),
            ..Default::default()
        }]),
    };
    ignore_conflict(bindings.create(&PostParams::default(), &binding).await)?;
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![],
            expiration_seconds: Some(3600),
            ..Default::default()
        },
        ..Default::default()
    };
    let token = accounts
        .create_token_request(SCRAPER, &PostParams::default(), &request)
        .await
        .context("requesting a token for the metrics scraper")?;
    let token = token.status.context("TokenRequest without status")?.token;
    wait_until_authenticated(client, &token).await?;
    Ok(token)
}

/// Waits until the apiserver authenticates `token`. A token of a just-created ServiceAccount
/// is refused until the account reaches the apiserver's informer cache, and components cache
/// a refusal for `--authentication-token-webhook-cache-ttl` (10 s), so use it only after this.
pub async fn wait_until_authenticated(client: &kube::Client, token: &str) -> Result<()> {
    let reviews: Api<TokenReview> = Api::all(client.clone());
    let review = TokenReview {
        spec: TokenReviewSpec {
            token: Some(token.to_string()),
            ..Default::default()
        },
        ..Default::default()
    };
    wait::until(
        "the scraper token to authenticate",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || async {
            let answer = reviews.create(&PostParams::default(), &review).await?;
            Ok(answer
                .status
                .and_then(|s| s.authenticated)
                .filter(|authenticated| *authenticated))
        },
    )
    .await?;
    Ok(())
}

fn ignore_conflict<T>(result: kube::Result<T>) -> Result<()> {
    match result {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(err) => Err(err.into()),
    }
}
