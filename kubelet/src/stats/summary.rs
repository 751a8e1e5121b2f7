//! Pure assembly of Summary parts from what was read: CRI's container stats, cgroup
//! readings, filesystem totals — following upstream's CRI stats provider with cAdvisor
//! (cgroup figures win over CRI's; pod figures come from the pod cgroup, else the sum of
//! its containers; ephemeral storage is rootfs + logs + local ephemeral volumes + etc-hosts).

use super::cgroup::CgroupSample;
use super::fs::FsInfo;
use super::types::{
    ContainerStats, CpuStats, FsStats, MemoryStats, PodReference, ProcessStats, SwapStats, Time,
    VolumeStats,
};
use k8s_cri::v1 as cri;
use std::collections::HashMap;

fn value(v: &Option<cri::UInt64Value>) -> Option<u64> {
    v.as_ref().map(|v| v.value)
}

/// CPU stats of a cgroup reading with the cached rate.
pub fn cpu_of(sample: &CgroupSample, nano_cores: Option<u64>) -> CpuStats {
    CpuStats {
        time: Time::at(sample.time),
        usage_nano_cores: nano_cores,
        usage_core_nano_seconds: sample.cpu_usage_ns,
    }
}

/// Memory stats of a cgroup reading; `limit_override` stands for the limit (the machine's
/// memory for the root cgroup, as cAdvisor reports it).
pub fn memory_of(sample: &CgroupSample, limit_override: Option<u64>) -> Option<MemoryStats> {
    let m = sample.memory?;
    let m = super::cgroup::MemorySample {
        limit: limit_override.or(m.limit),
        ..m
    };
    Some(MemoryStats {
        time: Time::at(sample.time),
        available_bytes: m.available(),
        usage_bytes: Some(m.usage),
        working_set_bytes: Some(m.working_set),
        rss_bytes: Some(m.rss),
        page_faults: Some(m.page_faults),
        major_page_faults: Some(m.major_page_faults),
    })
}

/// Swap stats of a cgroup reading.
pub fn swap_of(sample: &CgroupSample) -> Option<SwapStats> {
    let m = sample.memory?;
    Some(SwapStats {
        time: Time::at(sample.time),
        swap_available_bytes: None,
        swap_usage_bytes: Some(m.swap),
    })
}

/// CPU stats from CRI (when the container's cgroup could not be read).
pub fn cpu_from_cri(s: &cri::ContainerStats, nano_cores: Option<u64>) -> CpuStats {
    match &s.cpu {
        Some(c) => CpuStats {
            time: Time::from_unix_nanos(c.timestamp),
            usage_nano_cores: value(&c.usage_nano_cores).or(nano_cores),
            usage_core_nano_seconds: value(&c.usage_core_nano_seconds),
        },
        None => CpuStats {
            time: Time::now(),
            usage_nano_cores: Some(0),
            usage_core_nano_seconds: Some(0),
        },
    }
}

/// Memory stats from CRI (when the container's cgroup could not be read).
pub fn memory_from_cri(s: &cri::ContainerStats) -> MemoryStats {
    match &s.memory {
        Some(m) => MemoryStats {
            time: Time::from_unix_nanos(m.timestamp),
            available_bytes: value(&m.available_bytes),
            usage_bytes: value(&m.usage_bytes),
            working_set_bytes: value(&m.working_set_bytes),
            rss_bytes: value(&m.rss_bytes),
            page_faults: value(&m.page_faults),
            major_page_faults: value(&m.major_page_faults),
        },
        None => MemoryStats {
            time: Time::now(),
            usage_bytes: Some(0),
            working_set_bytes: Some(0),
            rss_bytes: Some(0),
            ..Default::default()
        },
    }
}

/// The writable layer's usage from CRI on top of its filesystem's totals.
pub fn rootfs_from_cri(s: &cri::ContainerStats, fs: Option<&FsInfo>) -> FsStats {
    let mut out = match fs {
        Some(fs) => fs.totals(Time::default()),
        None => FsStats::default(),
    };
    if let Some(w) = &s.writable_layer {
        // containerd leaves the timestamp unset until its snapshot usage is collected.
        out.time = if w.timestamp > 0 {
            Time::from_unix_nanos(w.timestamp)
        } else {
            Time::now()
        };
        out.used_bytes = value(&w.used_bytes);
        out.inodes_used = value(&w.inodes_used);
    }
    out
}

