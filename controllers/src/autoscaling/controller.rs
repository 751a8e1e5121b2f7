//! The horizontal-pod-autoscaler's sync loop: every HPA is reconciled once per
//! `--horizontal-pod-autoscaler-sync-period` (upstream's fixed-interval queue): read the
//! target's `scale` subresource, compute the metrics' recommendation, normalize it with the
//! HPA's history, write the scale and the status, and record upstream's events.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use component_base::events::{reference_to, EventRecorder, EventSpec, EventType};
use k8s_openapi::api::autoscaling::v1::Scale;
use k8s_openapi::api::autoscaling::v2::{
    HorizontalPodAutoscaler, HorizontalPodAutoscalerStatus, MetricSpec, MetricTarget,
    ResourceMetricSource,
};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ApiResource, DynamicObject, PostParams};
use kube::Api;

use super::behavior::{self, Behavior, History};
use super::compute::{self, Context, Fetched};
use super::metrics::{MetricsClient, ObjectRef, PodMetrics, RestMetricsClient};
use super::monitor::{Action, ErrorKind, Monitor};
use super::replicas::{Readiness, Tolerances};
use super::status::{self, Key, ABLE_TO_SCALE, SCALING_ACTIVE, SCALING_LIMITED};
use crate::machinery::context::ControllerContext;
use crate::machinery::discovery;
use crate::machinery::informers::handlers::{self as informer, Change};
use crate::machinery::informers::Informer;
use crate::machinery::options::HpaOptions;
use crate::machinery::queue::WorkQueue;
use api_helpers::errors;
use api_helpers::labels as selector;

/// The settings the loop runs with (from the flags and feature gates).
#[derive(Debug, Clone)]
pub struct Settings {
    /// The `--horizontal-pod-autoscaler-*` flags.
    pub hpa: HpaOptions,
    /// The HPAConfigurableTolerance gate: `behavior.*.tolerance` is honoured.
    pub configurable_tolerance: bool,
    /// The PodLevelResources gate: pod-level requests count for utilization.
    pub pod_level_resources: bool,
}

struct State {
    client: kube::Client,
    hpas: Informer<HorizontalPodAutoscaler>,
    pods: Informer<Pod>,
    metrics: Arc<dyn MetricsClient>,
    recorder: EventRecorder,
    monitor: Monitor,
    settings: Settings,
    /// Per-HPA recommendations and rescales (upstream keeps them in memory too).
    history: Mutex<HashMap<Key, History>>,
    /// Each HPA's target selector, as last parsed (for `AmbiguousSelector`).
    selectors: Mutex<BTreeMap<Key, LabelSelector>>,
    /// Served resources, refreshed when a target's kind is not found.
    served: tokio::sync::Mutex<Option<Vec<discovery::Served>>>,
}

/// Schedules each HPA's next sync once: later requests for a key already waiting are
/// dropped (client-go's delaying queue keeps the earliest), so the HPA's own status writes
/// do not double its sync rate.
#[derive(Clone)]
struct Resync {
    queue: WorkQueue<Key>,
    waiting: Arc<Mutex<HashSet<Key>>>,
    period: Duration,
}

impl Resync {
    fn schedule(&self, key: Key) {
        if !self
            .waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.clone())
        {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(this.period).await;
            this.waiting
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&key);
            this.queue.add(key);
        });
    }
}

fn key_of(h: &HorizontalPodAutoscaler) -> Option<Key> {
    Some((h.metadata.namespace.clone()?, h.metadata.name.clone()?))
}

