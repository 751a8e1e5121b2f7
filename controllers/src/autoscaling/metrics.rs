//! Where the autoscaler's samples come from, behind the narrow [`MetricsClient`] trait:
//! the resource metrics API (`metrics.k8s.io/v1beta1` PodMetrics, served by
//! metrics-server or any aggregated API), the custom metrics API
//! (`custom.metrics.k8s.io/v1beta2`: per-pod and per-object metrics) and the external
//! metrics API (`external.metrics.k8s.io/v1beta1`); and the pure conversion of PodMetrics
//! into per-pod samples of one resource (summed over containers, or of one container).

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as Wire;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ApiResource, DynamicObject, ListParams};
use kube::Api;
use serde::Deserialize;

use super::replicas::{PodMetric, PodMetricsInfo};
use api_helpers::quantity::Quantity;
use component_base::duration::GoDuration;

/// One container's usage in a PodMetrics.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct ContainerMetrics {
    /// The container's name.
    #[serde(default)]
    pub name: String,
    /// Usage by resource name (`cpu`, `memory`).
    #[serde(default)]
    pub usage: BTreeMap<String, Wire>,
}

/// A pod's sample (`metrics.k8s.io/v1beta1` PodMetrics, without the object metadata but
/// its name).
#[derive(Debug, Clone, PartialEq)]
pub struct PodMetrics {
    /// The pod's name.
    pub name: String,
    /// When the sample was taken.
    pub timestamp: Timestamp,
    /// The window it covers.
    pub window: Duration,
    /// Per-container usage.
    pub containers: Vec<ContainerMetrics>,
}

/// The body of a PodMetrics besides its metadata, as served.
#[derive(Debug, Deserialize)]
struct PodMetricsBody {
    timestamp: Option<Time>,
    window: Option<String>,
    #[serde(default)]
    containers: Vec<ContainerMetrics>,
}

/// The object a custom `Object` metric describes, resolved to its resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    /// `resource.group` (apimachinery's `GroupResource.String()`), e.g. `ingresses.networking.k8s.io`.
    pub group_resource: String,
    /// The object's name.
    pub name: String,
    /// The object is the namespace itself (served under `metrics/`).
    pub is_namespace: bool,
}

/// Fetches metrics for the autoscaler (the I/O upstream's `MetricsClient` does). Label
/// selectors are in their string form; errors say what failed, in upstream's words.
pub trait MetricsClient: Send + Sync {
    /// The PodMetrics of the pods in `namespace` that match `selector`.
    fn pod_metrics<'a>(
        &'a self,
        namespace: &'a str,
        selector: &'a str,
    ) -> BoxFuture<'a, Result<Vec<PodMetrics>, String>>;

    /// Custom metric `metric` of each pod matching `selector` (by pod name), and the
    /// first sample's timestamp.
    fn pods_metric<'a>(
        &'a self,
        namespace: &'a str,
        selector: &'a str,
        metric: &'a str,
        metric_selector: &'a str,
    ) -> BoxFuture<'a, Result<(PodMetricsInfo, Timestamp), String>>;

    /// Custom metric `metric` of one object, as a milli-value.
    fn object_metric<'a>(
        &'a self,
        namespace: &'a str,
        object: &'a ObjectRef,
        metric: &'a str,
        metric_selector: &'a str,
    ) -> BoxFuture<'a, Result<i64, String>>;

    /// Every value of external metric `metric` matching `selector`, as milli-values.
    fn external_metric<'a>(
        &'a self,
        namespace: &'a str,
        metric: &'a str,
        selector: &'a str,
    ) -> BoxFuture<'a, Result<Vec<i64>, String>>;
}

