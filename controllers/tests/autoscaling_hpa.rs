//! horizontal-pod-autoscaler-controller against a real apiserver. No metrics-server exists
//! here, so the test serves `metrics.k8s.io/v1beta1` itself as an aggregated API: an HTTPS
//! server in this process, registered with an APIService whose Service's EndpointSlice
//! points at this machine's address (`--enable-aggregator-routing`). The deployment and
//! replicaset controllers run the target; a fake kubelet reports its pods Running/Ready.
//! The HPA scales a Deployment up (to its maxReplicas: `ScalingLimited`), then down after a
//! short scale-down stabilization window; another scales on an external metric
//! (`external.metrics.k8s.io`, served the same way); HPAs on an unknown external metric and
//! on a missing target report upstream's conditions and events.

#[path = "workload_support.rs"]
mod support;

#[path = "lifecycle_support.rs"]
mod lifecycle;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use component_base::server::{Authorization, ServingOptions, TlsOptions};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::{
    HorizontalPodAutoscaler, HorizontalPodAutoscalerCondition,
};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;
use kube::api::{ListParams, PostParams};
use kube::Api;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

/// The fake metrics server: every selected pod uses `milli_cpu` of CPU.
#[derive(Clone)]
struct Metrics {
    client: kube::Client,
    milli_cpu: Arc<AtomicI64>,
}

async fn discovery() -> Json<Value> {
    Json(json!({"kind": "APIResourceList", "apiVersion": "v1",
        "groupVersion": "metrics.k8s.io/v1beta1", "resources": [
            {"name": "pods", "singularName": "", "namespaced": true, "kind": "PodMetrics", "verbs": ["get", "list"]}]}))
}

async fn external_discovery() -> Json<Value> {
    Json(json!({"kind": "APIResourceList", "apiVersion": "v1",
        "groupVersion": "external.metrics.k8s.io/v1beta1", "resources": []}))
}

/// `queue_depth` is two series, 25 and 30 messages; any other external metric is unknown.
async fn external_metric(
    Path((_ns, metric)): Path<(String, String)>,
) -> Result<Json<Value>, (axum::http::StatusCode, Json<Value>)> {
    if metric != "queue_depth" {
        return Err((
            axum::http::StatusCode::NOT_FOUND,
            Json(
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404,
                "reason": "NotFound", "message": format!("external metric {metric} not found")}),
            ),
        ));
    }
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let item = |v: &str, q: &str| {
        json!({"metricName": "queue_depth", "metricLabels": {"queue": q},
        "timestamp": now, "value": v})
    };
    Ok(Json(json!({"kind": "ExternalMetricValueList",
        "apiVersion": "external.metrics.k8s.io/v1beta1", "metadata": {},
        "items": [item("25", "a"), item("30", "b")]})))
}

async fn pod_metrics(
    State(m): State<Metrics>,
    Path(ns): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Json<Value> {
    let pods: Api<Pod> = Api::namespaced(m.client.clone(), &ns);
    let selector = q.get("labelSelector").cloned().unwrap_or_default();
    let listed = pods
        .list(&ListParams::default().labels(&selector))
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let cpu = format!("{}m", m.milli_cpu.load(Ordering::SeqCst));
    let items: Vec<Value> = listed
        .iter()
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .map(|p| {
            json!({"metadata": {"name": p.metadata.name, "namespace": ns, "labels": p.metadata.labels},
                "timestamp": now, "window": "1s",
                "containers": [{"name": "app", "usage": {"cpu": cpu, "memory": "10Mi"}}]})
        })
        .collect();
    Json(
        json!({"kind": "PodMetricsList", "apiVersion": "metrics.k8s.io/v1beta1",
        "metadata": {}, "items": items}),
    )
}

/// A global IPv4 address of this machine (EndpointSlices refuse loopback addresses).
fn local_address() -> Option<Ipv4Addr> {
    let out = std::process::Command::new("ip")
        .args(["-4", "-o", "addr", "show", "scope", "global"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().skip_while(|w| *w != "inet").nth(1))
        .filter_map(|cidr| cidr.split('/').next()?.parse().ok())
        .next()
}

/// Serves metrics.k8s.io on `ip:port` and registers it with the apiserver.
async fn serve_metrics(
    client: &kube::Client,
    ip: Ipv4Addr,
    metrics: Metrics,
    stop: CancellationToken,
) {
    let port = e2e::ports::free_port().expect("free port");
    let app = Router::new()
        .route("/apis/metrics.k8s.io/v1beta1", get(discovery))
        .route(
            "/apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods",
            get(pod_metrics),
        )
        .route(
            "/apis/external.metrics.k8s.io/v1beta1",
            get(external_discovery),
        )
        .route(
            "/apis/external.metrics.k8s.io/v1beta1/namespaces/{ns}/{metric}",
            get(external_metric),
        )
        .with_state(metrics);
    let opts = ServingOptions {
        bind_address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        port,
        tls: Some(TlsOptions::default()),
    };
    component_base::server::serve(
        "metrics-server",
        &opts,
        app,
        Authorization::AlwaysAllow,
        stop,
    )
    .await
    .expect("serve metrics.k8s.io");
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "metrics-server", "namespace": "kube-system"},
        "spec": {"ports": [{"name": "https", "port": 443, "targetPort": port}]}}))
    .unwrap();
    Api::<Service>::namespaced(client.clone(), "kube-system")
        .create(&PostParams::default(), &svc)
        .await
        .unwrap();
    let slice: EndpointSlice = serde_json::from_value(json!({
        "metadata": {"name": "metrics-server-1", "namespace": "kube-system",
            "labels": {"kubernetes.io/service-name": "metrics-server"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [ip.to_string()], "conditions": {"ready": true}}],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}))
    .unwrap();
    Api::<EndpointSlice>::namespaced(client.clone(), "kube-system")
        .create(&PostParams::default(), &slice)
        .await
        .unwrap();
    for group in ["metrics.k8s.io", "external.metrics.k8s.io"] {
        let apiservice: APIService = serde_json::from_value(json!({
            "metadata": {"name": format!("v1beta1.{group}")},
            "spec": {"group": group, "version": "v1beta1", "insecureSkipTLSVerify": true,
                "groupPriorityMinimum": 100, "versionPriority": 100,
                "service": {"namespace": "kube-system", "name": "metrics-server", "port": 443}}}))
        .unwrap();
        Api::<APIService>::all(client.clone())
            .create(&PostParams::default(), &apiservice)
            .await
            .unwrap();
    }
}

