//! From an HPA's metric specs to one replica recommendation (upstream's
//! `computeReplicasForMetrics`): each spec's proposal and status, or the reason it failed
//! (the `ScalingActive=False` reason and the Warning event upstream records), and how the
//! proposals combine. Pure: the samples are fetched by the caller.

use k8s_openapi::api::autoscaling::v2::{
    ContainerResourceMetricStatus, MetricSpec, MetricStatus, MetricTarget, MetricValueStatus,
    ResourceMetricStatus,
};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as Wire;
use k8s_openapi::jiff::Timestamp;

use super::custom;
use super::metrics::{resource_samples, PodMetrics};
use super::replicas::{
    average_value_replicas, pod_requests, utilization_replicas, PodMetricsInfo, PodSamples,
    Readiness, Tolerances,
};
use api_helpers::quantity::{Format, Quantity};

/// What every metric of one HPA is computed with.
pub struct Context<'a> {
    /// The target's pods.
    pub pods: &'a [&'a Pod],
    /// The HPA's namespace.
    pub namespace: &'a str,
    /// The target's current replica count (`scale.spec.replicas`).
    pub current: i32,
    /// The target's replicas as its scale reports them (`scale.status.replicas`).
    pub status_replicas: i32,
    /// The tolerances.
    pub tolerances: Tolerances,
    /// When CPU samples are too early.
    pub readiness: Readiness,
    /// Whether pod-level requests count (the PodLevelResources gate).
    pub pod_level_resources: bool,
    /// The current time.
    pub now: Timestamp,
}

/// One metric's successful proposal.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The replica count it asks for.
    pub replicas: i32,
    /// How it is named in events and conditions (e.g. `cpu resource utilization
    /// (percentage of request)`).
    pub name: String,
    /// Its entry in `status.currentMetrics`.
    pub status: MetricStatus,
}

/// Why one metric produced no proposal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The `ScalingActive=False` reason and Warning event reason (e.g.
    /// `FailedGetResourceMetric`).
    pub reason: &'static str,
    /// The event's note; the condition's message is built from it.
    pub cause: String,
    /// The error as `computeReplicasForMetric` returns it (wrapped once more).
    pub error: String,
}

impl Failure {
    /// The `ScalingActive=False` message.
    pub fn message(&self) -> String {
        format!(
            "the HPA was unable to compute the replica count: {}",
            self.cause
        )
    }
}

/// The reason of a metric whose `type` is unknown (an error in the HPA's spec).
pub const INVALID_SOURCE_TYPE: &str = "InvalidMetricSourceType";

/// Whether `spec` needs PodMetrics from the resource metrics API (fetched once for all).
pub fn needs_pod_metrics(spec: &MetricSpec) -> bool {
    matches!(spec.type_.as_str(), "Resource" | "ContainerResource")
}

/// The quantity a raw milli-value is reported as: binary for memory (as metrics-server
/// prints it), decimal otherwise.
pub fn resource_quantity(resource: &str, milli: i64) -> Wire {
    let format = if resource == "memory" {
        Format::BinarySi
    } else {
        Format::DecimalSi
    };
    Quantity::from_milli(milli, format).to_wire()
}

/// What the caller fetched for one metric spec.
#[derive(Debug)]
pub enum Fetched<'a> {
    /// Nothing (the spec needs nothing, or was not understood).
    Nothing,
    /// The PodMetrics list (shared by every `Resource`/`ContainerResource` spec).
    PodMetrics(&'a Result<Vec<PodMetrics>, String>),
    /// A `Pods` metric's per-pod samples.
    PodValues(Result<PodMetricsInfo, String>),
    /// An `Object` metric's value (milli).
    Object(Result<i64, String>),
    /// An `External` metric's values (milli).
    External(Result<Vec<i64>, String>),
}

/// The proposal of `spec` from what was `fetched` for it.
pub fn metric(
    spec: &MetricSpec,
    fetched: Fetched<'_>,
    ctx: &Context<'_>,
) -> Result<Outcome, Failure> {
    match (spec.type_.as_str(), fetched) {
        ("Resource" | "ContainerResource", Fetched::PodMetrics(f)) => {
            resource_metric(spec, Some(f), ctx)
        }
        ("Resource" | "ContainerResource", _) => resource_metric(spec, None, ctx),
        ("Pods", f) => custom::pods(spec, f, ctx),
        ("Object", f) => custom::object(spec, f, ctx),
        ("External", f) => custom::external(spec, f, ctx),
        (other, _) => {
            let error = format!("unknown metric source type {other:?}");
            Err(Failure {
                reason: INVALID_SOURCE_TYPE,
                cause: error.clone(),
                error,
            })
        }
    }
}

fn resource_metric(
    spec: &MetricSpec,
    fetched: Option<&Result<Vec<PodMetrics>, String>>,
    ctx: &Context<'_>,
) -> Result<Outcome, Failure> {
    let container_source = spec.type_ == "ContainerResource";
    let (resource, container, target, reason) = if container_source {
        let Some(c) = spec.container_resource.as_ref() else {
            return Err(invalid(
                "FailedGetContainerResourceMetric",
                "spec.metrics[].containerResource: required for type ContainerResource",
            ));
        };
        (
            c.name.as_str(),
            Some(c.container.as_str()),
            &c.target,
            "FailedGetContainerResourceMetric",
        )
    } else {
        let Some(r) = spec.resource.as_ref() else {
            return Err(invalid(
                "FailedGetResourceMetric",
                "spec.metrics[].resource: required for type Resource",
            ));
        };
        (r.name.as_str(), None, &r.target, "FailedGetResourceMetric")
    };
    let wrap = |cause: String| Failure {
        reason,
        error: match container {
            Some(c) => format!("failed to get {c} container metric value: {cause}"),
            None => format!("failed to get {resource} resource metric value: {cause}"),
        },
        cause,
    };
    let (current, kind_name) = proposal(resource, container, target, fetched, ctx).map_err(wrap)?;
    let status = if container_source {
        MetricStatus {
            type_: "ContainerResource".into(),
            container_resource: Some(ContainerResourceMetricStatus {
                name: resource.into(),
                container: container.unwrap_or_default().into(),
                current: current.1,
            }),
            ..Default::default()
        }
    } else {
        MetricStatus {
            type_: "Resource".into(),
            resource: Some(ResourceMetricStatus {
                name: resource.into(),
                current: current.1,
            }),
            ..Default::default()
        }
    };
    Ok(Outcome {
        replicas: current.0,
        name: kind_name,
        status,
    })
}

