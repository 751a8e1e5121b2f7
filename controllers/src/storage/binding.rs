//! The writes of a binding as pure functions: each returns the updated object, or `None`
//! when the object already says so (upstream's `bind` runs them in this order: volume
//! `claimRef`, volume phase, claim `volumeName`, claim status).

use k8s_openapi::api::core::v1::{ObjectReference, PersistentVolume, PersistentVolumeClaim};
use kube::Resource;

use super::matching::{is_bound_to_claim, volume_phase};
use super::{ANN_BIND_COMPLETED, ANN_BOUND_BY_CONTROLLER, ANN_PRE_RESIZE_CAPACITY};

fn has_annotation(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    key: &str,
) -> bool {
    meta.annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(key))
}

fn set_annotation(
    meta: &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    key: &str,
) {
    meta.annotations
        .get_or_insert_with(Default::default)
        .insert(key.to_string(), "yes".to_string());
}

/// The reference a bound volume keeps to its claim.
pub fn claim_reference(claim: &PersistentVolumeClaim) -> ObjectReference {
    let mut r = claim.object_ref(&());
    r.field_path = None;
    r
}

/// The volume with `claimRef` pointing at the claim (with its UID), marked
/// `bound-by-controller` when the controller chose it (it was not pre-bound by name).
pub fn bind_volume_to_claim(
    pv: &PersistentVolume,
    claim: &PersistentVolumeClaim,
) -> Option<PersistentVolume> {
    let mut out = pv.clone();
    let mut dirty = false;
    let current = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
    let same = current.is_some_and(|r| {
        r.name == claim.metadata.name
            && r.namespace == claim.metadata.namespace
            && r.uid == claim.metadata.uid
    });
    if !same {
        out.spec.get_or_insert_with(Default::default).claim_ref = Some(claim_reference(claim));
        dirty = true;
    }
    if !is_bound_to_claim(pv, claim) && !has_annotation(&pv.metadata, ANN_BOUND_BY_CONTROLLER) {
        set_annotation(&mut out.metadata, ANN_BOUND_BY_CONTROLLER);
        dirty = true;
    }
    dirty.then_some(out)
}

/// The volume's status with `phase` and `message`, or `None` when the phase is set already.
pub fn volume_with_phase(
    pv: &PersistentVolume,
    phase: &str,
    message: &str,
) -> Option<PersistentVolume> {
    if volume_phase(pv) == phase {
        return None;
    }
    let mut out = pv.clone();
    let status = out.status.get_or_insert_with(Default::default);
    status.phase = Some(phase.to_string());
    status.message = (!message.is_empty()).then(|| message.to_string());
    Some(out)
}

/// The claim with `volumeName` set (and `bound-by-controller` when the controller chose the
/// volume) and `bind-completed`.
pub fn bind_claim_to_volume(
    claim: &PersistentVolumeClaim,
    pv: &PersistentVolume,
) -> Option<PersistentVolumeClaim> {
    let mut out = claim.clone();
    let mut dirty = false;
    let name = pv.metadata.name.clone().unwrap_or_default();
    let spec = out.spec.get_or_insert_with(Default::default);
    if spec.volume_name.as_deref() != Some(name.as_str()) {
        spec.volume_name = Some(name);
        if !has_annotation(&out.metadata, ANN_BOUND_BY_CONTROLLER) {
            set_annotation(&mut out.metadata, ANN_BOUND_BY_CONTROLLER);
        }
        dirty = true;
    }
    if !has_annotation(&out.metadata, ANN_BIND_COMPLETED) {
        set_annotation(&mut out.metadata, ANN_BIND_COMPLETED);
        dirty = true;
    }
    dirty.then_some(out)
}

