//! Retrying a call to the API server until it succeeds, on the watches' short back-off
//! ([`crate::watch_backoff::WatchBackoff`]: 100 ms doubling to 2 s), so what a component needs
//! before it can work (a token, a first read) waits out an API server restart instead of
//! failing the component.

use std::future::Future;

use tokio_util::sync::CancellationToken;

use crate::watch_backoff::WatchBackoff;

/// Calls `op` until it returns `Ok`, waiting the back-off's next step after each error
/// (reported to `on_error` with the attempt number, from 1). `None` once `shutdown` is
/// cancelled.
pub async fn until_ok<T, E, F, Fut>(
    shutdown: &CancellationToken,
    mut op: F,
    mut on_error: impl FnMut(u32, &E),
) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut backoff = WatchBackoff::default();
    for attempt in 1u32.. {
        let result = tokio::select! {
            _ = shutdown.cancelled() => return None,
            r = op() => r,
        };
        match result {
            Ok(v) => return Some(v),
            Err(e) => on_error(attempt, &e),
        }
        let wait = backoff.next().unwrap_or(crate::watch_backoff::MAX);
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            _ = tokio::time::sleep(wait) => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn retries_on_the_short_backoff_until_it_succeeds() {
        let shutdown = CancellationToken::new();
        let start = tokio::time::Instant::now();
        let mut calls = 0;
        let mut errors = Vec::new();
        let got = until_ok(
            &shutdown,
            || {
                calls += 1;
                let n = calls;
                async move {
                    if n < 4 {
                        Err(n)
                    } else {
                        Ok("token")
                    }
                }
            },
            |attempt, e: &i32| errors.push((attempt, *e)),
        )
        .await;
        assert_eq!(got, Some("token"));
        assert_eq!(errors, [(1, 1), (2, 2), (3, 3)]);
        // Three waits of at most 100, 200 and 400 ms.
        assert!(
            start.elapsed() <= Duration::from_millis(700),
            "{:?}",
            start.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_at_shutdown() {
        let shutdown = CancellationToken::new();
        let s = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(30)).await;
            s.cancel();
        });
        let got: Option<()> =
            until_ok(&shutdown, || async { Err::<(), _>("down") }, |_, _| {}).await;
        assert_eq!(got, None);
    }
}
