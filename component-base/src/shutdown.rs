//! Graceful shutdown: one token, cancelled on SIGTERM or SIGINT, that every task watches.

use tokio_util::sync::CancellationToken;

/// Returns a token cancelled when the process receives SIGTERM or SIGINT. A second signal
/// while shutting down exits at once with status 1, as upstream's components do.
pub fn on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("Cannot install signal handlers; graceful shutdown disabled");
            return;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("Received SIGTERM, shutting down"),
            _ = int.recv() => tracing::info!("Received SIGINT, shutting down"),
        }
        cancel.cancel();
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
        tracing::warn!("Second signal received, exiting now");
        std::process::exit(1);
    });
    token
}
