//! Watches that feed the cache and the queue: pods, nodes, and the objects plugins read
//! (namespaces, PVs/PVCs/StorageClasses, Services and controllers, PDBs).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{
    Namespace, Node, PersistentVolume, PersistentVolumeClaim, Pod, ReplicationController, Service,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::runtime::reflector::Store;
use kube::runtime::watcher::{self, Event};
use kube::Api;
use tokio_util::sync::CancellationToken;

use super::{scheduler_name, Shared};
use crate::framework::{Action, ClusterEvent, EventResource};
use crate::snapshot::slim::slim_node;
use crate::snapshot::{PodInfo, StorageView, WorkloadView};

/// What changed between two versions of a node, as upstream's nodeSchedulingPropertiesChange.
pub fn node_change(old: &Node, new: &Node) -> Action {
    let mut a = Action(0);
    if old.metadata.labels != new.metadata.labels {
        a = a | Action::UPDATE_LABEL;
    }
    let alloc = |n: &Node| n.status.as_ref().and_then(|s| s.allocatable.clone());
    if alloc(old) != alloc(new) {
        a = a | Action::UPDATE_ALLOCATABLE;
    }
    let spec = |n: &Node| n.spec.clone().unwrap_or_default();
    if spec(old).taints != spec(new).taints {
        a = a | Action::UPDATE_TAINT;
    }
    let conds = |n: &Node| {
        n.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .map(|c| {
                c.iter()
                    .map(|c| (c.type_.clone(), c.status.clone()))
                    .collect::<Vec<_>>()
            })
    };
    if spec(old).unschedulable != spec(new).unschedulable || conds(old) != conds(new) {
        a = a | Action::UPDATE_OTHER;
    }
    a
}

fn event(shared: &Shared, resource: EventResource, action: Action) {
    let e = ClusterEvent::new(resource, action);
    let moved = shared.queue.on_event(e);
    if moved > 0 {
        shared.metrics.incoming("active", e.label(), moved);
    }
}

fn node_upsert(shared: &Shared, known: &mut HashMap<String, Arc<Node>>, n: Node) {
    let n = slim_node(n);
    let name = n.metadata.name.clone().unwrap_or_default();
    let n = Arc::new(n);
    let action = match known.insert(name, n.clone()) {
        None => Action::ADD,
        Some(old) => node_change(&old, &n),
    };
    shared.cache().upsert_node(n);
    if action.0 != 0 {
        event(shared, EventResource::Node, action);
    }
}

/// Watches nodes until `stop`; sets `synced` after the first list.
pub async fn watch_nodes(
    shared: Arc<Shared>,
    client: kube::Client,
    synced: Arc<AtomicBool>,
    stop: CancellationToken,
) {
    let api: Api<Node> = Api::all(client);
    let mut known: HashMap<String, Arc<Node>> = HashMap::new();
    let mut seen: HashSet<String> = HashSet::new();
    let stream =
        component_base::watch_backoff::backoff(watcher::watcher(api, watcher::Config::default()));
    let mut stream = std::pin::pin!(stream.take_until(stop.cancelled_owned()));
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(Event::Init) => seen.clear(),
            Ok(Event::InitApply(n)) => {
                seen.insert(n.metadata.name.clone().unwrap_or_default());
                node_upsert(&shared, &mut known, n);
            }
            Ok(Event::InitDone) => {
                let gone: Vec<String> = known
                    .keys()
                    .filter(|k| !seen.contains(*k))
                    .cloned()
                    .collect();
                for g in gone {
                    known.remove(&g);
                    shared.cache().remove_node(&g);
                }
                synced.store(true, Ordering::Release);
            }
            Ok(Event::Apply(n)) => node_upsert(&shared, &mut known, n),
            Ok(Event::Delete(n)) => {
                let name = n.metadata.name.clone().unwrap_or_default();
                known.remove(&name);
                shared.cache().remove_node(&name);
                event(&shared, EventResource::Node, Action::DELETE);
            }
            Err(e) => tracing::warn!(error = %e, "Node watch failed; retrying"),
        }
    }
}

