//! Disk usage of pods, for ranking them under disk pressure as upstream does: the
//! containers' writable layers (`rootfs`, from CRI container stats), their logs (under
//! `podLogsDir`) and the pod's local volumes (emptyDir and the other volumes under its
//! directory). Which parts count depends on the signal and on whether the image filesystem
//! is dedicated (its own device) — see [`measure`].

use super::threshold::Signal;
use crate::cri::labels::POD_UID;
use crate::cri::CriService;
use k8s_cri::v1 as cri;
use std::collections::HashMap;
use std::path::Path;

/// Which parts of a pod's disk usage count for a signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Measure {
    /// Containers' writable layers.
    pub rootfs: bool,
    /// Container logs.
    pub logs: bool,
    /// Local volumes (the pod directory).
    pub volumes: bool,
}

/// Upstream's choice: without a dedicated imagefs everything counts for both nodefs and
/// imagefs signals; with one, nodefs counts logs and volumes, imagefs writable layers.
pub fn measure(signal: Signal, dedicated_imagefs: bool) -> Measure {
    let all = Measure {
        rootfs: true,
        logs: true,
        volumes: true,
    };
    match (signal, dedicated_imagefs) {
        (_, false) => all,
        (Signal::ImageFsAvailable | Signal::ImageFsInodesFree, true) => Measure {
            rootfs: true,
            logs: false,
            volumes: false,
        },
        _ => Measure {
            rootfs: false,
            logs: true,
            volumes: true,
        },
    }
}

/// Bytes and inodes used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Bytes.
    pub bytes: i64,
    /// Inodes.
    pub inodes: i64,
}

impl std::ops::AddAssign for Usage {
    fn add_assign(&mut self, o: Usage) {
        self.bytes += o.bytes;
        self.inodes += o.inodes;
    }
}

/// Bytes and inodes under `dir` (symlinks are not followed; missing is zero).
pub fn dir_usage(dir: &Path) -> Usage {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Usage::default();
    };
    let mut u = Usage::default();
    for e in entries.filter_map(|e| e.ok()) {
        u.inodes += 1;
        match e.file_type() {
            Ok(t) if t.is_dir() => u += dir_usage(&e.path()),
            Ok(t) if t.is_file() => u.bytes += e.metadata().map(|m| m.len() as i64).unwrap_or(0),
            _ => {}
        }
    }
    u
}

/// Writable-layer usage of every container, by pod UID, from CRI's ListContainerStats.
pub async fn writable_layers(cri: &dyn CriService) -> HashMap<String, Usage> {
    let stats = cri
        .list_container_stats(cri::ListContainerStatsRequest { filter: None })
        .await
        .map(|r| r.stats)
        .unwrap_or_default();
    let mut out: HashMap<String, Usage> = HashMap::new();
    for s in stats {
        let Some(uid) = s
            .attributes
            .as_ref()
            .and_then(|a| a.labels.get(POD_UID))
            .cloned()
        else {
            continue;
        };
        let Some(w) = s.writable_layer else { continue };
        *out.entry(uid).or_default() += Usage {
            bytes: w.used_bytes.map_or(0, |v| v.value as i64),
            inodes: w.inodes_used.map_or(0, |v| v.value as i64),
        };
    }
    out
}

/// One pod's usage under `m`: its writable layers (from [`writable_layers`]), its log
/// directory and its pod directory.
pub fn pod_usage(m: Measure, rootfs: Option<&Usage>, logs_dir: &Path, pod_dir: &Path) -> Usage {
    let mut u = Usage::default();
    if m.rootfs {
        u += rootfs.copied().unwrap_or_default();
    }
    if m.logs {
        u += dir_usage(logs_dir);
    }
    if m.volumes {
        u += dir_usage(pod_dir);
    }
    u
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_the_parts_the_signal_measures() {
        let d = tempfile::tempdir().unwrap();
        let logs = d.path().join("logs");
        let pod = d.path().join("pod/volumes/kubernetes.io~empty-dir/x");
        std::fs::create_dir_all(logs.join("app")).unwrap();
        std::fs::create_dir_all(&pod).unwrap();
        std::fs::write(logs.join("app/0.log"), vec![0u8; 100]).unwrap();
        std::fs::write(pod.join("data"), vec![0u8; 1000]).unwrap();
        let layer = Usage {
            bytes: 10_000,
            inodes: 7,
        };
        let all = pod_usage(
            measure(Signal::NodeFsAvailable, false),
            Some(&layer),
            &logs,
            &d.path().join("pod"),
        );
        assert_eq!(all.bytes, 11_100);
        assert_eq!(all.inodes, 7 + 2 + 4);
        let image = pod_usage(
            measure(Signal::ImageFsAvailable, true),
            Some(&layer),
            &logs,
            &d.path().join("pod"),
        );
        assert_eq!(image, layer);
        let node = pod_usage(
            measure(Signal::NodeFsInodesFree, true),
            Some(&layer),
            &logs,
            &d.path().join("pod"),
        );
        assert_eq!(node.bytes, 1100);
    }
}
