//! The `kube-proxy` binary: flags, config file, health server, node facts and the run loop.

pub mod config;
pub mod defaults;
pub mod healthz;
pub mod node;
pub mod options;
pub mod run;
