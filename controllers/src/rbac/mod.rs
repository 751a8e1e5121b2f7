//! Controllers of the `rbac.authorization.k8s.io` API group: ClusterRole aggregation.

pub mod clusterrole_aggregation;
