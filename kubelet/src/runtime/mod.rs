//! Running pods through CRI: translating pods into CRI configs, observing what the runtime
//! holds, and applying the reconcile steps.

pub mod config;
pub mod executor;
pub mod images;
pub mod observe;
pub mod restore;
pub mod runtime_class;
pub mod termination_message;

pub use executor::{PodInputs, PodRuntime, SyncResult};
