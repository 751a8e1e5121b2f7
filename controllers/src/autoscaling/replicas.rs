//! The replica calculation (upstream's `ReplicaCalculator`), as pure functions of the pods,
//! their metrics and the target: which pods count, what the missing and not-yet-ready ones
//! are assumed to use, the usage ratio, and the tolerance around 1.0.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::jiff::Timestamp;

use crate::machinery::pod_resources;
use crate::machinery::pods;
use api_helpers::quantity::Quantity;

/// One pod's sample of a metric, as a milli-value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodMetric {
    /// When the sample was taken.
    pub timestamp: Timestamp,
    /// The window it was averaged over.
    pub window: Duration,
    /// The value in thousandths of a unit.
    pub value: i64,
}

/// Metrics by pod name.
pub type PodMetricsInfo = BTreeMap<String, PodMetric>;

/// How far the usage ratio may stray from 1.0, downwards and upwards, without a rescale.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerances {
    /// Ratios down to `1 - scale_down` do not scale down.
    pub scale_down: f64,
    /// Ratios up to `1 + scale_up` do not scale up.
    pub scale_up: f64,
}

impl Tolerances {
    /// The same tolerance both ways (`--horizontal-pod-autoscaler-tolerance`).
    pub fn both(t: f64) -> Self {
        Tolerances {
            scale_down: t,
            scale_up: t,
        }
    }

    /// Whether `ratio` is close enough to 1.0 to leave the scale alone.
    pub fn is_within(&self, ratio: f64) -> bool {
        (1.0 - self.scale_down) <= ratio && ratio <= (1.0 + self.scale_up)
    }
}

/// The flags that decide when a pod's CPU sample is too early to trust.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Readiness {
    /// `--horizontal-pod-autoscaler-cpu-initialization-period`.
    pub cpu_initialization_period: Duration,
    /// `--horizontal-pod-autoscaler-initial-readiness-delay`.
    pub initial_readiness_delay: Duration,
}

/// The pods of a target sorted as upstream's `groupPods` does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodGroups {
    /// Pods whose samples count.
    pub ready: usize,
    /// Pending pods, and (for CPU) pods not ready or still initialising.
    pub unready: BTreeSet<String>,
    /// Running pods without a sample.
    pub missing: BTreeSet<String>,
    /// Deleted or failed pods.
    pub ignored: BTreeSet<String>,
}

fn to_ts(t: Timestamp, d: Duration) -> Timestamp {
    t.checked_add(k8s_openapi::jiff::SignedDuration::try_from(d).unwrap_or_default())
        .unwrap_or(t)
}

/// Sorts `pods` into ready, unready, missing-metric and ignored ones. `cpu` says whether
/// the metric is the `cpu` resource: only CPU samples of unready or initialising pods are
/// set aside.
pub fn group_pods(
    pods: &[&Pod],
    metrics: &PodMetricsInfo,
    cpu: bool,
    readiness: Readiness,
    now: Timestamp,
) -> PodGroups {
    let mut g = PodGroups::default();
    for pod in pods {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let phase = pods::phase(pod);
        if pod.metadata.deletion_timestamp.is_some() || phase == "Failed" {
            g.ignored.insert(name);
            continue;
        }
        if phase == "Pending" {
            g.unready.insert(name);
            continue;
        }
        let Some(metric) = metrics.get(&name) else {
            g.missing.insert(name);
            continue;
        };
        if cpu && cpu_sample_unready(pod, metric, readiness, now) {
            g.unready.insert(name);
            continue;
        }
        g.ready += 1;
    }
    g
}