/// Runs the controller until shutdown.
pub async fn run(ctx: ControllerContext) -> anyhow::Result<()> {
    let sd = ctx.shutdown.clone();
    let settings = Settings {
        hpa: ctx.options.hpa.clone(),
        configurable_tolerance: ctx
            .options
            .feature_gates
            .enabled("HPAConfigurableTolerance"),
        pod_level_resources: ctx.options.feature_gates.enabled("PodLevelResources"),
    };
    let queue: WorkQueue<Key> =
        WorkQueue::new().with_metrics(&ctx.metrics, "horizontalpodautoscaler");
    let resync = Resync {
        queue: queue.clone(),
        waiting: Arc::default(),
        period: settings.hpa.sync_period,
    };
    let client = ctx.client_for(super::SERVICE_ACCOUNT).await?;
    let hpas = ctx.informers().informer::<HorizontalPodAutoscaler>();
    let pods = ctx.informers().informer::<Pod>();
    let state = Arc::new(State {
        metrics: Arc::new(RestMetricsClient::new(client.clone())),
        recorder: crate::machinery::context::event_recorder(client.clone(), super::EVENT_SOURCE),
        monitor: ctx.metrics.families(Monitor::register),
        client,
        hpas: hpas.clone(),
        pods: pods.clone(),
        settings,
        history: Mutex::default(),
        selectors: Mutex::default(),
        served: tokio::sync::Mutex::new(None),
    });
    let (r, st) = (resync.clone(), state.clone());
    let known: Mutex<HashSet<Key>> = Mutex::default();
    informer::on(&hpas, move |h: &HorizontalPodAutoscaler, change| {
        let Some(k) = key_of(h) else { return };
        let mut known = known.lock().unwrap_or_else(|e| e.into_inner());
        match change {
            Change::Applied => {
                if known.insert(k.clone()) {
                    st.monitor.added();
                }
                r.schedule(k)
            }
            Change::Deleted => {
                if known.remove(&k) {
                    st.monitor.deleted(&k.0, &k.1);
                }
                st.forget(&k)
            }
        }
    });
    informer::wait_synced(&sd, async {
        hpas.wait_synced().await;
        pods.wait_synced().await;
    })
    .await?;
    tracing::info!("Starting HPA controller");
    let workers = ctx.options.concurrency.horizontal_pod_autoscaler;
    queue
        .run("horizontal-pod-autoscaler", workers, sd, move |key| {
            let (st, r) = (state.clone(), resync.clone());
            async move {
                if st.hpas.get(&key.0, &key.1).is_none() {
                    st.forget(&key);
                    return Ok(());
                }
                let started = std::time::Instant::now();
                let mut out = Outcome::default();
                let result = st.reconcile(&key, &mut out).await;
                let error = match &result {
                    Ok(()) => ErrorKind::None,
                    Err(_) if out.spec_error => ErrorKind::Spec,
                    Err(_) => ErrorKind::Internal,
                };
                st.monitor.reconciled(out.action, error, started.elapsed());
                if let Err(e) = result {
                    tracing::warn!(hpa = %format!("{}/{}", key.0, key.1), error = %format!("{e:#}"), "HPA sync failed");
                }
                // Every HPA comes back after the sync period, failed or not.
                r.schedule(key);
                Ok(())
            }
        })
        .await;
    Ok(())
}

/// Why a sync stopped early (the status was written as far as it got).
type SyncResult = Result<(), String>;

/// What a reconciliation did, for the controller's metrics.
struct Outcome {
    action: Action,
    /// The error came from the HPA's spec (bad apiVersion, unknown metric source type).
    spec_error: bool,
}

impl Default for Outcome {
    fn default() -> Self {
        Outcome {
            action: Action::None,
            spec_error: false,
        }
    }
}

/// `group`, `version` of an `apiVersion`; the error is upstream's.
fn group_version(api_version: &str) -> Result<(&str, &str), String> {
    match api_version.split('/').collect::<Vec<_>>()[..] {
        [v] if !v.is_empty() => Ok(("", v)),
        [g, v] if !g.is_empty() && !v.is_empty() => Ok((g, v)),
        _ => Err(format!(
            "invalid API version in scale target reference: unexpected GroupVersion string: {api_version}"
        )),
    }
}

impl State {
    fn forget(&self, key: &Key) {
        self.history
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
        self.selectors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }

    fn event(&self, hpa: &HorizontalPodAutoscaler, warning: bool, reason: &str, note: String) {
        let spec = EventSpec {
            regarding: reference_to(hpa),
            related: None,
            type_: EventType::warning_if(warning),
            reason: reason.into(),
            action: "Autoscale".into(),
            note,
        };
        self.recorder.emit(spec);
    }

