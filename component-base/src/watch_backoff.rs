//! The retry back-off of every watch (informers, reflectors): short and capped low, so a
//! component resumes within seconds once its API server is back, however long it was gone.
//! kube-runtime's default grows to 30 s during an outage, and the first retry after the API
//! server returns can then come half a minute late; client-go's reflector behaves alike.
//! A watch that ends with 410 Expired relists on the next retry; the back-off resets as soon
//! as the API server answers (kube-runtime's `StreamBackoff` resets on the first success).

use kube::runtime::utils::Backoff;
use std::time::Duration;

/// The first wait after a failed list or watch.
pub const INITIAL: Duration = Duration::from_millis(100);
/// The longest wait between two tries.
pub const MAX: Duration = Duration::from_secs(2);

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
