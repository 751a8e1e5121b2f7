//! VolumeRestrictions: a ReadWriteOncePod PVC may be used by only one pod.

use crate::framework::*;
use crate::snapshot::{NodeInfo, PodInfo, Snapshot};

/// Registry name.
pub const NAME: &str = "VolumeRestrictions";
/// Upstream's reason for a ReadWriteOncePod conflict.
pub const ERR_RWOP: &str = "node(s) unavailable due to PersistentVolumeClaim with ReadWriteOncePod access mode already in-use by another pod";

/// The VolumeRestrictions plugin (PreFilter, Filter). Inline-volume disk conflicts of
/// in-tree cloud volumes (GCE PD, EBS, RBD, iSCSI) are not checked.
#[derive(Debug, Default)]
pub struct VolumeRestrictions;

/// Claims of the pod's volumes.
pub fn pod_claims(pod: &PodInfo) -> Vec<&str> {
    pod.pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|v| {
            v.persistent_volume_claim
                .as_ref()
                .map(|c| c.claim_name.as_str())
        })
        .collect()
}

#[derive(Debug, Clone)]
struct State {
    conflicts: usize,
}

impl Plugin for VolumeRestrictions {
    fn name(&self) -> &'static str {
        NAME
    }
    fn events(&self) -> Vec<ClusterEvent> {
        vec![
            ClusterEvent::new(EventResource::AssignedPod, Action::DELETE),
            ClusterEvent::new(EventResource::Storage, Action::ALL),
        ]
    }
    extension_points!(PreFilter, Filter);
}

impl PreFilterPlugin for VolumeRestrictions {
    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        snap: &Snapshot,
    ) -> (Option<PreFilterResult>, Status) {
        let rwop: Vec<&str> = pod_claims(pod)
            .into_iter()
            .filter(|c| {
                snap.storage
                    .pvcs
                    .get(&format!("{}/{c}", pod.namespace))
                    .is_some_and(|pvc| {
                        pvc.spec
                            .as_ref()
                            .and_then(|s| s.access_modes.as_ref())
                            .is_some_and(|m| m.iter().any(|m| m == "ReadWriteOncePod"))
                    })
            })
            .collect();
        if rwop.is_empty() {
            return (None, Status::skip());
        }
        let conflicts = snap
            .nodes
            .iter()
            .flat_map(|n| n.pods.iter())
            .filter(|p| {
                p.uid != pod.uid
                    && p.namespace == pod.namespace
                    && pod_claims(p).iter().any(|c| rwop.contains(c))
            })
            .count();
        state.write(NAME, State { conflicts });
        (None, Status::success())
    }

    fn add_pod(&self, state: &mut CycleState, pod: &PodInfo, other: &PodInfo, _: &NodeInfo) {
        let shares = other.namespace == pod.namespace
            && pod_claims(other)
                .iter()
                .any(|c| pod_claims(pod).contains(c));
        if let (true, Some(st)) = (shares, state.read_mut::<State>(NAME)) {
            st.conflicts += 1;
        }
    }

    fn remove_pod(&self, state: &mut CycleState, pod: &PodInfo, other: &PodInfo, _: &NodeInfo) {
        let shares = other.namespace == pod.namespace
            && pod_claims(other)
                .iter()
                .any(|c| pod_claims(pod).contains(c));
        if let (true, Some(st)) = (shares, state.read_mut::<State>(NAME)) {
            st.conflicts = st.conflicts.saturating_sub(1);
        }
    }
}

impl FilterPlugin for VolumeRestrictions {
    fn filter(&self, state: &CycleState, _: &PodInfo, _: &NodeInfo) -> Status {
        match state.read::<State>(NAME) {
            Some(st) if st.conflicts > 0 => Status::new(Code::Unschedulable, ERR_RWOP),
            _ => Status::success(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testutil::*;
    use crate::snapshot::StorageView;
    use serde_json::json;
    use std::sync::Arc;

    #[test]
    fn read_write_once_pod_claim_is_exclusive() {
        let vol =
            json!({"volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": "data"}}]});
        let user = pod("user", vol.clone());
        let mut snap = snapshot(vec![node_info(node("n", "1", "1Gi", json!({})), &[user])]);
        let pvc =
            serde_json::from_value(json!({"metadata": {"name": "data", "namespace": "default"},
            "spec": {"accessModes": ["ReadWriteOncePod"]}}))
            .unwrap();
        let mut sv = StorageView::default();
        sv.pvcs.insert("default/data".into(), Arc::new(pvc));
        snap.storage = Arc::new(sv);
        let p = pod("p", vol);
        let mut st = state();
        assert!(VolumeRestrictions
            .pre_filter(&mut st, &p, &snap)
            .1
            .is_success());
        let s = VolumeRestrictions.filter(&st, &p, &snap.nodes[0]);
        assert_eq!(
            (s.code, s.message().as_str()),
            (Code::Unschedulable, ERR_RWOP)
        );
        assert_eq!(
            VolumeRestrictions
                .pre_filter(&mut state(), &pod("q", json!({})), &snap)
                .1
                .code,
            Code::Skip
        );
    }
}
