//! `persistentVolumeClaim` (and generic `ephemeral`) volumes whose PersistentVolume the node serves without a CSI
//! driver: `hostPath` and `local`. The claim must be Bound (upstream's checks and messages),
//! the volume bound back to it; its path is bind-mounted into the pod's volume directory,
//! read-only when the pod's volume or the claim says so.

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};

/// The pvc-protection finalizer: a deleting claim that still has it is usable by pods
/// already running (upstream's check).
const PVC_PROTECTION: &str = "kubernetes.io/pvc-protection";

/// What to mount for a claim: the node path and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimMount {
    /// The PersistentVolume's name (the mount's directory name, as upstream's).
    pub volume: String,
    /// The plugin directory (`kubernetes.io~host-path` or `kubernetes.io~local-volume`).
    pub plugin: &'static str,
    /// The node path to bind-mount.
    pub path: PathBuf,
    /// hostPath's `type`, checked as a pod hostPath volume's ("" for none).
    pub host_path_type: String,
    /// Mount read-only.
    pub read_only: bool,
}

/// The name of the volume a claim is bound to, or upstream's error ("PVC is not bound", …)
/// prefixed with the claim.
pub fn bound_volume_name(
    ns: &str,
    name: &str,
    claim: Option<&PersistentVolumeClaim>,
) -> Result<String, String> {
    let wrap = |e: &str| format!("error processing PVC {ns}/{name}: {e}");
    let Some(claim) = claim else {
        return Err(wrap(&format!(
            "failed to fetch PVC from API server: persistentvolumeclaims {name:?} not found"
        )));
    };
    let protected = claim
        .metadata
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|x| x == PVC_PROTECTION));
    if claim.metadata.deletion_timestamp.is_some() && !protected {
        return Err(wrap("PVC is being deleted"));
    }
    if claim.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Bound") {
        return Err(wrap("PVC is not bound"));
    }
    match claim.spec.as_ref().and_then(|s| s.volume_name.as_deref()) {
        Some(v) if !v.is_empty() => Ok(v.to_string()),
        _ => Err(wrap("PVC has empty pvc.Spec.VolumeName")),
    }
}

/// For a generic ephemeral volume: the claim must be controlled by the pod (upstream's
/// `VolumeIsForPod`).
pub fn check_owned_by(pod: &Pod, claim: &PersistentVolumeClaim) -> Result<(), String> {
    let controlled = claim
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|r| r.controller == Some(true) && Some(&r.uid) == pod.metadata.uid.as_ref());
    if claim.metadata.namespace == pod.metadata.namespace && controlled {
        return Ok(());
    }
    Err(format!(
        "PVC {}/{} was not created for pod {}/{} (pod is not owner)",
        claim.metadata.namespace.as_deref().unwrap_or_default(),
        claim.metadata.name.as_deref().unwrap_or_default(),
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    ))
}

/// How to mount volume `name` for `claim`, or upstream's error when the volume is missing,
/// not bound back to the claim, or of a kind this kubelet cannot serve.
pub fn claim_mount(
    name: &str,
    pv: Option<&PersistentVolume>,
    claim: &PersistentVolumeClaim,
    pod_read_only: bool,
) -> Result<ClaimMount, String> {
    let Some(pv) = pv else {
        return Err(format!(
            "failed to fetch PV {name} from API server: persistentvolumes {name:?} not found"
        ));
    };
    let spec = pv.spec.clone().unwrap_or_default();
    let Some(claim_ref) = &spec.claim_ref else {
        return Err(format!(
            "found PV object {name} but it has a nil pv.Spec.ClaimRef indicating it is not yet bound to the claim"
        ));
    };
    if claim_ref.uid != claim.metadata.uid {
        return Err(format!(
            "found PV object {name} but its pv.Spec.ClaimRef.UID {} does not point to claim.UID {}",
            claim_ref.uid.as_deref().unwrap_or_default(),
            claim.metadata.uid.as_deref().unwrap_or_default()
        ));
    }
    let read_only = pod_read_only;
    if let Some(hp) = &spec.host_path {
        return Ok(ClaimMount {
            volume: name.to_string(),
            plugin: "kubernetes.io~host-path",
            path: PathBuf::from(&hp.path),
            host_path_type: hp.type_.clone().unwrap_or_default(),
            read_only,
        });
    }
    if let Some(local) = &spec.local {
        return Ok(ClaimMount {
            volume: name.to_string(),
            plugin: "kubernetes.io~local-volume",
            path: PathBuf::from(&local.path),
            host_path_type: String::new(),
            read_only,
        });
    }
    Err(format!(
        "PersistentVolume {name:?} has a volume source this kubelet cannot mount (only hostPath and local are supported without a CSI driver)"
    ))
}

