//! service-cidr-controller against a real apiserver: a new ServiceCIDR gets the protection
//! finalizer and `Ready=True`; deleted while a Service's cluster IP lies only in it, it stays
//! with `Ready=False` (Terminating); once the Service is gone it is released (after
//! upstream's 10 s grace) and disappears.

#[path = "lifecycle_support.rs"]
mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::ServiceCIDR;
use kube::api::{DeleteParams, PostParams};
use kube::Api;
use serde_json::json;

const FINALIZER: &str = "networking.k8s.io/service-cidr-finalizer";

/// The `Ready` condition's (status, reason, message).
fn ready(c: &ServiceCIDR) -> Option<(String, String, String)> {
    let cond = c
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")?;
    Some((
        cond.status.clone(),
        cond.reason.clone(),
        cond.message.clone(),
    ))
}

fn has_finalizer(c: &ServiceCIDR) -> bool {
    c.metadata
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|x| x == FINALIZER))
}

#[tokio::test]
async fn service_cidrs_are_protected_while_their_ips_are_in_use() {
    let cluster = e2e::cluster_or_skip!();
    let client = cluster.client();
    let cidrs: Api<ServiceCIDR> = Api::all(client.clone());
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let extra: ServiceCIDR = serde_json::from_value(json!({
        "metadata": {"name": "extra"}, "spec": {"cidrs": ["10.200.0.0/24"]}
    }))
    .unwrap();
    cidrs.create(&PostParams::default(), &extra).await.unwrap();

    let mut kcm = support::start_kcm(&cluster, "service-cidr-controller", &[]);
    support::eventually(
        "finalizer and Ready=True on the new ServiceCIDR",
        Duration::from_secs(30),
        &mut kcm,
        || async {
            let c = cidrs.get("extra").await?;
            Ok((has_finalizer(&c) && ready(&c).is_some_and(|r| r.0 == "True")).then_some(c))
        },
    )
    .await;
    let c = cidrs.get("extra").await.unwrap();
    assert_eq!(
        ready(&c),
        Some((
            "True".into(),
            "".into(),
            "Kubernetes Service CIDR is ready".into()
        ))
    );

    // A Service whose cluster IP only the new range holds (the apiserver records it as an
    // IPAddress managed by its allocator).
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "in-extra"},
        "spec": {"clusterIP": "10.200.0.10", "ports": [{"port": 80}]}
    }))
    .unwrap();
    services.create(&PostParams::default(), &svc).await.unwrap();
    cidrs
        .delete("extra", &DeleteParams::default())
        .await
        .unwrap();
    support::eventually(
        "Ready=False (Terminating) on the deleting ServiceCIDR",
        Duration::from_secs(30),
        &mut kcm,
        || async {
            let c = cidrs.get("extra").await?;
            Ok(ready(&c)
                .filter(|r| r.0 == "False")
                .map(|r| (r, has_finalizer(&c))))
        },
    )
    .await;
    let c = cidrs.get("extra").await.unwrap();
    assert!(has_finalizer(&c), "released while its IP is in use");
    assert_eq!(
        ready(&c).map(|r| (r.1, r.2)),
        Some((
            "Terminating".into(),
            "There are still IPAddresses referencing the ServiceCIDR, please remove them or create a new ServiceCIDR".into()
        ))
    );

    services
        .delete("in-extra", &DeleteParams::default())
        .await
        .unwrap();
    support::eventually(
        "the ServiceCIDR released and gone",
        Duration::from_secs(45),
        &mut kcm,
        || async {
            Ok(match cidrs.get_opt("extra").await? {
                None => Some(()),
                Some(_) => None,
            })
        },
    )
    .await;
    // The apiserver's default ServiceCIDR is protected too.
    let default = cidrs.get("kubernetes").await.unwrap();
    assert!(
        has_finalizer(&default),
        "the default ServiceCIDR keeps its finalizer"
    );
}
