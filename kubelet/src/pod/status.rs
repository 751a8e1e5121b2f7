//! The pod status the kubelet reports, computed purely from the pod, what CRI shows and the
//! waiting reasons of containers that could not start — in upstream's shape: phase,
//! conditions, init/container statuses with state and lastState, IPs, QoS class, start time.

use super::containers;
use super::deadline;
use super::observed::{ContainerState, ObservedContainer, ObservedPod};
use super::qos::qos_class;
use super::reconcile::{init_failed, pod_completed};
use crate::prober::state::{container_health, ProbeResult};
use k8s_openapi::api::core::v1::{
    Container, ContainerState as ApiState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use std::collections::BTreeMap;

/// Inputs besides the pod and the runtime's state.
#[derive(Debug, Clone, Default)]
pub struct StatusInputs {
    /// Containers that could not start or are backing off: name → (reason, message).
    pub waiting: BTreeMap<String, (String, String)>,
    /// The node's IPs.
    pub host_ips: Vec<String>,
    /// When the kubelet first saw the pod (`startTime`).
    pub start_time: Option<Timestamp>,
    /// The runtime's name for container IDs (`containerd`).
    pub runtime_name: String,
    /// A volume could not be mounted (the pod waits in ContainerCreating).
    pub mount_error: Option<String>,
    /// Published (startup, readiness) probe results by CRI container ID; a container
    /// missing here shows what its spec implies before any probe ran.
    pub probes: BTreeMap<String, (Option<ProbeResult>, Option<ProbeResult>)>,
    /// The pod is past its `activeDeadlineSeconds` ([`super::deadline`]): it is Failed
    /// with reason `DeadlineExceeded` unless it already finished.
    pub deadline_exceeded: bool,
    /// The pod is being deleted and its containers have stopped (upstream's
    /// `podIsTerminal`): it ends Succeeded or Failed, whatever its restart policy.
    pub pod_is_terminal: bool,
}

fn ts(ns: i64) -> Option<Time> {
    (ns > 0)
        .then(|| Timestamp::from_nanosecond(ns as i128).ok())
        .flatten()
        .map(Time)
}

fn terminated_reason(o: &ObservedContainer) -> String {
    if !o.reason.is_empty() {
        o.reason.clone()
    } else if o.exit_code == 0 {
        "Completed".into()
    } else {
        "Error".into()
    }
}

fn state_of(o: &ObservedContainer, runtime: &str) -> ApiState {
    match o.state {
        ContainerState::Running => ApiState {
            running: Some(ContainerStateRunning {
                started_at: ts(o.started_at),
            }),
            ..Default::default()
        },
        ContainerState::Exited => ApiState {
            terminated: Some(ContainerStateTerminated {
                exit_code: o.exit_code,
                reason: Some(terminated_reason(o)),
                message: Some(o.message.clone()).filter(|m| !m.is_empty()),
                started_at: ts(o.started_at),
                finished_at: ts(o.finished_at),
                container_id: Some(format!("{runtime}://{}", o.id)),
                signal: None,
            }),
            ..Default::default()
        },
        _ => waiting("ContainerCreating", ""),
    }
}

fn waiting(reason: &str, message: &str) -> ApiState {
    ApiState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.to_string()),
            message: Some(message.to_string()).filter(|m| !m.is_empty()),
        }),
        ..Default::default()
    }
}

fn container_status(
    c: &Container,
    observed: &ObservedPod,
    inputs: &StatusInputs,
    default_waiting: &str,
) -> ContainerStatus {
    let latest = observed.latest(&c.name, None);
    let runtime = &inputs.runtime_name;
    let mut state = match latest {
        Some(o) => state_of(o, runtime),
        None => waiting(default_waiting, ""),
    };
    // A back-off or start failure replaces an exited state, as upstream.
    if let Some((reason, message)) = inputs.waiting.get(&c.name) {
        if latest.is_none_or(|o| o.state != ContainerState::Running) {
            state = waiting(reason, message);
        }
    }
    let last_state = match (latest, &state.waiting) {
        // Waiting after a run: the exited run is lastState.
        (Some(o), Some(_)) if o.state == ContainerState::Exited => Some(state_of(o, runtime)),
        _ => observed
            .previous(&c.name)
            .filter(|p| p.state == ContainerState::Exited)
            .map(|p| state_of(p, runtime)),
    };
    let running =
        latest.is_some_and(|o| o.state == ContainerState::Running) && state.running.is_some();
    let (startup, readiness) = latest
        .and_then(|o| inputs.probes.get(&o.id).copied())
        .unwrap_or_default();
    let (started, ready) = container_health(c, running, startup, readiness);
    ContainerStatus {
        name: c.name.clone(),
        image: c.image.clone().unwrap_or_default(),
        image_id: latest.map(|o| o.image_ref.clone()).unwrap_or_default(),
        container_id: latest.map(|o| format!("{runtime}://{}", o.id)),
        restart_count: latest.map(|o| o.restart_count).unwrap_or(0),
        ready,
        started: Some(started),
        state: Some(state),
        last_state: Some(last_state.unwrap_or_default()),
        ..Default::default()
    }
}