fn deployment(name: &str) -> Deployment {
    serde_json::from_value(json!({"metadata": {"name": name},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "busybox",
                    "resources": {"requests": {"cpu": "100m"}}}]}}}}))
    .unwrap()
}

fn hpa(name: &str, target: &str, metrics: Value, behavior: Value) -> HorizontalPodAutoscaler {
    serde_json::from_value(json!({"metadata": {"name": name},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
            "minReplicas": 1, "maxReplicas": 4, "metrics": metrics, "behavior": behavior}}))
    .unwrap()
}

fn cond<'a>(
    h: &'a HorizontalPodAutoscaler,
    t: &str,
) -> Option<&'a HorizontalPodAutoscalerCondition> {
    h.status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == t)
}

/// (status, reason) of condition `t`.
fn state(h: &HorizontalPodAutoscaler, t: &str) -> (String, String) {
    cond(h, t)
        .map(|c| (c.status.clone(), c.reason.clone().unwrap_or_default()))
        .unwrap_or_default()
}

async fn notes(client: &kube::Client, hpa: &str, reason: &str) -> Vec<String> {
    Api::<Event>::namespaced(client.clone(), "default")
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|e| {
            e.reason.as_deref() == Some(reason)
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(hpa)
        })
        .filter_map(|e| e.note)
        .collect()
}

