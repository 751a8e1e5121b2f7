//! Unit tests of the desired/actual states and the reconciler's decisions.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::{CSIDriver, VolumeAttachment};
use serde_json::{json, Value};

use super::actual::{attachment, node_view, Attachment, NodeView};
use super::desired::{desired_state, pod_terminated, DesiredState, VolumeLookup};
use super::names::{attachment_name, unique_volume_name};
use super::reconcile::{
    plan, Config, ForceReason, Memory, Observed, FAILED_ATTACH, SUCCESSFUL_ATTACH,
};

const DRIVER: &str = "disk.csi.example.com";

#[derive(Default)]
struct Lookup {
    claims: HashMap<(String, String), Arc<PersistentVolumeClaim>>,
    volumes: HashMap<String, Arc<PersistentVolume>>,
    drivers: HashMap<String, Arc<CSIDriver>>,
}

impl VolumeLookup for Lookup {
    fn claim(&self, namespace: &str, name: &str) -> Option<Arc<PersistentVolumeClaim>> {
        self.claims.get(&(namespace.into(), name.into())).cloned()
    }
    fn volume(&self, name: &str) -> Option<Arc<PersistentVolume>> {
        self.volumes.get(name).cloned()
    }
    fn driver(&self, name: &str) -> Option<Arc<CSIDriver>> {
        self.drivers.get(name).cloned()
    }
}

fn from<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).unwrap()
}

impl Lookup {
    /// Claim `claim` (uid `uid-<claim>`) bound to CSI volume `pv` with `handle` and `modes`.
    fn bound(mut self, claim: &str, pv: &str, handle: &str, modes: Value) -> Self {
        self.claims.insert(
            ("ns".into(), claim.into()),
            Arc::new(from(json!({
                "metadata": {"name": claim, "namespace": "ns", "uid": format!("uid-{claim}")},
                "spec": {"volumeName": pv},
                "status": {"phase": "Bound"}
            }))),
        );
        self.volumes.insert(
            pv.into(),
            Arc::new(from(json!({
                "metadata": {"name": pv},
                "spec": {"accessModes": modes, "capacity": {"storage": "1Gi"},
                         "claimRef": {"namespace": "ns", "name": claim, "uid": format!("uid-{claim}")},
                         "csi": {"driver": DRIVER, "volumeHandle": handle}}
            }))),
        );
        self
    }
}

fn pod(name: &str, node: &str, volumes: Value) -> Pod {
    from(json!({
        "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}")},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "i"}], "volumes": volumes}
    }))
}

fn claim_volume(claim: &str) -> Value {
    json!([{"name": "data", "persistentVolumeClaim": {"claimName": claim}}])
}

fn desired(pods: &[Pod], lookup: &Lookup) -> DesiredState {
    desired_state(pods, |n| n != "unmanaged", lookup)
}

#[test]
fn csi_persistent_volumes_of_scheduled_pods_on_managed_nodes_are_desired() {
    let lookup = Lookup::default().bound("c1", "pv-1", "h1", json!(["ReadWriteOnce"]));
    let pods = [
        pod("a", "node-a", claim_volume("c1")),
        pod("b", "node-a", claim_volume("c1")),
        pod("elsewhere", "unmanaged", claim_volume("c1")),
        pod("unscheduled", "", claim_volume("c1")),
        pod("missing", "node-a", claim_volume("nope")),
        pod(
            "inline",
            "node-a",
            json!([{"name": "e", "csi": {"driver": DRIVER}}]),
        ),
    ];
    let d = desired(&pods, &lookup);
    assert_eq!(d.len(), 1, "{d:?}");
    let v = &d[&("node-a".into(), unique_volume_name(DRIVER, "h1"))];
    assert_eq!(v.volume, "kubernetes.io/csi/disk.csi.example.com^h1");
    assert_eq!(
        (v.pv.as_str(), v.driver.as_str(), v.handle.as_str()),
        ("pv-1", DRIVER, "h1")
    );
    assert!(!v.multi_attach);
    let names: Vec<&str> = v.pods.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(v.attachment_name(), attachment_name("h1", DRIVER, "node-a"));
}

