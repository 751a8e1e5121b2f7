//! ferrokube's kube-scheduler: upstream's scheduling framework, default plugins, queue,
//! cache and scheduling loop.

pub mod api;
pub mod framework;
pub mod plugins;
pub mod snapshot;
