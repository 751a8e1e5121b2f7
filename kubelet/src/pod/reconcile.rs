//! The heart of a pod worker, as a pure function: given the desired pod and what CRI
//! reports, the next step towards the desired state (upstream's `computePodActions`).
//! The worker applies the step and asks again until nothing is left to do.

use super::backoff;
use super::observed::{ContainerState, ObservedContainer, ObservedPod};
use k8s_openapi::api::core::v1::{Container, Pod};
use std::collections::BTreeMap;
use std::time::Duration;

/// Which list a container comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerKind {
    /// A regular init container (runs to completion, in order).
    Init,
    /// A restartable init container (`restartPolicy: Always`): a sidecar.
    Sidecar,
    /// An app container.
    App,
    /// An ephemeral container: started once, never restarted.
    Ephemeral,
}

/// Start (create + start) one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartContainer {
    /// Spec name.
    pub name: String,
    /// Which list it is in.
    pub kind: ContainerKind,
    /// The restart count to record (0 for the first run).
    pub restart_count: i32,
}

/// The next step for one pod.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodActions {
    /// Stop every container and the sandbox (gracefully).
    pub kill_pod: bool,
    /// Create a new sandbox with this attempt number.
    pub create_sandbox: Option<u32>,
    /// Containers to stop: (CRI id, spec name, why).
    pub kill: Vec<(String, String, String)>,
    /// Grace periods that replace the pod's for some kills (a probe's own
    /// `terminationGracePeriodSeconds`), by CRI id.
    pub kill_grace: BTreeMap<String, i64>,
    /// Containers to start, in order.
    pub start: Vec<StartContainer>,
    /// Containers waiting on a back-off: name → (reason, message).
    pub waiting: BTreeMap<String, (String, String)>,
    /// Look again after this long even if nothing changes (back-off expiry).
    pub requeue_after: Option<Duration>,
}

impl PodActions {
    /// Whether this step changes anything in the runtime.
    pub fn is_noop(&self) -> bool {
        !self.kill_pod
            && self.create_sandbox.is_none()
            && self.kill.is_empty()
            && self.start.is_empty()
    }
}

/// A stable hash of the parts of a container spec that require a restart when changed
/// (everything but resources, which can be resized in place).
pub fn container_hash(c: &Container) -> String {
    let mut c = c.clone();
    c.resources = None;
    let json = serde_json::to_vec(&c).unwrap_or_default();
    crate::image::oci::sha256_digest(&json)[7..23].to_string()
}

fn restart_policy(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always")
}

fn should_restart(policy: &str, exit_code: i32) -> bool {
    match policy {
        "Never" => false,
        "OnFailure" => exit_code != 0,
        _ => true,
    }
}

/// Whether `c` may start again now; otherwise the back-off's (reason, message) and how long
/// is left.
fn backoff_check(pod: &Pod, c: &ObservedContainer, now_ns: i64) -> Result<(), (String, Duration)> {
    let ran = Duration::from_nanos((c.finished_at - c.started_at).max(0) as u64);
    let delay = backoff::delay(c.restart_count, ran);
    let ready_at = c.finished_at.saturating_add(delay.as_nanos() as i64);
    if now_ns >= ready_at {
        return Ok(());
    }
    let meta = &pod.metadata;
    let msg = format!(
        "back-off {}s restarting failed container={} pod={}_{}({})",
        delay.as_secs(),
        c.name,
        meta.name.as_deref().unwrap_or_default(),
        meta.namespace.as_deref().unwrap_or_default(),
        meta.uid.as_deref().unwrap_or_default()
    );
    Err((msg, Duration::from_nanos((ready_at - now_ns) as u64)))
}

/// The restart count the next run of `name` gets.
fn next_restart_count(observed: &ObservedPod, name: &str) -> i32 {
    observed
        .latest(name, None)
        .map(|c| c.restart_count + 1)
        .unwrap_or(0)
}

/// Whether every app container has exited for good (restart policy says so).
pub fn pod_completed(pod: &Pod, observed: &ObservedPod) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return false;
    };
    let policy = restart_policy(pod);
    !spec.containers.is_empty()
        && spec.containers.iter().all(|c| {
            observed.latest(&c.name, None).is_some_and(|o| {
                o.state == ContainerState::Exited && !should_restart(policy, o.exit_code)
            })
        })
}