    fn tolerances(&self, hpa: &HorizontalPodAutoscaler) -> Tolerances {
        let mut t = Tolerances::both(self.settings.hpa.tolerance);
        let behavior = hpa.spec.as_ref().and_then(|s| s.behavior.as_ref());
        if let (true, Some(b)) = (self.settings.configurable_tolerance, behavior) {
            let q = |r: Option<&k8s_openapi::api::autoscaling::v2::HPAScalingRules>| {
                r.and_then(|r| r.tolerance.as_ref())
                    .and_then(|q| api_helpers::quantity::Quantity::from_wire(q).ok())
                    .map(|q| q.nanos as f64 / 1e9)
            };
            if let Some(v) = q(b.scale_down.as_ref()) {
                t.scale_down = v;
            }
            if let Some(v) = q(b.scale_up.as_ref()) {
                t.scale_up = v;
            }
        }
        t
    }

    /// The target's API resource (version from the reference) for `api_version`/`kind`.
    async fn target_resource(&self, api_version: &str, kind: &str) -> Result<ApiResource, String> {
        let (group, version) = group_version(api_version)?;
        let mut served = self.served.lock().await;
        for attempt in 0..2 {
            if served.is_none() || attempt == 1 {
                *served = Some(
                    discovery::served(&self.client)
                        .await
                        .map_err(|e| format!("unable to discover served resources: {e}"))?,
                );
            }
            if let Some(s) = served
                .iter()
                .flatten()
                .find(|s| s.resource.group == group && s.resource.kind == kind)
            {
                let mut r = s.resource.clone();
                r.version = version.into();
                r.api_version = api_version.into();
                return Ok(r);
            }
        }
        Err(format!("no matches for kind {kind:?} in group {group:?}"))
    }

