//! The retry back-off of every watch (informers, reflectors): short and capped low, so a
//! component resumes within seconds once its API server is back, however long it was gone.
//! kube-runtime's default grows to 30 s during an outage, and the first retry after the API
//! server returns can then come half a minute late; client-go's reflector behaves alike.
//!
//! A watch that ends with 410 Gone (its resourceVersion expired: compaction, or an API
//! server whose watch cache restarted) relists at once, without waiting: the error says the
//! API server is up and answering, so there is nothing to wait for (client-go's reflector
//! relists at once too). Only a second 410 within [`EXPIRY_WINDOW`] waits, so a server that
//! keeps answering 410 is not hammered. The back-off resets as soon as the API server
//! answers (as kube-runtime's `StreamBackoff` does on the first success).
//!
//! Every watch is wrapped with [`backoff`]:
//! `backoff(watcher(api, config))` instead of kube-runtime's `.backoff(…)`.

use futures::{Stream, StreamExt};
use kube::runtime::utils::Backoff;
use kube::runtime::watcher;
use std::time::Duration;
use tokio::time::Instant;

/// The first wait after a failed list or watch.
pub const INITIAL: Duration = Duration::from_millis(100);
/// The longest wait between two tries.
pub const MAX: Duration = Duration::from_secs(2);
/// A 410 this soon after the previous one waits like any other error.
pub const EXPIRY_WINDOW: Duration = Duration::from_secs(1);

/// Doubling from [`INITIAL`] to [`MAX`], each wait jittered down to half its step so that
/// many watches do not retry in step.
#[derive(Debug, Clone)]
pub struct WatchBackoff {
    step: Duration,
}

impl Default for WatchBackoff {
    fn default() -> Self {
        WatchBackoff { step: INITIAL }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let step = self.step;
        self.step = (step * 2).min(MAX);
        Some(step.mul_f64(rand::random_range(0.5..=1.0)))
    }
}

impl Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.step = INITIAL;
    }
}

/// Whether a watcher error is the API server's 410 Gone (`Expired`): the resourceVersion
/// the watch (or a list's continue token) resumed from is no longer available.
pub fn is_expired(e: &watcher::Error) -> bool {
    let status = match e {
        watcher::Error::WatchError(status) => status.as_ref(),
        watcher::Error::InitialListFailed(kube::Error::Api(status))
        | watcher::Error::WatchStartFailed(kube::Error::Api(status))
        | watcher::Error::WatchFailed(kube::Error::Api(status)) => status.as_ref(),
        _ => return false,
    };
    status.code == 410
}

/// What a watch does after an item: `None` to go on at once, or how long to wait.
#[derive(Debug, Default)]
pub struct Pacing {
    backoff: WatchBackoff,
    last_expiry: Option<Instant>,
}

impl Pacing {
    /// The wait after an item that succeeded (`None` error), or failed with `error`, at
    /// `now`: none after a success or a first 410; the back-off's next step otherwise.
    pub fn after(&mut self, error: Option<&watcher::Error>, now: Instant) -> Option<Duration> {
        let Some(error) = error else {
            self.backoff.reset();
            return None;
        };
        if is_expired(error) {
            let recent = self
                .last_expiry
                .is_some_and(|t| now.saturating_duration_since(t) < EXPIRY_WINDOW);
            self.last_expiry = Some(now);
            if !recent {
                tracing::info!(error = %error, "Watch expired (410 Gone); relisting at once");
                self.backoff.reset();
                return None;
            }
        }
        self.backoff.next()
    }
}

