//! Proposals of custom (`Pods`, `Object`) and `External` metric specs (upstream's
//! `computeStatusFor{Pods,Object,External}Metric`), from the values the caller fetched:
//! the replica formula each target type uses, the status entry, and upstream's failure
//! reasons and messages.

use k8s_openapi::api::autoscaling::v2::{
    ExternalMetricStatus, MetricIdentifier, MetricSpec, MetricStatus, MetricValueStatus,
    ObjectMetricStatus, PodsMetricStatus,
};

use super::compute::{Context, Failure, Fetched, Outcome};
use super::replicas::{average_value_replicas, per_pod_replicas, usage_ratio_replicas, PodSamples};
use api_helpers::labels as selector;
use api_helpers::quantity::{Format, Quantity};

fn milli(q: &k8s_openapi::apimachinery::pkg::api::resource::Quantity) -> Option<i64> {
    Quantity::from_wire(q).ok().map(Quantity::milli_value)
}

fn decimal(milli: i64) -> k8s_openapi::apimachinery::pkg::api::resource::Quantity {
    Quantity::from_milli(milli, Format::DecimalSi).to_wire()
}

fn selector_text(m: &MetricIdentifier) -> String {
    m.selector
        .as_ref()
        .map(selector::to_query)
        .unwrap_or_default()
}

fn fail(reason: &'static str, cause: String, error: String) -> Failure {
    Failure {
        reason,
        cause,
        error,
    }
}

/// A `Pods` metric: the average of the pods' samples against `target.averageValue`, with
/// missing and unready pods counted as for resource metrics.
pub fn pods(
    spec: &MetricSpec,
    fetched: Fetched<'_>,
    ctx: &Context<'_>,
) -> Result<Outcome, Failure> {
    const REASON: &str = "FailedGetPodsMetric";
    let wrap = |cause: String| {
        fail(
            REASON,
            cause.clone(),
            format!("failed to get pods metric value: {cause}"),
        )
    };
    let Some(p) = spec.pods.as_ref() else {
        return Err(wrap("spec.metrics[].pods: required for type Pods".into()));
    };
    let name = &p.metric.name;
    let Some(target) = p.target.average_value.as_ref().and_then(milli) else {
        return Err(wrap(format!(
            "invalid pods metric source {name}: no valid averageValue target"
        )));
    };
    let metrics = match fetched {
        Fetched::PodValues(Ok(m)) => m,
        Fetched::PodValues(Err(e)) => {
            return Err(wrap(format!("unable to get metric {name}: {e}")))
        }
        _ => return Err(wrap(format!("unable to get metric {name}: not fetched"))),
    };
    let samples = PodSamples {
        pods: ctx.pods,
        metrics,
        cpu: false,
        readiness: ctx.readiness,
        now: ctx.now,
    };
    let proposal =
        average_value_replicas(ctx.current, target, samples, ctx.tolerances).map_err(wrap)?;
    Ok(Outcome {
        replicas: proposal.replicas,
        name: format!("pods metric {name}"),
        status: MetricStatus {
            type_: "Pods".into(),
            pods: Some(PodsMetricStatus {
                metric: p.metric.clone(),
                current: MetricValueStatus {
                    average_value: Some(decimal(proposal.value)),
                    ..Default::default()
                },
            }),
            ..Default::default()
        },
    })
}