/// Whether a pod's CPU sample is set aside: no Ready condition or start time; within the
/// initialisation period, unready or sampled before a full window since the last readiness
/// change; afterwards, unready and never ready since start-up.
fn cpu_sample_unready(pod: &Pod, metric: &PodMetric, r: Readiness, now: Timestamp) -> bool {
    let status = pod.status.as_ref();
    let condition = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"));
    let start = status.and_then(|s| s.start_time.as_ref()).map(|t| t.0);
    let (Some(condition), Some(start)) = (condition, start) else {
        return true;
    };
    let transition = condition
        .last_transition_time
        .as_ref()
        .map(|t| t.0)
        .unwrap_or(Timestamp::UNIX_EPOCH);
    if to_ts(start, r.cpu_initialization_period) > now {
        condition.status == "False" || metric.timestamp < to_ts(transition, metric.window)
    } else {
        condition.status == "False" && to_ts(start, r.initial_readiness_delay) > transition
    }
}

/// Each pod's request of `resource` in milli-units: the named container's, or with no
/// container the pod-level request when `pod_level` (the PodLevelResources gate) and the
/// pod sets one, else the sum over its containers and sidecars. A missing request is an
/// error naming the container and pod, as upstream's.
pub fn pod_requests(
    pods: &[&Pod],
    container: Option<&str>,
    resource: &str,
    pod_level: bool,
) -> Result<BTreeMap<String, i64>, String> {
    let mut out = BTreeMap::new();
    for pod in pods {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let spec = pod.spec.as_ref();
        let pod_level_set = spec
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.requests.as_ref())
            .is_some_and(|r| !r.is_empty());
        let request = if pod_level && pod_level_set && container.is_none() {
            pod_resources::requests(pod)
                .get(resource)
                .map(|q| q.milli_value())
                .ok_or_else(|| format!("missing pod-level request for {resource} in Pod {name}"))?
        } else {
            container_requests(pod, &name, container, resource)?
        };
        out.insert(name, request);
    }
    Ok(out)
}

fn container_requests(
    pod: &Pod,
    pod_name: &str,
    container: Option<&str>,
    resource: &str,
) -> Result<i64, String> {
    let spec = pod.spec.as_ref();
    let sidecars = spec
        .and_then(|s| s.init_containers.as_ref())
        .into_iter()
        .flatten()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"));
    let all: Vec<&Container> = spec
        .map(|s| s.containers.iter())
        .into_iter()
        .flatten()
        .chain(sidecars)
        .collect();
    let mut total = 0i64;
    for c in all {
        if container.is_some_and(|n| n != c.name) {
            continue;
        }
        let q = c
            .resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get(resource))
            .ok_or_else(|| {
                format!(
                    "missing request for {resource} in container {} of Pod {pod_name}",
                    c.name
                )
            })?;
        let q = Quantity::from_wire(q)
            .map_err(|e| format!("container {} of Pod {pod_name}: {e}", c.name))?;
        total = total.saturating_add(q.milli_value());
        if container.is_some() {
            return Ok(total);
        }
    }
    match container {
        Some(n) => Err(format!("container {n} not found in Pod {pod_name}")),
        None => Ok(total),
    }
}

/// The ratio of current to target utilization over the pods that have both a sample and a
/// request, the current utilization (percent of requests, truncated) and the raw average
/// sample (upstream's `GetResourceUtilizationRatio`).
pub fn utilization_ratio(
    metrics: &PodMetricsInfo,
    requests: &BTreeMap<String, i64>,
    target: i32,
) -> Result<(f64, i32, i64), String> {
    let (mut used, mut requested, mut n) = (0i64, 0i64, 0i64);
    for (pod, m) in metrics {
        let Some(r) = requests.get(pod) else { continue };
        used = used.saturating_add(m.value);
        requested = requested.saturating_add(*r);
        n += 1;
    }
    if requested == 0 {
        return Err("no metrics returned matched known pods".into());
    }
    let utilization = (used.saturating_mul(100) / requested) as i32;
    Ok((
        f64::from(utilization) / f64::from(target),
        utilization,
        used / n,
    ))
}

