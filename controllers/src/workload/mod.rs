//! Workload controllers (issue 4): ReplicaSet, ReplicationController, Deployment, Job,
//! CronJob, DaemonSet and StatefulSet.
//!
//! Shared machinery: [`informer`] (shared informers with old/new handlers), [`factory`]
//! (one watch per type for the whole process), [`expectations`], [`owner`] (controller
//! references and claims), [`pods`] (readiness, availability, deletion order) and
//! [`pod_control`] (slow-start creation). The reconcile decisions of each controller are
//! pure functions over observed state, unit-tested without a server.

#[macro_use]
pub mod runner;
pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod expectations;
pub mod factory;
pub mod history;
pub mod informer;
pub mod job;
pub mod owner;
pub mod pod_control;
pub mod pod_events;
pub mod pods;
pub mod replicaset;
pub mod statefulset;

use crate::registry::ControllerDescriptor;

/// Every workload controller this crate implements.
pub fn descriptors() -> Vec<ControllerDescriptor> {
    vec![
        cronjob::descriptor(),
        daemonset::descriptor(),
        deployment::descriptor(),
        job::descriptor(),
        replicaset::replicaset_descriptor(),
        replicaset::replicationcontroller_descriptor(),
        statefulset::descriptor(),
    ]
}