/// The statuses of the ephemeral containers, sorted by name as upstream's status manager
/// writes them. They are never ready: no probe runs on them.
fn ephemeral_statuses(
    pod: &Pod,
    observed: &ObservedPod,
    inputs: &StatusInputs,
) -> Vec<ContainerStatus> {
    let mut statuses: Vec<ContainerStatus> = containers::ephemeral(pod)
        .iter()
        .map(|c| ContainerStatus {
            ready: false,
            ..container_status(c, observed, inputs, "ContainerCreating")
        })
        .collect();
    statuses.sort_by(|a, b| a.name.cmp(&b.name));
    statuses
}

fn condition(
    kind: &str,
    ok: bool,
    reason: Option<&str>,
    message: Option<String>,
    old: &[PodCondition],
    now: &Time,
) -> PodCondition {
    let status = if ok { "True" } else { "False" };
    let prev = old.iter().find(|c| c.type_ == kind);
    let transition = match prev {
        Some(p) if p.status == status => p.last_transition_time.clone(),
        _ => Some(now.clone()),
    };
    PodCondition {
        type_: kind.to_string(),
        status: status.to_string(),
        reason: if ok { None } else { reason.map(str::to_string) },
        message: if ok { None } else { message },
        last_transition_time: transition,
        last_probe_time: None,
        observed_generation: None,
    }
}

/// The pod's phase, as upstream's `getPhase`.
pub fn phase(pod: &Pod, observed: &ObservedPod) -> &'static str {
    let Some(spec) = pod.spec.as_ref() else {
        return "Pending";
    };
    if init_failed(pod, observed) {
        return "Failed";
    }
    let inits_done = spec.init_containers.iter().flatten().all(|ic| {
        observed.latest(&ic.name, None).is_some_and(|o| {
            if ic.restart_policy.as_deref() == Some("Always") {
                o.state == ContainerState::Running
            } else {
                o.state == ContainerState::Exited && o.exit_code == 0
            }
        })
    });
    let latest: Vec<Option<&ObservedContainer>> = spec
        .containers
        .iter()
        .map(|c| observed.latest(&c.name, None))
        .collect();
    if !inits_done || latest.iter().any(Option::is_none) {
        return "Pending";
    }
    if pod_completed(pod, observed) {
        let all_ok = latest.iter().flatten().all(|o| o.exit_code == 0);
        return if all_ok { "Succeeded" } else { "Failed" };
    }
    "Running"
}

/// The pod condition types the kubelet owns (upstream's `PodConditionsByKubelet` plus
/// `PodReadyToStartContainers`); it writes these and keeps every other one as it is.
pub const KUBELET_CONDITIONS: [&str; 7] = [
    "PodScheduled",
    "Ready",
    "Initialized",
    "ContainersReady",
    "PodResizeInProgress",
    "PodResizePending",
    "PodReadyToStartContainers",
];

/// Whether the kubelet owns condition type `kind`.
pub fn owned_by_kubelet(kind: &str) -> bool {
    KUBELET_CONDITIONS.contains(&kind)
}

/// The `Initialized` condition, as upstream's `GeneratePodInitializedCondition`: every init
/// container done, the pod Succeeded, or a regular container already started (the pod was
/// initialized before). A pod failed by its init container is not initialized.
fn initialized(inits_done: bool, phase: &str, statuses: &[ContainerStatus]) -> bool {
    let any_started = statuses.iter().any(|s| {
        s.state
            .as_ref()
            .is_some_and(|st| st.running.is_some() || st.terminated.is_some())
            || s.last_state
                .as_ref()
                .is_some_and(|st| st.terminated.is_some())
    });
    inits_done || phase == "Succeeded" || any_started
}