/// The ratio of the average sample to `target` and that average (upstream's
/// `GetMetricUsageRatio`). `metrics` must not be empty.
pub fn usage_ratio(metrics: &PodMetricsInfo, target: i64) -> (f64, i64) {
    let total: i64 = metrics
        .values()
        .fold(0i64, |a, m| a.saturating_add(m.value));
    let average = total / (metrics.len().max(1) as i64);
    (average as f64 / target as f64, average)
}

fn ceil_i32(x: f64) -> i32 {
    let c = x.ceil();
    if c >= f64::from(i32::MAX) {
        i32::MAX
    } else {
        c as i32
    }
}

/// What one metric proposes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proposal {
    /// The replica count it asks for.
    pub replicas: i32,
    /// Current utilization in percent of requests (utilization targets only).
    pub utilization: Option<i32>,
    /// The current average value, as a milli-value.
    pub value: i64,
}

/// The inputs both per-pod calculations share.
pub struct PodSamples<'a> {
    /// The target's pods (selected by its scale's selector).
    pub pods: &'a [&'a Pod],
    /// Their samples (by pod name); pods may lack one.
    pub metrics: PodMetricsInfo,
    /// Whether the metric is the `cpu` resource.
    pub cpu: bool,
    /// When CPU samples are too early.
    pub readiness: Readiness,
    /// The current time.
    pub now: Timestamp,
}

impl PodSamples<'_> {
    /// Groups the pods and drops the samples of ignored and unready ones.
    fn grouped(&mut self) -> Result<PodGroups, String> {
        if self.pods.is_empty() {
            return Err("no pods returned by selector while calculating replica count".into());
        }
        let g = group_pods(self.pods, &self.metrics, self.cpu, self.readiness, self.now);
        for p in g.ignored.iter().chain(&g.unready) {
            self.metrics.remove(p);
        }
        if self.metrics.is_empty() {
            return Err("did not receive metrics for targeted pods (pods might be unready)".into());
        }
        Ok(g)
    }
}

/// How missing and unready pods are re-counted once the direction is known.
fn fill_in(
    metrics: &mut PodMetricsInfo,
    g: &PodGroups,
    ratio: f64,
    scale_down_value: impl Fn(&str) -> i64,
) {
    let zero = |v| PodMetric {
        timestamp: Timestamp::UNIX_EPOCH,
        window: Duration::ZERO,
        value: v,
    };
    if ratio < 1.0 {
        for p in &g.missing {
            metrics.insert(p.clone(), zero(scale_down_value(p)));
        }
    } else if ratio > 1.0 {
        for p in &g.missing {
            metrics.insert(p.clone(), zero(0));
        }
    }
    if !g.unready.is_empty() && ratio > 1.0 {
        for p in &g.unready {
            metrics.insert(p.clone(), zero(0));
        }
    }
}

/// The final count after re-counting: unchanged when within tolerance or when the
/// re-count flips the direction, else the ceiling over every counted pod.
fn recounted(current: i32, ratio: f64, new_ratio: f64, counted: usize, tol: Tolerances) -> i32 {
    if tol.is_within(new_ratio)
        || (ratio < 1.0 && new_ratio > 1.0)
        || (ratio > 1.0 && new_ratio < 1.0)
    {
        return current;
    }
    let n = ceil_i32(new_ratio * counted as f64);
    if (new_ratio < 1.0 && n > current) || (new_ratio > 1.0 && n < current) {
        return current;
    }
    n
}