    async fn write_status(
        &self,
        hpa: &HorizontalPodAutoscaler,
        original: &Option<HorizontalPodAutoscalerStatus>,
        status: HorizontalPodAutoscalerStatus,
    ) -> SyncResult {
        if original.as_ref() == Some(&status) {
            return Ok(());
        }
        let mut updated = hpa.clone();
        updated.status = Some(status);
        let ns = hpa.metadata.namespace.clone().unwrap_or_default();
        let name = hpa.metadata.name.clone().unwrap_or_default();
        let api: Api<HorizontalPodAutoscaler> = Api::namespaced(self.client.clone(), &ns);
        match api
            .replace_status(&name, &PostParams::default(), &updated)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if errors::is_not_found(&e) => Ok(()),
            Err(e) => {
                self.event(hpa, true, "FailedUpdateStatus", e.to_string());
                Err(format!("failed to update status for {name}: {e}"))
            }
        }
    }

    /// One reconciliation of `key` (upstream's `reconcileAutoscaler`).
    async fn reconcile(&self, key: &Key, out: &mut Outcome) -> SyncResult {
        let Some(shared) = self.hpas.get(&key.0, &key.1) else {
            return Ok(());
        };
        let hpa: &HorizontalPodAutoscaler = &shared;
        let original = hpa.status.clone();
        let mut st = original.clone().unwrap_or_default();
        let now = Timestamp::now();
        let spec = hpa.spec.clone().unwrap_or_default();
        let target = &spec.scale_target_ref;
        let reference = format!("{}/{}/{}", target.kind, key.0, target.name);

        let scale = match self.get_scale(&key.0, target).await {
            Ok(s) => s,
            Err(e) => {
                out.spec_error =
                    group_version(target.api_version.as_deref().unwrap_or("")).is_err();
                self.event(hpa, true, "FailedGetScale", e.clone());
                let msg =
                    format!("the HPA controller was unable to get the target's current scale: {e}");
                status::set_condition(&mut st, ABLE_TO_SCALE, false, "FailedGetScale", &msg, now);
                self.write_status(hpa, &original, st).await?;
                return Err(format!(
                    "failed to query scale subresource for {reference}: {e}"
                ));
            }
        };
        let (resource, mut scale) = scale;
        status::set_condition(
            &mut st,
            ABLE_TO_SCALE,
            true,
            "SucceededGetScale",
            "the HPA controller was able to get the target's current scale",
            now,
        );
        let current = scale.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
        self.with_history(key, |h| h.init(current, now));
        let min = status::min_replicas(hpa);
        let max = spec.max_replicas;

        let mut rescale_reason = String::new();
        let mut metric_statuses = Vec::new();
        let mut partial_error = None;
        let (desired, rescale) = if current == 0 && min != 0 {
            status::set_condition(
                &mut st,
                SCALING_ACTIVE,
                false,
                "ScalingDisabled",
                "scaling is disabled since the replica count of the target is zero",
                now,
            );
            (0, false)
        } else if current > max {
            rescale_reason = "Current number of replicas above Spec.MaxReplicas".into();
            (max, true)
        } else if current < min {
            rescale_reason = "Current number of replicas below Spec.MinReplicas".into();
            (min, true)
        } else {
            let combined = match self.compute(hpa, key, &scale, &mut st, now, out).await {
                Ok(c) => c,
                Err(e) => {
                    status::set_counts(
                        &mut st,
                        current,
                        original_desired(&original),
                        vec![],
                        false,
                        now,
                    );
                    self.write_status(hpa, &original, st).await?;
                    return Err(e);
                }
            };
            let (active, reason, message) = &combined.scaling_active;
            status::set_condition(&mut st, SCALING_ACTIVE, *active, reason, message, now);
            metric_statuses = combined.statuses.clone();
            let Some(proposed) = combined.replicas else {
                let err = combined.error.unwrap_or_default();
                status::set_counts(
                    &mut st,
                    current,
                    original_desired(&original),
                    metric_statuses,
                    false,
                    now,
                );
                self.write_status(hpa, &original, st).await?;
                self.event(hpa, true, "FailedComputeMetricsReplicas", err.clone());
                return Err(format!("failed to compute desired number of replicas based on listed metrics for {reference}: {err}"));
            };
            partial_error = combined.error;
            let mut desired = 0;
            let mut rescale_metric = "";
            if proposed > desired {
                desired = proposed;
                rescale_metric = &combined.metric;
            }
            if desired > current {
                rescale_reason = format!("{rescale_metric} above target");
            }
            if desired < current {
                rescale_reason = "All metrics below target".into();
            }
            let d = self.with_history(key, |h| match &spec.behavior {
                None => behavior::normalize(
                    h,
                    current,
                    desired,
                    min,
                    max,
                    self.settings.hpa.downscale_stabilization,
                    now,
                ),
                Some(b) => behavior::normalize_with_behavior(
                    h,
                    &Behavior::resolve(b, self.settings.hpa.downscale_stabilization),
                    current,
                    desired,
                    min,
                    max,
                    now,
                ),
            });
            status::set_condition(
                &mut st,
                ABLE_TO_SCALE,
                true,
                d.able_reason,
                d.able_message,
                now,
            );
            status::set_condition(
                &mut st,
                SCALING_LIMITED,
                d.limited,
                d.limited_reason,
                d.limited_message,
                now,
            );
            (d.replicas, d.replicas != current)
        };

        let desired = if rescale {
            if let Err(e) = self
                .update_scale(&key.0, &resource, &mut scale, desired)
                .await
            {
                self.event(
                    hpa,
                    true,
                    "FailedRescale",
                    format!("New size: {desired}; reason: {rescale_reason}; error: {e}"),
                );
                let msg = format!("the HPA controller was unable to update the target scale: {e}");
                status::set_condition(
                    &mut st,
                    ABLE_TO_SCALE,
                    false,
                    "FailedUpdateScale",
                    &msg,
                    now,
                );
                status::set_counts(
                    &mut st,
                    current,
                    original_desired(&original),
                    metric_statuses,
                    false,
                    now,
                );
                self.write_status(hpa, &original, st).await?;
                return Err(format!("failed to rescale {reference}: {e}"));
            }
            let msg =
                format!("the HPA controller was able to update the target scale to {desired}");
            status::set_condition(&mut st, ABLE_TO_SCALE, true, "SucceededRescale", &msg, now);
            self.event(
                hpa,
                false,
                "SuccessfulRescale",
                format!("New size: {desired}; reason: {rescale_reason}"),
            );
            let resolved = spec
                .behavior
                .as_ref()
                .map(|b| Behavior::resolve(b, self.settings.hpa.downscale_stabilization));
            self.with_history(key, |h| {
                behavior::record_scale(h, resolved.as_ref(), current, desired, now)
            });
            tracing::info!(hpa = %format!("{}/{}", key.0, key.1), current, desired, reason = %rescale_reason, "Successfully rescaled");
            out.action = Action::between(current, desired);
            desired
        } else {
            current
        };
        status::set_counts(&mut st, current, desired, metric_statuses, rescale, now);
        self.monitor.desired(&key.0, &key.1, desired);
        self.write_status(hpa, &original, st).await?;
        match partial_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn with_history<T>(&self, key: &Key, f: impl FnOnce(&mut History) -> T) -> T {
        let mut all = self.history.lock().unwrap_or_else(|e| e.into_inner());
        f(all.entry(key.clone()).or_default())
    }

    async fn get_scale(
        &self,
        ns: &str,
        target: &k8s_openapi::api::autoscaling::v2::CrossVersionObjectReference,
    ) -> Result<(ApiResource, Scale), String> {
        let api_version = target.api_version.as_deref().unwrap_or("");
        let resource = self.target_resource(api_version, &target.kind).await?;
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), ns, &resource);
        let scale = api
            .get_scale(&target.name)
            .await
            .map_err(|e| e.to_string())?;
        Ok((resource, scale))
    }

    /// Writes `replicas` into the scale, re-reading it on conflicts (client-go's
    /// `DefaultRetry`: 5 attempts).
    async fn update_scale(
        &self,
        ns: &str,
        resource: &ApiResource,
        scale: &mut Scale,
        replicas: i32,
    ) -> Result<(), String> {
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), ns, resource);
        let name = scale.metadata.name.clone().unwrap_or_default();
        let mut last = String::new();
        for _ in 0..5 {
            scale.spec.get_or_insert_with(Default::default).replicas = Some(replicas);
            match api
                .replace_scale(&name, &PostParams::default(), scale)
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) if errors::is_conflict(&e) => {
                    last = e.to_string();
                    if let Ok(fresh) = api.get_scale(&name).await {
                        *scale = fresh;
                    }
                }
                Err(e) => return Err(e.to_string()),
            }
        }
        Err(last)
    }

    /// The metrics' recommendation, after checking the target's selector (upstream's
    /// `computeReplicasForMetrics` with `validateAndParseSelector`). `Err` is a selector
    /// problem already reflected in `st`'s `ScalingActive`.
    async fn compute(
        &self,
        hpa: &HorizontalPodAutoscaler,
        key: &Key,
        scale: &Scale,
        st: &mut HorizontalPodAutoscalerStatus,
        now: Timestamp,
        out: &mut Outcome,
    ) -> Result<compute::Combined, String> {
        let raw = scale
            .status
            .as_ref()
            .and_then(|s| s.selector.clone())
            .unwrap_or_default();
        if raw.is_empty() {
            let msg = "selector is required".to_string();
            self.event(hpa, true, "SelectorRequired", msg.clone());
            status::set_condition(
                st,
                SCALING_ACTIVE,
                false,
                "InvalidSelector",
                "the HPA target's scale is missing a selector",
                now,
            );
            return Err(msg);
        }
        let parsed = match selector::parse(&raw) {
            Ok(s) => s,
            Err(e) => {
                let msg = format!(
                    "couldn't convert selector into a corresponding internal selector object: {e}"
                );
                self.event(hpa, true, "InvalidSelector", msg.clone());
                status::set_condition(st, SCALING_ACTIVE, false, "InvalidSelector", &msg, now);
                return Err(msg);
            }
        };
        let all = self.pods.list_namespace(&key.0);
        let pods: Vec<&Pod> = all
            .iter()
            .map(|p| p.as_ref())
            .filter(|p| selector::matches(&parsed, p.metadata.labels.as_ref()))
            .collect();
        let others = {
            let mut sels = self.selectors.lock().unwrap_or_else(|e| e.into_inner());
            sels.insert(key.clone(), parsed);
            status::other_controllers(key, &pods, &sels)
        };
        if !others.is_empty() {
            let mut all = others;
            all.push(format!("{}/{}", key.0, key.1));
            all.sort();
            let msg = format!(
                "pods by selector {raw} are controlled by multiple HPAs: [{}]",
                all.join(" ")
            );
            self.event(hpa, true, "AmbiguousSelector", msg.clone());
            status::set_condition(st, SCALING_ACTIVE, false, "AmbiguousSelector", &msg, now);
            return Err(msg);
        }
        let specs = match hpa.spec.as_ref().and_then(|s| s.metrics.as_deref()) {
            Some(s) if !s.is_empty() => s.to_vec(),
            _ => vec![default_cpu_metric()],
        };
        let pod_metrics = if specs.iter().any(compute::needs_pod_metrics) {
            self.metrics.pod_metrics(&key.0, &raw).await
        } else {
            Err("not fetched".into())
        };
        let current = scale.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
        let ctx = Context {
            pods: &pods,
            namespace: &key.0,
            current,
            status_replicas: scale.status.as_ref().map(|s| s.replicas).unwrap_or(0),
            tolerances: self.tolerances(hpa),
            readiness: Readiness {
                cpu_initialization_period: self.settings.hpa.cpu_initialization_period,
                initial_readiness_delay: self.settings.hpa.initial_readiness_delay,
            },
            pod_level_resources: self.settings.pod_level_resources,
            now,
        };
        let status_replicas = hpa
            .status
            .as_ref()
            .and_then(|s| s.current_replicas)
            .unwrap_or(0);
        let mut results = Vec::with_capacity(specs.len());
        for s in &specs {
            let started = std::time::Instant::now();
            let fetched = self.fetch(&key.0, &raw, s, &pod_metrics).await;
            let r = compute::metric(s, fetched, &ctx);
            let (action, error) = match &r {
                Ok(o) => (
                    Action::between(status_replicas, o.replicas),
                    ErrorKind::None,
                ),
                Err(f) if f.reason == compute::INVALID_SOURCE_TYPE => {
                    out.spec_error = true;
                    (Action::None, ErrorKind::Spec)
                }
                Err(_) => (Action::None, ErrorKind::Internal),
            };
            self.monitor
                .computed(action, error, &s.type_, started.elapsed());
            results.push(r);
        }
        for f in results.iter().filter_map(|r| r.as_ref().err()) {
            self.event(hpa, true, f.reason, f.cause.clone());
        }
        Ok(compute::combine(current, &results))
    }
}