/// Routes one observed pod: assigned pods to the cache, ours unassigned to the queue.
fn pod_upsert(shared: &Shared, known: &mut HashMap<String, Arc<PodInfo>>, p: Pod) {
    let info = PodInfo::from_api(p);
    let was = known.insert(info.uid.clone(), info.clone());
    if info.node_name().is_some() {
        let new = !shared.cache().has_pod(&info.uid) || shared.cache().is_assumed(&info.uid);
        shared.queue.delete(&info.uid);
        shared.cache().upsert_pod(info.clone());
        shared.set_nominated(&info, None);
        event(
            shared,
            EventResource::AssignedPod,
            if new { Action::ADD } else { Action::UPDATE },
        );
        return;
    }
    if !shared.profiles.contains_key(scheduler_name(&info)) {
        return;
    }
    if shared.cache().is_assumed(&info.uid) {
        // Our own status updates of a pod being bound: nothing to do (upstream's skipPodUpdate).
        return;
    }
    if info.terminating() {
        shared.queue.delete(&info.uid);
        return;
    }
    let nominated = info
        .pod
        .status
        .as_ref()
        .and_then(|s| s.nominated_node_name.clone());
    shared.set_nominated(&info, nominated.as_deref());
    if was.is_some() {
        shared.queue.update(info);
    } else {
        shared.queue.add(info);
    }
}

fn pod_delete(shared: &Shared, known: &mut HashMap<String, Arc<PodInfo>>, uid: &str) {
    let Some(info) = known.remove(uid) else {
        return;
    };
    shared.set_nominated(&info, None);
    // Also while it is being bound (assumed in the cache, in flight in the queue): a failed
    // binding must not bring a deleted pod back.
    shared.queue.delete(uid);
    if info.node_name().is_some() || shared.cache().has_pod(uid) {
        shared.cache().remove_pod(uid);
        event(shared, EventResource::AssignedPod, Action::DELETE);
    }
}

/// Watches non-terminal pods until `stop`; sets `synced` after the first list.
pub async fn watch_pods(
    shared: Arc<Shared>,
    client: kube::Client,
    synced: Arc<AtomicBool>,
    stop: CancellationToken,
) {
    let api: Api<Pod> = Api::all(client);
    let cfg = watcher::Config::default().fields("status.phase!=Succeeded,status.phase!=Failed");
    let mut known: HashMap<String, Arc<PodInfo>> = HashMap::new();
    let mut seen: HashSet<String> = HashSet::new();
    let stream = component_base::watch_backoff::backoff(watcher::watcher(api, cfg));
    let mut stream = std::pin::pin!(stream.take_until(stop.cancelled_owned()));
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(Event::Init) => seen.clear(),
            Ok(Event::InitApply(p)) => {
                seen.insert(p.metadata.uid.clone().unwrap_or_default());
                pod_upsert(&shared, &mut known, p);
            }
            Ok(Event::InitDone) => {
                let gone: Vec<String> = known
                    .keys()
                    .filter(|k| !seen.contains(*k))
                    .cloned()
                    .collect();
                for g in gone {
                    pod_delete(&shared, &mut known, &g);
                }
                synced.store(true, Ordering::Release);
            }
            Ok(Event::Apply(p)) => pod_upsert(&shared, &mut known, p),
            Ok(Event::Delete(p)) => pod_delete(
                &shared,
                &mut known,
                &p.metadata.uid.clone().unwrap_or_default(),
            ),
            Err(e) => tracing::warn!(error = %e, "Pod watch failed; retrying"),
        }
    }
}

/// Reflector stores of the objects plugins read.
struct Views {
    namespaces: Store<Namespace>,
    pvs: Store<PersistentVolume>,
    pvcs: Store<PersistentVolumeClaim>,
    classes: Store<StorageClass>,
    services: Store<Service>,
    replicasets: Store<ReplicaSet>,
    statefulsets: Store<StatefulSet>,
    rcs: Store<ReplicationController>,
    pdbs: Store<PodDisruptionBudget>,
}

fn key_of(meta: &kube::api::ObjectMeta) -> String {
    format!(
        "{}/{}",
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default()
    )
}

impl Views {
    fn fingerprint(&self) -> Vec<String> {
        let rv = |m: &kube::api::ObjectMeta| m.resource_version.clone().unwrap_or_default();
        let mut v = Vec::new();
        macro_rules! add {
            ($s:expr) => {
                let mut x: Vec<String> = $s.state().iter().map(|o| rv(&o.metadata)).collect();
                x.sort();
                v.push(x.join(","));
            };
        }
        add!(self.namespaces);
        add!(self.pvs);
        add!(self.pvcs);
        add!(self.classes);
        add!(self.services);
        add!(self.replicasets);
        add!(self.statefulsets);
        add!(self.rcs);
        add!(self.pdbs);
        v
    }

