//! Polling until a condition holds, with a deadline, for asserting eventual state.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

/// Calls `check` every `interval` until it returns `Ok(Some(value))`, and returns that value;
/// fails after `timeout` with `what` and the last error or "not yet".
pub async fn until<T, F, Fut>(
    what: &str,
    timeout: Duration,
    interval: Duration,
    mut check: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let last = match check().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => "condition not met yet".to_string(),
            Err(err) => format!("{err:#}"),
        };
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}: {last}");
        }
        tokio::time::sleep(interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn returns_first_value_and_times_out_with_reason() {
        let mut n = 0;
        let got = until(
            "n to reach 3",
            Duration::from_secs(5),
            Duration::from_millis(1),
            || {
                n += 1;
                let v = n;
                async move { Ok((v >= 3).then_some(v)) }
            },
        )
        .await
        .unwrap();
        assert_eq!(got, 3);
        let err = until::<(), _, _>(
            "never",
            Duration::from_millis(20),
            Duration::from_millis(5),
            || async { Ok(None) },
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("waiting for never"), "{err}");
    }
}
