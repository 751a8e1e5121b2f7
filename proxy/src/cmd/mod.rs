//! The `kube-proxy` binary: flags, config file, and the run loop.

pub mod config;
pub mod options;
