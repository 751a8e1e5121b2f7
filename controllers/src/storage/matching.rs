//! Which volume a claim binds to (upstream's `FindMatchingVolume` over the volumes grouped
//! by access modes): a volume pre-bound to the claim wins; otherwise the smallest Available
//! volume of the claim's class whose capacity, volume mode, attributes class and labels
//! fit, searched first among volumes with the fewest access modes that still include all
//! the claim asks for.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};

use super::classes::{claim_class, volume_class};
use api_helpers::quantity::Quantity;

/// `spec.accessModes` order upstream prints them in (its `GetAccessModesAsString`).
const MODE_ORDER: [&str; 4] = [
    "ReadWriteOnce",
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOncePod",
];

/// The claim's requested storage (`spec.resources.requests.storage`), zero when unset.
pub fn requested_storage(claim: &PersistentVolumeClaim) -> Quantity {
    claim
        .spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .and_then(|q| Quantity::from_wire(q).ok())
        .unwrap_or(Quantity::ZERO)
}

/// The volume's capacity (`spec.capacity.storage`), zero when unset.
pub fn volume_capacity(pv: &PersistentVolume) -> Quantity {
    pv.spec
        .as_ref()
        .and_then(|s| s.capacity.as_ref())
        .and_then(|c| c.get("storage"))
        .and_then(|q| Quantity::from_wire(q).ok())
        .unwrap_or(Quantity::ZERO)
}

/// The phase in `status.phase` ("" when unset).
pub fn volume_phase(pv: &PersistentVolume) -> &str {
    pv.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn claim_modes(claim: &PersistentVolumeClaim) -> &[String] {
    claim
        .spec
        .as_ref()
        .and_then(|s| s.access_modes.as_deref())
        .unwrap_or(&[])
}

fn volume_modes(pv: &PersistentVolume) -> &[String] {
    pv.spec
        .as_ref()
        .and_then(|s| s.access_modes.as_deref())
        .unwrap_or(&[])
}

/// The volume's access modes as one canonical key (upstream's access-modes index value).
fn modes_key(pv: &PersistentVolume) -> Vec<&'static str> {
    let modes = volume_modes(pv);
    MODE_ORDER
        .iter()
        .copied()
        .filter(|m| modes.iter().any(|x| x == m))
        .collect()
}

/// Whether the volume offers every access mode the claim asks for.
pub fn access_modes_fit(claim: &PersistentVolumeClaim, pv: &PersistentVolume) -> bool {
    let have = volume_modes(pv);
    claim_modes(claim).iter().all(|m| have.contains(m))
}

/// Whether claim and volume disagree on `volumeMode` (both default to Filesystem).
pub fn volume_mode_mismatch(claim: &PersistentVolumeClaim, pv: &PersistentVolume) -> bool {
    let claim_mode = claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_mode.as_deref())
        .unwrap_or("Filesystem");
    let pv_mode = pv
        .spec
        .as_ref()
        .and_then(|s| s.volume_mode.as_deref())
        .unwrap_or("Filesystem");
    claim_mode != pv_mode
}

fn claim_vac(claim: &PersistentVolumeClaim) -> &str {
    claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_attributes_class_name.as_deref())
        .unwrap_or("")
}

fn volume_vac(pv: &PersistentVolume) -> &str {
    pv.spec
        .as_ref()
        .and_then(|s| s.volume_attributes_class_name.as_deref())
        .unwrap_or("")
}

/// Whether the volume's `claimRef` names this claim (a `claimRef` without a UID is a
/// pre-binding by name and matches any claim of that name).
pub fn is_bound_to_claim(pv: &PersistentVolume, claim: &PersistentVolumeClaim) -> bool {
    let Some(r) = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
        return false;
    };
    if r.name != claim.metadata.name || r.namespace != claim.metadata.namespace {
        return false;
    }
    match r.uid.as_deref().filter(|u| !u.is_empty()) {
        Some(uid) => claim.metadata.uid.as_deref() == Some(uid),
        None => true,
    }
}

