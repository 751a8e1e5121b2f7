//! What every ferrokube component shares, as upstream's k8s.io/component-base: the version,
//! upstream-compatible flags and strict component-config files, logging, the apiserver
//! client, the health/metrics server, leader election on Leases, events and shutdown.

pub mod app;
pub mod client;
pub mod config;
pub mod duration;
pub mod events;
pub mod feature_gates;
pub mod flags;
pub mod host_ports;
pub mod hostname;
pub mod informer;
pub mod leader_election;
pub mod logging;
pub mod metrics;
pub mod retry;
pub mod server;
pub mod shutdown;
pub mod version;
pub mod watch_backoff;