/// What is known about one running container.
#[derive(Debug, Clone, Default)]
pub struct ContainerInput {
    /// Name in the pod spec.
    pub name: String,
    /// CRI's creation time (Unix nanoseconds).
    pub created_at: i64,
    /// CRI's stats, if it had any.
    pub cri: Option<cri::ContainerStats>,
    /// The container's cgroup, if it could be read.
    pub cgroup: Option<CgroupSample>,
    /// The cached CPU rate.
    pub nano_cores: Option<u64>,
    /// The filesystem of the writable layer.
    pub image_fs: Option<FsInfo>,
    /// Usage of its log files.
    pub logs: Option<FsStats>,
}

/// A container's stats: cgroup figures when read (as cAdvisor's override CRI's), CRI's
/// otherwise; rootfs from CRI's writable layer; logs as measured.
pub fn container_stats(c: &ContainerInput, full: bool) -> ContainerStats {
    let empty = cri::ContainerStats::default();
    let cri_stats = c.cri.as_ref().unwrap_or(&empty);
    let (cpu, memory, swap) = match &c.cgroup {
        Some(s) => (
            cpu_of(s, c.nano_cores),
            memory_of(s, None).unwrap_or_else(|| memory_from_cri(cri_stats)),
            swap_of(s),
        ),
        None => (
            cpu_from_cri(cri_stats, c.nano_cores),
            memory_from_cri(cri_stats),
            None,
        ),
    };
    ContainerStats {
        name: c.name.clone(),
        start_time: Time::from_unix_nanos(c.created_at),
        cpu: Some(cpu),
        memory: Some(memory),
        rootfs: full.then(|| rootfs_from_cri(cri_stats, c.image_fs.as_ref())),
        logs: if full { c.logs.clone() } else { None },
        swap: swap.or_else(|| {
            Some(SwapStats {
                time: Time::now(),
                swap_usage_bytes: Some(0),
                swap_available_bytes: Some(0),
            })
        }),
    }
}

fn add(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a + b),
        (a, None) => a,
        (None, b) => b,
    }
}

/// Pod CPU and memory from the pod cgroup, else summed over its containers (upstream's
/// `addPodCPUMemoryStats`).
pub fn pod_cpu_memory(
    pod_cgroup: Option<&CgroupSample>,
    pod_nano_cores: Option<u64>,
    containers: &[ContainerStats],
) -> (Option<CpuStats>, Option<MemoryStats>) {
    if let Some(s) = pod_cgroup {
        return (Some(cpu_of(s, pod_nano_cores)), memory_of(s, None));
    }
    let mut cpu: Option<CpuStats> = None;
    let mut memory: Option<MemoryStats> = None;
    for c in containers {
        if let Some(cc) = &c.cpu {
            let p = cpu.get_or_insert_with(CpuStats::default);
            p.time = cc.time;
            p.usage_core_nano_seconds = Some(
                p.usage_core_nano_seconds.unwrap_or(0) + cc.usage_core_nano_seconds.unwrap_or(0),
            );
            p.usage_nano_cores =
                Some(p.usage_nano_cores.unwrap_or(0) + cc.usage_nano_cores.unwrap_or(0));
        }
        if let Some(cm) = &c.memory {
            let p = memory.get_or_insert_with(MemoryStats::default);
            let sum = |a: Option<u64>, b: Option<u64>| Some(a.unwrap_or(0) + b.unwrap_or(0));
            p.time = cm.time;
            p.available_bytes = sum(p.available_bytes, cm.available_bytes);
            p.usage_bytes = sum(p.usage_bytes, cm.usage_bytes);
            p.working_set_bytes = sum(p.working_set_bytes, cm.working_set_bytes);
            p.rss_bytes = sum(p.rss_bytes, cm.rss_bytes);
            p.page_faults = sum(p.page_faults, cm.page_faults);
            p.major_page_faults = sum(p.major_page_faults, cm.major_page_faults);
        }
    }
    (cpu, memory)
}

/// The pod's process count: the sum over its containers' cgroups.
pub fn process_stats(containers: &[ContainerInput]) -> Option<ProcessStats> {
    let counts: Vec<u64> = containers
        .iter()
        .filter_map(|c| c.cgroup.as_ref()?.processes)
        .collect();
    (!counts.is_empty()).then(|| ProcessStats {
        process_count: Some(counts.iter().sum()),
    })
}

fn add_usage(total: &mut FsStats, part: &FsStats, inodes: bool) {
    total.used_bytes = add(total.used_bytes, part.used_bytes);
    if inodes {
        total.inodes_used = add(total.inodes_used, part.inodes_used);
    }
    total.time = total.time.max(part.time);
}

