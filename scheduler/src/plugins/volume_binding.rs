//! VolumeBinding: PVCs must exist; bound PVs must be reachable from the node; unbound
//! claims of WaitForFirstConsumer classes are matched to a static PV the node reaches (the
//! smallest that fits; one pre-bound to the claim first) or, without one, provisioned for
//! the chosen node (`volume.kubernetes.io/selected-node`). PreBind writes that choice (the
//! PV's `claimRef`, as upstream's binder, or the annotation) and waits until the
//! persistentvolume-binder has bound every such claim.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim};

use super::volume_restrictions::pod_claims;
use crate::framework::*;
use crate::snapshot::{NodeInfo, PodInfo, Snapshot};
use api_helpers::node_affinity::selector_matches;
use api_helpers::quantity::value;

/// Registry name.
pub const NAME: &str = "VolumeBinding";
/// A bound PV's node affinity excludes the node.
pub const ERR_NODE_CONFLICT: &str = "node(s) didn't match PersistentVolume's node affinity";
/// No static PV fits an unbound claim on the node.
pub const ERR_BIND_CONFLICT: &str = "node(s) didn't find available persistent volumes to bind";
/// A bound PV is missing.
pub const ERR_PV_NOT_EXIST: &str =
    "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)";
/// Annotation the scheduler puts on a claim to trigger provisioning for a node.
pub const SELECTED_NODE_ANNOTATION: &str = "volume.kubernetes.io/selected-node";
/// Set by the persistentvolume-binder once a claim is bound.
pub const BIND_COMPLETED_ANNOTATION: &str = "pv.kubernetes.io/bind-completed";
/// Marks a binding the controller (here: the scheduler) chose.
pub const BOUND_BY_CONTROLLER_ANNOTATION: &str = "pv.kubernetes.io/bound-by-controller";
/// How long PreBind waits for the binder (upstream's `bindTimeoutSeconds` default).
pub const BIND_TIMEOUT: Duration = Duration::from_secs(600);

/// The VolumeBinding plugin (PreFilter, Filter, PreBind).
#[derive(Clone, Default)]
pub struct VolumeBinding {
    client: Option<kube::Client>,
}

impl VolumeBinding {
    /// Builds the plugin; PreBind needs a client to annotate claims.
    pub fn new(client: Option<kube::Client>) -> Self {
        VolumeBinding { client }
    }
}

/// The pod's claims, split by state.
#[derive(Debug, Clone, Default)]
struct State {
    bound: Vec<Arc<PersistentVolume>>,
    bound_missing: bool,
    /// Unbound WaitForFirstConsumer claims: (claim, dynamically provisioned?).
    delayed: Vec<(Arc<PersistentVolumeClaim>, bool)>,
    static_pvs: Vec<Arc<PersistentVolume>>,
}

fn class_of(pvc: &PersistentVolumeClaim) -> &str {
    pvc.spec
        .as_ref()
        .and_then(|s| s.storage_class_name.as_deref())
        .unwrap_or("")
}

fn pv_fits_node(pv: &PersistentVolume, node: Option<&Node>) -> bool {
    let req = pv
        .spec
        .as_ref()
        .and_then(|s| s.node_affinity.as_ref())
        .and_then(|a| a.required.as_ref());
    match (req, node) {
        (None, _) => true,
        (Some(sel), Some(n)) => selector_matches(sel, n),
        (Some(_), None) => false,
    }
}

/// Whether the PV's `claimRef` names the claim (without a UID: pre-bound by name).
fn pv_prebound_to(pv: &PersistentVolume, pvc: &PersistentVolumeClaim) -> bool {
    pv.spec
        .as_ref()
        .and_then(|s| s.claim_ref.as_ref())
        .is_some_and(|r| {
            r.name == pvc.metadata.name
                && r.namespace == pvc.metadata.namespace
                && r.uid
                    .as_deref()
                    .is_none_or(|u| u.is_empty() || Some(u) == pvc.metadata.uid.as_deref())
        })
}

