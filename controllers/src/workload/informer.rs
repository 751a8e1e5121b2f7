//! The shared informer the workload controllers use (see [`crate::informers::informer`]).

pub use crate::informers::informer::*;