/// Why the volume a claim names in `spec.volumeName` cannot serve it (upstream's
/// `checkVolumeSatisfyClaim` messages), or `Ok`.
pub fn check_volume_satisfies_claim(
    pv: &PersistentVolume,
    claim: &PersistentVolumeClaim,
) -> Result<(), String> {
    if pv.metadata.deletion_timestamp.is_some() {
        return Err(format!(
            "the volume is marked for deletion {:?}",
            pv.metadata.name.as_deref().unwrap_or_default()
        ));
    }
    // Upstream compares whole units (Value() rounds up).
    if volume_capacity(pv).ceil_units() < requested_storage(claim).ceil_units() {
        return Err("requested PV is too small".into());
    }
    if volume_class(pv) != claim_class(claim) {
        return Err("storageClassName does not match".into());
    }
    if volume_vac(pv) != claim_vac(claim) {
        return Err("volumeAttributesClassName does not match".into());
    }
    if volume_mode_mismatch(claim, pv) {
        return Err("incompatible volumeMode".into());
    }
    if !access_modes_fit(claim, pv) {
        return Err("incompatible accessMode".into());
    }
    Ok(())
}

/// The best volume among `volumes` for a claim without `spec.volumeName`; with
/// `delay_binding` (a WaitForFirstConsumer class) only a volume pre-bound to the claim
/// (by the user or the scheduler) is taken.
pub fn find_best_match(
    claim: &PersistentVolumeClaim,
    volumes: &[Arc<PersistentVolume>],
    delay_binding: bool,
) -> Option<Arc<PersistentVolume>> {
    // Upstream's index: one group per distinct access-mode set; groups that contain all
    // requested modes are searched with the fewest modes first.
    let mut groups: BTreeMap<Vec<&'static str>, Vec<&Arc<PersistentVolume>>> = BTreeMap::new();
    for pv in volumes {
        groups.entry(modes_key(pv)).or_default().push(pv);
    }
    let wanted = claim_modes(claim);
    let mut fitting: Vec<_> = groups
        .into_iter()
        .filter(|(modes, _)| wanted.iter().all(|m| modes.contains(&m.as_str())))
        .collect();
    fitting.sort_by_key(|(modes, _)| modes.len());
    fitting
        .into_iter()
        .find_map(|(_, group)| match_in_group(claim, &group, delay_binding))
}

fn match_in_group(
    claim: &PersistentVolumeClaim,
    volumes: &[&Arc<PersistentVolume>],
    delay_binding: bool,
) -> Option<Arc<PersistentVolume>> {
    let requested = requested_storage(claim);
    let class = claim_class(claim);
    let selector = claim.spec.as_ref().and_then(|s| s.selector.as_ref());
    let mut smallest: Option<(&Arc<PersistentVolume>, Quantity)> = None;
    for pv in volumes {
        let claimed = pv
            .spec
            .as_ref()
            .and_then(|s| s.claim_ref.as_ref())
            .is_some();
        if claimed && !is_bound_to_claim(pv, claim) {
            continue;
        }
        let capacity = volume_capacity(pv);
        if capacity < requested
            || volume_mode_mismatch(claim, pv)
            || volume_vac(pv) != claim_vac(claim)
            || pv.metadata.deletion_timestamp.is_some()
        {
            continue;
        }
        if is_bound_to_claim(pv, claim) {
            return Some((*pv).clone());
        }
        if delay_binding
            || volume_phase(pv) != "Available"
            || selector
                .is_some_and(|s| !api_helpers::labels::matches(s, pv.metadata.labels.as_ref()))
            || volume_class(pv) != class
        {
            continue;
        }
        if smallest.as_ref().is_none_or(|(_, q)| *q > capacity) {
            smallest = Some((pv, capacity));
        }
    }
    smallest.map(|(pv, _)| pv.clone())
}