    fn apply(&self, shared: &Shared, storage_changed: bool) {
        let ns = self
            .namespaces
            .state()
            .iter()
            .map(|n| {
                (
                    n.metadata.name.clone().unwrap_or_default(),
                    n.metadata.labels.clone().unwrap_or_default(),
                )
            })
            .collect();
        let mut sv = StorageView::default();
        for pv in self.pvs.state() {
            sv.pvs
                .insert(pv.metadata.name.clone().unwrap_or_default(), pv);
        }
        for pvc in self.pvcs.state() {
            sv.pvcs.insert(key_of(&pvc.metadata), pvc);
        }
        for c in self.classes.state() {
            sv.classes
                .insert(c.metadata.name.clone().unwrap_or_default(), c);
        }
        let mut wv = WorkloadView::default();
        for s in self.services.state() {
            if let Some(sel) = s.spec.as_ref().and_then(|s| s.selector.clone()) {
                wv.services
                    .push((s.metadata.namespace.clone().unwrap_or_default(), sel));
            }
        }
        for r in self.replicasets.state() {
            if let Some(spec) = r.spec.as_ref() {
                wv.controllers.push((
                    r.metadata.namespace.clone().unwrap_or_default(),
                    spec.selector.clone(),
                ));
            }
        }
        for s in self.statefulsets.state() {
            if let Some(spec) = s.spec.as_ref() {
                wv.controllers.push((
                    s.metadata.namespace.clone().unwrap_or_default(),
                    spec.selector.clone(),
                ));
            }
        }
        for r in self.rcs.state() {
            if let Some(sel) = r.spec.as_ref().and_then(|s| s.selector.clone()) {
                let ls = k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector {
                    match_labels: Some(sel),
                    match_expressions: None,
                };
                wv.controllers
                    .push((r.metadata.namespace.clone().unwrap_or_default(), ls));
            }
        }
        for p in self.pdbs.state() {
            let allowed = p
                .status
                .as_ref()
                .map(|s| s.disruptions_allowed)
                .unwrap_or(0);
            if let Some(sel) = p.spec.as_ref().and_then(|s| s.selector.clone()) {
                wv.pdbs.push((
                    p.metadata.namespace.clone().unwrap_or_default(),
                    sel,
                    allowed,
                ));
            }
        }
        {
            let mut c = shared.cache();
            c.set_namespaces(ns);
            c.set_storage(sv);
            c.set_workloads(wv);
        }
        if storage_changed {
            event(shared, EventResource::Storage, Action::ALL);
        }
    }
}

/// Watches the plugin-relevant objects and refreshes the cache's views twice a second
/// when they changed.
pub async fn watch_views(shared: Arc<Shared>, client: kube::Client, stop: CancellationToken) {
    use component_base::informer::start_reflector;
    let cfg = watcher::Config::default;
    let views = Views {
        namespaces: start_reflector(Api::all(client.clone()), cfg(), stop.clone()),
        pvs: start_reflector(Api::all(client.clone()), cfg(), stop.clone()),
        pvcs: start_reflector(Api::all(client.clone()), cfg(), stop.clone()),
        classes: start_reflector(Api::all(client.clone()), cfg(), stop.clone()),
        services: start_reflector(Api::all(client.clone()), cfg(), stop.clone()),
        replicasets: start_reflector(Api::all(client.clone()), cfg(), stop.clone()),
        statefulsets: start_reflector(Api::all(client.clone()), cfg(), stop.clone()),
        rcs: start_reflector(Api::all(client.clone()), cfg(), stop.clone()),
        pdbs: start_reflector(Api::all(client.clone()), cfg(), stop.clone()),
    };
    let mut last: Vec<String> = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let fp = views.fingerprint();
        if fp != last {
            let storage_changed = last.is_empty() || fp[1..4] != last[1..4];
            views.apply(&shared, storage_changed);
            last = fp;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn node_changes_are_classified() {
        let a: Node =
            serde_json::from_value(json!({"metadata": {"name": "n", "labels": {"a": "1"}}}))
                .unwrap();
        let mut b = a.clone();
        b.metadata
            .labels
            .as_mut()
            .unwrap()
            .insert("b".into(), "2".into());
        assert_eq!(node_change(&a, &b), Action::UPDATE_LABEL);
        let mut c = a.clone();
        c.spec = Some(
            serde_json::from_value(json!({"taints": [{"key": "k", "effect": "NoSchedule"}]}))
                .unwrap(),
        );
        assert_eq!(node_change(&a, &c), Action::UPDATE_TAINT);
        assert_eq!(node_change(&a, &a).0, 0);
    }
}
