//! The scheduling framework: extension points, per-cycle state, statuses and the runner
//! that calls a profile's plugins.

pub mod cycle_state;
pub mod events;
pub mod fit_error;
#[macro_use]
pub mod interface;
pub mod runtime;
pub mod status;

pub use cycle_state::CycleState;
pub use events::{Action, ClusterEvent, Resource as EventResource};
pub use fit_error::{Diagnosis, FitError};
pub use interface::*;
pub use runtime::{Framework, WeightedPlugin};
pub use status::{Code, Status};
