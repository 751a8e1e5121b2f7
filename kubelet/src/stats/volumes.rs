//! Pod volume stats: which of a pod's volumes report metrics, whether they count as
//! local ephemeral storage (upstream's `IsLocalEphemeralVolume`: emptyDir on disk,
//! configMap, gitRepo), and their usage measured with du and statvfs (`MetricsDu`).

use super::fs::{disk_usage, FsInfo};
use super::types::{PvcReference, Time, VolumeStats};
use k8s_openapi::api::core::v1::{Pod, Volume};
use std::path::Path;

/// How one volume of a pod is measured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeTarget {
    /// The volume's name in the pod spec.
    pub name: String,
    /// The plugin directory under `<pod dir>/volumes`, when known; `None` means any
    /// plugin directory holding a volume of that name (PVCs, whose plugin varies).
    pub plugin: Option<&'static str>,
    /// Counts toward the pod's ephemeral storage.
    pub local_ephemeral: bool,
    /// The claim behind the volume.
    pub pvc: Option<PvcReference>,
}

fn target(pod: &Pod, v: &Volume) -> Option<VolumeTarget> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let (plugin, local_ephemeral, pvc) = if let Some(e) = &v.empty_dir {
        let on_disk = e.medium.as_deref().unwrap_or("").is_empty();
        (Some("kubernetes.io~empty-dir"), on_disk, None)
    } else if v.config_map.is_some() {
        (Some("kubernetes.io~configmap"), true, None)
    } else if v.git_repo.is_some() {
        (Some("kubernetes.io~git-repo"), true, None)
    } else if v.secret.is_some() {
        (Some("kubernetes.io~secret"), false, None)
    } else if v.downward_api.is_some() {
        (Some("kubernetes.io~downward-api"), false, None)
    } else if v.projected.is_some() {
        (Some("kubernetes.io~projected"), false, None)
    } else if let Some(c) = &v.persistent_volume_claim {
        let pvc = PvcReference {
            name: c.claim_name.clone(),
            namespace: ns,
        };
        (None, false, Some(pvc))
    } else if v.ephemeral.is_some() {
        let pvc = PvcReference {
            name: format!(
                "{}-{}",
                pod.metadata.name.as_deref().unwrap_or_default(),
                v.name
            ),
            namespace: ns,
        };
        (None, false, Some(pvc))
    } else {
        // hostPath and the like report no metrics upstream.
        return None;
    };
    Some(VolumeTarget {
        name: v.name.clone(),
        plugin,
        local_ephemeral,
        pvc,
    })
}

/// The pod's volumes that report metrics.
pub fn targets(pod: &Pod) -> Vec<VolumeTarget> {
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| target(pod, v))
        .collect()
}

fn find_dir(pod_dir: &Path, t: &VolumeTarget) -> Option<std::path::PathBuf> {
    let volumes = pod_dir.join("volumes");
    match t.plugin {
        Some(p) => Some(volumes.join(p).join(&t.name)).filter(|d| d.exists()),
        None => std::fs::read_dir(&volumes)
            .ok()?
            .flatten()
            .map(|e| e.path().join(&t.name))
            .find(|d| d.exists()),
    }
}

/// Measures one volume under `pod_dir`; `None` when it is not set up.
pub fn measure(pod_dir: &Path, t: &VolumeTarget) -> Option<VolumeStats> {
    let dir = find_dir(pod_dir, t)?;
    let fs = FsInfo::of(&dir)?;
    let (used, inodes_used) = disk_usage(&dir).ok()?;
    let mut stats = fs.totals(Time::now());
    stats.used_bytes = Some(used);
    stats.inodes_used = Some(inodes_used);
    Some(VolumeStats {
        fs: stats,
        name: t.name.clone(),
        pvc_ref: t.pvc.clone(),
    })
}

/// A pod's measured volumes, split into local ephemeral and the others.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodVolumeStats {
    /// emptyDir on disk, configMap, gitRepo.
    pub ephemeral: Vec<VolumeStats>,
    /// The others (tmpfs-backed, claims).
    pub persistent: Vec<VolumeStats>,
}

/// Measures every volume of `pod` under `pod_dir`.
pub fn measure_pod(pod: &Pod, pod_dir: &Path) -> PodVolumeStats {
    let mut out = PodVolumeStats::default();
    for t in targets(pod) {
        if let Some(s) = measure(pod_dir, &t) {
            if t.local_ephemeral {
                out.ephemeral.push(s);
            } else {
                out.persistent.push(s);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "ns"},
            "spec": {"containers": [], "volumes": [
                {"name": "cache", "emptyDir": {}},
                {"name": "shm", "emptyDir": {"medium": "Memory"}},
                {"name": "cfg", "configMap": {"name": "c"}},
                {"name": "tok", "secret": {"secretName": "s"}},
                {"name": "data", "persistentVolumeClaim": {"claimName": "claim"}},
                {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}},
                {"name": "host", "hostPath": {"path": "/tmp"}}
            ]}
        }))
        .unwrap()
    }

    #[test]
    fn which_volumes_report_and_count_as_ephemeral() {
        let t = targets(&pod());
        let summary: Vec<(&str, bool, Option<&str>)> = t
            .iter()
            .map(|t| {
                (
                    t.name.as_str(),
                    t.local_ephemeral,
                    t.pvc.as_ref().map(|p| p.name.as_str()),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("cache", true, None),
                ("shm", false, None),
                ("cfg", true, None),
                ("tok", false, None),
                ("data", false, Some("claim")),
                ("scratch", false, Some("web-scratch")),
            ]
        );
    }

    #[test]
    fn measures_what_is_set_up() {
        let d = tempfile::tempdir().unwrap();
        let cache = d.path().join("volumes/kubernetes.io~empty-dir/cache");
        std::fs::create_dir_all(&cache).unwrap();
        std::fs::write(cache.join("blob"), vec![7u8; 100 * 1024]).unwrap();
        let data = d.path().join("volumes/kubernetes.io~csi/data");
        std::fs::create_dir_all(&data).unwrap();
        let s = measure_pod(&pod(), d.path());
        assert_eq!(s.ephemeral.len(), 1);
        let cache = &s.ephemeral[0];
        assert_eq!(cache.name, "cache");
        assert!(cache.fs.used_bytes.unwrap() >= 100 * 1024);
        assert_eq!(cache.fs.inodes_used, Some(2));
        assert!(cache.fs.capacity_bytes.unwrap() > 0);
        assert_eq!(s.persistent.len(), 1);
        assert_eq!(s.persistent[0].pvc_ref.as_ref().unwrap().name, "claim");
    }
}
