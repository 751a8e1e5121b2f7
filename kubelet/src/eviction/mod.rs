//! The eviction manager: every 10s it observes the eviction signals, reports the node's
//! MemoryPressure / DiskPressure / PIDPressure, and once a threshold has been met for its
//! grace period (hard: at once) it first reclaims at node level (disk: dead containers and
//! unused images) and, only if the pressure remains, evicts one pod, ranked as upstream —
//! the pod stops and is left `Failed` with reason `Evicted` and a `DisruptionTarget`
//! condition. (Pressure taints are the node lifecycle controller's.)

pub mod admit;
pub mod disk;
pub mod grace;
pub mod local_storage;
pub mod predicate;
pub mod pressure;
pub mod rank;
pub mod reclaim;
pub mod signals;
pub mod threshold;
pub mod types;

use crate::cgroups::Hierarchy;
use crate::events::{EventType, Recorder};
use crate::pod::qos::{qos_class, Resources};
use crate::runtime::PodRuntime;
use k8s_openapi::api::core::v1::{Pod, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use rank::Candidate;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use threshold::{Signal, Threshold};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// How often signals are observed (upstream's monitoring interval).
pub const INTERVAL: Duration = Duration::from_secs(10);

/// Event reason on the node when a threshold is acted on, as upstream.
pub const EVICTION_THRESHOLD_MET: &str = "EvictionThresholdMet";
/// Event reason on an evicted pod, as upstream.
pub const EVICTED: &str = "Evicted";

/// What the manager runs with.
pub struct Settings {
    /// Hard and soft thresholds.
    pub thresholds: Vec<Threshold>,
    /// `evictionPressureTransitionPeriod`.
    pub transition: Duration,
    /// The kubelet's root dir (nodefs).
    pub nodefs: PathBuf,
    /// The runtime's root, statfs'd for imagefs when CRI's ImageFsInfo names no mount.
    pub imagefs: PathBuf,
    /// The cgroup hierarchy (per-pod usage).
    pub cgroups: Hierarchy,
    /// `evictionMaxPodGracePeriod` (seconds): the longest grace a soft eviction gives.
    pub max_pod_grace_period: i64,
}

/// What node-level reclaim and events need.
#[derive(Default)]
pub struct NodeReclaim {
    /// The image garbage collector (none: no image is reclaimed).
    pub image_gc: Option<Arc<dyn types::ImageGc>>,
    /// The dead container collector (none: no container is reclaimed).
    pub container_gc: Option<Arc<dyn types::ContainerGc>>,
    /// Node events (`EvictionThresholdMet`) and pod events (`Evicted`).
    pub recorder: Recorder,
    /// The node's name, for events.
    pub node_name: String,
}

/// A decision to evict one pod.
#[derive(Debug, Clone, PartialEq)]
pub struct Eviction {
    /// The pod's UID.
    pub uid: String,
    /// The status message, as upstream words it.
    pub message: String,
    /// How long the pod is given to stop, in seconds ([`grace::grace_period`]).
    pub grace_period: i64,
}

/// Upstream's eviction message for a threshold.
pub fn message(t: &Threshold, observed: &signals::Observed) -> String {
    let q = |v: i64| match t.signal {
        Signal::PidAvailable | Signal::NodeFsInodesFree | Signal::ImageFsInodesFree => {
            v.to_string()
        }
        _ => format!("{}Ki", v / 1024),
    };
    format!(
        "The node was low on resource: {}. Threshold quantity: {}, available: {}. ",
        t.signal.resource(),
        q(t.minimum(observed.capacity)),
        q(observed.available)
    )
}

/// The pod's memory working set or task count, from its pod cgroup.
fn cgroup_usage(pod: &Pod, signal: Signal, s: &Settings) -> i64 {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let cgroup = s.cgroups.pod(qos_class(pod), &uid);
    let cg = |controller: &str| {
        Path::new("/sys/fs/cgroup")
            .join(controller)
            .join(cgroup.trim_start_matches('/'))
    };
    match signal {
        Signal::MemoryAvailable => signals::v1_working_set(&cg("memory")).unwrap_or(0),
        _ => std::fs::read_to_string(cg("pids").join("pids.current"))
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0),
    }
}

fn request(pod: &Pod, signal: Signal) -> i64 {
    let spec = pod.spec.as_ref();
    let containers = spec.map(|s| s.containers.as_slice()).unwrap_or_default();
    match signal {
        Signal::MemoryAvailable => containers
            .iter()
            .filter_map(|c| Resources::of(c).memory_request)
            .sum(),
        Signal::NodeFsAvailable | Signal::ImageFsAvailable => containers
            .iter()
            .filter_map(|c| {
                c.resources
                    .as_ref()?
                    .requests
                    .as_ref()?
                    .get("ephemeral-storage")
            })
            .filter_map(|q| api_helpers::quantity::value(&q.0).ok())
            .sum(),
        _ => 0,
    }
}

