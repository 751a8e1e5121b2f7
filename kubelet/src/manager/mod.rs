//! The pod manager: watches the pods bound to this node, runs one worker per pod, relists
//! the runtime every second to wake workers whose containers changed (upstream's PLEG),
//! and removes runtime pods that no longer exist in the API. Static pods from files run
//! beside them; mirror pods (their copies in the API) are never run. A pod first seen
//! from the API goes through admission under node pressure once; a refused pod is never
//! started and is left `Failed` (upstream's `HandlePodAdditions`/`rejectPod`).

pub mod inputs;
pub mod state;
pub mod worker;

use crate::cri::labels::PodRef;
use crate::events::{EventType, Recorder};
use crate::eviction::admit::{self, Rejection};
use crate::eviction::Eviction;
use crate::pod::resource_field::NodeAllocatable;
use crate::runtime::{observe, PodRuntime};
use crate::static_pods::source::is_mirror;
use crate::volumes::VolumeSource;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher;
use kube::Api;
use state::{Effect, State};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch, Notify};
use tokio_util::sync::CancellationToken;

/// What every worker shares.
pub struct Shared {
    /// API client.
    pub client: kube::Client,
    /// The runtime side.
    pub runtime: PodRuntime,
    /// Node IPs (hostIP(s)).
    pub host_ips: Vec<String>,
    /// The node's allocatable resources (downward API defaults).
    pub allocatable: NodeAllocatable,
    /// Where volume contents come from.
    pub volumes: Arc<dyn VolumeSource>,
    /// `containerd`, for container IDs in status.
    pub runtime_name: String,
    /// Pods known from the watch, by UID (served on /pods).
    pub pods: Mutex<HashMap<String, Pod>>,
    /// Pod references by UID, kept after a pod leaves the API so it can be cleaned up.
    refs: Mutex<HashMap<String, PodRef>>,
    /// This node's mirror pods from the watch, where static pods' statuses go.
    pub mirrors: crate::static_pods::mirror::MirrorCache,
}

impl Shared {
    /// Builds the shared state.
    pub fn new(
        client: kube::Client,
        runtime: PodRuntime,
        host_ips: Vec<String>,
        allocatable: NodeAllocatable,
        volumes: Arc<dyn VolumeSource>,
        runtime_name: String,
    ) -> Self {
        Shared {
            client,
            runtime,
            host_ips,
            allocatable,
            volumes,
            runtime_name,
            pods: Mutex::default(),
            refs: Mutex::default(),
            mirrors: Default::default(),
        }
    }

    /// The pod's reference, kept after it left the API (only the UID when never seen).
    fn pod_ref_of(&self, uid: &str) -> PodRef {
        let refs = self.refs.lock().expect("refs lock");
        refs.get(uid).cloned().unwrap_or_else(|| PodRef {
            uid: uid.to_string(),
            namespace: String::new(),
            name: String::new(),
        })
    }

    /// The pod with `uid` among this kubelet's pods.
    pub fn pod(&self, uid: &str) -> Option<Pod> {
        self.pods.lock().expect("pods lock").get(uid).cloned()
    }

    /// The pod `namespace/name` among this kubelet's pods.
    pub fn find_pod(&self, namespace: &str, name: &str) -> Option<Pod> {
        let pods = self.pods.lock().expect("pods lock");
        pods.values()
            .find(|p| {
                p.metadata.namespace.as_deref() == Some(namespace)
                    && p.metadata.name.as_deref() == Some(name)
            })
            .cloned()
    }

    /// The pods bound to this node, as `/pods` serves them.
    pub fn pod_list(&self) -> Vec<Pod> {
        let mut pods: Vec<Pod> = self
            .pods
            .lock()
            .expect("pods lock")
            .values()
            .cloned()
            .collect();
        pods.sort_by(|a, b| {
            (&a.metadata.namespace, &a.metadata.name)
                .cmp(&(&b.metadata.namespace, &b.metadata.name))
        });
        pods
    }
}

struct WorkerHandle {
    tx: watch::Sender<Option<Pod>>,
    wake: Arc<Notify>,
    /// Set once to evict the pod with this grace period (seconds).
    evict: watch::Sender<Option<i64>>,
}

