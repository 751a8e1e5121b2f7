//! Delegated authentication and authorization for secure ports, as upstream's
//! `--authentication-kubeconfig`/`--authorization-kubeconfig`: a bearer token is checked with
//! a TokenReview and the request with a SubjectAccessReview on its non-resource path.
//! `--authorization-always-allow-paths` (default `/healthz,/readyz,/livez`) skip both.

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::PostParams;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Upstream's default `--authorization-always-allow-paths`.
pub const DEFAULT_ALWAYS_ALLOW_PATHS: &[&str] = &["/healthz", "/readyz", "/livez"];

/// Who may call the server.
#[derive(Clone)]
pub enum Authorization {
    /// Everyone (plain-HTTP health ports).
    AlwaysAllow,
    /// Ask the apiserver, except for `always_allow_paths`.
    Delegated {
        /// The client used for reviews.
        client: kube::Client,
        /// Paths (exact, or prefix when ending in `*`) that need no review.
        always_allow_paths: Vec<String>,
    },
}

/// How long a review's outcome is reused, as upstream's 10 s caches.
const CACHE_TTL: Duration = Duration::from_secs(10);

/// Review outcomes (HTTP status) by (token, path, verb), with when they were decided.
type ReviewCache = HashMap<(String, String, String), (Instant, u16)>;

#[derive(Clone)]
struct Delegate {
    client: kube::Client,
    always_allow: Arc<Vec<String>>,
    cache: Arc<Mutex<ReviewCache>>,
}

/// Wraps `app` with the authorization it should have.
pub fn apply(app: Router, authorization: Authorization) -> Router {
    match authorization {
        Authorization::AlwaysAllow => app,
        Authorization::Delegated {
            client,
            always_allow_paths,
        } => {
            let delegate = Delegate {
                client,
                always_allow: Arc::new(always_allow_paths),
                cache: Arc::default(),
            };
            app.layer(axum::middleware::from_fn(
                move |req: Request, next: Next| {
                    let delegate = delegate.clone();
                    async move { delegate.check(req, next).await }
                },
            ))
        }
    }
}

/// Whether `path` matches one of the always-allowed patterns.
pub fn path_allowed(patterns: &[String], path: &str) -> bool {
    patterns.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => path.starts_with(prefix),
        None => p == path,
    })
}

impl Delegate {
    async fn check(&self, req: Request, next: Next) -> Response {
        let path = req.uri().path().to_string();
        if path_allowed(&self.always_allow, &path) {
            return next.run(req).await;
        }
        let token = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_string);
        let Some(token) = token else {
            return (StatusCode::UNAUTHORIZED, "Unauthorized\n").into_response();
        };
        let verb = req.method().as_str().to_lowercase();
        let key = (token.clone(), path.clone(), verb.clone());
        let cached = {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            cache
                .get(&key)
                .filter(|(at, _)| at.elapsed() < CACHE_TTL)
                .map(|(_, c)| *c)
        };
        let code = match cached {
            Some(code) => code,
            None => {
                let code = self.review(&token, &path, &verb).await;
                let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
                cache.retain(|_, (at, _)| at.elapsed() < CACHE_TTL);
                cache.insert(key, (Instant::now(), code));
                code
            }
        };
        match code {
            200 => next.run(req).await,
            401 => (StatusCode::UNAUTHORIZED, "Unauthorized\n").into_response(),
            _ => (
                StatusCode::FORBIDDEN,
                format!("Forbidden: \"{path}\", Reason: \"\"\n"),
            )
                .into_response(),
        }
    }

    /// 200 allowed, 401 not authenticated, 403 not authorized (or the review failed).
    async fn review(&self, token: &str, path: &str, verb: &str) -> u16 {
        let reviews: kube::Api<TokenReview> = kube::Api::all(self.client.clone());
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_string()),
                ..Default::default()
            },
            ..Default::default()
        };
        let status = match reviews.create(&PostParams::default(), &review).await {
            Ok(r) => r.status.unwrap_or_default(),
            Err(e) => {
                tracing::warn!(error = %e, "TokenReview failed");
                return 401;
            }
        };
        if status.authenticated != Some(true) {
            return 401;
        }
        let user = status.user.unwrap_or_default();
        let sars: kube::Api<SubjectAccessReview> = kube::Api::all(self.client.clone());
        let sar = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: user.username,
                groups: user.groups,
                uid: user.uid,
                extra: user.extra,
                non_resource_attributes: Some(NonResourceAttributes {
                    path: Some(path.to_string()),
                    verb: Some(verb.to_string()),
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        match sars.create(&PostParams::default(), &sar).await {
            Ok(r) if r.status.as_ref().map(|s| s.allowed).unwrap_or(false) => 200,
            Ok(_) => 403,
            Err(e) => {
                tracing::warn!(error = %e, "SubjectAccessReview failed");
                403
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn always_allow_paths_match_exactly_or_by_prefix() {
        let p: Vec<String> = vec!["/healthz".into(), "/debug/*".into()];
        assert!(path_allowed(&p, "/healthz"));
        assert!(!path_allowed(&p, "/healthz/ping"));
        assert!(path_allowed(&p, "/debug/pprof"));
        assert!(!path_allowed(&p, "/metrics"));
    }
}
