//! Controllers of the `policy` API group: the PodDisruptionBudget (disruption) controller.

pub mod disruption;