/// `stream` (a kube-runtime watcher) paced by [`Pacing`]: after an error the next item is
/// asked for only once the wait is over; a 410 relists at once. Items pass through unchanged.
pub fn backoff<S, K>(stream: S) -> impl Stream<Item = watcher::Result<K>> + Send
where
    S: Stream<Item = watcher::Result<K>> + Send,
    K: Send,
{
    let state = (Box::pin(stream), Pacing::default(), None::<Duration>);
    futures::stream::unfold(state, |(mut stream, mut pacing, wait)| async move {
        if let Some(wait) = wait {
            tokio::time::sleep(wait).await;
        }
        let item = stream.next().await?;
        let wait = pacing.after(item.as_ref().err(), Instant::now());
        Some((item, (stream, pacing, wait)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;

    fn gone() -> watcher::Error {
        watcher::Error::WatchError(Box::new(
            Status::failure("too old resource version: 5 (10)", "Expired").with_code(410),
        ))
    }

    fn refused() -> watcher::Error {
        watcher::Error::NoResourceVersion
    }

    #[test]
    fn waits_double_from_100ms_to_at_most_2s_and_reset() {
        let mut b = WatchBackoff::default();
        let waits: Vec<Duration> = (&mut b).take(10).collect();
        let steps = [100, 200, 400, 800, 1600, 2000, 2000, 2000, 2000, 2000];
        for (w, s) in waits.iter().zip(steps) {
            let s = Duration::from_millis(s);
            assert!(*w >= s / 2 && *w <= s, "{w:?} for step {s:?}");
        }
        b.reset();
        assert!(b.next().unwrap() <= INITIAL);
    }

    #[test]
    fn a_410_is_expired_in_any_phase_other_errors_are_not() {
        assert!(is_expired(&gone()));
        let api =
            |code| kube::Error::Api(Box::new(Status::failure("x", "Expired").with_code(code)));
        assert!(is_expired(&watcher::Error::InitialListFailed(api(410))));
        assert!(is_expired(&watcher::Error::WatchStartFailed(api(410))));
        assert!(!is_expired(&watcher::Error::WatchStartFailed(api(429))));
        assert!(!is_expired(&watcher::Error::WatchFailed(api(500))));
        assert!(!is_expired(&refused()));
    }

    #[test]
    fn a_410_relists_at_once_after_an_outage_whose_backoff_had_grown() {
        let mut p = Pacing::default();
        let t = Instant::now();
        for _ in 0..8 {
            assert!(p.after(Some(&refused()), t).is_some());
        }
        // The API server is back and says the watch's resourceVersion is gone: no wait, and
        // the back-off starts again from its first step.
        assert_eq!(p.after(Some(&gone()), t), None);
        assert!(p.after(Some(&refused()), t).unwrap() <= INITIAL);
    }

    #[test]
    fn a_second_410_within_the_window_waits_and_a_success_resets() {
        let mut p = Pacing::default();
        let t = Instant::now();
        assert_eq!(p.after(Some(&gone()), t), None);
        assert_eq!(p.after(None, t), None);
        let again = p.after(Some(&gone()), t + EXPIRY_WINDOW / 2);
        assert!(again.is_some_and(|w| w <= INITIAL), "{again:?}");
        assert_eq!(p.after(Some(&gone()), t + EXPIRY_WINDOW * 3), None);
    }

    #[tokio::test(start_paused = true)]
    async fn the_stream_sleeps_after_errors_but_not_after_a_410() {
        let items: Vec<watcher::Result<u32>> = vec![Err(refused()), Err(gone()), Ok(1), Ok(2)];
        let start = Instant::now();
        let mut s = std::pin::pin!(backoff(futures::stream::iter(items)));
        let mut at = Vec::new();
        while let Some(item) = s.next().await {
            at.push((item.is_ok(), start.elapsed()));
        }
        assert_eq!(at.len(), 4);
        // The first error waits (≤ 100 ms) before the next item; the 410 does not.
        assert!(at[1].1 >= INITIAL / 2 && at[1].1 <= INITIAL, "{at:?}");
        assert_eq!(at[2].1, at[1].1, "{at:?}");
        assert_eq!(at[3].1, at[1].1, "{at:?}");
    }
}
