//! Reading a cgroup's usage — CPU time, memory, process count — from cgroupfs (v1: one
//! directory per controller; v2: the unified tree), as cAdvisor reads them for upstream.

use super::cgroupfs::{count_procs, read_u64, CgroupFs};
use chrono::{DateTime, Utc};

/// One reading of a cgroup.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CgroupSample {
    /// When read.
    pub time: DateTime<Utc>,
    /// Cumulative CPU time in nanoseconds.
    pub cpu_usage_ns: Option<u64>,
    /// Memory.
    pub memory: Option<MemorySample>,
    /// Processes in the cgroup and its descendants (counted only when asked for: it
    /// walks the subtree).
    pub processes: Option<u64>,
}

/// Memory figures of a cgroup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemorySample {
    /// Total usage (incl. page cache).
    pub usage: u64,
    /// Usage minus inactive file pages.
    pub working_set: u64,
    /// Anonymous memory.
    pub rss: u64,
    /// Page faults.
    pub page_faults: u64,
    /// Major page faults.
    pub major_page_faults: u64,
    /// Swap in use.
    pub swap: u64,
    /// The limit, when there is one.
    pub limit: Option<u64>,
}

impl MemorySample {
    /// Limit minus working set, when limited (upstream's availableBytes).
    pub fn available(&self) -> Option<u64> {
        self.limit.map(|l| l.saturating_sub(self.working_set))
    }
}

/// Above this a memory limit is "unlimited" (the kernel rounds `-1` down to a page).
const UNLIMITED: u64 = 1 << 62;

impl MemorySample {
    /// The figures the summary keeps of a full reading (one parser per cgroup version,
    /// shared with `/metrics/cadvisor`), with the limit when there is one.
    fn of(m: &super::cadvisor::read::MemoryUsage, limit: Option<u64>) -> Self {
        MemorySample {
            usage: m.usage,
            working_set: m.working_set,
            rss: m.rss,
            page_faults: m.hierarchical_pgfault,
            major_page_faults: m.hierarchical_pgmajfault,
            swap: m.swap,
            limit: limit.filter(|l| *l < UNLIMITED),
        }
    }
}

/// Memory from v1 files: `memory.usage_in_bytes`, `memory.limit_in_bytes`, `memory.stat`.
pub fn parse_v1_memory(usage: u64, limit: u64, stat: &str) -> MemorySample {
    let m = super::cadvisor::read::parse_v1_memory(usage, 0, 0, stat);
    MemorySample::of(&m, Some(limit))
}

/// Memory from v2 files: `memory.current`, `memory.max` (`max` = unlimited), `memory.stat`.
pub fn parse_v2_memory(current: u64, max: &str, stat: &str) -> MemorySample {
    let m = super::cadvisor::read::parse_v2_memory(current, 0, "", stat);
    MemorySample::of(&m, max.trim().parse::<u64>().ok())
}

/// CPU time in nanoseconds from v2 `cpu.stat` (`usage_usec`).
pub fn parse_v2_cpu(stat: &str) -> Option<u64> {
    super::cadvisor::read::parse_v2_cpu(stat).map(|c| c.total_ns)
}

impl CgroupFs {
    /// Reads the cgroup at `path` (e.g. `/kubepods/burstable/pod<uid>`); `None` when it
    /// does not exist.
    pub fn sample(&self, path: &str) -> Option<CgroupSample> {
        if !self.exists(path) {
            return None;
        }
        let time = Utc::now();
        if self.is_v2() {
            let dir = self.controller_dir("", path);
            let stat = std::fs::read_to_string(dir.join("memory.stat")).unwrap_or_default();
            let max = std::fs::read_to_string(dir.join("memory.max")).unwrap_or_default();
            let memory = read_u64(&dir.join("memory.current")).map(|current| MemorySample {
                swap: read_u64(&dir.join("memory.swap.current")).unwrap_or(0),
                ..parse_v2_memory(current, &max, &stat)
            });
            return Some(CgroupSample {
                time,
                cpu_usage_ns: std::fs::read_to_string(dir.join("cpu.stat"))
                    .ok()
                    .and_then(|s| parse_v2_cpu(&s)),
                memory,
                processes: None,
            });
        }
        let mem = self.controller_dir("memory", path);
        let memory = read_u64(&mem.join("memory.usage_in_bytes")).map(|usage| {
            let limit = read_u64(&mem.join("memory.limit_in_bytes")).unwrap_or(u64::MAX);
            let stat = std::fs::read_to_string(mem.join("memory.stat")).unwrap_or_default();
            parse_v1_memory(usage, limit, &stat)
        });
        Some(CgroupSample {
            time,
            cpu_usage_ns: read_u64(&self.controller_dir("cpuacct", path).join("cpuacct.usage")),
            memory,
            processes: None,
        })
    }