fn capacity(pv: &PersistentVolume) -> i64 {
    pv.spec
        .as_ref()
        .and_then(|s| s.capacity.as_ref())
        .and_then(|c| c.get("storage"))
        .and_then(|q| value(&q.0).ok())
        .unwrap_or(0)
}

/// The static PV the claim gets on `node`: one pre-bound to it, else the smallest free one
/// that fits, skipping `taken` (chosen for the pod's other claims).
fn choose_static_pv(
    pvc: &PersistentVolumeClaim,
    pvs: &[Arc<PersistentVolume>],
    node: Option<&Node>,
    taken: &[String],
) -> Option<Arc<PersistentVolume>> {
    let candidates = pvs.iter().filter(|pv| {
        pv_matches_claim(pv, pvc)
            && pv_fits_node(pv, node)
            && pv.metadata.deletion_timestamp.is_none()
            && !taken.iter().any(|t| Some(t) == pv.metadata.name.as_ref())
    });
    let (prebound, free): (Vec<_>, Vec<_>) = candidates.partition(|pv| pv_prebound_to(pv, pvc));
    prebound
        .into_iter()
        .next()
        .or_else(|| free.into_iter().min_by_key(|pv| capacity(pv)))
        .cloned()
}

fn pv_matches_claim(pv: &PersistentVolume, pvc: &PersistentVolumeClaim) -> bool {
    let (Some(ps), Some(cs)) = (pv.spec.as_ref(), pvc.spec.as_ref()) else {
        return false;
    };
    if (ps.claim_ref.is_some() && !pv_prebound_to(pv, pvc))
        || ps.storage_class_name.as_deref().unwrap_or("") != class_of(pvc)
    {
        return false;
    }
    let mode = |m: Option<&String>| m.map(String::as_str).unwrap_or("Filesystem").to_string();
    if mode(ps.volume_mode.as_ref()) != mode(cs.volume_mode.as_ref()) {
        return false;
    }
    let want = cs
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .and_then(|q| value(&q.0).ok())
        .unwrap_or(0);
    let have = ps
        .capacity
        .as_ref()
        .and_then(|c| c.get("storage"))
        .and_then(|q| value(&q.0).ok())
        .unwrap_or(0);
    let modes = ps.access_modes.as_deref().unwrap_or(&[]);
    have >= want && cs.access_modes.iter().flatten().all(|m| modes.contains(m))
}

impl Plugin for VolumeBinding {
    fn name(&self) -> &'static str {
        NAME
    }
    fn events(&self) -> Vec<ClusterEvent> {
        vec![
            ClusterEvent::new(EventResource::Storage, Action::ALL),
            ClusterEvent::new(EventResource::Node, Action::ADD | Action::UPDATE_LABEL),
        ]
    }
    extension_points!(PreFilter, Filter, PreBind);
}

impl PreFilterPlugin for VolumeBinding {
    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        snap: &Snapshot,
    ) -> (Option<PreFilterResult>, Status) {
        let claims = pod_claims(pod);
        if claims.is_empty() {
            return (None, Status::skip());
        }
        let mut st = State::default();
        let mut immediate_unbound = false;
        for c in claims {
            let Some(pvc) = snap.storage.pvcs.get(&format!("{}/{c}", pod.namespace)) else {
                return (
                    None,
                    Status::new(
                        Code::UnschedulableAndUnresolvable,
                        format!("persistentvolumeclaim \"{c}\" not found"),
                    ),
                );
            };
            if pvc.metadata.deletion_timestamp.is_some() {
                return (
                    None,
                    Status::new(
                        Code::UnschedulableAndUnresolvable,
                        format!("persistentvolumeclaim \"{c}\" is being deleted"),
                    ),
                );
            }
            let volume = pvc
                .spec
                .as_ref()
                .and_then(|s| s.volume_name.as_deref())
                .filter(|v| !v.is_empty());
            if let Some(v) = volume {
                match snap.storage.pvs.get(v) {
                    Some(pv) => st.bound.push(pv.clone()),
                    None => st.bound_missing = true,
                }
                continue;
            }
            let class = snap.storage.classes.get(class_of(pvc));
            let wffc = class
                .is_some_and(|c| c.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer"));
            if !wffc {
                immediate_unbound = true;
                continue;
            }
            let dynamic = class.is_some_and(|c| c.provisioner != "kubernetes.io/no-provisioner");
            st.delayed.push((pvc.clone(), dynamic));
        }
        if immediate_unbound {
            return (
                None,
                Status::new(
                    Code::UnschedulableAndUnresolvable,
                    "pod has unbound immediate PersistentVolumeClaims",
                ),
            );
        }
        st.static_pvs = snap
            .storage
            .pvs
            .values()
            .filter(|pv| {
                pv.spec.as_ref().is_some_and(|s| {
                    s.claim_ref.is_none()
                        || st.delayed.iter().any(|(pvc, _)| pv_prebound_to(pv, pvc))
                })
            })
            .cloned()
            .collect();
        state.write(NAME, st);
        (None, Status::success())
    }
}

