//! A Service with ready pods gets EndpointSlices and Endpoints (no kubelet: the test posts
//! pod status as a kubelet would); readiness and termination show in the conditions, the
//! node's zone in each endpoint, `trafficDistribution: PreferClose` as zone hints; and
//! upstream's rule for Endpoints without a Service.

#[path = "lifecycle_support.rs"]
mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::{Endpoints, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::json;

async fn running_pod(pods: &Api<Pod>, name: &str, ip: &str, ready: bool) {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": "web"}},
        "spec": {"nodeName": "node-1", "containers": [{"name": "c", "image": "busybox", "ports": [{"name": "http", "containerPort": 8080}]}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    set_status(pods, name, ip, ready).await;
}

async fn set_status(pods: &Api<Pod>, name: &str, ip: &str, ready: bool) {
    let status = json!({"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
        "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
}

#[tokio::test]
async fn service_with_ready_pods_gets_slices_and_endpoints() {
    let cluster = e2e::cluster_or_skip!();
    let (mut kcm, metrics_port) =
        support::start_kcm_on_port(&cluster, "serviceaccount,endpointslice,endpoint", &[]);
    let client = cluster.client();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    support::eventually(
        "default ServiceAccount",
        Duration::from_secs(30),
        &mut kcm,
        || async {
            Ok(
                Api::<k8s_openapi::api::core::v1::ServiceAccount>::namespaced(
                    client.clone(),
                    "default",
                )
                .get_opt("default")
                .await?,
            )
        },
    )
    .await;
    // The pods' node, in a zone: endpoints carry it, and PreferClose hints at it.
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": "node-1", "labels": {"topology.kubernetes.io/zone": "zone-a"}}
    }))
    .unwrap();
    Api::<Node>::all(client.clone())
        .create(&PostParams::default(), &node)
        .await
        .unwrap();
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "trafficDistribution": "PreferClose",
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}
    }))
    .unwrap();
    Api::<Service>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &svc)
        .await
        .unwrap();
    running_pod(&pods, "a", "10.244.0.10", true).await;
    running_pod(&pods, "b", "10.244.0.11", false).await;

    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let lp = ListParams::default().labels("kubernetes.io/service-name=web");
    let slice = support::eventually(
        "an EndpointSlice with both pods",
        Duration::from_secs(30),
        &mut kcm,
        || async {
            Ok(slices
                .list(&lp)
                .await?
                .items
                .into_iter()
                .find(|s| s.endpoints.len() == 2))
        },
    )
    .await;
    assert_eq!(slice.address_type, "IPv4");
    assert_eq!(
        slice.metadata.labels.as_ref().unwrap()["endpointslice.kubernetes.io/managed-by"],
        "endpointslice-controller.k8s.io"
    );
    assert_eq!(slice.ports.as_ref().unwrap()[0].port, Some(8080));
    let by_ip = |ip: &str| {
        slice
            .endpoints
            .iter()
            .find(|e| e.addresses[0] == ip)
            .unwrap()
            .conditions
            .clone()
            .unwrap()
    };
    assert_eq!(by_ip("10.244.0.10").ready, Some(true));
    assert_eq!(by_ip("10.244.0.11").ready, Some(false));
    let endpoint = |ip: &str| {
        slice
            .endpoints
            .iter()
            .find(|e| e.addresses[0] == ip)
            .unwrap()
    };
    let a = endpoint("10.244.0.10");
    assert_eq!(a.zone.as_deref(), Some("zone-a"));
    assert_eq!(a.node_name.as_deref(), Some("node-1"));
    let zones = a.hints.as_ref().and_then(|h| h.for_zones.clone());
    assert_eq!(
        zones.unwrap()[0].name,
        "zone-a",
        "PreferClose hints a's zone"
    );
    assert_eq!(
        endpoint("10.244.0.11").hints,
        None,
        "no hints while not ready"
    );

    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    let ep = support::eventually(
        "Endpoints web",
        Duration::from_secs(30),
        &mut kcm,
        || async { Ok(endpoints.get_opt("web").await?) },
    )
    .await;
    let subset = &ep.subsets.unwrap()[0];
    assert_eq!(subset.addresses.as_ref().unwrap()[0].ip, "10.244.0.10");
    assert_eq!(
        subset.not_ready_addresses.as_ref().unwrap()[0].ip,
        "10.244.0.11"
    );

    // b becomes ready: both show up as ready.
    set_status(&pods, "b", "10.244.0.11", true).await;
    support::eventually(
        "b ready in the slice",
        Duration::from_secs(30),
        &mut kcm,
        || async {
            let all = slices.list(&lp).await?.items;
            Ok(all
                .iter()
                .flat_map(|s| &s.endpoints)
                .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
                .count()
                .eq(&2)
                .then_some(()))
        },
    )
    .await;

    // Relabelling a pod out of the selector removes it.
    pods.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(&json!({"metadata": {"labels": {"app": "other"}}})),
    )
    .await
    .unwrap();
    support::eventually(
        "a gone from Endpoints",
        Duration::from_secs(30),
        &mut kcm,
        || async {
            let ep = endpoints.get("web").await?;
            let ips: Vec<String> = ep
                .subsets
                .unwrap_or_default()
                .iter()
                .flat_map(|s| s.addresses.clone().unwrap_or_default())
                .map(|a| a.ip)
                .collect();
            Ok((ips == vec!["10.244.0.11".to_string()]).then_some(()))
        },
    )
    .await;

    // The work shows on /metrics under upstream's names once the slice controller has also
    // dropped a: web has 1 endpoint in 1 slice (the selector-less kubernetes Service none).
    const C: &str = "endpoint_slice_controller_";
    let metrics = support::scrape_metrics_until(&cluster, &mut kcm, metrics_port, |text| {
        support::sample(text, &format!("{C}endpoints_desired")) == Some(1.0)
    })
    .await;
    let value = |series: &str| {
        support::sample(&metrics, series).unwrap_or_else(|| panic!("no {series} in\n{metrics}"))
    };
    for queue in ["endpoint_slice", "endpoint", "serviceaccount"] {
        let adds = value(&format!(r#"workqueue_adds_total{{name="{queue}"}}"#));
        assert!(adds >= 1.0, "{queue}: {adds}");
        let done = value(&format!(
            r#"workqueue_work_duration_seconds_count{{name="{queue}"}}"#
        ));
        assert!(done >= 1.0, "{queue}: {done}");
    }
    assert_eq!(value(&format!("{C}num_endpoint_slices")), 1.0);
    assert_eq!(value(&format!("{C}desired_endpoint_slices")), 1.0);
    assert!(value(&format!(r#"{C}changes{{operation="create"}}"#)) >= 1.0);
    // b turning ready and a leaving update the slice.
    assert!(value(&format!(r#"{C}changes{{operation="update"}}"#)) >= 2.0);
    assert!(value(&format!(r#"{C}syncs{{result="success"}}"#)) >= 3.0);
    assert!(value(&format!("{C}endpoints_added_per_sync_sum")) >= 2.0);
    assert!(value(&format!("{C}endpoints_removed_per_sync_sum")) >= 1.0);
    let changed = r#"endpointslices_changed_per_sync_count{topology="Disabled",traffic_distribution="PreferClose"}"#;
    assert!(value(&format!("{C}{changed}")) >= 3.0);
    let by_traffic =
        r#"services_count_by_traffic_distribution{traffic_distribution="PreferClose"}"#;
    assert_eq!(value(&format!("{C}{by_traffic}")), 1.0);
    kcm.terminate(Duration::from_secs(10)).unwrap();
}

/// Upstream's rule for Endpoints nobody's Service owns (conformance: "should test the
/// lifecycle of an Endpoint"): one a user creates without a Service is left alone while the
/// controller runs; one whose Service was deleted while no controller ran is removed when it
/// starts (checkLeftoverEndpoints), except leader-election records.
#[tokio::test]
async fn user_endpoints_without_a_service_stay_and_leftovers_go_at_start() {
    let cluster = e2e::cluster_or_skip!();
    let client = cluster.client();
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    let make = |name: &str, leader: bool| -> Endpoints {
        let mut meta = json!({"name": name});
        if leader {
            meta["annotations"] = json!({"control-plane.alpha.kubernetes.io/leader": "{}"});
        }
        serde_json::from_value(json!({
            "metadata": meta,
            "subsets": [{"addresses": [{"ip": "10.0.0.24"}], "ports": [{"port": 80}]}]
        }))
        .unwrap()
    };
    // Left over before the controller starts: a Service's, and a leader record.
    for (name, leader) in [("leftover", false), ("leader", true)] {
        endpoints
            .create(&PostParams::default(), &make(name, leader))
            .await
            .unwrap();
    }
    let mut kcm = support::start_kcm(&cluster, "endpoint", &[]);
    support::eventually(
        "the leftover Endpoints deleted at start-up",
        Duration::from_secs(30),
        &mut kcm,
        || async { Ok(endpoints.get_opt("leftover").await?.is_none().then_some(())) },
    )
    .await;
    assert!(
        endpoints.get_opt("leader").await.unwrap().is_some(),
        "a leader-election record is never a leftover"
    );
    // Created while the controller runs, with no Service: it stays, and so do its changes.
    endpoints
        .create(&PostParams::default(), &make("by-hand", false))
        .await
        .unwrap();
    endpoints
        .patch(
            "by-hand",
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"labels": {"changed": "yes"}}})),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let kept = endpoints.get_opt("by-hand").await.unwrap();
    assert!(
        kept.is_some_and(|e| e.metadata.labels.is_some_and(|l| l["changed"] == "yes")),
        "user-created Endpoints without a Service deleted or reverted"
    );
    kcm.terminate(Duration::from_secs(10)).unwrap();
}
