//! Container probes (liveness, readiness, startup), as upstream's prober manager: one
//! worker task per container instance and probe, started when the container runs and
//! stopped when it goes away; the published results decide `ready` and `started` in the
//! pod's status and which containers the pod worker restarts.

pub mod action;
pub mod metrics;
pub mod state;
pub mod worker;

use crate::cri::CriHandle;
use crate::events::Recorder;
use crate::pod::observed::{ContainerState, ObservedPod};
use crate::pod::reconcile::ProbeKill;
use k8s_openapi::api::core::v1::{Container, Pod};
use state::{ProbeKind, ProbeResult};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Published results by container ID and probe kind; shared by a pod's workers.
#[derive(Debug, Clone, Default)]
pub struct Results(Arc<Mutex<HashMap<(String, ProbeKind), ProbeResult>>>);

impl Results {
    /// The result of one probe of one container.
    pub fn get(&self, container_id: &str, kind: ProbeKind) -> Option<ProbeResult> {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&(container_id.to_string(), kind)).copied()
    }

    /// Sets a result; returns the previous one.
    pub fn set(&self, container_id: &str, kind: ProbeKind, r: ProbeResult) -> Option<ProbeResult> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.insert((container_id.to_string(), kind), r)
    }

    fn remove(&self, container_id: &str, kind: ProbeKind) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(&(container_id.to_string(), kind));
    }
}

/// A container the pod worker must kill because a probe said so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unhealthy {
    /// The container's spec name.
    pub name: String,
    /// Liveness or Startup.
    pub kind: ProbeKind,
    /// The probe's own `terminationGracePeriodSeconds`, which overrides the pod's.
    pub grace_period: Option<i64>,
}

impl Unhealthy {
    /// `liveness` or `startup`, as upstream's kill messages name the probe.
    pub fn probe(&self) -> &'static str {
        match self.kind {
            ProbeKind::Startup => "startup",
            _ => "liveness",
        }
    }
}

/// The probed containers of a pod: spec containers plus sidecars (restartable init
/// containers), which are the only ones probes may be set on.
fn probed_containers(pod: &Pod) -> impl Iterator<Item = &Container> {
    pod.spec.iter().flat_map(|s| {
        s.containers.iter().chain(
            s.init_containers
                .iter()
                .flatten()
                .filter(|c| c.restart_policy.as_deref() == Some("Always")),
        )
    })
}

/// The probe workers of one pod and their results.
pub struct PodProbes {
    cri: CriHandle,
    recorder: Recorder,
    wake: Arc<Notify>,
    results: Results,
    /// Running workers: their stop token and the container's name.
    workers: HashMap<(String, ProbeKind), (CancellationToken, String)>,
    /// The metric series the workers wrote, removed when the pod's probes end.
    series: HashSet<metrics::Target>,
}

impl PodProbes {
    /// No workers yet; `wake` is notified when a published result changes.
    pub fn new(cri: CriHandle, recorder: Recorder, wake: Arc<Notify>) -> Self {
        PodProbes {
            cri,
            recorder,
            wake,
            results: Results::default(),
            workers: HashMap::new(),
            series: HashSet::new(),
        }
    }

