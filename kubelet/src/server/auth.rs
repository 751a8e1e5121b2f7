//! Authentication and authorization of kubelet API requests, as upstream's kubelet server:
//! a verified client certificate, else a bearer token (TokenReview), else anonymous when
//! enabled; then a SubjectAccessReview on `nodes/<subresource>` named by the path.

use crate::config::auth::ServerAuth;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::PostParams;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct User {
    /// User name.
    pub name: String,
    /// UID (token users).
    pub uid: Option<String>,
    /// Groups.
    pub groups: Vec<String>,
    /// Extra attributes (token users).
    pub extra: BTreeMap<String, Vec<String>>,
}

/// The identity the TLS layer verified for a connection (a request extension).
#[derive(Debug, Clone, Default)]
pub struct PeerCertificate(pub Option<User>);

/// The anonymous user.
pub fn anonymous() -> User {
    User {
        name: "system:anonymous".into(),
        groups: vec!["system:unauthenticated".into()],
        ..Default::default()
    }
}

/// The API verb of an HTTP method, as upstream's kubelet maps it.
pub fn verb(method: &str) -> &'static str {
    match method {
        "POST" => "create",
        "GET" | "HEAD" => "get",
        "PUT" => "update",
        "PATCH" => "patch",
        "DELETE" => "delete",
        _ => "",
    }
}

fn is_subpath(path: &str, prefix: &str) -> bool {
    path == prefix || path.starts_with(&format!("{}/", prefix.trim_end_matches('/')))
}

/// The `nodes` subresources a request path is checked against, the fine-grained one first
/// (any allowed one admits the request), as upstream with KubeletFineGrainedAuthz.
pub fn subresources(path: &str) -> Vec<&'static str> {
    let mut subs = Vec::new();
    if is_subpath(path, "/pods") || is_subpath(path, "/runningpods") {
        subs.push("pods");
    } else if is_subpath(path, "/healthz") {
        subs.push("healthz");
    } else if is_subpath(path, "/configz") {
        subs.push("configz");
    }
    subs.push(if is_subpath(path, "/stats") {
        "stats"
    } else if is_subpath(path, "/metrics") {
        "metrics"
    } else if is_subpath(path, "/logs") {
        "log"
    } else if is_subpath(path, "/checkpoint") {
        "checkpoint"
    } else if is_subpath(path, "/statusz") {
        "statusz"
    } else if is_subpath(path, "/flagz") {
        "configz"
    } else {
        "proxy"
    });
    subs
}

type Cache<K> = Mutex<HashMap<K, (Instant, bool)>>;

/// What the middleware needs: the settings, the apiserver client and review caches.
pub struct Gate {
    settings: ServerAuth,
    client: kube::Client,
    node_name: String,
    tokens: Cache<String>,
    tokens_users: Mutex<HashMap<String, User>>,
    decisions: Cache<(User, String, String)>,
}

/// Why a request was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// 401.
    Unauthenticated,
    /// 403 with upstream's message.
    Forbidden(String),
}

impl Gate {
    /// A gate for node `node_name`.
    pub fn new(settings: ServerAuth, client: kube::Client, node_name: String) -> Self {
        Gate {
            settings,
            client,
            node_name,
            tokens: Mutex::default(),
            tokens_users: Mutex::default(),
            decisions: Mutex::default(),
        }
    }

    fn cached<K: std::hash::Hash + Eq>(
        cache: &Cache<K>,
        key: &K,
        ttl: (Duration, Duration),
    ) -> Option<bool> {
        let c = cache.lock().unwrap_or_else(|p| p.into_inner());
        c.get(key).and_then(|(at, ok)| {
            let ttl = if *ok { ttl.0 } else { ttl.1 };
            (at.elapsed() < ttl).then_some(*ok)
        })
    }

    /// Authenticates: certificate, then bearer token, then anonymous.
    pub async fn authenticate(&self, peer: Option<&User>, bearer: Option<&str>) -> Option<User> {
        if let Some(u) = peer {
            return Some(u.clone());
        }
        if let Some(token) = bearer.filter(|_| self.settings.webhook_authn) {
            let ttl = self.settings.authn_cache_ttl;
            if let Some(ok) = Self::cached(&self.tokens, &token.to_string(), (ttl, ttl)) {
                return if ok {
                    self.tokens_users
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get(token)
                        .cloned()
                } else {
                    None
                };
            }
            let user = self.token_review(token).await;
            let now = Instant::now();
            {
                let mut c = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
                c.retain(|_, (at, _)| at.elapsed() < ttl);
                c.insert(token.to_string(), (now, user.is_some()));
            }
            if let Some(u) = &user {
                self.tokens_users
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(token.to_string(), u.clone());
            }
            return user;
        }
        if bearer.is_none() && self.settings.anonymous {
            return Some(anonymous());
        }
        None
    }

