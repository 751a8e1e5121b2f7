//! Polling until a condition holds, with a deadline, for asserting eventual state.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::process::ManagedProcess;

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

/// [`until`], failing at once (with its log tail) if one of the `watch`ed processes exits
/// meanwhile: a crashed component should not cost a whole timeout.
pub async fn until_running<T, F, Fut>(
    what: &str,
    timeout: Duration,
    interval: Duration,
    watch: &mut [&mut ManagedProcess],
    mut check: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        for process in watch.iter_mut() {
            if let Some(status) = process.try_exit_status() {
                bail!(
                    "{} exited ({status}) while waiting for {what}; log {}:\n{}",
                    process.name(),
                    process.log_path().display(),
                    process.log_tail(30)
                );
            }
        }
        let last = match check().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => "condition not met yet".to_string(),
            Err(err) => format!("{err:#}"),
        };
        if Instant::now() >= deadline {
            let logs: Vec<String> = watch
                .iter()
                .map(|p| format!("--- {} ---\n{}", p.name(), p.log_tail(15)))
                .collect();
            bail!(
                "timed out after {timeout:?} waiting for {what}: {last}\n{}",
                logs.join("\n")
            );
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

    #[tokio::test]
    async fn until_running_fails_fast_when_a_watched_process_exits() {
        let dir = tempfile::tempdir().unwrap();
        let args = vec!["-c".to_string(), "echo boom; exit 7".to_string()];
        let mut p = ManagedProcess::spawn(
            "sh",
            std::path::Path::new("/bin/sh"),
            &args,
            &dir.path().join("l"),
        )
        .unwrap();
        let started = Instant::now();
        let err = until_running::<(), _, _>(
            "Godot",
            Duration::from_secs(30),
            Duration::from_millis(10),
            &mut [&mut p],
            || async { Ok(None) },
        )
        .await
        .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(10));
        let msg = format!("{err:#}");
        assert!(msg.contains("sh exited") && msg.contains("boom"), "{msg}");
    }
}
