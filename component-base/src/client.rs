//! Building the apiserver client from `--kubeconfig`, the in-cluster service account or
//! `--master`, with upstream's client-side rate limit (`--kube-api-qps`/`--kube-api-burst`)
//! and user agent.

mod metrics;
mod rate_limit;
mod transport;

pub(crate) use metrics::register as register_metrics;
pub use metrics::{rest_client, RequestMetrics, RequestMetricsLayer, RestClientMetrics};
pub use rate_limit::{RateLimitLayer, TokenBucket};

use kube::client::ClientBuilder;
use kube::config::{KubeConfigOptions, Kubeconfig};
use std::path::PathBuf;

/// How to reach the apiserver (the `clientConnection` block of component configs, plus
/// `--master`).
#[derive(Debug, Clone, PartialEq)]
pub struct ClientOptions {
    /// Path of a kubeconfig file; empty means in-cluster config.
    pub kubeconfig: Option<PathBuf>,
    /// Overrides the kubeconfig's server address (`--master`).
    pub master: Option<String>,
    /// Steady requests per second; negative means unlimited, 0 means client-go's default 5.
    pub qps: f32,
    /// Requests allowed in a burst above `qps`.
    pub burst: u32,
    /// `--kube-api-content-type`. kube-rs speaks JSON only, so protobuf requests are served
    /// as JSON; the value is kept for the record.
    pub content_type: String,
    /// The component's name, for the user agent (e.g. `kube-scheduler`).
    pub component: String,
}

impl ClientOptions {
    /// Options with the given component name and upstream's client-go defaults (qps 5,
    /// burst 10, protobuf content type).
    pub fn new(component: &str) -> Self {
        ClientOptions {
            kubeconfig: None,
            master: None,
            qps: 5.0,
            burst: 10,
            content_type: "application/vnd.kubernetes.protobuf".into(),
            component: component.into(),
        }
    }
}

/// Why no client could be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The kubeconfig could not be read or is invalid.
    #[error("invalid kubeconfig {path:?}")]
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// What kube-rs said.
        source: kube::config::KubeconfigError,
    },
    /// Neither a kubeconfig nor `--master` was given and this is not a pod.
    #[error("no --kubeconfig or --master given and not running in a cluster: {0}")]
    NoConfig(kube::config::InClusterError),
    /// `--master` is not a URL.
    #[error("invalid --master {0:?}: {1}")]
    Master(String, String),
    /// kube-rs could not build the HTTP stack (TLS material, proxy).
    #[error("cannot build the apiserver client: {0}")]
    Build(#[from] kube::Error),
}

/// Resolves the kube-rs config the options describe, with the user agent set.
pub async fn config(opts: &ClientOptions) -> Result<kube::Config, ClientError> {
    let mut cfg = match &opts.kubeconfig {
        Some(path) if !path.as_os_str().is_empty() => {
            let kc = Kubeconfig::read_from(path).map_err(|source| ClientError::Kubeconfig {
                path: path.clone(),
                source,
            })?;
            kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .map_err(|source| ClientError::Kubeconfig {
                    path: path.clone(),
                    source,
                })?
        }
        _ => match &opts.master {
            Some(m) => kube::Config::new(m.parse().map_err(|e: http::uri::InvalidUri| {
                ClientError::Master(m.clone(), e.to_string())
            })?),
            None => kube::Config::incluster().map_err(ClientError::NoConfig)?,
        },
    };
    if let Some(m) = &opts.master {
        cfg.cluster_url = m
            .parse()
            .map_err(|e: http::uri::InvalidUri| ClientError::Master(m.clone(), e.to_string()))?;
    }
    if let Ok(ua) = http::HeaderValue::from_str(&crate::version::user_agent(&opts.component)) {
        cfg.headers.push((http::header::USER_AGENT, ua));
    }
    Ok(cfg)
}

/// Builds a client honouring the rate limit of `opts`.
pub async fn client(opts: &ClientOptions) -> Result<kube::Client, ClientError> {
    let cfg = config(opts).await?;
    client_from_config(cfg, opts.qps, opts.burst)
}

/// Builds a client from a resolved config with a token-bucket rate limit (`qps` < 0: none;
/// 0: client-go's default 5). It speaks HTTP/2 to the apiserver when TLS negotiates it,
/// unless `DISABLE_HTTP2` is set; through a proxy it falls back to kube-rs's HTTP/1.1 stack.
pub fn client_from_config(
    cfg: kube::Config,
    qps: f32,
    burst: u32,
) -> Result<kube::Client, ClientError> {
    let qps = if qps == 0.0 { 5.0 } else { qps };
    let rate_limit =
        (qps >= 0.0).then(|| RateLimitLayer::new(TokenBucket::new(qps as f64, burst.max(1))));
    if transport::supports(&cfg) {
        return Ok(transport::client(&cfg, rate_limit, &api_host(&cfg))?);
    }
    let host = api_host(&cfg);
    let builder = ClientBuilder::try_from(cfg)?;
    Ok(match rate_limit {
        Some(layer) => builder
            .with_layer(&layer)
            .with_layer(&RequestMetricsLayer::new(&host))
            .build(),
        None => builder.with_layer(&RequestMetricsLayer::new(&host)).build(),
    })
}

/// The `host` label of `rest_client_*` metrics: the apiserver URL's `host:port`.
fn api_host(cfg: &kube::Config) -> String {
    cfg.cluster_url
        .authority()
        .map(|a| a.to_string())
        .unwrap_or_default()
}
