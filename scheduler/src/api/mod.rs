//! Helpers over Kubernetes API types: quantities, selectors, tolerations.

pub mod labels;
pub mod quantity;
pub mod taints;
