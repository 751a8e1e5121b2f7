//! How the app starts a controller: each controller names itself and its start function
//! with a [`ControllerDescriptor`]; the app's registry lists them.

use futures::future::BoxFuture;

use super::context::ControllerContext;

/// One controller: its upstream name and how to start it.
pub struct ControllerDescriptor {
    /// Upstream name or alias, e.g. `"replicaset"` (alias of `replicaset-controller`).
    pub name: &'static str,
    /// Whether `*` in `--controllers` enables it.
    pub enabled_by_default: bool,
    /// Runs the controller until `ctx.shutdown` is cancelled.
    pub start: fn(ControllerContext) -> BoxFuture<'static, anyhow::Result<()>>,
}