#[test]
fn the_csidriver_decides_whether_attaching_is_required() {
    let mut lookup = Lookup::default().bound("c1", "pv-1", "h1", json!(["ReadWriteMany"]));
    let pods = [pod("a", "node-a", claim_volume("c1"))];
    // No CSIDriver object: attach required, as upstream.
    assert_eq!(desired(&pods, &lookup).len(), 1);
    assert!(desired(&pods, &lookup).values().all(|v| v.multi_attach));
    let driver = |spec: Value| -> Arc<CSIDriver> {
        Arc::new(from(json!({"metadata": {"name": DRIVER}, "spec": spec})))
    };
    lookup.drivers.insert(DRIVER.into(), driver(json!({})));
    assert_eq!(desired(&pods, &lookup).len(), 1);
    lookup
        .drivers
        .insert(DRIVER.into(), driver(json!({"attachRequired": true})));
    assert_eq!(desired(&pods, &lookup).len(), 1);
    lookup
        .drivers
        .insert(DRIVER.into(), driver(json!({"attachRequired": false})));
    assert!(desired(&pods, &lookup).is_empty());
}

#[test]
fn unbound_claims_and_foreign_claim_refs_are_not_attached() {
    let mut lookup = Lookup::default().bound("c1", "pv-1", "h1", json!(["ReadWriteOnce"]));
    let pods = [pod("a", "node-a", claim_volume("c1"))];
    let key = ("ns".to_string(), "c1".to_string());
    let mut pending = (*lookup.claims[&key]).clone();
    pending.status = from(json!({"phase": "Pending"}));
    lookup.claims.insert(key.clone(), Arc::new(pending));
    assert!(desired(&pods, &lookup).is_empty());
    let mut other = (*lookup.claims[&key]).clone();
    other.status = from(json!({"phase": "Bound"}));
    other.metadata.uid = Some("uid-other".into());
    lookup.claims.insert(key, Arc::new(other));
    assert!(desired(&pods, &lookup).is_empty());
}

#[test]
fn terminated_pods_release_their_volumes_but_deleting_running_ones_do_not() {
    let lookup = Lookup::default().bound("c1", "pv-1", "h1", json!(["ReadWriteOnce"]));
    let mut done = pod("a", "node-a", claim_volume("c1"));
    done.status = from(json!({"phase": "Succeeded"}));
    assert!(pod_terminated(&done));
    assert!(desired(&[done], &lookup).is_empty());
    let mut deleting = pod("a", "node-a", claim_volume("c1"));
    deleting.metadata.deletion_timestamp = from(json!("2026-01-01T00:00:00Z"));
    deleting.status = from(json!({"phase": "Running", "containerStatuses": [
        {"name": "c", "image": "i", "imageID": "", "ready": true, "restartCount": 0,
         "state": {"running": {}}}]}));
    assert!(!pod_terminated(&deleting));
    assert_eq!(desired(std::slice::from_ref(&deleting), &lookup).len(), 1);
    deleting.status = from(json!({"phase": "Running", "containerStatuses": [
        {"name": "c", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
         "state": {"terminated": {"exitCode": 0}}}]}));
    assert!(pod_terminated(&deleting));
}

#[test]
fn generic_ephemeral_volumes_resolve_through_the_pods_own_claim() {
    let mut lookup = Lookup::default().bound("a-scratch", "pv-e", "he", json!(["ReadWriteOnce"]));
    let p = pod(
        "a",
        "node-a",
        json!([{"name": "scratch", "ephemeral": {"volumeClaimTemplate": {
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}}}]),
    );
    // Not owned by the pod: ignored.
    assert!(desired(std::slice::from_ref(&p), &lookup).is_empty());
    let key = ("ns".to_string(), "a-scratch".to_string());
    let mut owned = (*lookup.claims[&key]).clone();
    owned.metadata.owner_references = from(json!([{"apiVersion": "v1", "kind": "Pod",
        "name": "a", "uid": "uid-a", "controller": true}]));
    lookup.claims.insert(key, Arc::new(owned));
    assert_eq!(desired(&[p], &lookup).len(), 1);
}

fn va(name: &str, node: &str, pv: &str, status: Value) -> VolumeAttachment {
    from(json!({
        "metadata": {"name": name},
        "spec": {"attacher": DRIVER, "nodeName": node, "source": {"persistentVolumeName": pv}},
        "status": status
    }))
}

