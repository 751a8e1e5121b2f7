//! Every decision of a claim sync, a volume sync and a reclaim.

use super::*;
use crate::storage::matching::tests_support::{claim, merge, pv};
use serde_json::{json, Value};

const RWO: &[&str] = &["ReadWriteOnce"];

fn class(name: &str, provisioner: &str, mode: &str, default: bool) -> Arc<StorageClass> {
    let mut v = json!({
        "metadata": {"name": name, "creationTimestamp": "2026-01-01T00:00:00Z"},
        "provisioner": provisioner, "volumeBindingMode": mode
    });
    if default {
        merge(
            &mut v,
            json!({"metadata": {"annotations": {super::super::classes::IS_DEFAULT_CLASS: "true"}}}),
        );
    }
    Arc::new(serde_json::from_value(v).unwrap())
}

fn pod(name: &str, node: Option<&str>) -> Arc<Pod> {
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {"nodeName": node, "containers": [],
                     "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": "c"}}]}
        }))
        .unwrap(),
    )
}

fn observed(volumes: Vec<Arc<PersistentVolume>>, classes: Vec<Arc<StorageClass>>) -> Observed {
    Observed {
        volumes,
        classes,
        pods: vec![],
    }
}

fn bound_claim(volume: &str) -> PersistentVolumeClaim {
    claim(
        "1Gi",
        RWO,
        json!({"metadata": {"annotations": {ANN_BIND_COMPLETED: "yes"}},
               "spec": {"volumeName": volume}, "status": {"phase": "Bound"}}),
    )
}

fn bound_pv(name: &str, uid: &str, extra: Value) -> Arc<PersistentVolume> {
    let mut v = json!({"spec": {"claimRef": {"name": "c", "namespace": "ns", "uid": uid}},
                       "status": {"phase": "Bound"}});
    merge(&mut v, extra);
    pv(name, "1Gi", RWO, v)
}

fn bound_name(step: ClaimStep) -> String {
    match step {
        ClaimStep::Bind(v) => v.metadata.name.clone().unwrap(),
        other => panic!("expected Bind, got {other:?}"),
    }
}

#[test]
fn unbound_claim_binds_the_best_match() {
    let o = observed(
        vec![
            pv("a", "5Gi", RWO, json!({})),
            pv("b", "2Gi", RWO, json!({})),
        ],
        vec![],
    );
    assert_eq!(
        bound_name(decide_claim(&claim("1Gi", RWO, json!({})), &o)),
        "b"
    );
}