impl FilterPlugin for VolumeBinding {
    fn filter(&self, state: &CycleState, _: &PodInfo, node: &NodeInfo) -> Status {
        let Some(st) = state.read::<State>(NAME) else {
            return Status::success();
        };
        if st.bound_missing {
            return Status::new(Code::UnschedulableAndUnresolvable, ERR_PV_NOT_EXIST);
        }
        let mut reasons = Vec::new();
        let n = node.node.as_deref();
        if st.bound.iter().any(|pv| !pv_fits_node(pv, n)) {
            reasons.push(ERR_NODE_CONFLICT.to_string());
        }
        let mut taken = Vec::new();
        let unmatched = st.delayed.iter().any(|(pvc, dynamic)| {
            match choose_static_pv(pvc, &st.static_pvs, n, &taken) {
                Some(pv) => {
                    taken.extend(pv.metadata.name.clone());
                    false
                }
                None => !dynamic,
            }
        });
        if unmatched {
            reasons.push(ERR_BIND_CONFLICT.to_string());
        }
        if reasons.is_empty() {
            Status::success()
        } else {
            Status::with_reasons(Code::UnschedulableAndUnresolvable, reasons)
        }
    }
}

impl PreBindPlugin for VolumeBinding {
    fn pre_bind<'a>(
        &'a self,
        state: &'a CycleState,
        _: &'a PodInfo,
        node: &'a str,
    ) -> BoxFuture<'a, Status> {
        Box::pin(async move {
            let Some(st) = state.read::<State>(NAME) else {
                return Status::skip();
            };
            if st.delayed.is_empty() {
                return Status::success();
            }
            let Some(client) = self.client.clone() else {
                return Status::skip();
            };
            match bind_pod_volumes(&client, st, node).await {
                Ok(()) => Status::success(),
                Err(e) => Status::error(format!("binding volumes: {e}")),
            }
        })
    }
}

fn claim_api(
    client: &kube::Client,
    pvc: &PersistentVolumeClaim,
) -> kube::Api<PersistentVolumeClaim> {
    let ns = pvc.metadata.namespace.as_deref().unwrap_or("default");
    kube::Api::namespaced(client.clone(), ns)
}

