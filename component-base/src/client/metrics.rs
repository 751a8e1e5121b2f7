//! client-go's `rest_client_*` metrics: every apiserver request a component makes is counted
//! by status code, method and host, and timed (including the client-side rate limiter's
//! wait, as client-go's request latency is). Process-wide, as client-go registers them
//! globally; [`crate::metrics::Metrics::new`] puts them on every component's `/metrics`.

use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt as _;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::time::Instant;
use tower::{Layer, Service};

/// Label pairs of one series.
type Labels = Vec<(&'static str, String)>;

/// client-go's latency buckets (seconds) for request and rate-limiter durations.
const LATENCY_BUCKETS: [f64; 12] = [
    0.005, 0.025, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0,
];
/// client-go's size buckets (bytes) for request and response bodies.
const SIZE_BUCKETS: [f64; 11] = [
    64.0, 256.0, 512.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0,
    16777216.0,
];

/// The `code` label of a request that got no HTTP response.
const NO_RESPONSE: &str = "<error>";

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

fn size_histogram() -> Histogram {
    Histogram::new(SIZE_BUCKETS)
}

/// The process's `rest_client_*` families.
pub struct RestClientMetrics {
    requests: Family<Labels, Counter>,
    latency: Family<Labels, Histogram, fn() -> Histogram>,
    rate_limiter: Family<Labels, Histogram, fn() -> Histogram>,
    request_size: Family<Labels, Histogram, fn() -> Histogram>,
    response_size: Family<Labels, Histogram, fn() -> Histogram>,
}

/// The process-wide families (created on first use).
pub fn rest_client() -> &'static RestClientMetrics {
    static METRICS: OnceLock<RestClientMetrics> = OnceLock::new();
    METRICS.get_or_init(|| RestClientMetrics {
        requests: Family::default(),
        latency: Family::new_with_constructor(latency_histogram),
        rate_limiter: Family::new_with_constructor(latency_histogram),
        request_size: Family::new_with_constructor(size_histogram),
        response_size: Family::new_with_constructor(size_histogram),
    })
}

/// Registers the families on `registry` under client-go's names and help texts.
pub(crate) fn register(registry: &mut Registry) {
    let m = rest_client();
    registry.register(
        "rest_client_requests",
        "[ALPHA] Number of HTTP requests, partitioned by status code, method, and host.",
        m.requests.clone(),
    );
    registry.register(
        "rest_client_request_duration_seconds",
        "[ALPHA] Request latency in seconds. Broken down by verb, and host.",
        m.latency.clone(),
    );
    registry.register(
        "rest_client_rate_limiter_duration_seconds",
        "[ALPHA] Client side rate limiter latency in seconds. Broken down by verb, and host.",
        m.rate_limiter.clone(),
    );
    registry.register(
        "rest_client_request_size_bytes",
        "[ALPHA] Request size in bytes. Broken down by verb and host.",
        m.request_size.clone(),
    );
    registry.register(
        "rest_client_response_size_bytes",
        "[ALPHA] Response size in bytes. Broken down by verb and host.",
        m.response_size.clone(),
    );
}

/// Counts and times the requests of one client to the apiserver at `host` (`ip:port`, the
/// URL's authority, as client-go labels it). Outermost, so the time includes the rate
/// limiter's wait (taken in `poll_ready`).
#[derive(Clone)]
pub struct RequestMetricsLayer {
    host: Arc<str>,
}

impl RequestMetricsLayer {
    /// A layer labelling requests with `host`.
    pub fn new(host: &str) -> Self {
        RequestMetricsLayer { host: host.into() }
    }
}

impl<S> Layer<S> for RequestMetricsLayer {
    type Service = RequestMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestMetrics {
            inner,
            host: self.host.clone(),
            waiting_since: None,
            waited: Duration::ZERO,
        }
    }
}

/// The service [`RequestMetricsLayer`] makes.
pub struct RequestMetrics<S> {
    inner: S,
    host: Arc<str>,
    /// When the current request's `poll_ready` began (the rate limiter's wait).
    waiting_since: Option<Instant>,
    waited: Duration,
}