/// Percent-encodes a query value.
fn enc(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A `MetricValueList` item of the custom metrics API (v1beta2).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MetricValue {
    #[serde(default)]
    described_object: DescribedObject,
    timestamp: Option<Time>,
    window_seconds: Option<i64>,
    value: Wire,
}

#[derive(Debug, Default, Deserialize)]
struct DescribedObject {
    #[serde(default)]
    name: String,
}

/// An `ExternalMetricValueList` item (v1beta1).
#[derive(Debug, Deserialize)]
struct ExternalValue {
    value: Wire,
}

#[derive(Debug, Deserialize)]
struct ItemList<T> {
    #[serde(default = "Vec::new")]
    items: Vec<T>,
}

impl RestMetricsClient {
    async fn get<T: serde::de::DeserializeOwned>(&self, path: String) -> Result<T, kube::Error> {
        let req = http::Request::get(path)
            .body(Vec::new())
            .map_err(kube::Error::HttpError)?;
        self.client.request::<T>(req).await
    }
}

/// The resource metrics API through the apiserver (aggregated `metrics.k8s.io`).
pub struct RestMetricsClient {
    client: kube::Client,
}

impl RestMetricsClient {
    /// A client reading `metrics.k8s.io/v1beta1` with `client`.
    pub fn new(client: kube::Client) -> Self {
        RestMetricsClient { client }
    }
}

fn pod_metrics_resource() -> ApiResource {
    ApiResource {
        group: "metrics.k8s.io".into(),
        version: "v1beta1".into(),
        api_version: "metrics.k8s.io/v1beta1".into(),
        kind: "PodMetrics".into(),
        plural: "pods".into(),
    }
}

impl MetricsClient for RestMetricsClient {
    fn pod_metrics<'a>(
        &'a self,
        namespace: &'a str,
        selector: &'a str,
    ) -> BoxFuture<'a, Result<Vec<PodMetrics>, String>> {
        Box::pin(async move {
            let api: Api<DynamicObject> =
                Api::namespaced_with(self.client.clone(), namespace, &pod_metrics_resource());
            let list = api
                .list(&ListParams::default().labels(selector))
                .await
                .map_err(|e| format!("unable to fetch metrics from resource metrics API: {e}"))?;
            list.items
                .into_iter()
                .map(parse_pod_metrics)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("unable to fetch metrics from resource metrics API: {e}"))
        })
    }

    fn pods_metric<'a>(
        &'a self,
        namespace: &'a str,
        selector: &'a str,
        metric: &'a str,
        metric_selector: &'a str,
    ) -> BoxFuture<'a, Result<(PodMetricsInfo, Timestamp), String>> {
        Box::pin(async move {
            let path = format!(
                "/apis/custom.metrics.k8s.io/v1beta2/namespaces/{namespace}/pods/*/{metric}?labelSelector={}&metricLabelSelector={}",
                enc(selector),
                enc(metric_selector)
            );
            let fail = |e: String| format!("unable to fetch metrics from custom metrics API: {e}");
            let list: ItemList<MetricValue> =
                self.get(path).await.map_err(|e| fail(e.to_string()))?;
            custom_samples(&list.items).map_err(fail)
        })
    }

    fn object_metric<'a>(
        &'a self,
        namespace: &'a str,
        object: &'a ObjectRef,
        metric: &'a str,
        metric_selector: &'a str,
    ) -> BoxFuture<'a, Result<i64, String>> {
        Box::pin(async move {
            let path = if object.is_namespace {
                format!(
                    "/apis/custom.metrics.k8s.io/v1beta2/namespaces/{namespace}/metrics/{metric}"
                )
            } else {
                format!(
                    "/apis/custom.metrics.k8s.io/v1beta2/namespaces/{namespace}/{}/{}/{metric}",
                    object.group_resource, object.name
                )
            };
            let path = format!("{path}?metricLabelSelector={}", enc(metric_selector));
            let fail = |e: String| format!("unable to fetch metrics from custom metrics API: {e}");
            let list: ItemList<MetricValue> =
                self.get(path).await.map_err(|e| fail(e.to_string()))?;
            let first = list
                .items
                .first()
                .ok_or_else(|| fail("no metric value returned".into()))?;
            quantity_milli(&first.value, "value").map_err(fail)
        })
    }

    fn external_metric<'a>(
        &'a self,
        namespace: &'a str,
        metric: &'a str,
        selector: &'a str,
    ) -> BoxFuture<'a, Result<Vec<i64>, String>> {
        Box::pin(async move {
            let path = format!(
                "/apis/external.metrics.k8s.io/v1beta1/namespaces/{namespace}/{metric}?labelSelector={}",
                enc(selector)
            );
            let fail =
                |e: String| format!("unable to fetch metrics from external metrics API: {e}");
            let list: ItemList<ExternalValue> =
                self.get(path).await.map_err(|e| fail(e.to_string()))?;
            if list.items.is_empty() {
                return Err("no metrics returned from external metrics API".into());
            }
            list.items
                .iter()
                .map(|v| quantity_milli(&v.value, "value"))
                .collect::<Result<Vec<_>, _>>()
                .map_err(fail)
        })
    }
}