/// The claim phase in `status.phase` ("" when unset).
pub fn claim_phase(claim: &PersistentVolumeClaim) -> &str {
    claim
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// The claim with status `phase`: access modes and capacity copied from `volume` (capacity
/// only when the claim becomes Bound, and the pre-resize capacity when the volume has one),
/// or cleared without a volume. `None` when nothing changes; an error names a volume
/// without capacity.
pub fn claim_with_status(
    claim: &PersistentVolumeClaim,
    phase: &str,
    volume: Option<&PersistentVolume>,
) -> Result<Option<PersistentVolumeClaim>, String> {
    let mut out = claim.clone();
    let old_phase = claim_phase(claim);
    let status = out.status.get_or_insert_with(Default::default);
    let mut dirty = false;
    if old_phase != phase {
        status.phase = Some(phase.to_string());
        dirty = true;
    }
    match volume {
        None => {
            dirty |= status.access_modes.take().is_some();
            dirty |= status.capacity.take().is_some();
            dirty |= status.current_volume_attributes_class_name.take().is_some();
        }
        Some(pv) => {
            let spec = pv.spec.clone().unwrap_or_default();
            if status.access_modes != spec.access_modes {
                status.access_modes = spec.access_modes.clone();
                dirty = true;
            }
            if old_phase != phase {
                let name = pv.metadata.name.as_deref().unwrap_or_default();
                let Some(capacity) = spec.capacity.as_ref().and_then(|c| c.get("storage")) else {
                    return Err(format!(
                        "PersistentVolume {name:?} is without a storage capacity"
                    ));
                };
                let pre_resize = pv
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(ANN_PRE_RESIZE_CAPACITY));
                if let Some(pre) = pre_resize {
                    let q = k8s_openapi::apimachinery::pkg::api::resource::Quantity(pre.clone());
                    status
                        .capacity
                        .get_or_insert_with(Default::default)
                        .insert("storage".into(), q);
                    dirty = true;
                } else if status.capacity.as_ref().and_then(|c| c.get("storage")) != Some(capacity)
                {
                    status.capacity = spec.capacity.clone();
                    dirty = true;
                }
                if old_phase == "Pending"
                    && phase == "Bound"
                    && status.current_volume_attributes_class_name
                        != spec.volume_attributes_class_name
                {
                    status.current_volume_attributes_class_name =
                        spec.volume_attributes_class_name.clone();
                    dirty = true;
                }
            }
        }
    }
    Ok(dirty.then_some(out))
}

