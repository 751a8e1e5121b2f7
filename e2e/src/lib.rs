//! End-to-end test harness: a real etcd + kube-apiserver per test ([`TestCluster`]), the
//! ferrokube binaries run as child processes against it, and loud, counted skips when the
//! control-plane binaries are absent.
//!
//! ```ignore
//! #[tokio::test]
//! async fn smoke() {
//!     let cluster = e2e::cluster_or_skip!();
//!     let nodes: kube::Api<Node> = kube::Api::all(cluster.client());
//!     // ...
//! }
//! ```

pub mod apiserver;
pub mod assets;
pub mod binaries;
pub mod cluster;
pub mod components;
pub mod etcd;
pub mod identity;
pub mod kubeconfig;
pub mod lease;
pub mod local_cluster;
pub mod monitoring;
pub mod pki;
pub mod ports;
pub mod probe;
pub mod process;
pub mod prometheus;
pub mod skip;
pub mod wait;

pub use cluster::{StartError, TestCluster};
pub use identity::Identity;
pub use process::ManagedProcess;
