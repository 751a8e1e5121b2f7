//! endpointslice-mirroring-controller against a real apiserver: a selector-less Service's
//! hand-written Endpoints become an EndpointSlice owned by the Endpoints; changes follow,
//! `skip-mirror` and deletion remove it, and a Service with a selector is never mirrored —
//! nor are the endpointslice controller's slices of it (in the same shared informer) touched.

#[path = "lifecycle_support.rs"]
mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::events::v1::Event;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::json;

const MANAGED_BY: &str = "endpointslicemirroring-controller.k8s.io";
const WAIT: Duration = Duration::from_secs(20);

fn mirrored_of(name: &str) -> ListParams {
    ListParams::default().labels(&format!(
        "kubernetes.io/service-name={name},endpointslice.kubernetes.io/managed-by={MANAGED_BY}"
    ))
}

async fn create_service(api: &Api<Service>, name: &str, selector: Option<serde_json::Value>) {
    let mut spec = json!({"ports": [{"name": "http", "port": 80, "targetPort": 8080}]});
    if let Some(sel) = selector {
        spec["selector"] = sel;
    }
    let svc: Service =
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).expect("service");
    api.create(&PostParams::default(), &svc)
        .await
        .expect("create service");
}

fn endpoints(name: &str, ready: &[&str], not_ready: &[&str]) -> Endpoints {
    let addr = |ip: &&str| json!({"ip": ip, "hostname": format!("h{}", ip.replace('.', "-")), "nodeName": "node-1"});
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"team": "a"},
            "annotations": {"note": "x", "endpoints.kubernetes.io/last-change-trigger-time": "2026-01-01T00:00:00Z"}},
        "subsets": [{
            "addresses": ready.iter().map(addr).collect::<Vec<_>>(),
            "notReadyAddresses": not_ready.iter().map(addr).collect::<Vec<_>>(),
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]
        }]
    }))
    .expect("endpoints")
}