    /// [`CgroupFs::sample`] with the processes of the cgroup's subtree counted.
    pub fn sample_with_processes(&self, path: &str) -> Option<CgroupSample> {
        let mut s = self.sample(path)?;
        s.processes = if self.is_v2() {
            count_procs(&self.controller_dir("", path))
        } else {
            let pids = self.controller_dir("pids", path);
            let dir = if pids.is_dir() {
                pids
            } else {
                self.controller_dir("cpu", path)
            };
            count_procs(&dir)
        };
        Some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::cgroupfs::cgroup_of;

    const V1_STAT: &str = "cache 8192\nrss 4096\ntotal_cache 1048576\ntotal_rss 2097152\n\
total_inactive_file 524288\ntotal_pgfault 300\ntotal_pgmajfault 2\n";

    #[test]
    fn v1_memory_uses_the_hierarchical_totals() {
        let m = parse_v1_memory(4 << 20, 16 << 20, V1_STAT);
        assert_eq!(m.usage, 4 << 20);
        assert_eq!(m.working_set, (4 << 20) - 524288);
        assert_eq!(m.rss, 2097152);
        assert_eq!(m.page_faults, 300);
        assert_eq!(m.major_page_faults, 2);
        assert_eq!(m.available(), Some((16 << 20) - m.working_set));
    }

    #[test]
    fn unlimited_memory_has_no_available_bytes() {
        let m = parse_v1_memory(100, 9223372036854771712, V1_STAT);
        assert_eq!(m.limit, None);
        assert_eq!(m.available(), None);
        // Inactive file pages above usage do not underflow.
        assert_eq!(m.working_set, 0);
    }

    #[test]
    fn v2_memory_and_cpu() {
        let stat = "anon 1000\nfile 5000\ninactive_file 3000\npgfault 7\npgmajfault 1\n";
        let m = parse_v2_memory(10_000, "max\n", stat);
        assert_eq!((m.working_set, m.rss, m.limit), (7000, 1000, None));
        assert_eq!(
            parse_v2_memory(10_000, "20000\n", stat).available(),
            Some(13000)
        );
        assert_eq!(
            parse_v2_cpu("usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n"),
            Some(1_500_000)
        );
        assert_eq!(parse_v2_cpu("nr_periods 0\n"), None);
    }

    #[test]
    fn process_cgroup_from_proc() {
        let text = "12:pids:/kubepods/podA\n4:memory:/kubepods/podA/c1\n2:cpu,cpuacct:/x\n0::/\n";
        assert_eq!(cgroup_of(text, false).as_deref(), Some("/kubepods/podA/c1"));
        assert_eq!(cgroup_of(text, true).as_deref(), Some("/"));
    }

    #[test]
    fn container_cgroups_under_systemd_slices_are_scopes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cgroup.controllers"), "cpu memory\n").unwrap();
        let pod = "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-podu_1.slice";
        let pod_dir = dir.path().join(pod.trim_start_matches('/'));
        for child in [
            "cri-containerd-abc.scope",
            "crio-conmon-def.scope",
            "crio-def.scope",
        ] {
            std::fs::create_dir_all(pod_dir.join(child)).unwrap();
        }
        let fs = CgroupFs::new(dir.path().to_path_buf());
        assert_eq!(
            fs.container(pod, "abc"),
            format!("{pod}/cri-containerd-abc.scope")
        );
        assert_eq!(fs.container(pod, "def"), format!("{pod}/crio-def.scope"));
        // Not there (yet): the cgroupfs spelling, which simply reads as absent.
        assert_eq!(fs.container(pod, "zzz"), format!("{pod}/zzz"));
    }

    #[test]
    fn reads_a_v1_tree() {
        let dir = tempfile::tempdir().unwrap();
        let fs = CgroupFs::new(dir.path().to_path_buf());
        assert!(fs.sample("/kubepods/podx").is_none());
        let mem = dir.path().join("memory/kubepods/podx");
        let cpu = dir.path().join("cpuacct/kubepods/podx");
        let pids = dir.path().join("pids/kubepods/podx");
        for d in [&mem, &cpu, &pids.join("c1")] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(mem.join("memory.usage_in_bytes"), "4194304\n").unwrap();
        std::fs::write(mem.join("memory.limit_in_bytes"), "9223372036854771712\n").unwrap();
        std::fs::write(mem.join("memory.stat"), V1_STAT).unwrap();
        std::fs::write(cpu.join("cpuacct.usage"), "123456789\n").unwrap();
        std::fs::write(pids.join("cgroup.procs"), "").unwrap();
        std::fs::write(pids.join("c1/cgroup.procs"), "10\n11\n").unwrap();
        assert_eq!(fs.sample("/kubepods/podx").unwrap().processes, None);
        let s = fs.sample_with_processes("/kubepods/podx").unwrap();
        assert_eq!(s.cpu_usage_ns, Some(123456789));
        assert_eq!(s.memory.unwrap().working_set, 4194304 - 524288);
        assert_eq!(s.processes, Some(2));
        assert_eq!(fs.first_pid("/kubepods/podx/c1"), Some(10));
        assert_eq!(fs.container("/kubepods/podx", "c1"), "/kubepods/podx/c1");
    }
}