/// Replicas for a resource utilization target (percent of requests; upstream's
/// `GetResourceReplicas`): missing pods count as 0 % on a scale-up and as using their
/// request (or the target, if above 100 %) on a scale-down; unready pods count as 0 % on a
/// scale-up and are left out otherwise.
pub fn utilization_replicas(
    current: i32,
    target: i32,
    mut s: PodSamples<'_>,
    requests: &BTreeMap<String, i64>,
    tol: Tolerances,
) -> Result<Proposal, String> {
    let g = s.grouped()?;
    let (ratio, utilization, raw) = utilization_ratio(&s.metrics, requests, target)?;
    let done = |replicas| Proposal {
        replicas,
        utilization: Some(utilization),
        value: raw,
    };
    let with_unready = !g.unready.is_empty() && ratio > 1.0;
    if !with_unready && g.missing.is_empty() {
        if tol.is_within(ratio) {
            return Ok(done(current));
        }
        return Ok(done(ceil_i32(ratio * g.ready as f64)));
    }
    let fallback = i64::from(target.max(100));
    fill_in(&mut s.metrics, &g, ratio, |p| {
        requests.get(p).copied().unwrap_or(0) * fallback / 100
    });
    let (new_ratio, _, _) = utilization_ratio(&s.metrics, requests, target)?;
    Ok(done(recounted(
        current,
        ratio,
        new_ratio,
        s.metrics.len(),
        tol,
    )))
}

/// Replicas for an average-value target (raw resource usage or a pods metric; upstream's
/// `calcPlainMetricReplicas`): missing pods count as 0 on a scale-up and as exactly the
/// target on a scale-down.
pub fn average_value_replicas(
    current: i32,
    target: i64,
    mut s: PodSamples<'_>,
    tol: Tolerances,
) -> Result<Proposal, String> {
    let g = s.grouped()?;
    let (ratio, usage) = usage_ratio(&s.metrics, target);
    let done = |replicas| Proposal {
        replicas,
        utilization: None,
        value: usage,
    };
    let with_unready = !g.unready.is_empty() && ratio > 1.0;
    if !with_unready && g.missing.is_empty() {
        if tol.is_within(ratio) {
            return Ok(done(current));
        }
        return Ok(done(ceil_i32(ratio * g.ready as f64)));
    }
    fill_in(&mut s.metrics, &g, ratio, |_| target);
    let (new_ratio, _) = usage_ratio(&s.metrics, target);
    Ok(done(recounted(
        current,
        ratio,
        new_ratio,
        s.metrics.len(),
        tol,
    )))
}

/// Running and Ready pods (upstream's `getReadyPodsCount`); no pods at all is an error.
pub fn ready_pods(pods: &[&Pod]) -> Result<i64, String> {
    if pods.is_empty() {
        return Err("no pods returned by selector while calculating replica count".into());
    }
    Ok(pods
        .iter()
        .filter(|p| pods::phase(p) == "Running" && pods::is_ready(p))
        .count() as i64)
}

/// Replicas for a whole-value target (an `Object` or `External` metric's `Value`;
/// upstream's `getUsageRatioReplicaCount`): from zero replicas `ceil(ratio)` regardless of
/// the tolerance, else the ready pods times the ratio when outside the tolerance.
pub fn usage_ratio_replicas(
    current: i32,
    ratio: f64,
    tol: Tolerances,
    pods: &[&Pod],
) -> Result<i32, String> {
    if current == 0 {
        return Ok(ceil_i32(ratio));
    }
    if tol.is_within(ratio) {
        return Ok(current);
    }
    let ready = ready_pods(pods).map_err(|e| format!("unable to calculate ready pods: {e}"))?;
    Ok(ceil_i32(ratio * ready as f64))
}

/// Replicas for a per-pod target over a total (an `Object` or `External` metric's
/// `AverageValue`; upstream's `Get*PerPodMetricReplicas`): `ceil(total / target)` when the
/// ratio to `status_replicas` pods is outside the tolerance, else `status_replicas`; also
/// the per-pod average reported in the status.
pub fn per_pod_replicas(
    status_replicas: i32,
    total: i64,
    target: i64,
    tol: Tolerances,
) -> (i32, i64) {
    let ratio = total as f64 / (target as f64 * f64::from(status_replicas));
    let replicas = if tol.is_within(ratio) {
        status_replicas
    } else {
        ceil_i32(total as f64 / target as f64)
    };
    let average = if status_replicas == 0 {
        total
    } else {
        (total as f64 / f64::from(status_replicas)).ceil() as i64
    };
    (replicas, average)
}