/// Fixtures for the storage unit tests.
#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;
    use serde_json::{json, Value};

    pub(crate) fn pv(
        name: &str,
        size: &str,
        modes: &[&str],
        extra: Value,
    ) -> Arc<PersistentVolume> {
        let mut v = json!({
            "metadata": {"name": name},
            "spec": {"capacity": {"storage": size}, "accessModes": modes,
                     "hostPath": {"path": format!("/tmp/{name}")}},
            "status": {"phase": "Available"}
        });
        merge(&mut v, extra);
        Arc::new(serde_json::from_value(v).unwrap())
    }

    pub(crate) fn claim(size: &str, modes: &[&str], extra: Value) -> PersistentVolumeClaim {
        let mut v = json!({
            "metadata": {"name": "c", "namespace": "ns", "uid": "uid-c"},
            "spec": {"accessModes": modes, "resources": {"requests": {"storage": size}}}
        });
        merge(&mut v, extra);
        serde_json::from_value(v).unwrap()
    }

    pub(crate) fn merge(base: &mut Value, extra: Value) {
        match (base, extra) {
            (Value::Object(b), Value::Object(e)) => {
                for (k, v) in e {
                    merge(b.entry(k).or_insert(Value::Null), v);
                }
            }
            (b, e) => *b = e,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::*;
    use super::*;
    use serde_json::json;

    fn name(v: Option<Arc<PersistentVolume>>) -> Option<String> {
        v.and_then(|v| v.metadata.name.clone())
    }

    #[test]
    fn smallest_fitting_volume_wins() {
        let vols = vec![
            pv("big", "10Gi", &["ReadWriteOnce"], json!({})),
            pv("small", "1Gi", &["ReadWriteOnce"], json!({})),
            pv("fits", "2Gi", &["ReadWriteOnce"], json!({})),
        ];
        let c = claim("1500Mi", &["ReadWriteOnce"], json!({}));
        assert_eq!(
            name(find_best_match(&c, &vols, false)).as_deref(),
            Some("fits")
        );
        let too_big = claim("20Gi", &["ReadWriteOnce"], json!({}));
        assert_eq!(find_best_match(&too_big, &vols, false), None);
    }

    #[test]
    fn fewest_access_modes_first_then_size() {
        let vols = vec![
            pv(
                "rwo-rox-small",
                "1Gi",
                &["ReadWriteOnce", "ReadOnlyMany"],
                json!({}),
            ),
            pv("rwo-big", "5Gi", &["ReadWriteOnce"], json!({})),
            pv("rwx", "1Gi", &["ReadWriteMany"], json!({})),
        ];
        let c = claim("1Gi", &["ReadWriteOnce"], json!({}));
        assert_eq!(
            name(find_best_match(&c, &vols, false)).as_deref(),
            Some("rwo-big")
        );
        let c = claim("1Gi", &["ReadOnlyMany"], json!({}));
        assert_eq!(
            name(find_best_match(&c, &vols, false)).as_deref(),
            Some("rwo-rox-small")
        );
        let c = claim("1Gi", &["ReadWriteOncePod"], json!({}));
        assert_eq!(find_best_match(&c, &vols, false), None);
    }

    #[test]
    fn class_selector_mode_phase_and_claimed_volumes_filter() {
        let rwo = &["ReadWriteOnce"];
        let vols = vec![
            pv(
                "fast",
                "1Gi",
                rwo,
                json!({"spec": {"storageClassName": "fast"}}),
            ),
            pv(
                "labelled",
                "2Gi",
                rwo,
                json!({"metadata": {"labels": {"tier": "gold"}}}),
            ),
            pv(
                "block",
                "1Gi",
                rwo,
                json!({"spec": {"volumeMode": "Block"}}),
            ),
            pv(
                "released",
                "1Gi",
                rwo,
                json!({"status": {"phase": "Released"}}),
            ),
            pv(
                "taken",
                "1Gi",
                rwo,
                json!({"spec": {"claimRef": {"name": "other", "namespace": "ns"}}}),
            ),
            pv("plain", "3Gi", rwo, json!({})),
        ];
        let c = claim("1Gi", rwo, json!({"spec": {"storageClassName": "fast"}}));
        assert_eq!(
            name(find_best_match(&c, &vols, false)).as_deref(),
            Some("fast")
        );
        let c = claim(
            "1Gi",
            rwo,
            json!({"spec": {"selector": {"matchLabels": {"tier": "gold"}}}}),
        );
        assert_eq!(
            name(find_best_match(&c, &vols, false)).as_deref(),
            Some("labelled")
        );
        let c = claim("1Gi", rwo, json!({"spec": {"volumeMode": "Block"}}));
        assert_eq!(
            name(find_best_match(&c, &vols, false)).as_deref(),
            Some("block")
        );
        // No class, no selector: "released", "taken" and "block" are out, "labelled" is
        // the smallest left.
        let c = claim("1Gi", rwo, json!({}));
        assert_eq!(
            name(find_best_match(&c, &vols, false)).as_deref(),
            Some("labelled")
        );
    }

    #[test]
    fn prebound_volume_wins_even_when_delayed_and_over_smaller_ones() {
        let rwo = &["ReadWriteOnce"];
        let vols = vec![
            pv("small", "1Gi", rwo, json!({})),
            pv(
                "mine",
                "8Gi",
                rwo,
                json!({"spec": {"claimRef": {"name": "c", "namespace": "ns"}},
                                           "status": {"phase": "Bound"}}),
            ),
        ];
        let c = claim("1Gi", rwo, json!({}));
        assert_eq!(
            name(find_best_match(&c, &vols, false)).as_deref(),
            Some("mine")
        );
        assert_eq!(
            name(find_best_match(&c, &vols, true)).as_deref(),
            Some("mine")
        );
        // A claimRef with another claim's UID is not ours.
        let other_uid = vec![pv(
            "stale",
            "1Gi",
            rwo,
            json!({"spec": {"claimRef": {"name": "c", "namespace": "ns", "uid": "old"}}}),
        )];
        assert_eq!(find_best_match(&c, &other_uid, false), None);
        // Delayed binding takes nothing else.
        assert_eq!(find_best_match(&c, &vols[..1], true), None);
    }

    #[test]
    fn deleting_volumes_are_skipped() {
        let vols = vec![pv(
            "going",
            "1Gi",
            &["ReadWriteOnce"],
            json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}}),
        )];
        let c = claim("1Gi", &["ReadWriteOnce"], json!({}));
        assert_eq!(find_best_match(&c, &vols, false), None);
    }

    #[test]
    fn requested_volume_checks_name_the_mismatch() {
        let rwo = &["ReadWriteOnce"];
        let c = claim("2Gi", rwo, json!({}));
        let msg = |v: Arc<PersistentVolume>| check_volume_satisfies_claim(&v, &c).unwrap_err();
        assert_eq!(
            msg(pv("v", "1Gi", rwo, json!({}))),
            "requested PV is too small"
        );
        assert_eq!(
            msg(pv(
                "v",
                "2Gi",
                rwo,
                json!({"spec": {"storageClassName": "x"}})
            )),
            "storageClassName does not match"
        );
        assert_eq!(
            msg(pv(
                "v",
                "2Gi",
                rwo,
                json!({"spec": {"volumeMode": "Block"}})
            )),
            "incompatible volumeMode"
        );
        assert_eq!(
            msg(pv("v", "2Gi", &["ReadOnlyMany"], json!({}))),
            "incompatible accessMode"
        );
        assert!(check_volume_satisfies_claim(&pv("v", "2Gi", rwo, json!({})), &c).is_ok());
    }
}