/// Whether a regular init container failed for good (restartPolicy Never).
pub fn init_failed(pod: &Pod, observed: &ObservedPod) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return false;
    };
    restart_policy(pod) == "Never"
        && spec.init_containers.iter().flatten().any(|ic| {
            ic.restart_policy.as_deref() != Some("Always")
                && observed
                    .latest(&ic.name, None)
                    .is_some_and(|o| o.state == ContainerState::Exited && o.exit_code != 0)
        })
}

/// A running container a failed liveness or startup probe condemns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeKill {
    /// Which probe failed: `liveness` or `startup` (upstream's kill message names it).
    pub probe: &'static str,
    /// The probe's own grace period, if it sets one.
    pub grace_period: Option<i64>,
}

impl ProbeKill {
    /// Upstream's kill (and Killing event) message for an app container:
    /// `Container app failed liveness probe`, `, will be restarted` unless the policy is
    /// Never.
    pub fn message(&self, name: &str, policy: &str) -> String {
        let base = format!("Container {name} failed {} probe", self.probe);
        if policy == "Never" {
            base
        } else {
            format!("{base}, will be restarted")
        }
    }

    /// The message for a sidecar, which always restarts: `Init container x failed … probe`.
    pub fn sidecar_message(&self, name: &str) -> String {
        format!("Init container {name} failed {} probe", self.probe)
    }
}

/// Computes the next step for `pod` given what CRI reports. `terminating` is set once the
/// pod is being deleted; `now_ns` is the wall clock in ns since the epoch.
pub fn compute_pod_actions(
    pod: &Pod,
    observed: &ObservedPod,
    terminating: bool,
    now_ns: i64,
) -> PodActions {
    compute_pod_actions_probed(pod, observed, terminating, now_ns, &BTreeMap::new())
}

