//! What every controller is started with.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::options::KcmOptions;

/// Shared handles a controller's `start` function receives. Cheap to clone.
#[derive(Clone)]
pub struct ControllerContext {
    /// Client for the kube-apiserver (already rate-limited by `--kube-api-qps/-burst`).
    pub client: kube::Client,
    /// The parsed command line.
    pub options: Arc<KcmOptions>,
    /// Cancelled on SIGTERM or when leadership is lost: controllers stop at once.
    pub shutdown: CancellationToken,
}