/// Whether `signal` is a disk signal.
pub fn is_disk(signal: Signal) -> bool {
    !matches!(signal, Signal::MemoryAvailable | Signal::PidAvailable)
}

async fn observe(settings: &Settings, runtime: &PodRuntime) -> signals::Observations {
    let imagefs = signals::imagefs(runtime.cri.as_ref(), &settings.imagefs).await;
    signals::observe(&settings.nodefs, imagefs)
}

/// Whether the image filesystem is on a device of its own (not the kubelet root's).
async fn dedicated_imagefs(settings: &Settings, runtime: &PodRuntime) -> bool {
    let mount = signals::imagefs_mountpoint(runtime.cri.as_ref())
        .await
        .unwrap_or_else(|| settings.imagefs.clone());
    !signals::same_filesystem(&settings.nodefs, &mount)
}

/// The pods that may be evicted, ranked for `signal` (the first goes first).
async fn ranked(
    settings: &Settings,
    deps: &Deps,
    signal: Signal,
    dedicated: bool,
) -> Vec<(Pod, i64)> {
    let runtime = &deps.runtime;
    // Static and critical pods are not evicted, as upstream.
    let pods: Vec<Pod> = (deps.active_pods)()
        .into_iter()
        .filter(|p| !admit::is_critical(p))
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| !is_evicted(p))
        .collect();
    let layers = if is_disk(signal) {
        disk::writable_layers(runtime.cri.as_ref()).await
    } else {
        HashMap::new()
    };
    let m = disk::measure(signal, dedicated);
    let usage = |p: &Pod| -> i64 {
        if !is_disk(signal) {
            return cgroup_usage(p, signal, settings);
        }
        let r = crate::runtime::config::pod_ref(p);
        let u = disk::pod_usage(
            m,
            layers.get(&r.uid),
            &crate::runtime::config::pod_log_dir(&runtime.ctx, &r),
            &runtime.pod_dir(&r.uid),
        );
        match signal {
            Signal::NodeFsInodesFree | Signal::ImageFsInodesFree => u.inodes,
            _ => u.bytes,
        }
    };
    let mut by_uid: HashMap<String, Pod> = HashMap::new();
    let candidates = pods
        .into_iter()
        .map(|p| {
            let uid = p.metadata.uid.clone().unwrap_or_default();
            let c = Candidate {
                usage: usage(&p),
                request: request(&p, signal),
                priority: p.spec.as_ref().and_then(|s| s.priority).unwrap_or(0),
                uid: uid.clone(),
            };
            by_uid.insert(uid, p);
            c
        })
        .collect();
    rank::rank(candidates)
        .into_iter()
        .filter_map(|c| by_uid.remove(&c.uid).map(|p| (p, c.usage)))
        .collect()
}

/// What the eviction manager reads: the active pods, and the runtime for the image
/// filesystem, the containers' writable layers and the pods' directories.
pub struct Deps {
    /// The pods the kubelet runs.
    pub active_pods: types::ActivePodsFunc,
    /// CRI and the node's pod and log directories.
    pub runtime: PodRuntime,
}

