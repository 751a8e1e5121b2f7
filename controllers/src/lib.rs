//! ferrokube's kube-controller-manager: upstream's controllers over kube-runtime, in three
//! layers (see ARCHITECTURE.md):
//!
//! - [`machinery`]: what every controller is built from (context, options, informers, work
//!   queue, runner, shared pod and owner-reference rules). It imports no controller.
//! - the controllers, one folder per API group ([`apps`], [`batch`], [`core`],
//!   [`certificates`], [`discovery`], [`policy`], [`rbac`], [`storage`], [`autoscaling`],
//!   [`networking`], [`resource`], [`admissionregistration`], [`internal`]). They import
//!   the machinery and the shared crates, never the app.
//! - [`app`]: the registry of every controller and the flag parsing the binary
//!   (`src/main.rs`) uses to start the ones `--controllers` enables.

#[macro_use]
pub mod machinery;

pub mod admissionregistration;
pub mod app;
pub mod apps;
pub mod autoscaling;
pub mod batch;
pub mod certificates;
pub mod core;
pub mod discovery;
pub mod internal;
pub mod networking;
pub mod policy;
pub mod rbac;
pub mod resource;
pub mod storage;
pub mod storagemigration;
