//! One probe of one container instance, probed periodically until cancelled: applies the
//! gates (initial delay, startup), runs the action, records events and metrics, and
//! publishes the result after the thresholds, waking the pod worker on a change.

use super::action::{self, Outcome};
use super::state::{gate, ProbeKind, ProbeResult, Skip, Timing, Tracker};
use super::Results;
use crate::cri::{CriHandle, CriService};
use crate::events::{reason, EventType, Recorder};
use k8s_openapi::api::core::v1::{Container, Pod, Probe};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// While gated, the worker looks again this often (cheap: nothing is probed).
const GATE_POLL: Duration = Duration::from_millis(250);

/// Everything one worker needs.
pub struct Worker {
    /// Which probe.
    pub kind: ProbeKind,
    /// The pod (for events, metrics and the probe's container).
    pub pod: Arc<Pod>,
    /// The container's spec.
    pub container: Container,
    /// The CRI ID of the container instance probed.
    pub container_id: String,
    /// When it started, ns since the epoch.
    pub started_at: i64,
    /// The pod's IP (the default host of network probes).
    pub pod_ip: String,
    /// For exec probes.
    pub cri: CriHandle,
    /// For Unhealthy / ProbeWarning events.
    pub recorder: Recorder,
    /// Where results are published.
    pub results: Results,
    /// Woken when a published result changes.
    pub wake: Arc<Notify>,
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Runs one probe action of `probe` against the container.
pub async fn run_probe(
    probe: &Probe,
    c: &Container,
    container_id: &str,
    pod_ip: &str,
    cri: &dyn CriService,
) -> Outcome {
    let timeout = Timing::of(probe).timeout;
    if let Some(e) = &probe.exec {
        let cmd = action::expand_static(e.command.as_deref().unwrap_or_default(), c);
        return action::exec(cri, container_id, &cmd, timeout).await;
    }
    if let Some(h) = &probe.http_get {
        return match action::http_request(h, c, pod_ip, "probe") {
            Ok(req) => action::http_get(&req, timeout).await,
            Err(e) => Outcome::Error(e),
        };
    }
    if let Some(t) = &probe.tcp_socket {
        let host = t
            .host
            .as_deref()
            .filter(|h| !h.is_empty())
            .unwrap_or(pod_ip);
        return match action::resolve_port(&t.port, c) {
            Ok(port) => action::tcp_connect(host, port, timeout).await,
            Err(e) => Outcome::Error(e),
        };
    }
    if let Some(g) = &probe.grpc {
        let Ok(port) = u16::try_from(g.port) else {
            return Outcome::Error(format!("invalid port number: {}", g.port));
        };
        let service = g.service.as_deref().unwrap_or("");
        return action::grpc_check(pod_ip, port, service, timeout).await;
    }
    Outcome::Error(format!("missing probe handler for container {}", c.name))
}

impl Worker {
    fn started(&self) -> bool {
        self.container.startup_probe.is_none()
            || self
                .results
                .get(&self.container_id, ProbeKind::Startup)
                .is_some_and(|r| r == ProbeResult::Success)
    }

    fn record(&self, type_: EventType, reason: &str, message: String) {
        self.recorder.pod_event(
            &self.pod,
            Some(&self.container.name),
            type_,
            reason,
            &message,
        );
    }

    /// Who this worker's metric series belong to.
    pub fn target(&self) -> super::metrics::Target {
        let m = &self.pod.metadata;
        super::metrics::Target {
            probe_type: self.kind.as_str(),
            container: self.container.name.clone(),
            pod: m.name.clone().unwrap_or_default(),
            namespace: m.namespace.clone().unwrap_or_default(),
            pod_uid: m.uid.clone().unwrap_or_default(),
        }
    }

    /// Probes until `stop`.
    pub async fn run(self, stop: CancellationToken) {
        let Some(probe) = self.kind.spec(&self.container).cloned() else {
            return;
        };
        let timing = Timing::of(&probe);
        let mut tracker = Tracker::new(self.kind);
        let kind = self.kind.as_str();
        let target = self.target();
        loop {
            let running_for = Duration::from_nanos((now_ns() - self.started_at).max(0) as u64);
            let wait = match gate(self.kind, &tracker, &timing, running_for, self.started()) {
                Err(Skip::OnHold) => timing.period,
                Err(_) => GATE_POLL,
                Ok(()) => {
                    let started = std::time::Instant::now();
                    let outcome = tokio::select! {
                        _ = stop.cancelled() => return,
                        o = run_probe(&probe, &self.container, &self.container_id, &self.pod_ip, self.cri.as_ref()) => o,
                    };
                    let result = match outcome {
                        Outcome::Success(_) => Some(ProbeResult::Success),
                        Outcome::Warning(output) => {
                            self.record(
                                EventType::Warning,
                                reason::PROBE_WARNING,
                                format!("{kind} probe warning: {output}"),
                            );
                            Some(ProbeResult::Success)
                        }
                        Outcome::Failure(output) => {
                            self.record(
                                EventType::Warning,
                                reason::UNHEALTHY,
                                format!("{kind} probe failed: {output}"),
                            );
                            Some(ProbeResult::Failure)
                        }
                        Outcome::Error(e) => {
                            tracing::debug!(probe = kind, container = %self.container.name, error = %e, "Probe errored");
                            self.record(
                                EventType::Warning,
                                reason::UNHEALTHY,
                                format!("{kind} probe errored and resulted in unknown state: {e}"),
                            );
                            None
                        }
                    };
                    // A probe that errored is thrown away, uncounted, as upstream; nor is
                    // one that ends as the pod's probes stop (their series are removed).
                    if stop.is_cancelled() {
                        return;
                    }
                    if let Some(r) = result {
                        let label = match r {
                            ProbeResult::Success => "successful",
                            ProbeResult::Failure => "failed",
                            ProbeResult::Unknown => "unknown",
                        };
                        super::metrics::record(&target, label, started.elapsed().as_secs_f64());
                    }
                    if let Some(result) = result {
                        if tracker.observe(result, &timing) {
                            let before = self.results.set(&self.container_id, self.kind, result);
                            if before != Some(result) {
                                tracing::info!(probe = kind, pod = ?self.pod.metadata.name, container = %self.container.name, result = ?result, "Probe result changed");
                                self.wake.notify_one();
                            }
                        }
                    }
                    timing.period
                }
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}
