//! ferrokube's kube-controller-manager: upstream's controllers over kube-runtime.
//!
//! The binary (`src/main.rs`) parses upstream's flags into [`options::KcmOptions`], builds a
//! [`context::ControllerContext`] and starts every controller of [`registry::all`] that
//! `--controllers` enables.

pub mod admissionregistration;
pub mod autoscaling;
pub mod certificates;
pub mod context;
pub mod informers;
pub mod internal;
pub mod lifecycle;
pub mod networking;
pub mod options;
pub mod registry;
pub mod resource;
pub mod storage;
pub mod storagemigration;
pub mod workload;
