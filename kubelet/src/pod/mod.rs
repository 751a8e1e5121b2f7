//! Pods: the pure logic of running one pod (QoS, environment, the reconcile step, status)
//! and the worker that applies it through CRI.

pub mod backoff;
pub mod containers;
pub mod deadline;
pub mod env;
pub mod observed;
pub mod qos;
pub mod reconcile;
pub mod resource_field;
pub mod status;