/// Bind-mounts the claim's path at `target` (read-only when asked); an existing mount is
/// kept. A missing `local` path is an error, as upstream's (a local volume is never created).
pub fn mount(m: &ClaimMount, target: &Path) -> Result<(), String> {
    use nix::mount::MsFlags;
    let meta = std::fs::metadata(&m.path).map_err(|e| {
        format!(
            "path {:?} does not exist: {e}",
            m.path.display().to_string()
        )
    })?;
    if super::is_mountpoint(target) {
        return Ok(());
    }
    if meta.is_dir() {
        std::fs::create_dir_all(target).map_err(|e| e.to_string())?;
    } else {
        if let Some(p) = target.parent() {
            std::fs::create_dir_all(p).map_err(|e| e.to_string())?;
        }
        if !target.exists() {
            std::fs::write(target, b"").map_err(|e| e.to_string())?;
        }
    }
    let err = |e: nix::Error| {
        format!(
            "bind mount {} on {}: {e}",
            m.path.display(),
            target.display()
        )
    };
    nix::mount::mount(
        Some(&m.path),
        target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(err)?;
    if m.read_only {
        nix::mount::mount(
            None::<&str>,
            target,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None::<&str>,
        )
        .map_err(err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claim(
        phase: &str,
        volume: Option<&str>,
        extra_meta: serde_json::Value,
    ) -> PersistentVolumeClaim {
        let mut meta = json!({"name": "data", "namespace": "ns", "uid": "uid-1"});
        if let (Some(m), Some(e)) = (meta.as_object_mut(), extra_meta.as_object()) {
            m.extend(e.clone());
        }
        serde_json::from_value(json!({
            "metadata": meta, "spec": {"volumeName": volume}, "status": {"phase": phase}
        }))
        .unwrap()
    }

    fn pv(source: serde_json::Value, uid: Option<&str>) -> PersistentVolume {
        let claim_ref = uid.map(|u| json!({"name": "data", "namespace": "ns", "uid": u}));
        let mut spec = json!({"claimRef": claim_ref});
        spec.as_object_mut()
            .unwrap()
            .extend(source.as_object().unwrap().clone());
        serde_json::from_value(json!({"metadata": {"name": "pv1"}, "spec": spec})).unwrap()
    }

    #[test]
    fn only_bound_claims_are_mounted() {
        assert_eq!(
            bound_volume_name("ns", "data", Some(&claim("Pending", None, json!({})))).unwrap_err(),
            "error processing PVC ns/data: PVC is not bound"
        );
        assert_eq!(
            bound_volume_name("ns", "data", Some(&claim("Bound", None, json!({})))).unwrap_err(),
            "error processing PVC ns/data: PVC has empty pvc.Spec.VolumeName"
        );
        let deleting = json!({"deletionTimestamp": "2026-01-01T00:00:00Z"});
        assert_eq!(
            bound_volume_name(
                "ns",
                "data",
                Some(&claim("Bound", Some("pv1"), deleting.clone()))
            )
            .unwrap_err(),
            "error processing PVC ns/data: PVC is being deleted"
        );
        let mut protected = deleting;
        protected["finalizers"] = json!([PVC_PROTECTION]);
        assert_eq!(
            bound_volume_name("ns", "data", Some(&claim("Bound", Some("pv1"), protected))),
            Ok("pv1".to_string())
        );
        assert!(bound_volume_name("ns", "data", None)
            .unwrap_err()
            .contains("failed to fetch PVC from API server"));
    }

    #[test]
    fn ephemeral_claims_must_be_controlled_by_the_pod() {
        let pod: Pod = serde_json::from_value(
            json!({"metadata": {"name": "web", "namespace": "ns", "uid": "pod-uid"}}),
        )
        .unwrap();
        let owned = |uid: &str| {
            claim(
                "Bound",
                Some("pv1"),
                json!({"name": "web-scratch", "ownerReferences": [{"apiVersion": "v1",
                    "kind": "Pod", "name": "web", "uid": uid, "controller": true}]}),
            )
        };
        assert_eq!(check_owned_by(&pod, &owned("pod-uid")), Ok(()));
        assert_eq!(
            check_owned_by(&pod, &owned("other")).unwrap_err(),
            "PVC ns/web-scratch was not created for pod ns/web (pod is not owner)"
        );
    }

    #[test]
    fn volume_must_point_back_and_be_host_path_or_local() {
        let c = claim("Bound", Some("pv1"), json!({}));
        let local = pv(json!({"local": {"path": "/mnt/disk"}}), Some("uid-1"));
        let m = claim_mount("pv1", Some(&local), &c, true).unwrap();
        assert_eq!(m.plugin, "kubernetes.io~local-volume");
        assert_eq!(m.path, PathBuf::from("/mnt/disk"));
        assert!(m.read_only);
        let hp = pv(
            json!({"hostPath": {"path": "/srv", "type": "Directory"}}),
            Some("uid-1"),
        );
        let m = claim_mount("pv1", Some(&hp), &c, false).unwrap();
        assert_eq!(
            (m.plugin, m.host_path_type.as_str()),
            ("kubernetes.io~host-path", "Directory")
        );
        let unbound = pv(json!({"local": {"path": "/mnt/disk"}}), None);
        assert!(claim_mount("pv1", Some(&unbound), &c, false)
            .unwrap_err()
            .contains("nil pv.Spec.ClaimRef"));
        let other = pv(json!({"local": {"path": "/mnt/disk"}}), Some("uid-2"));
        assert!(claim_mount("pv1", Some(&other), &c, false)
            .unwrap_err()
            .contains("does not point to claim.UID uid-1"));
        let nfs = pv(json!({"nfs": {"server": "s", "path": "/"}}), Some("uid-1"));
        assert!(claim_mount("pv1", Some(&nfs), &c, false)
            .unwrap_err()
            .contains("only hostPath and local"));
        assert!(claim_mount("pv1", None, &c, false)
            .unwrap_err()
            .contains("failed to fetch PV pv1"));
    }
}