impl<S: Clone> Clone for RequestMetrics<S> {
    fn clone(&self) -> Self {
        RequestMetrics {
            inner: self.inner.clone(),
            host: self.host.clone(),
            waiting_since: None,
            waited: Duration::ZERO,
        }
    }
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for RequestMetrics<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    ReqBody: http_body::Body,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        let since = *self.waiting_since.get_or_insert_with(Instant::now);
        let ready = self.inner.poll_ready(cx);
        if ready.is_ready() {
            self.waiting_since = None;
            self.waited = since.elapsed();
        }
        ready
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        let waited = std::mem::take(&mut self.waited);
        let verb_host: Labels = vec![
            ("verb", req.method().as_str().to_string()),
            ("host", self.host.to_string()),
        ];
        let m = rest_client();
        m.rate_limiter
            .get_or_create(&verb_host)
            .observe(waited.as_secs_f64());
        if let Some(size) = req.body().size_hint().exact() {
            m.request_size
                .get_or_create(&verb_host)
                .observe(size as f64);
        }
        let method = req.method().as_str().to_string();
        let host = self.host.clone();
        let start = Instant::now();
        self.inner
            .call(req)
            .map(move |result| {
                let code = match &result {
                    Ok(response) => {
                        if let Some(len) = content_length(response) {
                            m.response_size
                                .get_or_create(&verb_host)
                                .observe(len as f64);
                        }
                        response.status().as_u16().to_string()
                    }
                    Err(_) => NO_RESPONSE.to_string(),
                };
                m.latency
                    .get_or_create(&verb_host)
                    .observe((waited + start.elapsed()).as_secs_f64());
                m.requests
                    .get_or_create(&vec![
                        ("code", code),
                        ("method", method),
                        ("host", host.to_string()),
                    ])
                    .inc();
                result
            })
            .boxed()
    }
}

fn content_length<B>(response: &http::Response<B>) -> Option<u64> {
    response
        .headers()
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt as _;

    fn sample(text: &str, prefix: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix)?.trim().parse().ok())
    }

    #[tokio::test]
    async fn requests_are_counted_by_code_method_and_host() {
        let server = tower::service_fn(|req: http::Request<String>| async move {
            let status = if req.method() == http::Method::POST {
                201
            } else {
                404
            };
            Ok::<_, std::convert::Infallible>(
                http::Response::builder()
                    .status(status)
                    .header("content-length", "300")
                    .body(String::new())
                    .unwrap(),
            )
        });
        // A host no other test uses: the families are process-wide.
        let host = "192.0.2.7:6443";
        let svc = RequestMetricsLayer::new(host).layer(server);
        let post = http::Request::post("/api/v1/namespaces/a/pods")
            .body("x".repeat(100))
            .unwrap();
        svc.clone().oneshot(post).await.unwrap();
        for _ in 0..2 {
            let get = http::Request::get("/api/v1/pods/x")
                .body(String::new())
                .unwrap();
            svc.clone().oneshot(get).await.unwrap();
        }
        let mut registry = Registry::default();
        register(&mut registry);
        let text = crate::metrics::render_registry(&registry);
        let labels = |code: &str, method: &str| {
            format!(
                "rest_client_requests_total{{code=\"{code}\",method=\"{method}\",host=\"{host}\"}}"
            )
        };
        assert_eq!(sample(&text, &labels("201", "POST")), Some(1.0), "{text}");
        assert_eq!(sample(&text, &labels("404", "GET")), Some(2.0), "{text}");
        let count = |family: &str, verb: &str| {
            sample(
                &text,
                &format!("{family}_count{{verb=\"{verb}\",host=\"{host}\"}}"),
            )
        };
        assert_eq!(
            count("rest_client_request_duration_seconds", "GET"),
            Some(2.0)
        );
        assert_eq!(
            count("rest_client_rate_limiter_duration_seconds", "GET"),
            Some(2.0)
        );
        assert_eq!(count("rest_client_response_size_bytes", "GET"), Some(2.0));
        assert_eq!(
            sample(
                &text,
                &format!("rest_client_request_size_bytes_sum{{verb=\"POST\",host=\"{host}\"}}")
            ),
            Some(100.0)
        );
        assert!(
            text.contains("# TYPE rest_client_requests_total counter\n"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_failed_request_is_counted_as_error() {
        let server = tower::service_fn(|_: http::Request<String>| async {
            Err::<http::Response<String>, _>(std::io::Error::other("connection refused"))
        });
        let host = "192.0.2.8:6443";
        let svc = RequestMetricsLayer::new(host).layer(server);
        let req = http::Request::get("/api/v1/pods")
            .body(String::new())
            .unwrap();
        assert!(svc.oneshot(req).await.is_err());
        let mut registry = Registry::default();
        register(&mut registry);
        let text = crate::metrics::render_registry(&registry);
        assert_eq!(
            sample(
                &text,
                &format!(
                    "rest_client_requests_total{{code=\"<error>\",method=\"GET\",host=\"{host}\"}}"
                )
            ),
            Some(1.0),
            "{text}"
        );
    }
}