/// An `Object` metric: its `Value` against the ready pods, or its `AverageValue` per
/// replica of the target.
pub fn object(
    spec: &MetricSpec,
    fetched: Fetched<'_>,
    ctx: &Context<'_>,
) -> Result<Outcome, Failure> {
    const REASON: &str = "FailedGetObjectMetric";
    let wrap = |cause: String| {
        fail(
            REASON,
            cause.clone(),
            format!("failed to get object metric value: {cause}"),
        )
    };
    let Some(o) = spec.object.as_ref() else {
        return Err(wrap(
            "spec.metrics[].object: required for type Object".into(),
        ));
    };
    let name = &o.metric.name;
    let obj = &o.described_object;
    let usage = match fetched {
        Fetched::Object(Ok(v)) => v,
        Fetched::Object(Err(e)) | Fetched::External(Err(e)) | Fetched::PodValues(Err(e)) => {
            return Err(wrap(format!(
                "unable to get metric {name}: {} on {} {}/{e}",
                obj.kind, ctx.namespace, obj.name
            )))
        }
        _ => return Err(wrap(format!("unable to get metric {name}: not fetched"))),
    };
    let status = |current| MetricStatus {
        type_: "Object".into(),
        object: Some(ObjectMetricStatus {
            described_object: obj.clone(),
            metric: o.metric.clone(),
            current,
        }),
        ..Default::default()
    };
    if let (Some("Value"), Some(target)) = (
        Some(o.target.type_.as_str()),
        o.target.value.as_ref().and_then(milli),
    ) {
        let ratio = usage as f64 / target as f64;
        let replicas =
            usage_ratio_replicas(ctx.current, ratio, ctx.tolerances, ctx.pods).map_err(wrap)?;
        return Ok(Outcome {
            replicas,
            name: format!("{} metric {name}", obj.kind),
            status: status(MetricValueStatus {
                value: Some(decimal(usage)),
                ..Default::default()
            }),
        });
    }
    if let (Some("AverageValue"), Some(target)) = (
        Some(o.target.type_.as_str()),
        o.target.average_value.as_ref().and_then(milli),
    ) {
        let (replicas, average) =
            per_pod_replicas(ctx.status_replicas, usage, target, ctx.tolerances);
        return Ok(Outcome {
            replicas,
            name: format!("external metric {name}({})", selector_text(&o.metric)),
            status: status(MetricValueStatus {
                average_value: Some(decimal(average)),
                ..Default::default()
            }),
        });
    }
    Err(wrap(
        "invalid object metric source: neither a value target nor an average value target was set"
            .into(),
    ))
}

/// An `External` metric: the sum of its values, as a `Value` against the ready pods or an
/// `AverageValue` per replica of the target.
pub fn external(
    spec: &MetricSpec,
    fetched: Fetched<'_>,
    ctx: &Context<'_>,
) -> Result<Outcome, Failure> {
    const REASON: &str = "FailedGetExternalMetric";
    let Some(x) = spec.external.as_ref() else {
        let cause = "spec.metrics[].external: required for type External".to_string();
        return Err(fail(REASON, cause.clone(), cause));
    };
    let name = &x.metric.name;
    let wrap = |cause: String| {
        fail(
            REASON,
            cause.clone(),
            format!("failed to get {name} external metric value: {cause}"),
        )
    };
    let sel = selector_text(&x.metric);
    let values = match fetched {
        Fetched::External(Ok(v)) => v,
        Fetched::External(Err(e)) => {
            return Err(wrap(format!(
                "unable to get external metric {}/{name}/{sel}: {e}",
                ctx.namespace
            )))
        }
        _ => {
            return Err(wrap(format!(
                "unable to get external metric {name}: not fetched"
            )))
        }
    };
    let usage = values.iter().fold(0i64, |a, v| a.saturating_add(*v));
    let status = |current| MetricStatus {
        type_: "External".into(),
        external: Some(ExternalMetricStatus {
            metric: x.metric.clone(),
            current,
        }),
        ..Default::default()
    };
    let metric_name = format!("external metric {name}({sel})");
    if let Some(target) = x.target.average_value.as_ref().and_then(milli) {
        let (replicas, average) =
            per_pod_replicas(ctx.status_replicas, usage, target, ctx.tolerances);
        return Ok(Outcome {
            replicas,
            name: metric_name,
            status: status(MetricValueStatus {
                average_value: Some(decimal(average)),
                ..Default::default()
            }),
        });
    }
    if let Some(target) = x.target.value.as_ref().and_then(milli) {
        let ratio = usage as f64 / target as f64;
        let replicas =
            usage_ratio_replicas(ctx.current, ratio, ctx.tolerances, ctx.pods).map_err(wrap)?;
        return Ok(Outcome {
            replicas,
            name: metric_name,
            status: status(MetricValueStatus {
                value: Some(decimal(usage)),
                ..Default::default()
            }),
        });
    }
    Err(wrap(
        "invalid external metric source: neither a value target nor an average value target was set".into(),
    ))
}