/// The phase of a pod the kubelet has stopped for good, as upstream's `getPhase` with
/// `podIsTerminal`: every app container ran and none runs → Succeeded when all exited 0,
/// else Failed. `None` keeps the usual phase (a container never started, one still runs,
/// or a static pod, which upstream leaves as it is).
pub fn terminal_phase(pod: &Pod, observed: &ObservedPod) -> Option<&'static str> {
    let spec = pod.spec.as_ref()?;
    if crate::static_pods::source::is_static(pod) || spec.containers.is_empty() {
        return None;
    }
    let mut all_ok = true;
    for c in &spec.containers {
        let o = observed.latest(&c.name, None)?;
        if o.state != ContainerState::Exited {
            return None;
        }
        all_ok &= o.exit_code == 0;
    }
    Some(if all_ok { "Succeeded" } else { "Failed" })
}

/// The full status (pure): `now` stamps changed conditions.
pub fn pod_status(
    pod: &Pod,
    observed: &ObservedPod,
    inputs: &StatusInputs,
    now: Timestamp,
) -> PodStatus {
    let now = Time(now);
    let old = pod.status.clone().unwrap_or_default();
    let old_conditions = old.conditions.clone().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let sandbox = observed.sandbox();
    let sandbox_ready = sandbox.is_some_and(|s| s.ready);
    let host_network = spec.host_network.unwrap_or(false);
    let pod_ips: Vec<String> = if host_network {
        inputs.host_ips.clone()
    } else {
        sandbox
            .filter(|s| s.ready)
            .map(|s| s.ips.clone())
            .unwrap_or_default()
    };
    let init_statuses: Vec<ContainerStatus> = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| {
            let mut s = container_status(c, observed, inputs, "PodInitializing");
            // A regular init container is ready once it completed, as upstream.
            if c.restart_policy.as_deref() != Some("Always") {
                s.ready = s
                    .state
                    .as_ref()
                    .and_then(|st| st.terminated.as_ref())
                    .is_some_and(|t| t.exit_code == 0);
            }
            s
        })
        .collect();
    let inits_done = spec
        .init_containers
        .iter()
        .flatten()
        .zip(&init_statuses)
        .all(|(c, s)| {
            if c.restart_policy.as_deref() == Some("Always") {
                s.started == Some(true)
            } else {
                s.state
                    .as_ref()
                    .and_then(|st| st.terminated.as_ref())
                    .is_some_and(|t| t.exit_code == 0)
            }
        });
    let app_default = if inits_done && sandbox_ready {
        "ContainerCreating"
    } else {
        "PodInitializing"
    };
    let mut statuses: Vec<ContainerStatus> = spec
        .containers
        .iter()
        .map(|c| container_status(c, observed, inputs, app_default))
        .collect();
    if !inits_done && spec.init_containers.is_some() {
        for s in statuses
            .iter_mut()
            .filter(|s| s.state.as_ref().is_some_and(|st| st.waiting.is_some()))
        {
            s.state = Some(waiting("PodInitializing", ""));
        }
    }
    let ephemeral_statuses = ephemeral_statuses(pod, observed, inputs);
    let mut phase = phase(pod, observed);
    if inputs.pod_is_terminal {
        phase = terminal_phase(pod, observed).unwrap_or(phase);
    }
    let mut reason_message = None;
    if inputs.deadline_exceeded && !matches!(phase, "Succeeded" | "Failed") {
        phase = "Failed";
        reason_message = Some((deadline::REASON, deadline::MESSAGE));
    }
    let sidecars_ready = spec
        .init_containers
        .iter()
        .flatten()
        .zip(&init_statuses)
        .filter(|(c, _)| c.restart_policy.as_deref() == Some("Always"))
        .all(|(_, s)| s.ready);
    let all_ready = statuses.iter().all(|s| s.ready) && sidecars_ready && phase == "Running";
    let unready: Vec<String> = statuses
        .iter()
        .filter(|s| !s.ready)
        .map(|s| s.name.clone())
        .collect();
    let unready_msg = Some(format!(
        "containers with unready status: [{}]",
        unready.join(" ")
    ));
    let uninit: Vec<String> = init_statuses
        .iter()
        .zip(spec.init_containers.iter().flatten())
        .filter(|(s, c)| {
            let done = s
                .state
                .as_ref()
                .and_then(|st| st.terminated.as_ref())
                .is_some_and(|t| t.exit_code == 0);
            !(done || c.restart_policy.as_deref() == Some("Always") && s.started == Some(true))
        })
        .map(|(s, _)| s.name.clone())
        .collect();
    let completed = phase == "Succeeded" || phase == "Failed";
    let ready_reason = if completed {
        "PodCompleted"
    } else {
        "ContainersNotReady"
    };
    let mut conditions = vec![
        condition(
            "PodReadyToStartContainers",
            sandbox_ready,
            None,
            None,
            &old_conditions,
            &now,
        ),
        condition(
            "Initialized",
            initialized(inits_done, phase, &statuses),
            Some("ContainersNotInitialized"),
            Some(format!(
                "containers with incomplete status: [{}]",
                uninit.join(" ")
            )),
            &old_conditions,
            &now,
        ),
        condition(
            "Ready",
            all_ready,
            Some(ready_reason),
            unready_msg.clone(),
            &old_conditions,
            &now,
        ),
        condition(
            "ContainersReady",
            all_ready,
            Some(ready_reason),
            unready_msg,
            &old_conditions,
            &now,
        ),
    ];
    let scheduled = old_conditions
        .iter()
        .find(|c| c.type_ == "PodScheduled")
        .cloned()
        .unwrap_or_else(|| condition("PodScheduled", true, None, None, &[], &now));
    conditions.push(scheduled);
    // Conditions others own (DisruptionTarget, readiness gates' types, …) are kept, as
    // upstream's status manager merges them.
    conditions.extend(
        old_conditions
            .iter()
            .filter(|c| !owned_by_kubelet(&c.type_))
            .cloned(),
    );
    PodStatus {
        phase: Some(phase.to_string()),
        conditions: Some(conditions),
        host_ip: inputs.host_ips.first().cloned(),
        host_ips: Some(
            inputs
                .host_ips
                .iter()
                .map(|ip| HostIP { ip: ip.clone() })
                .collect(),
        )
        .filter(|v: &Vec<_>| !v.is_empty()),
        pod_ip: pod_ips.first().cloned(),
        pod_ips: Some(pod_ips.iter().map(|ip| PodIP { ip: ip.clone() }).collect())
            .filter(|v: &Vec<_>| !v.is_empty()),
        start_time: old
            .start_time
            .clone()
            .or_else(|| inputs.start_time.map(Time)),
        qos_class: Some(qos_class(pod).as_str().to_string()),
        container_statuses: Some(statuses),
        init_container_statuses: Some(init_statuses).filter(|v| !v.is_empty()),
        ephemeral_container_statuses: Some(ephemeral_statuses).filter(|v| !v.is_empty()),
        reason: reason_message.map(|(r, _)| r.to_string()),
        message: reason_message.map(|(_, m)| m.to_string()),
        ..Default::default()
    }
}