impl State {
    /// Fetches what `spec` needs: the shared PodMetrics list, or its custom or external
    /// metric (`selector` is the target's pod selector).
    async fn fetch<'a>(
        &self,
        ns: &str,
        selector: &str,
        spec: &MetricSpec,
        pod_metrics: &'a Result<Vec<PodMetrics>, String>,
    ) -> Fetched<'a> {
        let query = |m: &k8s_openapi::api::autoscaling::v2::MetricIdentifier| {
            m.selector
                .as_ref()
                .map(selector::to_query)
                .unwrap_or_default()
        };
        match spec.type_.as_str() {
            "Resource" | "ContainerResource" => Fetched::PodMetrics(pod_metrics),
            "Pods" => match &spec.pods {
                Some(p) => Fetched::PodValues(
                    self.metrics
                        .pods_metric(ns, selector, &p.metric.name, &query(&p.metric))
                        .await
                        .map(|(m, _)| m),
                ),
                None => Fetched::Nothing,
            },
            "Object" => match &spec.object {
                Some(o) => {
                    let d = &o.described_object;
                    let api_version = d.api_version.as_deref().unwrap_or("v1");
                    let object = match self.target_resource(api_version, &d.kind).await {
                        Ok(r) => ObjectRef {
                            group_resource: if r.group.is_empty() {
                                r.plural.clone()
                            } else {
                                format!("{}.{}", r.plural, r.group)
                            },
                            name: d.name.clone(),
                            is_namespace: r.group.is_empty() && d.kind == "Namespace",
                        },
                        Err(e) => return Fetched::Object(Err(e)),
                    };
                    Fetched::Object(
                        self.metrics
                            .object_metric(ns, &object, &o.metric.name, &query(&o.metric))
                            .await,
                    )
                }
                None => Fetched::Nothing,
            },
            "External" => match &spec.external {
                Some(x) => Fetched::External(
                    self.metrics
                        .external_metric(ns, &x.metric.name, &query(&x.metric))
                        .await,
                ),
                None => Fetched::Nothing,
            },
            _ => Fetched::Nothing,
        }
    }
}

fn original_desired(original: &Option<HorizontalPodAutoscalerStatus>) -> i32 {
    original.as_ref().map(|s| s.desired_replicas).unwrap_or(0)
}

/// The apiserver's default metric (80 % CPU utilization) for an HPA without any.
fn default_cpu_metric() -> MetricSpec {
    MetricSpec {
        type_: "Resource".into(),
        resource: Some(ResourceMetricSource {
            name: "cpu".into(),
            target: MetricTarget {
                type_: "Utilization".into(),
                average_utilization: Some(80),
                ..Default::default()
            },
        }),
        ..Default::default()
    }
}