fn invalid(reason: &'static str, msg: &str) -> Failure {
    Failure {
        reason,
        cause: msg.into(),
        error: msg.into(),
    }
}

type Proposed = ((i32, MetricValueStatus), String);

/// upstream's `computeStatusForResourceMetricGeneric`: an average-value target or a
/// utilization target over the fetched samples.
fn proposal(
    resource: &str,
    container: Option<&str>,
    target: &MetricTarget,
    fetched: Option<&Result<Vec<PodMetrics>, String>>,
    ctx: &Context<'_>,
) -> Result<Proposed, String> {
    let samples = || -> Result<PodSamples<'_>, String> {
        let items = match fetched {
            Some(Ok(items)) => items,
            Some(Err(e)) => return Err(e.clone()),
            None => return Err("unable to fetch metrics from resource metrics API".into()),
        };
        let (metrics, _) = resource_samples(items, resource, container)?;
        Ok(PodSamples {
            pods: ctx.pods,
            metrics,
            cpu: resource == "cpu",
            readiness: ctx.readiness,
            now: ctx.now,
        })
    };
    let fetch_failed = |e: String| format!("unable to get metrics for resource {resource}: {e}");
    if let Some(v) = &target.average_value {
        let goal = Quantity::from_wire(v)
            .map_err(|e| format!("failed to get {resource} usage: target averageValue: {e}"))?
            .milli_value();
        let s = samples()
            .map_err(|e| format!("failed to get {resource} usage: {}", fetch_failed(e)))?;
        let p = average_value_replicas(ctx.current, goal, s, ctx.tolerances)
            .map_err(|e| format!("failed to get {resource} usage: {e}"))?;
        let status = MetricValueStatus {
            average_value: Some(resource_quantity(resource, p.value)),
            ..Default::default()
        };
        return Ok(((p.replicas, status), format!("{resource} resource")));
    }
    let Some(goal) = target.average_utilization else {
        return Err("invalid resource metric source: neither an average utilization target nor an average value (usage) target was set".into());
    };
    let s = samples()
        .map_err(|e| format!("failed to get {resource} utilization: {}", fetch_failed(e)))?;
    let requests = pod_requests(ctx.pods, container, resource, ctx.pod_level_resources)
        .map_err(|e| format!("failed to get {resource} utilization: {e}"))?;
    let p = utilization_replicas(ctx.current, goal, s, &requests, ctx.tolerances)
        .map_err(|e| format!("failed to get {resource} utilization: {e}"))?;
    let status = MetricValueStatus {
        average_utilization: p.utilization,
        average_value: Some(resource_quantity(resource, p.value)),
        ..Default::default()
    };
    let name = match container {
        Some(_) => format!("{resource} container resource utilization (percentage of request)"),
        None => format!("{resource} resource utilization (percentage of request)"),
    };
    Ok(((p.replicas, status), name))
}

/// The combined recommendation of all metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct Combined {
    /// The highest proposal, or `None` when the HPA cannot act (every metric failed, or
    /// some failed and the others would scale down).
    pub replicas: Option<i32>,
    /// The metric that proposed it.
    pub metric: String,
    /// `status.currentMetrics`, one per spec (empty for a failed one, as upstream).
    pub statuses: Vec<MetricStatus>,
    /// `invalid metrics (n invalid out of m), first error is: …` when any failed.
    pub error: Option<String>,
    /// The `ScalingActive` condition: (status True?, reason, message).
    pub scaling_active: (bool, String, String),
}

/// Combines per-spec results: the largest proposal wins; a failure blocks acting when all
/// failed or the rest would scale below `spec_replicas`.
pub fn combine(spec_replicas: i32, results: &[Result<Outcome, Failure>]) -> Combined {
    let mut replicas = 0;
    let mut metric = String::new();
    let mut statuses = Vec::with_capacity(results.len());
    let mut first: Option<&Failure> = None;
    let mut invalid = 0;
    for r in results {
        match r {
            Ok(o) => {
                if replicas == 0 || o.replicas > replicas {
                    replicas = o.replicas;
                    metric = o.name.clone();
                }
                statuses.push(o.status.clone());
            }
            Err(f) => {
                first.get_or_insert(f);
                invalid += 1;
                statuses.push(MetricStatus::default());
            }
        }
    }
    let error = first.map(|f| {
        format!(
            "invalid metrics ({invalid} invalid out of {}), first error is: {}",
            results.len(),
            f.error
        )
    });
    if let Some(f) = first.filter(|_| invalid >= results.len() || replicas < spec_replicas) {
        return Combined {
            replicas: None,
            metric: String::new(),
            statuses,
            error,
            scaling_active: (false, f.reason.into(), f.message()),
        };
    }
    let message =
        format!("the HPA was able to successfully calculate a replica count from {metric}");
    Combined {
        replicas: Some(replicas),
        metric,
        statuses,
        error,
        scaling_active: (true, "ValidMetricFound".into(), message),
    }
}