#[test]
fn no_match_without_class_is_failed_binding_and_pending() {
    let o = observed(vec![], vec![]);
    let c = claim("1Gi", RWO, json!({"spec": {"storageClassName": ""}}));
    match decide_claim(&c, &o) {
        ClaimStep::Pending(Some(e)) => {
            assert_eq!(e.reason, "FailedBinding");
            assert!(!e.warning);
            assert_eq!(
                e.message,
                "no persistent volumes available for this claim and no storage class is set"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn default_class_is_assigned_only_to_claims_without_any_class() {
    let o = observed(vec![], vec![class("std", "ex.com/p", "Immediate", true)]);
    assert_eq!(
        decide_claim(&claim("1Gi", RWO, json!({})), &o),
        ClaimStep::AssignDefaultClass("std".into())
    );
    // An explicit "" opts out.
    let empty = claim("1Gi", RWO, json!({"spec": {"storageClassName": ""}}));
    assert!(matches!(
        decide_claim(&empty, &o),
        ClaimStep::Pending(Some(_))
    ));
    // A matching classless volume is bound before any default class is considered.
    let o = observed(
        vec![pv("v", "1Gi", RWO, json!({}))],
        vec![class("std", "ex.com/p", "Immediate", true)],
    );
    assert_eq!(
        bound_name(decide_claim(&claim("1Gi", RWO, json!({})), &o)),
        "v"
    );
}

#[test]
fn external_and_in_tree_provisioners() {
    let o = observed(
        vec![],
        vec![
            class("ext", "ex.com/p", "Immediate", false),
            class("local", "kubernetes.io/no-provisioner", "Immediate", false),
        ],
    );
    let c = claim("1Gi", RWO, json!({"spec": {"storageClassName": "ext"}}));
    assert_eq!(
        decide_claim(&c, &o),
        ClaimStep::ExternalProvisioning {
            provisioner: "ex.com/p".into()
        }
    );
    let c = claim("1Gi", RWO, json!({"spec": {"storageClassName": "local"}}));
    match decide_claim(&c, &o) {
        ClaimStep::EventOnly(e) => {
            assert_eq!(e.reason, "ProvisioningFailed");
            assert_eq!(
                e.message,
                "no volume plugin matched name: kubernetes.io/no-provisioner"
            );
        }
        other => panic!("{other:?}"),
    }
    let c = claim("1Gi", RWO, json!({"spec": {"storageClassName": "gone"}}));
    match decide_claim(&c, &o) {
        ClaimStep::EventOnly(e) => {
            assert_eq!(e.message, "storageclass.storage.k8s.io \"gone\" not found")
        }
        other => panic!("{other:?}"),
    }
    assert!(external_provisioning_event("ex.com/p").message.starts_with(
        "Waiting for a volume to be created either by the external provisioner 'ex.com/p'"
    ));
}

#[test]
fn wait_for_first_consumer_waits_for_the_selected_node() {
    let classes = vec![class("wffc", "ex.com/p", "WaitForFirstConsumer", false)];
    let free = pv(
        "v",
        "1Gi",
        RWO,
        json!({"spec": {"storageClassName": "wffc"}}),
    );
    let mut o = observed(vec![free], classes);
    let c = claim("1Gi", RWO, json!({"spec": {"storageClassName": "wffc"}}));
    match decide_claim(&c, &o) {
        ClaimStep::Pending(Some(e)) => {
            assert_eq!(e.reason, "WaitForFirstConsumer");
            assert_eq!(
                e.message,
                "waiting for first consumer to be created before binding"
            );
        }
        other => panic!("{other:?}"),
    }
    o.pods = vec![pod("p1", None), pod("p2", None), pod("running", Some("n"))];
    match decide_claim(&c, &o) {
        ClaimStep::Pending(Some(e)) => {
            assert_eq!(e.reason, "WaitForPodScheduled");
            assert_eq!(e.message, "waiting for pods p1,p2 to be scheduled");
        }
        other => panic!("{other:?}"),
    }
    o.pods.truncate(1);
    match decide_claim(&c, &o) {
        ClaimStep::Pending(Some(e)) => assert_eq!(e.message, "waiting for pod p1 to be scheduled"),
        other => panic!("{other:?}"),
    }
    // The scheduler picked a node and no volume is pre-bound: provisioning.
    let selected = claim(
        "1Gi",
        RWO,
        json!({"metadata": {"annotations": {ANN_SELECTED_NODE: "n"}},
               "spec": {"storageClassName": "wffc"}}),
    );
    assert!(matches!(
        decide_claim(&selected, &o),
        ClaimStep::ExternalProvisioning { .. }
    ));
    // The scheduler pre-bound a static volume: bind it.
    o.volumes = vec![pv(
        "picked",
        "1Gi",
        RWO,
        json!({"spec": {"storageClassName": "wffc", "claimRef": {"name": "c", "namespace": "ns"}}}),
    )];
    assert_eq!(bound_name(decide_claim(&selected, &o)), "picked");
}

#[test]
fn class_without_binding_mode_is_an_error() {
    let mut sc = (*class("odd", "ex.com/p", "Immediate", false)).clone();
    sc.volume_binding_mode = None;
    let o = observed(vec![], vec![Arc::new(sc)]);
    let c = claim("1Gi", RWO, json!({"spec": {"storageClassName": "odd"}}));
    assert!(
        matches!(decide_claim(&c, &o), ClaimStep::Fail(m, None) if m.contains("VolumeBindingMode"))
    );
}

#[test]
fn claim_naming_a_volume() {
    let want = |extra: Value| {
        claim(
            "1Gi",
            RWO,
            merge_into(json!({"spec": {"volumeName": "v"}}), extra),
        )
    };
    // Missing volume: Pending without event.
    assert_eq!(
        decide_claim(&want(json!({})), &observed(vec![], vec![])),
        ClaimStep::Pending(None)
    );
    // Free and fitting: bind (even if not Available: the user asked for it).
    let o = observed(vec![pv("v", "1Gi", RWO, json!({}))], vec![]);
    assert_eq!(bound_name(decide_claim(&want(json!({})), &o)), "v");
    // Free but too small: VolumeMismatch, Pending.
    let o = observed(vec![pv("v", "1Mi", RWO, json!({}))], vec![]);
    match decide_claim(&want(json!({})), &o) {
        ClaimStep::Pending(Some(e)) => {
            assert_eq!(e.reason, "VolumeMismatch");
            assert_eq!(
                e.message,
                "Cannot bind to requested volume \"v\": requested PV is too small"
            );
        }
        other => panic!("{other:?}"),
    }
    // Pre-bound to this claim (by name): finish the binding.
    let o = observed(
        vec![pv(
            "v",
            "1Gi",
            RWO,
            json!({"spec": {"claimRef": {"name": "c", "namespace": "ns"}}}),
        )],
        vec![],
    );
    assert_eq!(bound_name(decide_claim(&want(json!({})), &o)), "v");
    // Bound to another claim: FailedBinding; an error when the controller had bound it.
    let o = observed(
        vec![pv(
            "v",
            "1Gi",
            RWO,
            json!({"spec": {"claimRef": {"name": "x", "namespace": "ns", "uid": "ux"}}}),
        )],
        vec![],
    );
    match decide_claim(&want(json!({})), &o) {
        ClaimStep::Pending(Some(e)) => {
            assert_eq!(e.reason, "FailedBinding");
            assert_eq!(
                e.message,
                "volume \"v\" already bound to a different claim."
            );
        }
        other => panic!("{other:?}"),
    }
    let by_ctrl = want(json!({"metadata": {"annotations": {ANN_BOUND_BY_CONTROLLER: "yes"}}}));
    assert!(matches!(
        decide_claim(&by_ctrl, &o),
        ClaimStep::Fail(_, Some(_))
    ));
}

fn merge_into(mut base: Value, extra: Value) -> Value {
    merge(&mut base, extra);
    base
}

#[test]
fn bound_claims_stay_bound_or_are_lost() {
    let c = bound_claim("v");
    let o = observed(vec![bound_pv("v", "uid-c", json!({}))], vec![]);
    assert_eq!(bound_name(decide_claim(&c, &o)), "v");
    // Volume came unbound: bind again.
    let o = observed(vec![pv("v", "1Gi", RWO, json!({}))], vec![]);
    assert_eq!(bound_name(decide_claim(&c, &o)), "v");
    // Volume gone.
    match decide_claim(&c, &observed(vec![], vec![])) {
        ClaimStep::Lost(e) => {
            assert_eq!(e.reason, "ClaimLost");
            assert_eq!(
                e.message,
                "Bound claim has lost its PersistentVolume. Data on the volume is lost!"
            );
        }
        other => panic!("{other:?}"),
    }
    // volumeName removed.
    let mut no_name = bound_claim("v");
    no_name.spec.as_mut().unwrap().volume_name = None;
    match decide_claim(&no_name, &o) {
        ClaimStep::Lost(e) => assert!(e.message.contains("lost reference")),
        other => panic!("{other:?}"),
    }
    // Volume bound to another claim UID.
    let o = observed(vec![bound_pv("v", "other", json!({}))], vec![]);
    match decide_claim(&c, &o) {
        ClaimStep::Lost(e) => assert_eq!(e.reason, "ClaimMisbound"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn volume_phases() {
    assert_eq!(
        decide_volume(&pv("v", "1Gi", RWO, json!({})), None),
        VolumeStep::Phase("Available")
    );
    let pre = pv(
        "v",
        "1Gi",
        RWO,
        json!({"spec": {"claimRef": {"name": "c", "namespace": "ns"}}}),
    );
    assert_eq!(decide_volume(&pre, None), VolumeStep::Phase("Available"));
    let v = bound_pv("v", "uid-c", json!({}));
    assert_eq!(
        decide_volume(&v, Some(&bound_claim("v"))),
        VolumeStep::Phase("Bound")
    );
}

#[test]
fn volume_whose_claim_is_gone_is_released() {
    assert_eq!(
        decide_volume(&bound_pv("v", "uid-c", json!({})), None),
        VolumeStep::Release
    );
}

#[test]
fn half_bound_volume_syncs_its_claim_or_warns_on_volume_mode() {
    let v = bound_pv("v", "uid-c", json!({}));
    let pending = claim("1Gi", RWO, json!({}));
    assert_eq!(
        decide_volume(&v, Some(&pending)),
        VolumeStep::SyncClaim("ns".into(), "c".into())
    );
    let block = claim("1Gi", RWO, json!({"spec": {"volumeMode": "Block"}}));
    match decide_volume(&v, Some(&block)) {
        VolumeStep::VolumeModeMismatch {
            volume_event,
            claim_event,
        } => {
            assert_eq!(volume_event.reason, "VolumeMismatch");
            assert!(claim_event.message.contains("\"v\""));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn claim_bound_elsewhere() {
    let elsewhere = bound_claim("other");
    let provisioned = bound_pv(
        "v",
        "uid-c",
        json!({"metadata": {"annotations": {ANN_DYNAMICALLY_PROVISIONED: "ex.com/p"}},
               "spec": {"persistentVolumeReclaimPolicy": "Delete"}}),
    );
    assert_eq!(
        decide_volume(&provisioned, Some(&elsewhere)),
        VolumeStep::Release
    );
    let static_pv = bound_pv("v", "uid-c", json!({}));
    assert_eq!(
        decide_volume(&static_pv, Some(&elsewhere)),
        VolumeStep::Unbind
    );
}

#[test]
fn released_means_claim_gone_or_elsewhere() {
    let v = bound_pv("v", "uid-c", json!({}));
    assert!(is_volume_released(&v, None));
    assert!(!is_volume_released(&v, Some(&bound_claim("v"))));
    assert!(is_volume_released(&v, Some(&bound_claim("other"))));
    let mut new_claim = bound_claim("v");
    new_claim.metadata.uid = Some("new".into());
    assert!(is_volume_released(&v, Some(&new_claim)));
    let pre = pv(
        "v",
        "1Gi",
        RWO,
        json!({"spec": {"claimRef": {"name": "c", "namespace": "ns"}}}),
    );
    assert!(!is_volume_released(&pre, None));
}

fn with_policy(policy: &str, extra: Value) -> Arc<PersistentVolume> {
    bound_pv(
        "v",
        "uid-c",
        merge_into(
            json!({"spec": {"persistentVolumeReclaimPolicy": policy}}),
            extra,
        ),
    )
}

fn failed(r: Reclaim) -> Event {
    match r {
        Reclaim::Failed(e) => e,
        other => panic!("expected Failed, got {other:?}"),
    }
}

#[test]
fn reclaim_policies() {
    assert_eq!(
        decide_reclaim(&with_policy("Retain", json!({})), &[]),
        Reclaim::Nothing
    );
    // External provisioner named by the volume, or a CSI volume: hand-off.
    let ext = with_policy(
        "Delete",
        json!({"metadata": {"annotations": {ANN_DYNAMICALLY_PROVISIONED: "ex.com/p"}}}),
    );
    assert_eq!(decide_reclaim(&ext, &[]), Reclaim::External);
    let csi = with_policy(
        "Delete",
        json!({"spec": {"hostPath": null, "csi": {"driver": "d", "volumeHandle": "h"}}}),
    );
    assert_eq!(decide_reclaim(&csi, &[]), Reclaim::External);
    let migrated = with_policy(
        "Delete",
        json!({"metadata": {"annotations": {ANN_MIGRATED_TO: "d"}}}),
    );
    assert_eq!(decide_reclaim(&migrated, &[]), Reclaim::Nothing);
    // hostPath: /tmp/ paths only, as upstream's deleter.
    assert_eq!(
        decide_reclaim(&with_policy("Delete", json!({})), &[]),
        Reclaim::DeleteHostPath("/tmp/v".into())
    );
    let e = failed(decide_reclaim(
        &with_policy("Delete", json!({"spec": {"hostPath": {"path": "/data/v"}}})),
        &[],
    ));
    assert_eq!(e.reason, "VolumeFailedDelete");
    assert_eq!(
        e.message,
        "host_path deleter only supports /tmp/.+ but received provided /data/v"
    );
    // A local volume has no deleter.
    let e = failed(decide_reclaim(
        &with_policy(
            "Delete",
            json!({"spec": {"hostPath": null, "local": {"path": "/mnt/x"}}}),
        ),
        &[],
    ));
    assert_eq!(
        e.message,
        "error getting deleter volume plugin for volume \"v\": no volume plugin matched"
    );
    let e = failed(decide_reclaim(
        &with_policy(
            "Delete",
            json!({"metadata": {"annotations": {ANN_DYNAMICALLY_PROVISIONED: "kubernetes.io/gce-pd"}}}),
        ),
        &[],
    ));
    assert_eq!(
        e.message,
        "no volume plugin matched name: kubernetes.io/gce-pd"
    );
    // Recycle: deprecated, no recycler; pods still using the claim come first.
    let e = failed(decide_reclaim(&with_policy("Recycle", json!({})), &[]));
    assert_eq!(
        (e.reason, e.message.as_str()),
        (
            "VolumeFailedRecycle",
            "No recycler plugin found for the volume!"
        )
    );
    match decide_reclaim(&with_policy("Recycle", json!({})), &["ns/p".into()]) {
        Reclaim::InUse(e) => assert_eq!(e.message, "Volume is used by pods: ns/p"),
        other => panic!("{other:?}"),
    }
    let e = failed(decide_reclaim(&with_policy("Bogus", json!({})), &[]));
    assert_eq!(e.reason, "VolumeUnknownReclaimPolicy");
}