fn node(name: &str, ready: bool, in_use: &[&str], attached: &[&str]) -> Node {
    from(json!({
        "metadata": {"name": name, "annotations": {
            "volumes.kubernetes.io/controller-managed-attach-detach": "true"}},
        "status": {
            "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}],
            "volumesInUse": in_use,
            "volumesAttached": attached.iter().map(|n| json!({"name": n, "devicePath": ""})).collect::<Vec<_>>()
        }
    }))
}

#[test]
fn attachments_know_their_volume_from_the_pv_or_else_from_the_node() {
    let lookup = Lookup::default().bound("c1", "pv-1", "h1", json!(["ReadWriteOnce"]));
    let name = attachment_name("h1", DRIVER, "node-a");
    let vol = unique_volume_name(DRIVER, "h1");
    let v = va(&name, "node-a", "pv-1", json!({"attached": true}));
    let a = attachment(&v, lookup.volumes.get("pv-1").map(|p| &**p), None).unwrap();
    assert_eq!(a.volume.as_deref(), Some(vol.as_str()));
    assert!(a.attached && !a.deleting);
    let n = node_view(&node("node-a", true, &[], &[&vol]));
    let a = attachment(&v, None, Some(&n)).unwrap();
    assert_eq!(a.volume.as_deref(), Some(vol.as_str()));
    assert_eq!(attachment(&v, None, None).unwrap().volume, None);
    let inline: VolumeAttachment = from(json!({"metadata": {"name": "x"},
        "spec": {"attacher": DRIVER, "nodeName": "node-a", "source": {"inlineVolumeSpec": {}}}}));
    assert_eq!(attachment(&inline, None, None), None);
    let failed = va(
        &name,
        "node-a",
        "pv-1",
        json!({"attached": false,
        "attachError": {"message": "rpc error: disk busy"}}),
    );
    let a = attachment(&failed, None, None).unwrap();
    assert_eq!(a.attach_error.as_deref(), Some("rpc error: disk busy"));
}

/// A world with volume `h1` (PV `pv-1`, `modes`) wanted by pod `a` on node-a when `wanted`.
struct World {
    lookup: Lookup,
    pods: Vec<Pod>,
    nodes: Vec<Node>,
    vas: Vec<VolumeAttachment>,
}

impl World {
    fn new(modes: Value) -> Self {
        World {
            lookup: Lookup::default().bound("c1", "pv-1", "h1", modes),
            pods: vec![pod("a", "node-a", claim_volume("c1"))],
            nodes: vec![
                node("node-a", true, &[], &[]),
                node("node-b", true, &[], &[]),
            ],
            vas: vec![],
        }
    }

    fn observed(&self) -> Observed {
        let nodes: BTreeMap<String, NodeView> = self
            .nodes
            .iter()
            .map(|n| (n.metadata.name.clone().unwrap(), node_view(n)))
            .collect();
        let attachments: Vec<Attachment> = self
            .vas
            .iter()
            .filter_map(|v| {
                let pv = self
                    .lookup
                    .volumes
                    .get(v.spec.source.persistent_volume_name.as_deref()?);
                attachment(v, pv.map(|p| &**p), nodes.get(&v.spec.node_name))
            })
            .collect();
        Observed {
            desired: desired_state(
                &self.pods,
                |n| nodes.get(n).is_some_and(|v| v.managed),
                &self.lookup,
            ),
            attachments,
            nodes,
        }
    }
}

fn vol() -> String {
    unique_volume_name(DRIVER, "h1")
}

fn va_a() -> String {
    attachment_name("h1", DRIVER, "node-a")
}

