//! ferrokube's kube-scheduler: upstream's scheduling framework, default plugins, queue,
//! cache and scheduling loop.

pub mod cache;
pub mod cmd;
pub mod config;
#[macro_use]
pub mod framework;
pub mod metrics;
pub mod plugins;
pub mod queue;
pub mod schedule;
pub mod scheduler;
pub mod snapshot;
