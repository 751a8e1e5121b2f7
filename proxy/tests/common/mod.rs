//! Builders shared by the proxy's integration tests.
#![allow(dead_code)]

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use proxy::model::{ChangeTracker, IpFamily, ServiceName};
use serde_json::{json, Value};

/// A Service from `spec` (and optional `status`) JSON.
pub fn service(ns: &str, name: &str, spec: Value, status: Value) -> Service {
    serde_json::from_value(json!({
        "metadata": {"namespace": ns, "name": name},
        "spec": spec,
        "status": status,
    }))
    .expect("valid Service JSON")
}

/// An EndpointSlice of Service `ns/svc` with `endpoints` and `ports` JSON.
pub fn slice(ns: &str, svc: &str, family: &str, endpoints: Value, ports: Value) -> EndpointSlice {
    serde_json::from_value(json!({
        "metadata": {"namespace": ns, "name": format!("{svc}-{}", family.to_lowercase()),
            "labels": {"kubernetes.io/service-name": svc}},
        "addressType": family,
        "endpoints": endpoints,
        "ports": ports,
    }))
    .expect("valid EndpointSlice JSON")
}

/// A tracker for `family` on node `node` fed with `services` and `slices`, with the
/// changes applied.
pub fn tracker(
    family: IpFamily,
    node: &str,
    services: &[Service],
    slices: &[EndpointSlice],
) -> ChangeTracker {
    let mut t = ChangeTracker::new(family, node);
    for s in services {
        let name = ServiceName::new(
            s.metadata.namespace.as_deref().unwrap(),
            s.metadata.name.as_deref().unwrap(),
        );
        t.update_service(name, Some(s));
    }
    for s in slices {
        t.update_slice(s, false);
    }
    t.apply();
    t
}
