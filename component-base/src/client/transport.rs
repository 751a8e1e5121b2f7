//! The HTTP stack under the apiserver client. Requests that end share one HTTP/2 connection,
//! as client-go's do, instead of a TLS connection each; watches keep a connection each (see
//! [`SplitPool`]). HTTP/2 connections get client-go's health checks (a ping after 30 s of
//! silence, dropped if it goes 15 s unanswered). `DISABLE_HTTP2` (client-go's switch) in the
//! environment turns HTTP/2 off.

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use kube::client::{Body, ConfigExt};
use std::time::Duration;
use tower::ServiceBuilder;

use super::{RateLimitLayer, RequestMetricsLayer};

/// client-go's `ReadIdleTimeout`: ping a connection that has been silent this long.
const HTTP2_PING_INTERVAL: Duration = Duration::from_secs(30);
/// client-go's `PingTimeout`: drop the connection when a ping goes unanswered this long.
const HTTP2_PING_TIMEOUT: Duration = Duration::from_secs(15);

/// Whether client-go's `DISABLE_HTTP2` is set (to anything non-empty).
fn http2_disabled() -> bool {
    std::env::var_os("DISABLE_HTTP2").is_some_and(|v| !v.is_empty())
}

/// Whether [`builder`] can serve this config; otherwise kube-rs's own builder is used
/// (proxies, which it handles and we do not).
pub fn supports(cfg: &kube::Config) -> bool {
    cfg.proxy_url.is_none()
}

/// A client over an HTTP/2-capable connection pool, with kube-rs's base-URI, auth and
/// extra-header layers, the client-side rate limit when one is given and, outermost, the
/// `rest_client_*` metrics labelled with `host`.
pub fn client(
    cfg: &kube::Config,
    rate_limit: Option<RateLimitLayer>,
    host: &str,
) -> Result<kube::Client, kube::Error> {
    let h2 = !http2_disabled() && cfg.cluster_url.scheme_str() == Some("https");
    let streaming = pool(cfg, false)?;
    let unary = if h2 {
        pool(cfg, true)?
    } else {
        streaming.clone()
    };
    let service = ServiceBuilder::new()
        .layer(RequestMetricsLayer::new(host))
        .option_layer(rate_limit)
        .layer(cfg.base_uri_layer())
        .option_layer(cfg.auth_layer()?)
        .layer(cfg.extra_headers_layer()?)
        .map_err(tower::BoxError::from)
        .service(SplitPool { unary, streaming });
    Ok(kube::Client::new(service, cfg.default_namespace.clone()))
}

type Pool = hyper_util::client::legacy::Client<HttpsConnector<HttpConnector>, Body>;

/// A connection pool speaking only HTTP/2 (`h2`) or only HTTP/1.1. The version must be known
/// before the first connection exists, or every request racing it opens a connection of its
/// own; over TLS the apiserver always offers h2.
fn pool(cfg: &kube::Config, h2: bool) -> Result<Pool, kube::Error> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(cfg.connect_timeout);
    http.set_nodelay(true);

    let tls = cfg.rustls_client_config()?;
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http();
    let https = match &cfg.tls_server_name {
        Some(name) => {
            let name = rustls::pki_types::ServerName::try_from(name.clone()).map_err(|e| {
                kube::Error::Service(format!("invalid tls-server-name {name:?}: {e}").into())
            })?;
            https.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name))
        }
        None => https,
    };
    let https = if h2 {
        https.enable_http2().wrap_connector(http)
    } else {
        https.enable_http1().wrap_connector(http)
    };
    Ok(
        hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .http2_only(h2)
            .http2_keep_alive_interval(HTTP2_PING_INTERVAL)
            .http2_keep_alive_timeout(HTTP2_PING_TIMEOUT)
            .build(https),
    )
}

/// Sends requests that end (gets, lists, writes) over the HTTP/2 pool and requests that
/// stay open (watches, followed logs) over the HTTP/1.1 pool.
///
/// client-go opens a further HTTP/2 connection when one reaches the server's stream limit
/// (the apiserver allows 100 per connection); hyper queues instead, so a process with 100
/// watches on one connection would starve every other request. Open-ended streams therefore
/// keep a connection each, as they did before; everything else shares one connection.
#[derive(Clone)]
struct SplitPool {
    unary: Pool,
    streaming: Pool,
}

impl tower::Service<http::Request<Body>> for SplitPool {
    type Response = <Pool as tower::Service<http::Request<Body>>>::Response;
    type Error = <Pool as tower::Service<http::Request<Body>>>::Error;
    type Future = <Pool as tower::Service<http::Request<Body>>>::Future;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        // hyper's pooled client is always ready; connections are made per call.
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        if stays_open(req.uri()) {
            self.streaming.request(req)
        } else {
            self.unary.request(req)
        }
    }
}

/// Whether a request holds its response open: `watch=true|1` or `follow=true|1`.
pub(super) fn stays_open(uri: &http::Uri) -> bool {
    uri.query().is_some_and(|q| {
        q.split('&').any(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            matches!(key, "watch" | "follow") && matches!(value, "true" | "1")
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watches_and_followed_logs_stay_open() {
        let open = |u: &str| stays_open(&u.parse().unwrap());
        assert!(open("/api/v1/pods?watch=true&resourceVersion=5"));
        assert!(open("/api/v1/namespaces/a/pods?labelSelector=x&watch=1"));
        assert!(open("/api/v1/namespaces/a/pods/p/log?follow=true"));
        assert!(!open("/api/v1/pods"));
        assert!(!open("/api/v1/pods?watch=false"));
        assert!(!open("/api/v1/pods?labelSelector=watch%3Dtrue"));
        assert!(!open("/api/v1/namespaces/a/pods/p/log?tailLines=10"));
    }
}
