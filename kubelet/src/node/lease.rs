//! The node's heartbeat: a Lease named after the node in `kube-node-lease`, owned by the
//! Node, renewed every quarter of its duration (10s for the default 40s).

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use std::time::Duration;

/// The namespace of node leases.
pub const NAMESPACE: &str = "kube-node-lease";

/// How often the lease is renewed: a quarter of its duration, as upstream.
pub fn renew_interval(duration_seconds: i32) -> Duration {
    Duration::from_millis((duration_seconds.max(1) as u64) * 250)
}

/// The lease as it should be after a renewal at `now`.
pub fn renewed(
    existing: Option<Lease>,
    node: &Node,
    duration_seconds: i32,
    now: Timestamp,
) -> Lease {
    let name = node.metadata.name.clone().unwrap_or_default();
    let mut lease = existing.unwrap_or_else(|| Lease {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(NAMESPACE.into()),
            ..Default::default()
        },
        ..Default::default()
    });
    if let Some(uid) = node.metadata.uid.clone() {
        lease.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "v1".into(),
            kind: "Node".into(),
            name: name.clone(),
            uid,
            ..Default::default()
        }]);
    }
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    spec.holder_identity = Some(name);
    spec.lease_duration_seconds = Some(duration_seconds);
    spec.renew_time = Some(MicroTime(now));
    lease
}

/// Creates or renews the lease once.
pub async fn renew(
    client: &kube::Client,
    node: &Node,
    duration_seconds: i32,
) -> kube::Result<Lease> {
    let api: Api<Lease> = Api::namespaced(client.clone(), NAMESPACE);
    let name = node.metadata.name.clone().unwrap_or_default();
    let existing = api.get_opt(&name).await?;
    let create = existing.is_none();
    let lease = renewed(existing, node, duration_seconds, Timestamp::now());
    if create {
        api.create(&PostParams::default(), &lease).await
    } else {
        api.replace(&name, &PostParams::default(), &lease).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_sets_holder_duration_time_and_owner() {
        let node = Node {
            metadata: ObjectMeta {
                name: Some("n1".into()),
                uid: Some("uid".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let now = Timestamp::now();
        let l = renewed(None, &node, 40, now);
        let spec = l.spec.as_ref().unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("n1"));
        assert_eq!(spec.lease_duration_seconds, Some(40));
        assert_eq!(spec.renew_time.as_ref().unwrap().0, now);
        assert_eq!(l.metadata.namespace.as_deref(), Some(NAMESPACE));
        assert_eq!(
            l.metadata.owner_references.as_ref().unwrap()[0].kind,
            "Node"
        );
        assert_eq!(renew_interval(40), Duration::from_secs(10));
    }
}