/// Whether the API server's copy of a pod's status (`api`) says otherwise than `new` about a
/// condition the kubelet writes: someone else changed it since the kubelet's last write — the
/// node lifecycle controller marks the pods of a node it lost touch with not Ready — and the
/// kubelet must write its own view again, as upstream's status manager reconciles its cache
/// with the pod manager's copy.
pub fn overridden(api: &PodStatus, new: &PodStatus) -> bool {
    let owned = |s: &PodStatus| -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = s
            .conditions
            .iter()
            .flatten()
            .filter(|c| owned_by_kubelet(&c.type_) && c.type_ != "PodScheduled")
            .map(|c| (c.type_.clone(), c.status.clone()))
            .collect();
        v.sort();
        v
    };
    owned(api) != owned(new)
}

/// Whether two statuses differ in anything but condition probe/transition times (upstream
/// writes only on change).
pub fn status_changed(old: &PodStatus, new: &PodStatus) -> bool {
    let strip = |s: &PodStatus| {
        let mut s = s.clone();
        for c in s.conditions.iter_mut().flatten() {
            c.last_transition_time = None;
            c.last_probe_time = None;
        }
        s.message = None;
        s.reason = None;
        s.nominated_node_name = None;
        s.resize = None;
        s.resource_claim_statuses = None;
        s.observed_generation = None;
        s
    };
    strip(old) != strip(new)
}

#[cfg(test)]
mod tests;