/// The pod's ephemeral storage (upstream's `calcEphemeralStorage` for the CRI provider):
/// the root filesystem's totals plus the containers' rootfs and logs, the local ephemeral
/// volumes, the pod's log files and its etc-hosts.
pub fn ephemeral_storage(
    root_fs: &FsInfo,
    time: Time,
    containers: &[ContainerStats],
    ephemeral_volumes: &[VolumeStats],
    pod_logs: Option<&FsStats>,
    etc_hosts: Option<&FsStats>,
) -> FsStats {
    let mut total = root_fs.totals(time);
    for c in containers {
        if let Some(rootfs) = &c.rootfs {
            add_usage(&mut total, rootfs, true);
            if let Some(logs) = &c.logs {
                add_usage(&mut total, logs, true);
            }
        }
    }
    for v in ephemeral_volumes {
        add_usage(&mut total, &v.fs, true);
    }
    for extra in [pod_logs, etc_hosts].into_iter().flatten() {
        add_usage(&mut total, extra, true);
    }
    total
}

/// The pod of a sandbox.
pub fn pod_ref(s: &cri::PodSandbox) -> PodReference {
    let m = s.metadata.clone().unwrap_or_default();
    PodReference {
        name: m.name,
        namespace: m.namespace,
        uid: m.uid,
    }
}

/// The sandboxes to report: per pod name and namespace, the ready ones, else the newest
/// (upstream's `removeTerminatedPods`).
pub fn current_sandboxes(mut sandboxes: Vec<cri::PodSandbox>) -> Vec<cri::PodSandbox> {
    sandboxes.sort_by_key(|s| s.created_at);
    let mut by_pod: HashMap<(String, String), Vec<cri::PodSandbox>> = HashMap::new();
    for s in sandboxes {
        let r = pod_ref(&s);
        by_pod.entry((r.namespace, r.name)).or_default().push(s);
    }
    let mut out = Vec::new();
    for (_, mut group) in by_pod {
        if group.len() == 1 {
            out.append(&mut group);
            continue;
        }
        let ready: Vec<_> = group
            .iter()
            .filter(|s| s.state == cri::PodSandboxState::SandboxReady as i32)
            .cloned()
            .collect();
        if ready.is_empty() {
            out.extend(group.pop());
        } else {
            out.extend(ready);
        }
    }
    out.sort_by_key(|s| s.created_at);
    out
}