/// Per-pod samples of a custom metric list (by the described object's name; a missing
/// `windowSeconds` is upstream's default minute). An empty list is an error.
fn custom_samples(items: &[MetricValue]) -> Result<(PodMetricsInfo, Timestamp), String> {
    let first = items
        .first()
        .ok_or("no metrics returned from custom metrics API")?;
    let ts = |m: &MetricValue| {
        m.timestamp
            .as_ref()
            .map(|t| t.0)
            .unwrap_or(Timestamp::UNIX_EPOCH)
    };
    let mut out = PodMetricsInfo::new();
    for m in items {
        out.insert(
            m.described_object.name.clone(),
            PodMetric {
                timestamp: ts(m),
                window: Duration::from_secs(m.window_seconds.unwrap_or(60).max(0) as u64),
                value: quantity_milli(&m.value, "value")?,
            },
        );
    }
    Ok((out, ts(first)))
}

fn quantity_milli(q: &Wire, what: &str) -> Result<i64, String> {
    Quantity::from_wire(q)
        .map(Quantity::milli_value)
        .map_err(|e| format!("{what}: {e}"))
}

/// A served PodMetrics object as [`PodMetrics`]; the error names the bad field.
pub fn parse_pod_metrics(o: DynamicObject) -> Result<PodMetrics, String> {
    let name = o.metadata.name.clone().unwrap_or_default();
    let body: PodMetricsBody =
        serde_json::from_value(o.data).map_err(|e| format!("PodMetrics {name:?}: {e}"))?;
    let window = match body.window.as_deref() {
        None | Some("") => Duration::ZERO,
        Some(w) => {
            w.parse::<GoDuration>()
                .map_err(|e| format!("PodMetrics {name:?}: window: {e}"))?
                .0
        }
    };
    Ok(PodMetrics {
        name,
        timestamp: body.timestamp.map(|t| t.0).unwrap_or(Timestamp::UNIX_EPOCH),
        window,
        containers: body.containers,
    })
}

fn milli(q: &Wire) -> Option<i64> {
    Quantity::from_wire(q).ok().map(Quantity::milli_value)
}