/// Runs the pod manager until `stop`; `statics` publishes the static pods, when a
/// static pod path is configured; `evictions` are the eviction manager's decisions and
/// `pressure` its node pressure conditions, against which new pods are admitted.
pub async fn run(
    shared: Arc<Shared>,
    node_name: String,
    mut statics: Option<watch::Receiver<Vec<Pod>>>,
    mut evictions: mpsc::UnboundedReceiver<Eviction>,
    pressure: watch::Receiver<BTreeSet<String>>,
    stop: CancellationToken,
) {
    let recorder = Recorder::new(shared.client.clone(), &node_name);
    let api: Api<Pod> = Api::all(shared.client.clone());
    let config = watcher::Config::default().fields(&format!("spec.nodeName={node_name}"));
    // Backed off, as every watch should be: with no API server yet (the kubelet that starts
    // kubeadm's control plane) the watch fails until it is up, without spinning.
    let mut events = component_base::watch_backoff::backoff(watcher(api, config)).boxed();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<String>();
    let mut relist = tokio::time::interval(Duration::from_secs(1));
    let mut state = State::default();
    let mut run = Effects {
        shared: shared.clone(),
        recorder,
        done: done_tx,
        workers: HashMap::new(),
    };
    // Static pods first, so the orphan cleanup below never mistakes them for leftovers.
    if let Some(rx) = statics.as_mut() {
        let pods = rx.borrow_and_update().clone();
        run.all(state.statics(pods));
    }
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = async { statics.as_mut()?.changed().await.ok() }, if statics.is_some() => {
                match changed {
                    Some(()) => {
                        let pods = statics.as_mut().map(|rx| rx.borrow_and_update().clone()).unwrap_or_default();
                        run.all(state.statics(pods));
                    }
                    None => statics = None,
                }
            }
            Some(uid) = done_rx.recv() => run.all(state.worker_done(&uid)),
            Some(e) = evictions.recv() => {
                let pod = shared.pod(&e.uid);
                run.all(state.evict(e, pod));
            }
            event = events.next() => {
                let Some(event) = event else { return };
                match event {
                    Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => {
                        // A mirror pod is the API's view of a static pod, which runs from its file.
                        if is_mirror(&pod) {
                            shared.mirrors.apply(&pod);
                            continue;
                        }
                        let conditions = pressure.borrow().clone();
                        let effects = {
                            let pods = shared.pods.lock().expect("pods lock");
                            state.apply(pod, &conditions, pods.values())
                        };
                        run.all(effects);
                    }
                    Ok(watcher::Event::Delete(pod)) if is_mirror(&pod) => shared.mirrors.delete(&pod),
                    Ok(watcher::Event::Delete(pod)) => run.all(state.delete(&pod)),
                    Ok(watcher::Event::InitDone) => state.synced(),
                    Ok(watcher::Event::Init) => {}
                    Err(e) => tracing::warn!(error = %e, "Pod watch failed; retrying"),
                }
            }
            _ = relist.tick() => {
                let Ok(all) = observe::observe_all(shared.runtime.cri.as_ref()).await else { continue };
                crate::metrics::set_running(&crate::metrics::RunningCounts::of(all.values().map(|(_, o)| o)));
                {
                    let mut refs = shared.refs.lock().expect("refs lock");
                    for (uid, (r, _)) in &all {
                        refs.entry(uid.clone()).or_insert_with(|| r.clone());
                    }
                }
                run.all(state.relist(&all));
            }
        }
    }
}

/// Carries out the [`Effect`]s of the manager's transitions: the workers and the shared
/// pod table.
struct Effects {
    shared: Arc<Shared>,
    recorder: Recorder,
    done: mpsc::UnboundedSender<String>,
    workers: HashMap<String, WorkerHandle>,
}

impl Effects {
    fn all(&mut self, effects: Vec<Effect>) {
        for e in effects {
            self.one(e);
        }
    }