#[tokio::test]
async fn scales_a_deployment_up_and_down_on_served_cpu_metrics() {
    let Some(ip) = local_address() else {
        e2e::skip_test!("no global IPv4 address to route the aggregated metrics API to");
    };
    let cluster = e2e::cluster_or_skip!(apiserver_flags = &["--enable-aggregator-routing=true"]);
    let client = cluster.client();
    let stop = CancellationToken::new();
    let _stop = stop.clone().drop_guard();
    let cpu = Arc::new(AtomicI64::new(150));
    let metrics = Metrics {
        client: client.clone(),
        milli_cpu: cpu.clone(),
    };
    serve_metrics(&client, ip, metrics, stop.clone()).await;
    support::fake_kubelet(client.clone(), "default", stop.clone(), |_| {
        Some(support::Outcome::Ready)
    });

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    for d in ["web", "worker", "idle"] {
        deployments
            .create(&PostParams::default(), &deployment(d))
            .await
            .unwrap();
    }
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), "default");
    let cpu_50 = json!([{"type": "Resource", "resource": {"name": "cpu",
        "target": {"type": "Utilization", "averageUtilization": 50}}}]);
    let short_scale_down = json!({"scaleDown": {"stabilizationWindowSeconds": 3}});
    for h in [
        hpa("web", "web", cpu_50.clone(), short_scale_down),
        hpa(
            "queue",
            "worker",
            json!([{"type": "External", "external": {"metric": {"name": "queue_depth"},
                "target": {"type": "AverageValue", "averageValue": "10"}}}]),
            Value::Null,
        ),
        hpa(
            "lost",
            "idle",
            json!([{"type": "External", "external": {"metric": {"name": "missing_metric"},
                "target": {"type": "Value", "value": "1"}}}]),
            Value::Null,
        ),
        hpa("ghost", "missing", cpu_50, Value::Null),
    ] {
        hpas.create(&PostParams::default(), &h).await.unwrap();
    }

    let port = e2e::ports::free_port().expect("free port");
    let mut args =
        e2e::components::controller_manager_args(&cluster, port, false).expect("kcm args");
    args.extend([
        "--controllers=serviceaccount,deployment,replicaset,horizontalpodautoscaling".to_string(),
        "--use-service-account-credentials=true".to_string(),
        "--v=2".to_string(),
        "--horizontal-pod-autoscaler-sync-period=1s".to_string(),
    ]);
    let mut kcm = cluster
        .spawn_component(e2e::components::KUBE_CONTROLLER_MANAGER, &args)
        .expect("start kube-controller-manager");
    support::eventually(
        "the aggregated metrics.k8s.io API to be available",
        Duration::from_secs(30),
        &mut kcm,
        || async {
            let a = Api::<APIService>::all(client.clone())
                .get("v1beta1.metrics.k8s.io")
                .await?;
            let available = a
                .status
                .iter()
                .flat_map(|s| s.conditions.iter().flatten())
                .any(|c| c.type_ == "Available" && c.status == "True");
            Ok(available.then_some(()))
        },
    )
    .await;

    // 150m of a 100m request is 150 % against a 50 % target: 1 → 3, then (once the new
    // pods' samples count) up to maxReplicas 4, where the HPA is limited.
    let up = support::eventually(
        "web scaled up to maxReplicas and limited there",
        Duration::from_secs(60),
        &mut kcm,
        || async {
            let h = hpas.get("web").await?;
            let s = h.status.clone().unwrap_or_default();
            let limited = state(&h, "ScalingLimited") == ("True".into(), "TooManyReplicas".into());
            Ok((s.current_replicas == Some(4) && s.desired_replicas == 4 && limited).then_some(h))
        },
    )
    .await;
    let d = deployments.get("web").await.unwrap();
    assert_eq!(d.spec.unwrap().replicas, Some(4));
    let s = up.status.clone().unwrap();
    assert!(s.last_scale_time.is_some());
    let current = &s.current_metrics.as_ref().unwrap()[0];
    let r = current.resource.as_ref().unwrap();
    assert_eq!(
        (current.type_.as_str(), r.name.as_str()),
        ("Resource", "cpu")
    );
    assert_eq!(r.current.average_utilization, Some(150));
    assert_eq!(r.current.average_value.as_ref().unwrap().0, "150m");
    assert_eq!(
        state(&up, "ScalingActive"),
        ("True".into(), "ValidMetricFound".into())
    );
    assert_eq!(state(&up, "AbleToScale").0, "True");
    let rescales = notes(&client, "web", "SuccessfulRescale").await;
    assert!(
        rescales.contains(
            &"New size: 3; reason: cpu resource utilization (percentage of request) above target"
                .to_string()
        ),
        "{rescales:?}"
    );
    assert!(
        rescales.contains(
            &"New size: 4; reason: cpu resource utilization (percentage of request) above target"
                .to_string()
        ),
        "{rescales:?}"
    );

    // 20 %: the recommendation falls to 2 and then 1, after the 3 s stabilization window.
    cpu.store(20, Ordering::SeqCst);
    support::eventually(
        "web held by the scale-down stabilization window",
        Duration::from_secs(20),
        &mut kcm,
        || async {
            let h = hpas.get("web").await?;
            Ok(
                (state(&h, "AbleToScale") == ("True".into(), "ScaleDownStabilized".into()))
                    .then_some(()),
            )
        },
    )
    .await;
    let down = support::eventually(
        "web scaled down to minReplicas",
        Duration::from_secs(40),
        &mut kcm,
        || async {
            let h = hpas.get("web").await?;
            let s = h.status.clone().unwrap_or_default();
            Ok((s.current_replicas == Some(1) && s.desired_replicas == 1).then_some(h))
        },
    )
    .await;
    assert_eq!(
        deployments.get("web").await.unwrap().spec.unwrap().replicas,
        Some(1)
    );
    let r = down
        .status
        .as_ref()
        .unwrap()
        .current_metrics
        .as_ref()
        .unwrap()[0]
        .resource
        .clone()
        .unwrap();
    assert_eq!(r.current.average_utilization, Some(20));
    let rescales = notes(&client, "web", "SuccessfulRescale").await;
    assert!(
        rescales
            .iter()
            .any(|n| n.ends_with("; reason: All metrics below target")),
        "{rescales:?}"
    );

    // An external metric: 25 + 30 messages at 10 per replica asks for 6, clamped to 4.
    let queue = support::eventually(
        "queue scaled on its external metric",
        Duration::from_secs(30),
        &mut kcm,
        || async {
            let h = hpas.get("queue").await?;
            let s = h.status.clone().unwrap_or_default();
            Ok((s.current_replicas == Some(4) && s.desired_replicas == 4).then_some(h))
        },
    )
    .await;
    let x = queue
        .status
        .as_ref()
        .unwrap()
        .current_metrics
        .as_ref()
        .unwrap()[0]
        .external
        .clone()
        .unwrap();
    assert_eq!(x.metric.name, "queue_depth");
    assert!(x.current.average_value.is_some());
    assert_eq!(
        deployments
            .get("worker")
            .await
            .unwrap()
            .spec
            .unwrap()
            .replicas,
        Some(4)
    );
    assert_eq!(
        state(&queue, "ScalingActive"),
        ("True".into(), "ValidMetricFound".into())
    );
    let rescales = notes(&client, "queue", "SuccessfulRescale").await;
    assert!(
        rescales
            .iter()
            .any(|n| n.starts_with("New size: 4; reason: external metric queue_depth")),
        "{rescales:?}"
    );

    // An external metric the API does not have: ScalingActive=False with upstream's
    // reason and events, the target left alone.
    let lost = support::eventually(
        "lost reports its missing external metric",
        Duration::from_secs(20),
        &mut kcm,
        || async {
            let h = hpas.get("lost").await?;
            Ok(
                (state(&h, "ScalingActive") == ("False".into(), "FailedGetExternalMetric".into()))
                    .then_some(h),
            )
        },
    )
    .await;
    assert!(cond(&lost, "ScalingActive")
        .and_then(|c| c.message.clone())
        .unwrap()
        .starts_with("the HPA was unable to compute the replica count: unable to get external metric default/missing_metric/"));
    assert_eq!(
        deployments
            .get("idle")
            .await
            .unwrap()
            .spec
            .unwrap()
            .replicas,
        Some(1)
    );
    assert!(!notes(&client, "lost", "FailedGetExternalMetric")
        .await
        .is_empty());
    let failed = notes(&client, "lost", "FailedComputeMetricsReplicas").await;
    assert!(
        failed.iter().any(|n| n.starts_with("invalid metrics (1 invalid out of 1), first error is: failed to get missing_metric external metric value")),
        "{failed:?}"
    );

    // A target that does not exist: AbleToScale=False FailedGetScale.
    let ghost = support::eventually(
        "ghost cannot get its scale",
        Duration::from_secs(20),
        &mut kcm,
        || async {
            let h = hpas.get("ghost").await?;
            Ok(
                (state(&h, "AbleToScale") == ("False".into(), "FailedGetScale".into()))
                    .then_some(h),
            )
        },
    )
    .await;
    assert!(cond(&ghost, "AbleToScale")
        .and_then(|c| c.message.clone())
        .unwrap()
        .starts_with("the HPA controller was unable to get the target's current scale: "));
    assert!(!notes(&client, "ghost", "FailedGetScale").await.is_empty());

    // Upstream's controller metrics on the manager's /metrics.
    let text = lifecycle::scrape_metrics_until(&cluster, &mut kcm, port, |t| {
        t.contains(
            "horizontal_pod_autoscaler_controller_reconciliations_total{action=\"scale_down\"",
        )
    })
    .await;
    for series in [
        r#"horizontal_pod_autoscaler_controller_reconciliations_total{action="scale_up",error="none"}"#,
        r#"horizontal_pod_autoscaler_controller_reconciliations_total{action="none",error="internal"}"#,
        r#"horizontal_pod_autoscaler_controller_metric_computation_total{action="scale_up",error="none",metric_type="Resource"}"#,
        r#"horizontal_pod_autoscaler_controller_metric_computation_total{action="none",error="internal",metric_type="External"}"#,
    ] {
        assert!(
            lifecycle::sample(&text, series).is_some_and(|v| v >= 1.0),
            "{series} in\n{text}"
        );
    }
    assert_eq!(
        lifecycle::sample(
            &text,
            "horizontal_pod_autoscaler_controller_num_horizontal_pod_autoscalers"
        ),
        Some(4.0)
    );
    assert_eq!(
        lifecycle::sample(
            &text,
            r#"horizontal_pod_autoscaler_controller_desired_replicas{namespace="default",hpa_name="web"}"#
        ),
        Some(1.0)
    );
}