#[test]
fn attach_creates_the_attachment_then_reports_it_once_attached() {
    let cfg = Config::default();
    let t0 = Instant::now();
    let mut w = World::new(json!(["ReadWriteOnce"]));
    let p = plan(&w.observed(), &Memory::default(), t0, &cfg);
    assert_eq!(p.attach.len(), 1);
    assert_eq!(p.attach[0].attachment_name(), va_a());
    assert!(p.node_status.is_empty() && p.detach.is_empty() && p.events.is_empty());
    assert_eq!(p.recheck_after, Some(cfg.attach_timeout));
    // Created, not attached yet: nothing to do, no event.
    w.vas
        .push(va(&va_a(), "node-a", "pv-1", json!({"attached": false})));
    let p2 = plan(&w.observed(), &p.memory, t0 + Duration::from_secs(1), &cfg);
    assert!(
        p2.attach.is_empty() && p2.events.is_empty() && p2.node_status.is_empty(),
        "{p2:?}"
    );
    // The external-attacher attached it: the node lists it, the pod hears of it.
    w.vas[0] = va(&va_a(), "node-a", "pv-1", json!({"attached": true}));
    let p3 = plan(&w.observed(), &p2.memory, t0 + Duration::from_secs(2), &cfg);
    assert_eq!(p3.node_status["node-a"], [vol()]);
    assert_eq!(p3.events.len(), 1);
    assert_eq!(p3.events[0].reason, SUCCESSFUL_ATTACH);
    assert_eq!(
        p3.events[0].message,
        "AttachVolume.Attach succeeded for volume \"pv-1\" "
    );
    assert!(p3.memory.attaching.is_empty());
    // Once the status says so, the pass is quiet.
    w.nodes[0] = node("node-a", true, &[], &[&vol()]);
    let p4 = plan(&w.observed(), &p3.memory, t0 + Duration::from_secs(3), &cfg);
    assert_eq!(
        p4,
        super::reconcile::Plan {
            memory: p4.memory.clone(),
            ..Default::default()
        }
    );
}

#[test]
fn attach_failures_and_timeouts_are_reported_as_upstream() {
    let cfg = Config::default();
    let t0 = Instant::now();
    let mut w = World::new(json!(["ReadWriteOnce"]));
    let p = plan(&w.observed(), &Memory::default(), t0, &cfg);
    w.vas.push(va(
        &va_a(),
        "node-a",
        "pv-1",
        json!({"attached": false,
        "attachError": {"message": "rpc error: code = Internal desc = disk busy"}}),
    ));
    let p2 = plan(&w.observed(), &p.memory, t0 + Duration::from_secs(1), &cfg);
    assert_eq!(p2.events.len(), 1);
    assert_eq!(p2.events[0].reason, FAILED_ATTACH);
    assert_eq!(
        p2.events[0].message,
        "AttachVolume.Attach failed for volume \"pv-1\" : rpc error: code = Internal desc = disk busy"
    );
    // Reported once.
    let p3 = plan(&w.observed(), &p2.memory, t0 + Duration::from_secs(2), &cfg);
    assert!(p3.events.is_empty());
    // No error, but no attacher either: after upstream's 2 minutes.
    w.vas[0] = va(&va_a(), "node-a", "pv-1", json!({"attached": false}));
    let p4 = plan(&w.observed(), &Memory::default(), t0, &cfg);
    assert!(p4.events.is_empty());
    let p5 = plan(
        &w.observed(),
        &p4.memory,
        t0 + Duration::from_secs(121),
        &cfg,
    );
    assert_eq!(p5.events.len(), 1);
    assert_eq!(
        p5.events[0].message,
        "AttachVolume.Attach failed for volume \"pv-1\" : timed out waiting for external-attacher of disk.csi.example.com CSI driver to attach volume h1"
    );
}

#[test]
fn detach_waits_for_the_kubelet_to_stop_using_the_volume() {
    let cfg = Config::default();
    let t0 = Instant::now();
    let mut w = World::new(json!(["ReadWriteOnce"]));
    w.pods.clear();
    w.vas
        .push(va(&va_a(), "node-a", "pv-1", json!({"attached": true})));
    w.nodes[0] = node("node-a", true, &[&vol()], &[&vol()]);
    // Still mounted on a healthy node: stays attached and reported, however long.
    let p = plan(&w.observed(), &Memory::default(), t0, &cfg);
    assert!(p.detach.is_empty() && p.node_status.is_empty(), "{p:?}");
    let long = plan(
        &w.observed(),
        &p.memory,
        t0 + Duration::from_secs(3600),
        &cfg,
    );
    assert!(
        long.detach.is_empty() && long.node_status.is_empty(),
        "{long:?}"
    );
    // Unmounted: first off the node's status, then the attachment goes.
    w.nodes[0] = node("node-a", true, &[], &[&vol()]);
    let p = plan(&w.observed(), &p.memory, t0 + Duration::from_secs(10), &cfg);
    assert_eq!(p.node_status["node-a"], Vec::<String>::new());
    assert_eq!(p.detach.len(), 1);
    assert_eq!(
        (p.detach[0].attachment.as_str(), p.detach[0].force),
        (va_a().as_str(), None)
    );
}