    async fn token_review(&self, token: &str) -> Option<User> {
        let api: kube::Api<TokenReview> = kube::Api::all(self.client.clone());
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_string()),
                ..Default::default()
            },
            ..Default::default()
        };
        match api.create(&PostParams::default(), &review).await {
            Ok(r) => {
                let s = r.status.unwrap_or_default();
                if s.authenticated != Some(true) {
                    return None;
                }
                let u = s.user.unwrap_or_default();
                Some(User {
                    name: u.username.unwrap_or_default(),
                    uid: u.uid,
                    groups: u.groups.unwrap_or_default(),
                    extra: u.extra.unwrap_or_default(),
                })
            }
            Err(e) => {
                tracing::warn!(error = %e, "TokenReview failed");
                None
            }
        }
    }

    /// Authorizes `user` for `method` on `path`.
    pub async fn authorize(&self, user: &User, method: &str, path: &str) -> Result<(), Refusal> {
        let verb = verb(method);
        let subs = subresources(path);
        if !self.settings.webhook_authz {
            return Ok(());
        }
        let ttl = (self.settings.authorized_ttl, self.settings.unauthorized_ttl);
        for sub in &subs {
            let key = (user.clone(), verb.to_string(), sub.to_string());
            let allowed = match Self::cached(&self.decisions, &key, ttl) {
                Some(ok) => ok,
                None => {
                    let ok = self.access_review(user, verb, sub).await;
                    let mut c = self.decisions.lock().unwrap_or_else(|p| p.into_inner());
                    c.retain(|_, (at, _)| at.elapsed() < ttl.0.max(ttl.1));
                    c.insert(key, (Instant::now(), ok));
                    ok
                }
            };
            if allowed {
                return Ok(());
            }
        }
        Err(Refusal::Forbidden(format!(
            "Forbidden (user={}, verb={verb}, resource=nodes, subresource(s)=[{}])\n",
            user.name,
            subs.join(" ")
        )))
    }

    async fn access_review(&self, user: &User, verb: &str, subresource: &str) -> bool {
        let api: kube::Api<SubjectAccessReview> = kube::Api::all(self.client.clone());
        let sar = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(user.name.clone()),
                uid: user.uid.clone(),
                groups: Some(user.groups.clone()),
                extra: (!user.extra.is_empty()).then(|| user.extra.clone()),
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(verb.to_string()),
                    version: Some("v1".into()),
                    resource: Some("nodes".into()),
                    subresource: Some(subresource.to_string()),
                    name: Some(self.node_name.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        match api.create(&PostParams::default(), &sar).await {
            Ok(r) => r.status.is_some_and(|s| s.allowed),
            Err(e) => {
                tracing::warn!(error = %e, "SubjectAccessReview failed");
                false
            }
        }
    }
}

/// The axum middleware: 401 without an accepted identity, 403 when not authorized.
pub async fn middleware(State(gate): State<Arc<Gate>>, req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<PeerCertificate>()
        .and_then(|p| p.0.clone());
    let bearer = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_string());
    let Some(user) = gate.authenticate(peer.as_ref(), bearer.as_deref()).await else {
        return (StatusCode::UNAUTHORIZED, "Unauthorized\n").into_response();
    };
    let path = req.uri().path().to_string();
    match gate.authorize(&user, req.method().as_str(), &path).await {
        Ok(()) => next.run(req).await,
        Err(Refusal::Forbidden(m)) => (StatusCode::FORBIDDEN, m).into_response(),
        Err(Refusal::Unauthenticated) => {
            (StatusCode::UNAUTHORIZED, "Unauthorized\n").into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_node_subresources_as_upstream() {
        assert_eq!(subresources("/containerLogs/ns/p/c"), vec!["proxy"]);
        assert_eq!(subresources("/exec/ns/p/c"), vec!["proxy"]);
        assert_eq!(subresources("/stats/summary"), vec!["stats"]);
        assert_eq!(subresources("/metrics/cadvisor"), vec!["metrics"]);
        assert_eq!(subresources("/logs/messages"), vec!["log"]);
        assert_eq!(subresources("/pods"), vec!["pods", "proxy"]);
        assert_eq!(subresources("/runningpods/"), vec!["pods", "proxy"]);
        assert_eq!(subresources("/healthz"), vec!["healthz", "proxy"]);
        assert_eq!(
            subresources("/statsx"),
            vec!["proxy"],
            "prefix must end at a slash"
        );
        assert_eq!(verb("POST"), "create");
        assert_eq!(verb("GET"), "get");
    }
}
