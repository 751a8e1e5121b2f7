//! client-go's token-bucket rate limiter as a tower layer: each request reserves a token and
//! waits for it before it is sent, so a burst is served at once and the rest at `qps`, in
//! order; watches are not limited (see [`RateLimited`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;
use tower::{Layer, Service};

/// A token bucket shared by every clone of a client.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    inner: Arc<Mutex<BucketState>>,
}

#[derive(Debug)]
struct BucketState {
    qps: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket of `burst` tokens refilled at `qps` a second.
    pub fn new(qps: f64, burst: u32) -> Self {
        TokenBucket {
            inner: Arc::new(Mutex::new(BucketState {
                qps,
                burst: burst as f64,
                tokens: burst as f64,
                last: Instant::now(),
            })),
        }
    }

    /// Takes a token and says how long to wait before using it: none while the burst lasts,
    /// then one `1/qps` step more per request already waiting (tokens are reserved ahead,
    /// as client-go's `rate.Limiter.Wait`, so waiters are served in order).
    pub fn reserve(&self) -> Duration {
        let mut s = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let elapsed = now.duration_since(s.last).as_secs_f64();
        s.tokens = (s.tokens + elapsed * s.qps).min(s.burst);
        s.last = now;
        s.tokens -= 1.0;
        if s.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-s.tokens / s.qps)
        }
    }
}

/// Wraps a service so each request first takes a token from the bucket.
#[derive(Debug, Clone)]
pub struct RateLimitLayer {
    bucket: TokenBucket,
}

impl RateLimitLayer {
    /// A layer drawing from `bucket`.
    pub fn new(bucket: TokenBucket) -> Self {
        RateLimitLayer { bucket }
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimited<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimited {
            inner,
            bucket: self.bucket.clone(),
        }
    }
}

/// The service [`RateLimitLayer`] makes. Watches and followed logs are not limited: they
/// stay open rather than load the API server per call, and client-go exempts them too ("We
/// specifically don't want to rate limit watches"). Limiting them queued every informer's
/// re-watch behind the relists after an API server restart.
pub struct RateLimited<S> {
    inner: S,
    bucket: TokenBucket,
}

impl<S, B> Service<http::Request<B>> for RateLimited<S>
where
    S: Service<http::Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let limited = !super::transport::stays_open(req.uri());
        // The inner future sends nothing until polled: it waits here for its token.
        let response = self.inner.call(req);
        if !limited {
            return Box::pin(response);
        }
        let wait = self.bucket.reserve();
        Box::pin(async move {
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            response.await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn burst_is_free_then_qps_paces_in_order() {
        let bucket = TokenBucket::new(10.0, 3);
        for _ in 0..3 {
            assert_eq!(bucket.reserve(), Duration::ZERO);
        }
        let first = bucket.reserve();
        let second = bucket.reserve();
        assert!(
            first > Duration::from_millis(90) && first <= Duration::from_millis(100),
            "{first:?}"
        );
        assert!(
            second > Duration::from_millis(190) && second <= Duration::from_millis(200),
            "{second:?}"
        );
        tokio::time::advance(Duration::from_millis(300)).await;
        assert_eq!(bucket.reserve(), Duration::ZERO);
    }

    fn request(uri: &str) -> http::Request<()> {
        http::Request::get(uri).body(()).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn layer_paces_requests_but_not_watches() {
        use tower::ServiceExt;
        let svc = tower::service_fn(|_: http::Request<()>| async {
            Ok::<_, std::convert::Infallible>(())
        });
        let mut svc = RateLimitLayer::new(TokenBucket::new(2.0, 1)).layer(svc);
        let start = Instant::now();
        for _ in 0..3 {
            svc.ready()
                .await
                .unwrap()
                .call(request("/api/v1/pods"))
                .await
                .unwrap();
        }
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(999), "{took:?}");
        // The bucket is empty now; watches go at once all the same.
        let start = Instant::now();
        for _ in 0..5 {
            svc.ready()
                .await
                .unwrap()
                .call(request("/api/v1/pods?watch=true&resourceVersion=1"))
                .await
                .unwrap();
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