/// Upstream's BindPodVolumes: pre-binds the chosen static PVs (their `claimRef`) or
/// annotates the claims to provision with the node, then waits until the binder bound them.
async fn bind_pod_volumes(client: &kube::Client, st: &State, node: &str) -> Result<(), String> {
    use kube::api::{Patch, PatchParams};
    let node_obj = kube::Api::<Node>::all(client.clone())
        .get(node)
        .await
        .map_err(|e| format!("getting node {node:?}: {e}"))?;
    let mut taken = Vec::new();
    for (pvc, dynamic) in &st.delayed {
        let name = pvc.metadata.name.as_deref().unwrap_or("");
        if let Some(pv) = choose_static_pv(pvc, &st.static_pvs, Some(&node_obj), &taken) {
            let pv_name = pv.metadata.name.clone().unwrap_or_default();
            taken.push(pv_name.clone());
            let prebound = pv_prebound_to(&pv, pvc);
            let mut patch = serde_json::json!({
                "metadata": {"resourceVersion": pv.metadata.resource_version},
                "spec": {"claimRef": {
                    "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                    "namespace": pvc.metadata.namespace, "name": name,
                    "uid": pvc.metadata.uid, "resourceVersion": pvc.metadata.resource_version,
                }}
            });
            if !prebound {
                patch["metadata"]["annotations"] =
                    serde_json::json!({BOUND_BY_CONTROLLER_ANNOTATION: "yes"});
            }
            kube::Api::<PersistentVolume>::all(client.clone())
                .patch(&pv_name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(|e| format!("binding persistentvolume {pv_name} to claim {name}: {e}"))?;
        } else if *dynamic {
            let patch =
                serde_json::json!({"metadata": {"annotations": {SELECTED_NODE_ANNOTATION: node}}});
            claim_api(client, pvc)
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(|e| format!("annotating persistentvolumeclaim {name}: {e}"))?;
        } else {
            return Err(format!(
                "no persistent volume for claim {name} on node {node}"
            ));
        }
    }
    let deadline = tokio::time::Instant::now() + BIND_TIMEOUT;
    loop {
        let mut all = true;
        for (pvc, _) in &st.delayed {
            let name = pvc.metadata.name.as_deref().unwrap_or("");
            let now = claim_api(client, pvc)
                .get(name)
                .await
                .map_err(|e| format!("getting persistentvolumeclaim {name}: {e}"))?;
            all &= claim_is_bound(&now);
        }
        if all {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err("timed out waiting for the condition".into());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Whether the binder has finished binding the claim.
fn claim_is_bound(pvc: &PersistentVolumeClaim) -> bool {
    let named = pvc
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .is_some_and(|v| !v.is_empty());
    let completed = pvc
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(BIND_COMPLETED_ANNOTATION));
    named && completed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testutil::*;
    use crate::snapshot::StorageView;
    use serde_json::json;

    fn storage(objs: &[serde_json::Value]) -> StorageView {
        let mut sv = StorageView::default();
        for o in objs {
            let name = o["metadata"]["name"].as_str().unwrap().to_string();
            if o["kind"] == "PersistentVolumeClaim" {
                sv.pvcs.insert(
                    format!("default/{name}"),
                    Arc::new(serde_json::from_value(o.clone()).unwrap()),
                );
            } else if o["kind"] == "StorageClass" {
                sv.classes
                    .insert(name, Arc::new(serde_json::from_value(o.clone()).unwrap()));
            } else {
                sv.pvs
                    .insert(name, Arc::new(serde_json::from_value(o.clone()).unwrap()));
            }
        }
        sv
    }

    fn with_claim() -> Arc<PodInfo> {
        pod(
            "p",
            json!({"volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": "data"}}]}),
        )
    }

    fn run(sv: StorageView) -> (Status, Vec<Status>) {
        let mut snap = snapshot(vec![
            node_info(
                node("a", "1", "1Gi", json!({"kubernetes.io/hostname": "a"})),
                &[],
            ),
            node_info(
                node("b", "1", "1Gi", json!({"kubernetes.io/hostname": "b"})),
                &[],
            ),
        ]);
        snap.storage = Arc::new(sv);
        let p = with_claim();
        let mut st = state();
        let (_, s) = VolumeBinding::default().pre_filter(&mut st, &p, &snap);
        let f = snap
            .nodes
            .iter()
            .map(|n| VolumeBinding::default().filter(&st, &p, n))
            .collect();
        (s, f)
    }

    fn local_pv(name: &str, node: &str, claim: Option<&str>) -> serde_json::Value {
        json!({"kind": "PersistentVolume", "metadata": {"name": name}, "spec": {
            "storageClassName": "local", "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
            "claimRef": claim.map(|c| json!({"name": c, "namespace": "default"})),
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}}})
    }

    #[test]
    fn bound_pv_pins_the_node() {
        let (s, f) = run(storage(&[
            json!({"kind": "PersistentVolumeClaim", "metadata": {"name": "data"}, "spec": {"volumeName": "pv1"}}),
            local_pv("pv1", "b", Some("data")),
        ]));
        assert!(s.is_success());
        assert_eq!(f[0].message(), ERR_NODE_CONFLICT);
        assert!(f[1].is_success());
    }

    #[test]
    fn missing_and_immediate_unbound_claims() {
        let (s, _) = run(storage(&[]));
        assert_eq!(s.message(), "persistentvolumeclaim \"data\" not found");
        let (s, _) = run(storage(&[
            json!({"kind": "PersistentVolumeClaim", "metadata": {"name": "data"}, "spec": {}}),
        ]));
        assert_eq!(
            s.message(),
            "pod has unbound immediate PersistentVolumeClaims"
        );
    }

    #[test]
    fn wait_for_first_consumer_static_pv() {
        let (s, f) = run(storage(&[
            json!({"kind": "PersistentVolumeClaim", "metadata": {"name": "data"}, "spec": {"storageClassName": "local",
                "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "500Mi"}}}}),
            json!({"kind": "StorageClass", "metadata": {"name": "local"}, "provisioner": "kubernetes.io/no-provisioner",
                "volumeBindingMode": "WaitForFirstConsumer"}),
            local_pv("pv-a", "a", None),
        ]));
        assert!(s.is_success());
        assert!(f[0].is_success());
        assert_eq!(f[1].message(), ERR_BIND_CONFLICT);
    }

    #[test]
    fn static_pv_choice_prefers_prebound_then_smallest_and_skips_taken() {
        let pvc: PersistentVolumeClaim = serde_json::from_value(json!({
            "metadata": {"name": "data", "namespace": "default", "uid": "u1"},
            "spec": {"storageClassName": "local", "accessModes": ["ReadWriteOnce"],
                     "resources": {"requests": {"storage": "500Mi"}}}}))
        .unwrap();
        let pv = |v: serde_json::Value| -> Arc<PersistentVolume> {
            Arc::new(serde_json::from_value(v).unwrap())
        };
        let mut big = local_pv("big", "a", None);
        big["spec"]["capacity"]["storage"] = json!("5Gi");
        let pvs = vec![
            pv(big),
            pv(local_pv("small", "a", None)),
            pv(local_pv("other-node", "b", None)),
        ];
        let node_a: Node = serde_json::from_value(json!({"metadata": {"name": "a",
            "labels": {"kubernetes.io/hostname": "a"}}}))
        .unwrap();
        let name = |p: Option<Arc<PersistentVolume>>| p.and_then(|p| p.metadata.name.clone());
        assert_eq!(
            name(choose_static_pv(&pvc, &pvs, Some(&node_a), &[])).as_deref(),
            Some("small")
        );
        assert_eq!(
            name(choose_static_pv(
                &pvc,
                &pvs,
                Some(&node_a),
                &["small".into()]
            ))
            .as_deref(),
            Some("big")
        );
        let mut with_prebound = pvs.clone();
        let mut mine = local_pv("mine", "a", Some("data"));
        mine["spec"]["capacity"]["storage"] = json!("9Gi");
        with_prebound.push(pv(mine));
        assert_eq!(
            name(choose_static_pv(&pvc, &with_prebound, Some(&node_a), &[])).as_deref(),
            Some("mine")
        );
        let bound = |ann: bool| -> PersistentVolumeClaim {
            let a = if ann {
                json!({BIND_COMPLETED_ANNOTATION: "yes"})
            } else {
                json!({})
            };
            serde_json::from_value(
                json!({"metadata": {"annotations": a}, "spec": {"volumeName": "v"}}),
            )
            .unwrap()
        };
        assert!(claim_is_bound(&bound(true)));
        assert!(!claim_is_bound(&bound(false)));
    }
}
