//! The controller manager app (upstream's `cmd/kube-controller-manager/app`): the registry
//! listing every controller and the flags parsed into [`crate::machinery::options`]. Only
//! the binary and tests import it; no controller does.

pub mod flags;
pub mod registry;
