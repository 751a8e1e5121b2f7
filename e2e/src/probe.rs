//! Plain HTTP(S) GETs against component endpoints (`/healthz`, `/metrics`, ...), built on
//! kube-rs's client so no second HTTP stack is needed. Components serve their secure ports
//! with self-signed certificates, so certificate verification can be switched off.

use anyhow::{Context, Result};

/// An answer to a GET.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The HTTP status code.
    pub status: u16,
    /// The `Content-Type` header, if any.
    pub content_type: Option<String>,
    /// The body (lossy UTF-8).
    pub body: String,
}

/// A client for one base URL (`http://127.0.0.1:10256` or `https://127.0.0.1:10259`).
#[derive(Clone)]
pub struct Probe {
    client: kube::Client,
}

impl Probe {
    /// A probe for `base_url`; `https` endpoints are accepted whatever certificate they
    /// present. With `bearer_token`, it is sent on every request (for endpoints that
    /// authorize, e.g. `/metrics`).
    pub fn new(base_url: &str, bearer_token: Option<&str>) -> Result<Probe> {
        let mut config = kube::Config::new(base_url.parse().context("probe URL")?);
        config.accept_invalid_certs = true;
        config.read_timeout = Some(std::time::Duration::from_secs(10));
        if let Some(token) = bearer_token {
            let value = http::HeaderValue::from_str(&format!("Bearer {token}"))
                .context("bearer token is not a valid header value")?;
            config.headers.push((http::header::AUTHORIZATION, value));
        }
        let client = kube::Client::try_from(config).context("building probe client")?;
        Ok(Probe { client })
    }

    /// GETs `path_and_query` and returns the answer whatever its status.
    pub async fn get(&self, path_and_query: &str) -> Result<Answer> {
        let request = http::Request::get(path_and_query).body(kube::client::Body::empty())?;
        let response = self
            .client
            .send(request)
            .await
            .with_context(|| format!("GET {path_and_query}"))?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = response.into_body().collect_bytes().await?;
        Ok(Answer {
            status,
            content_type,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        })
    }
}
