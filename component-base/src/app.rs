//! The end of every component's `main`: run the async main loop on a tokio runtime and turn
//! its outcome into the process exit status, logging the error as upstream's binaries do.

use std::future::Future;
use std::process::ExitCode;

/// Runs `main_loop` to completion on a multi-threaded runtime with one worker per core;
/// exits 1 (after logging `"<component> failed"`) on error or when no runtime can be started.
pub fn block_on<F>(component: &str, main_loop: F) -> ExitCode
where
    F: Future<Output = anyhow::Result<()>>,
{
    block_on_workers(component, None, main_loop)
}

/// As [`block_on`], with `workers` runtime threads (`None`: one per core). Node agents
/// (kubelet, kube-proxy) pass a small fixed number so they stay light on big machines.
pub fn block_on_workers<F>(component: &str, workers: Option<usize>, main_loop: F) -> ExitCode
where
    F: Future<Output = anyhow::Result<()>>,
{
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Some(n) = workers {
        builder.worker_threads(n.max(1));
    }
    let runtime = match builder.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(main_loop) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "{component} failed");
            ExitCode::from(1)
        }
    }
}