/// The volume released from a binding the controller made (`claimRef` and
/// `bound-by-controller` removed), or, when the user pre-bound it, only the claim UID
/// cleared so it stays reserved for that claim name.
pub fn unbind_volume(pv: &PersistentVolume) -> PersistentVolume {
    let mut out = pv.clone();
    let spec = out.spec.get_or_insert_with(Default::default);
    if has_annotation(&pv.metadata, ANN_BOUND_BY_CONTROLLER) {
        spec.claim_ref = None;
        if let Some(a) = out.metadata.annotations.as_mut() {
            a.remove(ANN_BOUND_BY_CONTROLLER);
            if a.is_empty() {
                out.metadata.annotations = None;
            }
        }
    } else if let Some(r) = spec.claim_ref.as_mut() {
        r.uid = None;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::matching::tests_support::{claim, pv};
    use serde_json::json;

    #[test]
    fn controller_chosen_binding_is_marked_and_prebinding_is_not() {
        let c = claim("1Gi", &["ReadWriteOnce"], json!({}));
        let free = pv("v", "1Gi", &["ReadWriteOnce"], json!({}));
        let bound = bind_volume_to_claim(&free, &c).unwrap();
        let r = bound.spec.as_ref().unwrap().claim_ref.as_ref().unwrap();
        assert_eq!(r.name.as_deref(), Some("c"));
        assert_eq!(r.uid.as_deref(), Some("uid-c"));
        assert_eq!(r.kind.as_deref(), Some("PersistentVolumeClaim"));
        assert!(has_annotation(&bound.metadata, ANN_BOUND_BY_CONTROLLER));
        assert_eq!(bind_volume_to_claim(&bound, &c), None);

        let pre = pv(
            "v",
            "1Gi",
            &["ReadWriteOnce"],
            json!({"spec": {"claimRef": {"name": "c", "namespace": "ns"}}}),
        );
        let done = bind_volume_to_claim(&pre, &c).unwrap();
        assert!(!has_annotation(&done.metadata, ANN_BOUND_BY_CONTROLLER));
        assert_eq!(
            done.spec.unwrap().claim_ref.unwrap().uid.as_deref(),
            Some("uid-c")
        );
    }

    #[test]
    fn claim_binding_sets_volume_name_and_annotations() {
        let c = claim("1Gi", &["ReadWriteOnce"], json!({}));
        let v = pv("v", "1Gi", &["ReadWriteOnce"], json!({}));
        let bound = bind_claim_to_volume(&c, &v).unwrap();
        assert_eq!(
            bound.spec.as_ref().unwrap().volume_name.as_deref(),
            Some("v")
        );
        assert!(has_annotation(&bound.metadata, ANN_BOUND_BY_CONTROLLER));
        assert!(has_annotation(&bound.metadata, ANN_BIND_COMPLETED));
        assert_eq!(bind_claim_to_volume(&bound, &v), None);
        // Pre-bound by the user through volumeName: only bind-completed is added.
        let pre = claim(
            "1Gi",
            &["ReadWriteOnce"],
            json!({"spec": {"volumeName": "v"}}),
        );
        let done = bind_claim_to_volume(&pre, &v).unwrap();
        assert!(!has_annotation(&done.metadata, ANN_BOUND_BY_CONTROLLER));
        assert!(has_annotation(&done.metadata, ANN_BIND_COMPLETED));
    }

    #[test]
    fn claim_status_copies_the_volume_and_clears_without_one() {
        let c = claim(
            "1Gi",
            &["ReadWriteOnce"],
            json!({"status": {"phase": "Pending"}}),
        );
        let v = pv("v", "5Gi", &["ReadWriteOnce", "ReadOnlyMany"], json!({}));
        let bound = claim_with_status(&c, "Bound", Some(&v)).unwrap().unwrap();
        let s = bound.status.as_ref().unwrap();
        assert_eq!(s.phase.as_deref(), Some("Bound"));
        assert_eq!(s.capacity.as_ref().unwrap()["storage"].0, "5Gi");
        assert_eq!(s.access_modes.as_ref().unwrap().len(), 2);
        assert_eq!(claim_with_status(&bound, "Bound", Some(&v)).unwrap(), None);
        let lost = claim_with_status(&bound, "Lost", None).unwrap().unwrap();
        let s = lost.status.unwrap();
        assert!(s.capacity.is_none() && s.access_modes.is_none());
        let no_cap = pv("v", "1Gi", &[], json!({"spec": {"capacity": null}}));
        assert!(claim_with_status(&c, "Bound", Some(&no_cap))
            .unwrap_err()
            .contains("without a storage capacity"));
        let resized = pv(
            "v",
            "5Gi",
            &["ReadWriteOnce"],
            json!({"metadata": {"annotations": {ANN_PRE_RESIZE_CAPACITY: "1Gi"}}}),
        );
        let b = claim_with_status(&c, "Bound", Some(&resized))
            .unwrap()
            .unwrap();
        assert_eq!(b.status.unwrap().capacity.unwrap()["storage"].0, "1Gi");
    }

    #[test]
    fn unbinding_depends_on_who_bound() {
        let by_controller = pv(
            "v",
            "1Gi",
            &[],
            json!({"metadata": {"annotations": {ANN_BOUND_BY_CONTROLLER: "yes"}},
                   "spec": {"claimRef": {"name": "c", "namespace": "ns", "uid": "u"}}}),
        );
        let u = unbind_volume(&by_controller);
        assert!(u.spec.unwrap().claim_ref.is_none());
        assert!(u.metadata.annotations.is_none());
        let by_user = pv(
            "v",
            "1Gi",
            &[],
            json!({"spec": {"claimRef": {"name": "c", "namespace": "ns", "uid": "u"}}}),
        );
        let r = unbind_volume(&by_user).spec.unwrap().claim_ref.unwrap();
        assert_eq!((r.name.as_deref(), r.uid), (Some("c"), None));
    }

    #[test]
    fn volume_phase_changes_only_when_different() {
        let v = pv("v", "1Gi", &[], json!({}));
        assert_eq!(volume_with_phase(&v, "Available", ""), None);
        let f = volume_with_phase(&v, "Failed", "boom").unwrap();
        assert_eq!(f.status.unwrap().message.as_deref(), Some("boom"));
    }
}
