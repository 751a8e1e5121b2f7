//! ferrokube-dns: the cluster DNS server. It serves the Kubernetes DNS-Based Service
//! Discovery records of CoreDNS's `kubernetes` plugin from Services and EndpointSlices it
//! watches, and forwards every other name to the resolvers of a resolv.conf (with a cache
//! and loop detection), with CoreDNS's health, readiness and Prometheus endpoints.

pub mod answer;
pub mod app;
pub mod cache;
pub mod config;
pub mod forward;
pub mod handler;
pub mod http;
pub mod index;
pub mod loop_detect;
pub mod metrics;
pub mod model;
pub mod names;
pub mod records;
pub mod resolv_conf;
pub mod server;
pub mod static_source;
pub mod store;
pub mod watch;
pub mod wire;