    /// Starts a worker for each probe of each running container of the current sandbox and
    /// stops those whose container is gone or stopped. While the pod terminates, liveness
    /// and startup probes stop (upstream counts them successful); readiness goes on.
    pub fn sync(&mut self, pod: &Pod, observed: &ObservedPod, pod_ip: &str, terminating: bool) {
        let sandbox = observed
            .sandbox()
            .filter(|s| s.ready)
            .map(|s| s.id.as_str());
        let mut wanted: Vec<(String, ProbeKind, Container, i64)> = Vec::new();
        if let Some(sid) = sandbox {
            for c in probed_containers(pod) {
                let Some(o) = observed
                    .latest(&c.name, Some(sid))
                    .filter(|o| o.state == ContainerState::Running)
                else {
                    continue;
                };
                for kind in ProbeKind::ALL {
                    let stops_on_delete = kind != ProbeKind::Readiness;
                    if kind.spec(c).is_some() && !(terminating && stops_on_delete) {
                        wanted.push((o.id.clone(), kind, c.clone(), o.started_at));
                    }
                }
            }
        }
        let keep: Vec<(String, ProbeKind)> = wanted
            .iter()
            .map(|(id, k, _, _)| (id.clone(), *k))
            .collect();
        let gone: Vec<(String, ProbeKind)> = self
            .workers
            .keys()
            .filter(|k| !keep.contains(k))
            .cloned()
            .collect();
        for key in gone {
            if let Some((stop, _)) = self.workers.remove(&key) {
                stop.cancel();
            }
            // A terminating pod's liveness/startup count as successful, as upstream.
            if terminating && key.1 != ProbeKind::Readiness {
                self.results.set(&key.0, key.1, ProbeResult::Success);
            } else {
                self.results.remove(&key.0, key.1);
            }
        }
        let shared_pod = Arc::new(pod.clone());
        for (id, kind, container, started_at) in wanted {
            let key = (id.clone(), kind);
            if self.workers.contains_key(&key) {
                continue;
            }
            if self.results.get(&id, kind).is_none() {
                self.results.set(&id, kind, kind.initial());
            }
            let stop = CancellationToken::new();
            let name = container.name.clone();
            let w = worker::Worker {
                kind,
                pod: shared_pod.clone(),
                container,
                container_id: id,
                started_at,
                pod_ip: pod_ip.to_string(),
                cri: self.cri.clone(),
                recorder: self.recorder.clone(),
                results: self.results.clone(),
                wake: self.wake.clone(),
            };
            self.series.insert(w.target());
            tokio::spawn(w.run(stop.clone()));
            self.workers.insert(key, (stop, name));
        }
    }

    /// How many workers run (one per container instance and probe).
    pub fn worker_count(&self) -> usize {
        self.workers.len()
    }

    /// What the status needs: (startup, readiness) results by container ID.
    pub fn health(&self) -> BTreeMap<String, (Option<ProbeResult>, Option<ProbeResult>)> {
        let map = self.results.0.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: BTreeMap<String, (Option<ProbeResult>, Option<ProbeResult>)> = BTreeMap::new();
        for ((id, kind), r) in map.iter() {
            let e = out.entry(id.clone()).or_default();
            match kind {
                ProbeKind::Startup => e.0 = Some(*r),
                ProbeKind::Readiness => e.1 = Some(*r),
                ProbeKind::Liveness => {}
            }
        }
        out
    }

    /// Containers whose liveness or startup probe failed, by container ID.
    pub fn unhealthy(&self, pod: &Pod) -> BTreeMap<String, Unhealthy> {
        let map = self.results.0.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = BTreeMap::new();
        for ((id, kind), r) in map.iter() {
            if *r != ProbeResult::Failure || *kind == ProbeKind::Readiness {
                continue;
            }
            let Some((_, name)) = self.workers.get(&(id.clone(), *kind)).cloned() else {
                continue;
            };
            let grace_period = probed_containers(pod)
                .find(|c| c.name == name)
                .and_then(|c| kind.spec(c))
                .and_then(|p| p.termination_grace_period_seconds);
            out.insert(
                id.clone(),
                Unhealthy {
                    name,
                    kind: *kind,
                    grace_period,
                },
            );
        }
        out
    }

    /// [`PodProbes::unhealthy`] as the reconcile step's kill list.
    pub fn kills(&self, pod: &Pod) -> BTreeMap<String, ProbeKill> {
        self.unhealthy(pod)
            .into_iter()
            .map(|(id, u)| {
                let kill = ProbeKill {
                    probe: u.probe(),
                    grace_period: u.grace_period,
                };
                (id, kill)
            })
            .collect()
    }

    /// Stops every worker.
    pub fn stop_all(&mut self) {
        for (_, (stop, _)) in self.workers.drain() {
            stop.cancel();
        }
    }
}

impl Drop for PodProbes {
    fn drop(&mut self) {
        self.stop_all();
        for t in &self.series {
            metrics::forget(t);
        }
    }
}