/// Per-pod samples of `resource` (upstream's `GetResourceMetric`): of the named
/// `container`, or summed over all containers (a pod with no containers, or one lacking
/// the resource, has no sample). Also the first item's timestamp. An empty list is an
/// error, as upstream's.
pub fn resource_samples(
    items: &[PodMetrics],
    resource: &str,
    container: Option<&str>,
) -> Result<(PodMetricsInfo, Timestamp), String> {
    let first = items
        .first()
        .ok_or("no metrics returned from resource metrics API")?;
    let mut out = PodMetricsInfo::new();
    for m in items {
        let value = match container {
            Some(c) => m
                .containers
                .iter()
                .find(|x| x.name == c)
                .and_then(|x| x.usage.get(resource))
                .and_then(milli),
            None if m.containers.is_empty() => None,
            None => m
                .containers
                .iter()
                .map(|x| x.usage.get(resource).and_then(milli))
                .sum::<Option<i64>>(),
        };
        if let Some(value) = value {
            out.insert(
                m.name.clone(),
                PodMetric {
                    timestamp: m.timestamp,
                    window: m.window,
                    value,
                },
            );
        }
    }
    Ok((out, first.timestamp))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pm(name: &str, containers: &[(&str, &[(&str, &str)])]) -> PodMetrics {
        PodMetrics {
            name: name.into(),
            timestamp: Timestamp::from_second(1000).unwrap(),
            window: Duration::from_secs(30),
            containers: containers
                .iter()
                .map(|(n, usage)| ContainerMetrics {
                    name: n.to_string(),
                    usage: usage
                        .iter()
                        .map(|(k, v)| (k.to_string(), Wire(v.to_string())))
                        .collect(),
                })
                .collect(),
        }
    }

    #[test]
    fn sums_containers_or_picks_one() {
        let items = vec![
            pm(
                "a",
                &[("app", &[("cpu", "100m")]), ("side", &[("cpu", "50m")])],
            ),
            pm(
                "b",
                &[("app", &[("cpu", "1")]), ("side", &[("memory", "1Mi")])],
            ),
            pm("c", &[]),
        ];
        let (all, ts) = resource_samples(&items, "cpu", None).unwrap();
        assert_eq!(ts, Timestamp::from_second(1000).unwrap());
        assert_eq!(all.get("a").map(|m| m.value), Some(150));
        assert!(!all.contains_key("b"), "a container without cpu: no sample");
        assert!(!all.contains_key("c"));
        let (app, _) = resource_samples(&items, "cpu", Some("app")).unwrap();
        assert_eq!(app.get("a").map(|m| m.value), Some(100));
        assert_eq!(app.get("b").map(|m| m.value), Some(1000));
        let (mem, _) = resource_samples(&items, "memory", Some("side")).unwrap();
        assert_eq!(mem.get("b").map(|m| m.value), Some(1024 * 1024 * 1000));
        assert_eq!(
            resource_samples(&[], "cpu", None).unwrap_err(),
            "no metrics returned from resource metrics API"
        );
    }

    #[test]
    fn custom_metric_lists_become_samples() {
        let list: ItemList<MetricValue> = serde_json::from_value(serde_json::json!({"items": [
            {"describedObject": {"kind": "Pod", "name": "a"}, "metric": {"name": "qps"},
             "timestamp": "2025-01-02T03:04:05Z", "windowSeconds": 30, "value": "1500m"},
            {"describedObject": {"kind": "Pod", "name": "b"}, "metric": {"name": "qps"},
             "timestamp": "2025-01-02T03:04:05Z", "value": "2"}]}))
        .unwrap();
        let (m, _) = custom_samples(&list.items).unwrap();
        assert_eq!(m["a"].value, 1500);
        assert_eq!(m["a"].window, Duration::from_secs(30));
        assert_eq!(m["b"].value, 2000);
        assert_eq!(m["b"].window, Duration::from_secs(60));
        assert!(custom_samples(&[]).is_err());
        assert_eq!(
            enc("app=web,x in (a b)"),
            "app%3Dweb%2Cx%20in%20%28a%20b%29"
        );
    }

    #[test]
    fn parses_served_pod_metrics() {
        let o: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "metrics.k8s.io/v1beta1", "kind": "PodMetrics",
            "metadata": {"name": "web-1", "namespace": "default"},
            "timestamp": "2025-01-02T03:04:05Z", "window": "30.5s",
            "containers": [{"name": "app", "usage": {"cpu": "250m", "memory": "10Mi"}}]
        }))
        .unwrap();
        let m = parse_pod_metrics(o).unwrap();
        assert_eq!(m.name, "web-1");
        assert_eq!(m.window, Duration::from_millis(30500));
        assert_eq!(m.containers[0].usage["cpu"], Wire("250m".into()));
        let bad: DynamicObject = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "x"}, "window": "soon"
        }))
        .unwrap();
        assert!(parse_pod_metrics(bad).unwrap_err().contains("window"));
    }
}