#[test]
fn unhealthy_nodes_are_force_detached_after_the_maximum_wait_unless_disabled() {
    let cfg = Config::default();
    let t0 = Instant::now();
    let mut w = World::new(json!(["ReadWriteOnce"]));
    w.pods.clear();
    w.vas
        .push(va(&va_a(), "node-a", "pv-1", json!({"attached": true})));
    w.nodes[0] = node("node-a", false, &[&vol()], &[&vol()]);
    let p = plan(&w.observed(), &Memory::default(), t0, &cfg);
    assert!(p.detach.is_empty());
    assert!(p.recheck_after.unwrap() > Duration::from_secs(359));
    let later = t0 + Duration::from_secs(361);
    let forced = plan(&w.observed(), &p.memory, later, &cfg);
    assert_eq!(forced.detach[0].force, Some(ForceReason::Timeout));
    let off = Config {
        disable_force_detach_on_timeout: true,
        ..cfg
    };
    assert!(plan(&w.observed(), &p.memory, later, &off)
        .detach
        .is_empty());
    // The out-of-service taint detaches at once.
    let mut tainted = node("node-a", false, &[&vol()], &[&vol()]);
    tainted.spec = from(
        json!({"taints": [{"key": "node.kubernetes.io/out-of-service", "effect": "NoExecute"}]}),
    );
    w.nodes[0] = tainted;
    let p = plan(&w.observed(), &Memory::default(), t0, &off);
    assert_eq!(p.detach[0].force, Some(ForceReason::OutOfService));
}

#[test]
fn exclusive_volumes_wait_for_the_other_node_with_a_multi_attach_error() {
    let cfg = Config::default();
    let t0 = Instant::now();
    let mut w = World::new(json!(["ReadWriteOnce"]));
    w.pods.push(pod("b", "node-b", claim_volume("c1")));
    w.vas
        .push(va(&va_a(), "node-a", "pv-1", json!({"attached": true})));
    let p = plan(&w.observed(), &Memory::default(), t0, &cfg);
    assert!(p.attach.is_empty(), "{p:?}");
    let multi: Vec<_> = p.events.iter().filter(|e| e.pod.name == "b").collect();
    assert_eq!(multi.len(), 1);
    assert_eq!(multi[0].reason, FAILED_ATTACH);
    assert_eq!(
        multi[0].message,
        "Multi-Attach error for volume \"pv-1\" Volume is already used by pod(s) a"
    );
    // Reported once.
    let p2 = plan(&w.observed(), &p.memory, t0, &cfg);
    assert!(p2.events.iter().all(|e| e.pod.name != "b"));
    // ReadWriteMany: both nodes get it.
    let mut rwx = World::new(json!(["ReadWriteMany"]));
    rwx.pods.push(pod("b", "node-b", claim_volume("c1")));
    rwx.vas = w.vas.clone();
    let p = plan(&rwx.observed(), &Memory::default(), t0, &cfg);
    assert_eq!(p.attach.len(), 1);
    assert_eq!(p.attach[0].node, "node-b");
}

#[test]
fn unmanaged_nodes_keep_their_attachments_and_status() {
    let cfg = Config::default();
    let mut w = World::new(json!(["ReadWriteOnce"]));
    w.pods.clear();
    let mut n = node("node-a", true, &[], &[]);
    n.metadata.annotations = None;
    w.nodes[0] = n;
    w.vas
        .push(va(&va_a(), "node-a", "pv-1", json!({"attached": true})));
    let p = plan(&w.observed(), &Memory::default(), Instant::now(), &cfg);
    assert!(
        p.detach.is_empty() && p.node_status.is_empty() && p.attach.is_empty(),
        "{p:?}"
    );
}