/// Only running containers count (upstream's `removeTerminatedContainers`).
pub fn running_containers(containers: Vec<cri::Container>) -> Vec<cri::Container> {
    containers
        .into_iter()
        .filter(|c| c.state == cri::ContainerState::ContainerRunning as i32)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::cgroup::MemorySample;
    use chrono::{DateTime, Utc};

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).unwrap()
    }

    fn sample(cpu: u64, ws: u64, limit: Option<u64>) -> CgroupSample {
        CgroupSample {
            time: t(100),
            cpu_usage_ns: Some(cpu),
            memory: Some(MemorySample {
                usage: ws + 10,
                working_set: ws,
                rss: ws / 2,
                page_faults: 5,
                major_page_faults: 1,
                swap: 0,
                limit,
            }),
            processes: Some(2),
        }
    }

    fn cri_stats(cpu: u64, ws: u64, used: u64) -> cri::ContainerStats {
        let v = |value| Some(cri::UInt64Value { value });
        cri::ContainerStats {
            cpu: Some(cri::CpuUsage {
                timestamp: 50_000_000_000,
                usage_core_nano_seconds: v(cpu),
                ..Default::default()
            }),
            memory: Some(cri::MemoryUsage {
                timestamp: 50_000_000_000,
                working_set_bytes: v(ws),
                ..Default::default()
            }),
            writable_layer: Some(cri::FilesystemUsage {
                timestamp: 60_000_000_000,
                used_bytes: v(used),
                inodes_used: v(3),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn cgroup_figures_win_over_cri() {
        let fs = FsInfo {
            capacity: 1000,
            available: 400,
            usage: 600,
            inodes: 50,
            inodes_free: 20,
        };
        let c = ContainerInput {
            name: "app".into(),
            created_at: 1_000_000_000,
            cri: Some(cri_stats(7, 8, 100)),
            cgroup: Some(sample(5_000, 4096, Some(8192))),
            nano_cores: Some(250_000_000),
            image_fs: Some(fs),
            logs: None,
        };
        let s = container_stats(&c, true);
        let cpu = s.cpu.unwrap();
        assert_eq!(cpu.usage_core_nano_seconds, Some(5_000));
        assert_eq!(cpu.usage_nano_cores, Some(250_000_000));
        let mem = s.memory.unwrap();
        assert_eq!(mem.working_set_bytes, Some(4096));
        assert_eq!(mem.available_bytes, Some(4096));
        let rootfs = s.rootfs.unwrap();
        assert_eq!(rootfs.used_bytes, Some(100));
        assert_eq!(rootfs.capacity_bytes, Some(1000));
        assert_eq!(rootfs.inodes_used, Some(3));
        assert_eq!(s.start_time, Time::from_unix_nanos(1_000_000_000));
        // Without a cgroup: CRI's figures.
        let s = container_stats(
            &ContainerInput {
                cgroup: None,
                ..c.clone()
            },
            false,
        );
        assert_eq!(s.cpu.unwrap().usage_core_nano_seconds, Some(7));
        assert_eq!(s.memory.unwrap().working_set_bytes, Some(8));
        assert!(s.rootfs.is_none());
    }

    #[test]
    fn pod_sums_containers_without_a_pod_cgroup() {
        let a = container_stats(
            &ContainerInput {
                cgroup: Some(sample(100, 10, None)),
                nano_cores: Some(3),
                ..Default::default()
            },
            false,
        );
        let b = container_stats(
            &ContainerInput {
                cgroup: Some(sample(200, 20, None)),
                nano_cores: None,
                ..Default::default()
            },
            false,
        );
        let (cpu, mem) = pod_cpu_memory(None, None, &[a.clone(), b.clone()]);
        let cpu = cpu.unwrap();
        assert_eq!(cpu.usage_core_nano_seconds, Some(300));
        assert_eq!(cpu.usage_nano_cores, Some(3));
        assert_eq!(mem.unwrap().working_set_bytes, Some(30));
        let pod = sample(1000, 500, None);
        let (cpu, mem) = pod_cpu_memory(Some(&pod), Some(9), &[a, b]);
        assert_eq!(cpu.unwrap().usage_core_nano_seconds, Some(1000));
        assert_eq!(mem.unwrap().working_set_bytes, Some(500));
    }

    #[test]
    fn ephemeral_storage_adds_every_local_part() {
        let fs = FsInfo {
            capacity: 1000,
            available: 400,
            usage: 600,
            inodes: 50,
            inodes_free: 20,
        };
        let used = |b, i| FsStats {
            time: Time::at(t(10)),
            used_bytes: Some(b),
            inodes_used: Some(i),
            ..Default::default()
        };
        let container = ContainerStats {
            rootfs: Some(used(100, 1)),
            logs: Some(used(10, 1)),
            ..Default::default()
        };
        let volume = VolumeStats {
            fs: FsStats {
                time: Time::at(t(20)),
                ..used(1000, 5)
            },
            name: "cache".into(),
            pvc_ref: None,
        };
        let e = ephemeral_storage(
            &fs,
            Time::at(t(5)),
            &[container],
            &[volume],
            Some(&used(1, 1)),
            Some(&used(4096, 1)),
        );
        assert_eq!(e.used_bytes, Some(100 + 10 + 1000 + 1 + 4096));
        assert_eq!(e.inodes_used, Some(9));
        assert_eq!(e.capacity_bytes, Some(1000));
        assert_eq!(e.time, Time::at(t(20)));
    }

    fn sandbox(name: &str, uid: &str, created: i64, ready: bool) -> cri::PodSandbox {
        cri::PodSandbox {
            id: format!("{name}-{created}"),
            metadata: Some(cri::PodSandboxMetadata {
                name: name.into(),
                namespace: "default".into(),
                uid: uid.into(),
                attempt: 0,
            }),
            state: if ready {
                cri::PodSandboxState::SandboxReady as i32
            } else {
                cri::PodSandboxState::SandboxNotready as i32
            },
            created_at: created,
            ..Default::default()
        }
    }

    #[test]
    fn terminated_sandboxes_are_dropped_when_a_newer_one_exists() {
        let kept = current_sandboxes(vec![
            sandbox("a", "1", 1, false),
            sandbox("a", "1", 2, true),
            sandbox("b", "2", 3, false),
            sandbox("c", "3", 4, false),
            sandbox("c", "3", 5, false),
        ]);
        let ids: Vec<_> = kept.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["a-2", "b-3", "c-5"]);
    }
}