/// [`compute_pod_actions`] with the containers whose liveness or startup probe failed, by
/// CRI id: they are killed and, when the restart policy allows, started again at once
/// (as upstream; back-off applies to later restarts).
pub fn compute_pod_actions_probed(
    pod: &Pod,
    observed: &ObservedPod,
    terminating: bool,
    now_ns: i64,
    unhealthy: &BTreeMap<String, ProbeKill>,
) -> PodActions {
    let mut actions = PodActions::default();
    let Some(spec) = pod.spec.as_ref() else {
        return actions;
    };
    let has_anything = !observed.sandboxes.is_empty() || observed.any_running();
    if terminating {
        actions.kill_pod =
            has_anything && (observed.sandboxes.iter().any(|s| s.ready) || observed.any_running());
        return actions;
    }
    let policy = restart_policy(pod);
    let done = pod_completed(pod, observed) || init_failed(pod, observed);
    let sandbox = observed.sandbox();
    let Some(sandbox) = sandbox.filter(|s| s.ready) else {
        if done {
            // Finished pods are not restarted; their sandbox is only cleaned up.
            actions.kill_pod = observed.any_running();
            return actions;
        }
        if let Some(old) = sandbox {
            // The sandbox died (e.g. node reboot): start over with a new one unless the
            // restart policy forbids re-running containers that already ran.
            if policy == "Never" && observed.containers.iter().any(|c| c.sandbox_id == old.id) {
                actions.kill_pod = observed.any_running();
                return actions;
            }
            actions.kill_pod = true;
        }
        actions.create_sandbox = Some(sandbox.map(|s| s.attempt + 1).unwrap_or(0));
        return actions;
    };
    let sid = Some(sandbox.id.as_str());
    let wait = |actions: &mut PodActions, c: &ObservedContainer, msg: String, left: Duration| {
        actions
            .waiting
            .insert(c.name.clone(), ("CrashLoopBackOff".to_string(), msg));
        actions.requeue_after = Some(actions.requeue_after.map_or(left, |r| r.min(left)));
    };
    // Ephemeral containers start once, even before initialization completes, and never
    // restart: one that ran in any sandbox is left as it is (upstream's computePodActions).
    if !done {
        for ec in spec.ephemeral_containers.iter().flatten() {
            if observed.latest(&ec.name, None).is_none() {
                actions.start.push(StartContainer {
                    name: ec.name.clone(),
                    kind: ContainerKind::Ephemeral,
                    restart_count: 0,
                });
            }
        }
    }
    // Init containers in order; sidecars once started count as done.
    for ic in spec.init_containers.iter().flatten() {
        let sidecar = ic.restart_policy.as_deref() == Some("Always");
        let kind = if sidecar {
            ContainerKind::Sidecar
        } else {
            ContainerKind::Init
        };
        let start = |actions: &mut PodActions| {
            actions.start.push(StartContainer {
                name: ic.name.clone(),
                kind,
                restart_count: next_restart_count(observed, &ic.name),
            })
        };
        match observed.latest(&ic.name, sid) {
            None => {
                start(&mut actions);
                return actions;
            }
            Some(o) if o.state == ContainerState::Running => {
                if !sidecar {
                    return actions;
                }
                if let Some(kill) = unhealthy.get(&o.id) {
                    actions.kill.push((
                        o.id.clone(),
                        ic.name.clone(),
                        kill.sidecar_message(&ic.name),
                    ));
                    if let Some(g) = kill.grace_period {
                        actions.kill_grace.insert(o.id.clone(), g);
                    }
                    actions.start.push(StartContainer {
                        name: ic.name.clone(),
                        kind,
                        restart_count: o.restart_count + 1,
                    });
                }
            }
            Some(o) if o.state == ContainerState::Exited && !sidecar && o.exit_code == 0 => {}
            Some(o) if o.state == ContainerState::Exited => {
                if !sidecar && policy == "Never" {
                    actions.kill_pod = observed.any_running();
                    return actions;
                }
                match backoff_check(pod, o, now_ns) {
                    Ok(()) => start(&mut actions),
                    Err((msg, left)) => wait(&mut actions, o, msg, left),
                }
                if !sidecar {
                    return actions;
                }
            }
            Some(o) => {
                // Created but never started, or unknown: replace it.
                actions
                    .kill
                    .push((o.id.clone(), o.name.clone(), "not started".into()));
                return actions;
            }
        }
    }
    let mut keep = 0;
    for c in &spec.containers {
        let hash = container_hash(c);
        match observed.latest(&c.name, sid) {
            None => {
                let previous = observed.latest(&c.name, None);
                if previous.is_some_and(|p| {
                    p.state == ContainerState::Exited && !should_restart(policy, p.exit_code)
                }) {
                    continue;
                }
                actions.start.push(StartContainer {
                    name: c.name.clone(),
                    kind: ContainerKind::App,
                    restart_count: next_restart_count(observed, &c.name),
                });
            }
            Some(o) if o.state == ContainerState::Running => {
                if let Some(kill) = unhealthy.get(&o.id) {
                    actions.kill.push((
                        o.id.clone(),
                        c.name.clone(),
                        kill.message(&c.name, policy),
                    ));
                    if let Some(g) = kill.grace_period {
                        actions.kill_grace.insert(o.id.clone(), g);
                    }
                    // A killed container exits non-zero.
                    if should_restart(policy, 137) {
                        actions.start.push(StartContainer {
                            name: c.name.clone(),
                            kind: ContainerKind::App,
                            restart_count: o.restart_count + 1,
                        });
                    }
                } else if o.hash == hash {
                    keep += 1;
                } else {
                    let why = format!("Container {} definition changed, will be restarted", c.name);
                    actions.kill.push((o.id.clone(), c.name.clone(), why));
                }
            }
            Some(o) if o.state == ContainerState::Exited => {
                if !should_restart(policy, o.exit_code) {
                    continue;
                }
                match backoff_check(pod, o, now_ns) {
                    Ok(()) => actions.start.push(StartContainer {
                        name: c.name.clone(),
                        kind: ContainerKind::App,
                        restart_count: o.restart_count + 1,
                    }),
                    Err((msg, left)) => wait(&mut actions, o, msg, left),
                }
            }
            Some(o) => actions
                .kill
                .push((o.id.clone(), c.name.clone(), "not started".into())),
        }
    }
    if keep == 0 && actions.start.is_empty() && actions.waiting.is_empty() && done {
        // Nothing runs and nothing will: stop the sandbox (and any sidecars), as upstream.
        actions.kill_pod = true;
    }
    actions
}

#[cfg(test)]
mod tests;
