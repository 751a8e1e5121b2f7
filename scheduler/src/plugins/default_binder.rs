//! DefaultBinder: binds the pod with a `pods/binding` subresource create.

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{Binding, ObjectReference, Pod};
use kube::api::{Api, PostParams};

use crate::framework::*;
use crate::snapshot::PodInfo;

/// Registry name.
pub const NAME: &str = "DefaultBinder";

/// The DefaultBinder plugin (Bind).
#[derive(Clone, Default)]
pub struct DefaultBinder {
    client: Option<kube::Client>,
}

impl DefaultBinder {
    /// Builds the binder; without a client, Bind fails with an error status.
    pub fn new(client: Option<kube::Client>) -> Self {
        DefaultBinder { client }
    }
}

/// The Binding object upstream posts for `pod` → `node`.
pub fn binding_for(pod: &PodInfo, node: &str) -> Binding {
    Binding {
        metadata: kube::api::ObjectMeta {
            name: Some(pod.name.clone()),
            namespace: Some(pod.namespace.clone()),
            uid: pod.pod.metadata.uid.clone(),
            ..Default::default()
        },
        target: ObjectReference {
            kind: Some("Node".into()),
            name: Some(node.into()),
            ..Default::default()
        },
    }
}

impl Plugin for DefaultBinder {
    fn name(&self) -> &'static str {
        NAME
    }
    extension_points!(Bind);
}

impl BindPlugin for DefaultBinder {
    fn bind<'a>(
        &'a self,
        _: &'a CycleState,
        pod: &'a PodInfo,
        node: &'a str,
    ) -> BoxFuture<'a, Status> {
        Box::pin(async move {
            let Some(client) = self.client.clone() else {
                return Status::error("DefaultBinder has no API client");
            };
            let api: Api<Pod> = Api::namespaced(client, &pod.namespace);
            let body = binding_for(pod, node);
            match api
                .create_subresource::<Binding, serde_json::Value>(
                    "binding",
                    &pod.name,
                    &PostParams::default(),
                    &body,
                )
                .await
            {
                Ok(_) => Status::success(),
                Err(e) => Status::error(e),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testutil::pod;
    use serde_json::json;

    #[test]
    fn binding_targets_the_node() {
        let b = binding_for(&pod("p", json!({})), "n1");
        let v = serde_json::to_value(&b).unwrap();
        assert_eq!(v["target"], json!({"kind": "Node", "name": "n1"}));
        assert_eq!(v["metadata"]["name"], "p");
        assert_eq!(v["metadata"]["uid"], "p");
    }
}
