//! ferrokube's kube-controller-manager: upstream's controllers over kube-runtime.
//!
//! The binary (`src/main.rs`) parses upstream's flags into [`options::KcmOptions`], builds a
//! [`context::ControllerContext`] and starts every controller of [`registry::all`] that
//! `--controllers` enables.

pub mod autoscaling;
pub mod context;
pub mod informers;
pub mod lifecycle;
pub mod options;
pub mod registry;
pub mod storage;
pub mod workload;
