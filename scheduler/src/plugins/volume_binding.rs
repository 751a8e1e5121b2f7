//! VolumeBinding: PVCs must exist; bound PVs must be reachable from the node; unbound
//! claims of WaitForFirstConsumer classes are provisioned for the chosen node
//! (`volume.kubernetes.io/selected-node`) or matched to a local static PV.

use std::sync::Arc;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};

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

fn pv_fits_node(pv: &PersistentVolume, node: &NodeInfo) -> bool {
    let req = pv
        .spec
        .as_ref()
        .and_then(|s| s.node_affinity.as_ref())
        .and_then(|a| a.required.as_ref());
    match (req, node.node.as_ref()) {
        (None, _) => true,
        (Some(sel), Some(n)) => selector_matches(sel, n),
        (Some(_), None) => false,
    }
}

fn pv_matches_claim(pv: &PersistentVolume, pvc: &PersistentVolumeClaim) -> bool {
    let (Some(ps), Some(cs)) = (pv.spec.as_ref(), pvc.spec.as_ref()) else {
        return false;
    };
    if ps.claim_ref.is_some() || ps.storage_class_name.as_deref().unwrap_or("") != class_of(pvc) {
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
            .filter(|pv| pv.spec.as_ref().is_some_and(|s| s.claim_ref.is_none()))
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
        if st.bound.iter().any(|pv| !pv_fits_node(pv, node)) {
            reasons.push(ERR_NODE_CONFLICT.to_string());
        }
        let unmatched = st.delayed.iter().any(|(pvc, dynamic)| {
            !dynamic
                && !st
                    .static_pvs
                    .iter()
                    .any(|pv| pv_matches_claim(pv, pvc) && pv_fits_node(pv, node))
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
            let Some(client) = self.client.clone() else {
                return Status::skip();
            };
            for (pvc, dynamic) in &st.delayed {
                if !dynamic {
                    continue;
                }
                let ns = pvc.metadata.namespace.as_deref().unwrap_or("default");
                let name = pvc.metadata.name.as_deref().unwrap_or("");
                let api: kube::Api<PersistentVolumeClaim> =
                    kube::Api::namespaced(client.clone(), ns);
                let patch = serde_json::json!({"metadata": {"annotations": {SELECTED_NODE_ANNOTATION: node}}});
                if let Err(e) = api
                    .patch(
                        name,
                        &kube::api::PatchParams::default(),
                        &kube::api::Patch::Merge(&patch),
                    )
                    .await
                {
                    return Status::error(format!(
                        "annotating persistentvolumeclaim {ns}/{name}: {e}"
                    ));
                }
            }
            Status::success()
        })
    }
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
}
