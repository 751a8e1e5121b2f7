//! Controllers of the `apps` API group (and the core ReplicationController, run by the
//! ReplicaSet code): Deployment, ReplicaSet, ReplicationController, StatefulSet and
//! DaemonSet, with [`history`] (ControllerRevisions) that the last two share.

pub mod daemonset;
pub mod deployment;
pub mod history;
pub mod replicaset;
pub mod statefulset;