/// Runs until `stop`: publishes pressure conditions to `pressure`, reclaims node-level
/// resources with `node`, and sends evictions to the pod manager (upstream's
/// `KillPodFunc`: the pod manager stops the pod and leaves it Failed/Evicted).
pub async fn run_with_reclaim(
    settings: Settings,
    node: NodeReclaim,
    deps: Deps,
    pressure: watch::Sender<BTreeSet<String>>,
    evict: mpsc::UnboundedSender<Eviction>,
    stop: CancellationToken,
) {
    let mut state = pressure::State::default();
    let mut dedicated: Option<bool> = None;
    // Pods already evicted that may still be stopping (a soft eviction's grace period can
    // span several intervals): never chosen, nor counted, twice.
    let mut evicting: BTreeSet<String> = BTreeSet::new();
    let mut tick = tokio::time::interval(INTERVAL);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let live: BTreeSet<String> = (deps.active_pods)()
            .iter()
            .filter_map(|p| p.metadata.uid.clone())
            .collect();
        evicting.retain(|uid| live.contains(uid));
        if evict_over_local_limits(&deps, &node, &evict, &mut evicting).await {
            // As upstream: a pod evicted for its local storage is this interval's eviction.
            continue;
        }
        if settings.thresholds.is_empty() {
            continue;
        }
        let dedicated = match dedicated {
            Some(d) => d,
            None => {
                let d = dedicated_imagefs(&settings, &deps.runtime).await;
                tracing::info!(dedicated_image_fs = d, "FileSystem detection");
                *dedicated.insert(d)
            }
        };
        let observed = observe(&settings, &deps.runtime).await;
        let step = state.step(
            &settings.thresholds,
            &observed,
            Instant::now(),
            settings.transition,
        );
        let now = step.conditions;
        pressure.send_if_modified(|old| {
            let changed = *old != now;
            if changed {
                tracing::info!(conditions = ?now, "Node pressure changed");
                *old = now.clone();
            }
            changed
        });
        let Some(t) = step.actionable.first().copied() else {
            continue;
        };
        let resource = t.signal.resource();
        tracing::info!(
            resource,
            signal = t.signal.name(),
            "Eviction manager: attempting to reclaim"
        );
        node.recorder.node_event(
            &node.node_name,
            EventType::Warning,
            EVICTION_THRESHOLD_MET,
            &format!("Attempting to reclaim {resource}"),
        );
        let (container_gc, image_gc) = (node.container_gc.as_deref(), node.image_gc.as_deref());
        if reclaim::run(t.signal, dedicated, container_gc, image_gc).await {
            let after = observe(&settings, &deps.runtime).await;
            if pressure::met(&settings.thresholds, &after, true).is_empty() {
                tracing::info!(
                    resource,
                    "Eviction manager: able to reduce resource pressure without evicting pods."
                );
                continue;
            }
        }
        tracing::info!(resource, "Eviction manager: must evict pod(s) to reclaim");
        let Some(o) = observed.get(&t.signal).copied() else {
            continue;
        };
        let Some((victim, usage)) = ranked(&settings, &deps, t.signal, dedicated)
            .await
            .into_iter()
            .find(|(p, _)| !evicting.contains(p.metadata.uid.as_deref().unwrap_or_default()))
        else {
            if evicting.is_empty() {
                tracing::error!("Eviction manager: eviction thresholds have been met, but no pods are active to evict");
            } else {
                // Upstream waits for the evicted pods' cleanup before looking again.
                tracing::info!(
                    pods = evicting.len(),
                    "Eviction manager: waiting for evicted pods to be cleaned up"
                );
            }
            continue;
        };
        let message = message(&t, &o);
        let grace_period = grace::grace_period(&t, &victim, settings.max_pod_grace_period);
        tracing::info!(pod = ?victim.metadata.name, usage, grace_period, "Eviction manager: evicting pod");
        node.recorder
            .pod_event(&victim, None, EventType::Warning, EVICTED, &message);
        let sent = evict.send(Eviction {
            uid: victim.metadata.uid.clone().unwrap_or_default(),
            message,
            grace_period,
        });
        if sent.is_ok() {
            evicting.insert(victim.metadata.uid.clone().unwrap_or_default());
            crate::metrics::count_eviction(t.signal.name());
        }
    }
}

/// Evicts the pods whose emptyDir volumes use more than their `sizeLimit`
/// ([`local_storage`]); whether any was.
async fn evict_over_local_limits(
    deps: &Deps,
    node: &NodeReclaim,
    evict: &mpsc::UnboundedSender<Eviction>,
    evicting: &mut BTreeSet<String>,
) -> bool {
    let mut any = false;
    let candidates = (deps.active_pods)()
        .into_iter()
        .filter(|p| !admit::is_critical(p))
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| !is_evicted(p))
        .filter(|p| !evicting.contains(p.metadata.uid.as_deref().unwrap_or_default()))
        .collect::<Vec<_>>();
    for pod in candidates {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let pod_dir = deps.runtime.pod_dir(&uid);
        let used = |volume: &str| {
            let dir = crate::volumes::volume_dir(&pod_dir, "kubernetes.io~empty-dir", volume);
            crate::stats::fs::disk_usage(&dir)
                .ok()
                .map(|(bytes, _)| bytes)
        };
        let Some(message) = local_storage::over_limit(&pod, used) else {
            continue;
        };
        tracing::info!(pod = ?pod.metadata.name, %message, "Eviction manager: evicting pod over its local storage limit");
        node.recorder
            .pod_event(&pod, None, EventType::Warning, EVICTED, &message);
        let sent = evict.send(Eviction {
            uid: uid.clone(),
            message,
            grace_period: local_storage::GRACE_PERIOD,
        });
        if sent.is_ok() {
            evicting.insert(uid);
            crate::metrics::count_eviction(local_storage::SIGNAL);
            any = true;
        }
    }
    any
}