#[tokio::test]
async fn selectorless_endpoints_are_mirrored_to_endpointslices() {
    let cluster = e2e::cluster_or_skip!();
    let (mut kcm, metrics_port) = support::start_kcm_on_port(
        &cluster,
        "endpointslicemirroring,endpointslice",
        &["--mirroring-max-endpoints-per-subset=2"],
    );
    let client = cluster.client();
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let eps: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");

    // A Service with a selector and hand-written Endpoints: never mirrored.
    create_service(&services, "sel", Some(json!({"app": "web"}))).await;
    eps.create(
        &PostParams::default(),
        &endpoints("sel", &["10.9.0.1"], &[]),
    )
    .await
    .expect("create sel endpoints");

    // Three ready addresses in one subset, two mirrored (the flag's maximum), with a warning.
    create_service(&services, "big", None).await;
    eps.create(
        &PostParams::default(),
        &endpoints("big", &["10.2.0.1", "10.2.0.2", "10.2.0.3"], &[]),
    )
    .await
    .expect("create big endpoints");

    create_service(&services, "ext", None).await;
    let created = eps
        .create(
            &PostParams::default(),
            &endpoints("ext", &["10.1.0.1"], &["10.1.0.2"]),
        )
        .await
        .expect("create ext endpoints");

    let slice = support::eventually(
        "a mirrored EndpointSlice with both addresses",
        WAIT,
        &mut kcm,
        || async {
            let items = slices.list(&mirrored_of("ext")).await?.items;
            Ok(items.into_iter().find(|s| s.endpoints.len() == 2))
        },
    )
    .await;
    assert_eq!(slice.address_type, "IPv4");
    let labels = slice.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels["team"], "a");
    assert_eq!(labels["kubernetes.io/service-name"], "ext");
    let annotations = slice.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(annotations.get("note").map(String::as_str), Some("x"));
    assert!(
        !annotations.contains_key("endpoints.kubernetes.io/last-change-trigger-time"),
        "{annotations:?}"
    );
    let owner = &slice.metadata.owner_references.clone().unwrap_or_default()[0];
    assert_eq!(
        (
            owner.kind.as_str(),
            owner.name.as_str(),
            Some(&owner.uid),
            owner.controller
        ),
        (
            "Endpoints",
            "ext",
            created.metadata.uid.as_ref(),
            Some(true)
        )
    );
    let port = &slice.ports.clone().unwrap_or_default()[0];
    assert_eq!(
        (port.name.as_deref(), port.port, port.protocol.as_deref()),
        (Some("http"), Some(8080), Some("TCP"))
    );
    let by_ip = |s: &EndpointSlice, ip: &str| {
        s.endpoints
            .iter()
            .find(|e| e.addresses == [ip])
            .cloned()
            .unwrap_or_else(|| panic!("{ip} not in {s:?}"))
    };
    let ready = by_ip(&slice, "10.1.0.1");
    assert_eq!(ready.conditions.as_ref().and_then(|c| c.ready), Some(true));
    assert_eq!(ready.hostname.as_deref(), Some("h10-1-0-1"));
    assert_eq!(ready.node_name.as_deref(), Some("node-1"));
    let not_ready = by_ip(&slice, "10.1.0.2");
    assert_eq!(
        not_ready.conditions.as_ref().and_then(|c| c.ready),
        Some(false)
    );

    // Updating the Endpoints updates the same slice in place.
    let mut next = endpoints("ext", &["10.1.0.1", "10.1.0.3"], &[]);
    next.metadata.resource_version = created.metadata.resource_version.clone();
    eps.replace("ext", &PostParams::default(), &next)
        .await
        .expect("update ext endpoints");
    let updated = support::eventually(
        "the slice follows the Endpoints",
        WAIT,
        &mut kcm,
        || async {
            let items = slices.list(&mirrored_of("ext")).await?.items;
            Ok(items.into_iter().find(|s| {
                let mut ips: Vec<&str> = s
                    .endpoints
                    .iter()
                    .map(|e| e.addresses[0].as_str())
                    .collect();
                ips.sort();
                ips == ["10.1.0.1", "10.1.0.3"]
            }))
        },
    )
    .await;
    assert_eq!(updated.metadata.name, slice.metadata.name);
    assert_eq!(
        slices.list(&mirrored_of("ext")).await.unwrap().items.len(),
        1
    );
    assert_eq!(
        by_ip(&updated, "10.1.0.3").conditions.and_then(|c| c.ready),
        Some(true)
    );

    // By now the Service with a selector has long been seen: it has no mirrored slice.
    assert!(
        slices
            .list(&mirrored_of("sel"))
            .await
            .unwrap()
            .items
            .is_empty(),
        "a Service with a selector was mirrored"
    );
    // The endpointslice controller's slice of that Service shares the EndpointSlices
    // informer with ours, under the same service-name label: a mirroring sync of `sel`
    // (its Endpoints changed) must leave it alone.
    let theirs = ListParams::default().labels(
        "kubernetes.io/service-name=sel,endpointslice.kubernetes.io/managed-by=endpointslice-controller.k8s.io",
    );
    let theirs_uid = support::eventually("sel's EndpointSlice", WAIT, &mut kcm, || async {
        Ok(slices
            .list(&theirs)
            .await?
            .items
            .first()
            .and_then(|s| s.metadata.uid.clone()))
    })
    .await;
    const SYNCS: &str = r#"workqueue_work_duration_seconds_count{name="endpoint_slice_mirroring"}"#;
    let syncs = |m: &str| support::sample(m, SYNCS).unwrap_or(0.0);
    let before = syncs(&support::scrape_metrics(&cluster, &mut kcm, metrics_port).await);
    eps.patch(
        "sel",
        &PatchParams::default(),
        &Patch::Merge(&json!({"metadata": {"labels": {"touched": "yes"}}})),
    )
    .await
    .expect("touch sel endpoints");
    support::scrape_metrics_until(&cluster, &mut kcm, metrics_port, |m| {
        syncs(m) > before
            && support::sample(m, r#"workqueue_depth{name="endpoint_slice_mirroring"}"#)
                == Some(0.0)
    })
    .await;
    let kept: Vec<_> = slices
        .list(&theirs)
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|s| s.metadata.uid)
        .collect();
    assert_eq!(
        kept,
        [theirs_uid],
        "mirroring removed the endpointslice controller's slice"
    );

    // skip-mirror removes the mirrored slice; dropping it brings the slice back.
    let skip = |v: Option<&str>| {
        Patch::Merge(
            json!({"metadata": {"labels": {"endpointslice.kubernetes.io/skip-mirror": v}}}),
        )
    };
    eps.patch("ext", &PatchParams::default(), &skip(Some("true")))
        .await
        .expect("label skip-mirror");
    support::eventually("skip-mirror removes the slice", WAIT, &mut kcm, || async {
        Ok(slices
            .list(&mirrored_of("ext"))
            .await?
            .items
            .is_empty()
            .then_some(()))
    })
    .await;
    eps.patch("ext", &PatchParams::default(), &skip(None))
        .await
        .expect("unlabel skip-mirror");
    support::eventually("the slice comes back", WAIT, &mut kcm, || async {
        let items = slices.list(&mirrored_of("ext")).await?.items;
        Ok((items.len() == 1 && items[0].endpoints.len() == 2).then_some(()))
    })
    .await;

    // Deleting the Endpoints deletes its slices (no garbage collector runs here).
    eps.delete("ext", &DeleteParams::default())
        .await
        .expect("delete ext endpoints");
    support::eventually(
        "deleting the Endpoints removes the slice",
        WAIT,
        &mut kcm,
        || async {
            Ok(slices
                .list(&mirrored_of("ext"))
                .await?
                .items
                .is_empty()
                .then_some(()))
        },
    )
    .await;
    assert!(slices
        .list(&mirrored_of("sel"))
        .await
        .unwrap()
        .items
        .is_empty());

    let big = support::eventually("big mirrored", WAIT, &mut kcm, || async {
        Ok(slices.list(&mirrored_of("big")).await?.items.pop())
    })
    .await;
    let ips: Vec<&str> = big
        .endpoints
        .iter()
        .map(|e| e.addresses[0].as_str())
        .collect();
    assert_eq!(ips, ["10.2.0.1", "10.2.0.2"]);
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let warning = support::eventually("TooManyAddressesToMirror event", WAIT, &mut kcm, || async {
        Ok(events
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .find(|e| {
                e.reason.as_deref() == Some("TooManyAddressesToMirror")
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("big")
            }))
    })
    .await;
    assert_eq!(warning.type_.as_deref(), Some("Warning"));
    assert!(
        warning
            .note
            .as_deref()
            .unwrap_or_default()
            .contains("1 addresses were skipped"),
        "{warning:?}"
    );

    // The work done shows on /metrics under upstream's names: the work queue's and the
    // controller's own. By now ext is gone and big mirrors 2 endpoints in 1 slice.
    let metrics = support::scrape_metrics(&cluster, &mut kcm, metrics_port).await;
    let value = |series: &str| {
        support::sample(&metrics, series).unwrap_or_else(|| panic!("no {series} in\n{metrics}"))
    };
    const Q: &str = r#"{name="endpoint_slice_mirroring"}"#;
    assert!(
        value(&format!("workqueue_adds_total{Q}")) >= 4.0,
        "{metrics}"
    );
    assert!(value(&format!("workqueue_work_duration_seconds_count{Q}")) >= 4.0);
    assert!(value(&format!("workqueue_queue_duration_seconds_count{Q}")) >= 4.0);
    assert_eq!(value(&format!("workqueue_depth{Q}")), 0.0);
    assert!(value(&format!("workqueue_unfinished_work_seconds{Q}")) >= 0.0);
    const C: &str = "endpoint_slice_mirroring_controller_";
    assert!(value(&format!(r#"{C}changes{{operation="create"}}"#)) >= 3.0);
    assert!(value(&format!(r#"{C}changes{{operation="update"}}"#)) >= 1.0);
    assert!(value(&format!(r#"{C}changes{{operation="delete"}}"#)) >= 2.0);
    // ext's 2, its 1 new address, its 2 again after skip-mirror, big's 2.
    assert!(value(&format!("{C}endpoints_added_per_sync_sum")) >= 7.0);
    assert!(value(&format!("{C}endpoints_removed_per_sync_sum")) >= 1.0);
    assert!(value(&format!("{C}addresses_skipped_per_sync_sum")) >= 1.0);
    assert!(value(&format!("{C}endpoints_sync_duration_count")) >= 4.0);
    assert_eq!(value(&format!("{C}endpoints_desired")), 2.0);
    assert_eq!(value(&format!("{C}num_endpoint_slices")), 1.0);
    assert_eq!(value(&format!("{C}desired_endpoint_slices")), 1.0);
    kcm.terminate(Duration::from_secs(10)).unwrap();
}