    fn one(&mut self, effect: Effect) {
        let shared = &self.shared;
        match effect {
            Effect::Upsert(pod) => self.upsert(pod),
            Effect::Stop(uid) => {
                if let Some(w) = self.workers.get(&uid) {
                    let _ = w.tx.send(None);
                }
            }
            Effect::Reap(uid) => {
                self.workers.remove(&uid);
            }
            Effect::Forget(uid) => {
                shared.pods.lock().expect("pods lock").remove(&uid);
            }
            Effect::Evict(uid, grace) => {
                if let Some(w) = self.workers.get(&uid) {
                    let pod = shared.pod(&uid);
                    let name = pod.as_ref().and_then(|p| p.metadata.name.clone());
                    tracing::info!(pod = ?name, grace_period = grace, "Evicting pod");
                    let _ = w.evict.send(Some(grace));
                }
            }
            Effect::WriteEvicted(pod, message) => {
                let client = shared.client.clone();
                tokio::spawn(async move {
                    crate::eviction::write_evicted(&client, &pod, &message).await
                });
            }
            Effect::Reject(pod, r) => {
                tokio::spawn(reject(shared.client.clone(), self.recorder.clone(), pod, r));
            }
            Effect::Wake(uid) => {
                if let Some(w) = self.workers.get(&uid) {
                    w.wake.notify_one();
                }
            }
            Effect::CleanupOrphan(r, observed) => {
                let shared = shared.clone();
                tracing::info!(pod = %format!("{}/{}", r.namespace, r.name), "Cleaning up orphaned pod");
                tokio::spawn(async move {
                    // As upstream: preStop hooks restored from the containers'
                    // annotations, within the orphan's one-second grace.
                    let pod = shared.runtime.restore_pod(&r, &observed).await;
                    let grace = crate::runtime::restore::ORPHAN_GRACE_SECONDS;
                    let _ = shared.runtime.kill_pod(&pod, &observed, grace).await;
                    let observed = observe::observe_pod(shared.runtime.cri.as_ref(), &r.uid)
                        .await
                        .unwrap_or(observed);
                    if let Err(e) = shared.runtime.remove_pod(&r, &observed).await {
                        tracing::warn!(error = %format!("{e:#}"), "Failed to remove orphaned pod");
                    }
                });
            }
        }
    }

    /// Records the pod and hands it to its worker, starting one when it has none.
    fn upsert(&mut self, pod: Pod) {
        let shared = &self.shared;
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        shared
            .pods
            .lock()
            .expect("pods lock")
            .insert(uid.clone(), pod.clone());
        let r = crate::runtime::config::pod_ref(&pod);
        shared
            .refs
            .lock()
            .expect("refs lock")
            .insert(uid.clone(), r);
        if let Some(w) = self.workers.get(&uid) {
            let _ = w.tx.send(Some(pod));
            return;
        }
        let (tx, rx) = watch::channel(Some(pod));
        let (evict, evict_rx) = watch::channel(None);
        let wake = Arc::new(Notify::new());
        let (shared, done, wake2, uid2) =
            (shared.clone(), self.done.clone(), wake.clone(), uid.clone());
        tokio::spawn(async move {
            worker::run(shared, uid2.clone(), rx, evict_rx, wake2).await;
            let _ = done.send(uid2);
        });
        self.workers.insert(uid, WorkerHandle { tx, wake, evict });
    }
}

/// Refuses a pod at admission, as upstream's `rejectPod`: a Warning event with the reason
/// and message, and the pod left `Failed` (no container is started).
async fn reject(client: kube::Client, recorder: Recorder, pod: Pod, r: Rejection) {
    let key = format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    );
    // (`message` would replace the log line's own message in the klog format.)
    tracing::info!(pod = %key, reason = r.reason, detail = %r.message, "Pod admission refused");
    crate::metrics::count_admission_rejection(r.reason);
    recorder.pod_event(&pod, None, EventType::Warning, r.reason, &r.message);
    let api: Api<Pod> = Api::namespaced(
        client,
        pod.metadata.namespace.as_deref().unwrap_or_default(),
    );
    let now =
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now());
    let patch = admit::rejected_status(&pod, &r, now);
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let params = kube::api::PatchParams::default();
    if let Err(e) = api
        .patch_status(name, &params, &kube::api::Patch::Merge(&patch))
        .await
    {
        tracing::warn!(pod = name, error = %e, "Failed to write the rejected pod's status");
    }
}