/// The status an evicted pod is left with: Failed/Evicted, a DisruptionTarget condition,
/// and running containers reported terminated.
pub fn evicted_status(pod: &Pod, message: &str, now: Time) -> serde_json::Value {
    let mut status = pod.status.clone().unwrap_or_default();
    let mut conditions = status.conditions.take().unwrap_or_default();
    conditions.retain(|c| c.type_ != "DisruptionTarget");
    conditions.push(PodCondition {
        type_: "DisruptionTarget".into(),
        status: "True".into(),
        reason: Some("TerminationByKubelet".into()),
        message: Some(message.to_string()),
        last_transition_time: Some(now.clone()),
        ..Default::default()
    });
    for c in &mut conditions {
        if matches!(c.type_.as_str(), "Ready" | "ContainersReady") && c.status == "True" {
            c.status = "False".into();
            c.reason = Some("PodFailed".into());
            c.last_transition_time = Some(now.clone());
        }
    }
    for cs in status.container_statuses.iter_mut().flatten() {
        if let Some(running) = cs.state.as_ref().and_then(|s| s.running.clone()) {
            cs.ready = false;
            cs.started = Some(false);
            cs.state = Some(k8s_openapi::api::core::v1::ContainerState {
                terminated: Some(k8s_openapi::api::core::v1::ContainerStateTerminated {
                    exit_code: 137,
                    reason: Some("Error".into()),
                    started_at: running.started_at,
                    finished_at: Some(now.clone()),
                    container_id: cs.container_id.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
    }
    status.phase = Some("Failed".into());
    status.reason = Some("Evicted".into());
    status.message = Some(message.to_string());
    status.conditions = Some(conditions);
    serde_json::json!({"metadata": {"uid": pod.metadata.uid}, "status": status})
}

/// Whether `pod` was evicted (its workers must not start it again).
pub fn is_evicted(pod: &Pod) -> bool {
    pod.status.as_ref().is_some_and(|s| {
        s.phase.as_deref() == Some("Failed") && s.reason.as_deref() == Some("Evicted")
    })
}

/// Writes the evicted status.
pub async fn write_evicted(client: &kube::Client, pod: &Pod, message: &str) {
    let api: Api<Pod> = Api::namespaced(
        client.clone(),
        pod.metadata.namespace.as_deref().unwrap_or_default(),
    );
    let patch = evicted_status(pod, message, Time(k8s_openapi::jiff::Timestamp::now()));
    match api
        .patch_status(
            pod.metadata.name.as_deref().unwrap_or_default(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => tracing::info!(pod = ?pod.metadata.name, "Evicted pod"),
        Err(e) => {
            tracing::warn!(pod = ?pod.metadata.name, error = %e, "Failed to write the evicted status")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicted_status_is_upstreams_shape() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "uid": "u"},
            "spec": {"containers": [{"name": "c", "image": "i", "resources": {"requests": {"memory": "64Mi"}}}]},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [{"name": "c", "image": "i", "imageID": "", "ready": true, "restartCount": 0,
                    "state": {"running": {"startedAt": "2024-01-01T00:00:00Z"}}}]}
        }))
        .unwrap();
        let t = threshold::parse(&[("memory.available".to_string(), "100Mi".to_string())].into())
            .unwrap();
        let msg = message(
            &t[0],
            &signals::Observed {
                available: 50 << 20,
                capacity: 1 << 30,
            },
        );
        assert_eq!(msg, "The node was low on resource: memory. Threshold quantity: 102400Ki, available: 51200Ki. ");
        let v = evicted_status(&pod, &msg, Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
        assert_eq!(v["metadata"]["uid"], "u");
        let s = &v["status"];
        assert_eq!(
            (s["phase"].as_str(), s["reason"].as_str()),
            (Some("Failed"), Some("Evicted"))
        );
        let conds = s["conditions"].as_array().unwrap();
        let dt = conds
            .iter()
            .find(|c| c["type"] == "DisruptionTarget")
            .unwrap();
        assert_eq!(
            (dt["status"].as_str(), dt["reason"].as_str()),
            (Some("True"), Some("TerminationByKubelet"))
        );
        assert!(conds
            .iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "False"));
        assert_eq!(
            s["containerStatuses"][0]["state"]["terminated"]["exitCode"],
            137
        );
        let evicted: Pod = serde_json::from_value(serde_json::json!({"status": s})).unwrap();
        assert!(is_evicted(&evicted) && !is_evicted(&pod));
        assert_eq!(request(&pod, Signal::MemoryAvailable), 64 << 20);
    }
}
