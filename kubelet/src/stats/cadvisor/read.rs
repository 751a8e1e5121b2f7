//! A cgroup's figures as cAdvisor's libcontainer handler reads them: CPU time (total, user,
//! system, CFS throttling), memory (usage, peak, cache, RSS, mapped files, swap, failures)
//! and the spec (shares, CFS quota and period, memory limits). cgroup v1 reads one
//! directory per controller; v2 the unified directory.

use crate::stats::cgroupfs::{read_u64, CgroupFs};
use chrono::{DateTime, Utc};
use std::path::Path;

/// Clock ticks per second of `cpuacct.stat` (runc's `GetClockTicks`: USER_HZ is 100 on
/// every Linux architecture Kubernetes runs on).
const CLOCK_TICKS: u64 = 100;

/// Above this a memory limit means "unlimited" (cAdvisor's `maxMemorySize`; the kernel
/// rounds `-1` down to a page).
pub const UNLIMITED: u64 = 1 << 62;

/// CPU time of a cgroup, in nanoseconds, and its CFS throttling.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuUsage {
    /// Total CPU time.
    pub total_ns: u64,
    /// Time in user mode.
    pub user_ns: u64,
    /// Time in kernel mode.
    pub system_ns: u64,
    /// Elapsed CFS enforcement periods.
    pub periods: u64,
    /// Periods in which the cgroup was throttled.
    pub throttled_periods: u64,
    /// Total time throttled.
    pub throttled_ns: u64,
}

/// Memory of a cgroup, in bytes (hierarchical figures, as cAdvisor takes `total_*`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryUsage {
    /// Current usage, page cache included.
    pub usage: u64,
    /// Highest usage recorded.
    pub max_usage: u64,
    /// Usage minus inactive file pages.
    pub working_set: u64,
    /// Anonymous memory.
    pub rss: u64,
    /// Page cache.
    pub cache: u64,
    /// Swap in use.
    pub swap: u64,
    /// Memory-mapped files.
    pub mapped_file: u64,
    /// Times usage hit the limit.
    pub failcnt: u64,
    /// Kernel memory (v1 `memory.kmem.usage_in_bytes`; v2 `kernel` of `memory.stat`).
    pub kernel: u64,
    /// Active file pages.
    pub active_file: u64,
    /// Inactive file pages.
    pub inactive_file: u64,
    /// Page faults in this cgroup itself.
    pub pgfault: u64,
    /// Major page faults in this cgroup itself.
    pub pgmajfault: u64,
    /// Page faults in the cgroup and its descendants.
    pub hierarchical_pgfault: u64,
    /// Major page faults in the cgroup and its descendants.
    pub hierarchical_pgmajfault: u64,
}

/// Processes and threads of a cgroup and its descendants.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcessUsage {
    /// Processes.
    pub processes: u64,
    /// Threads (`pids.current`).
    pub threads: u64,
    /// The thread limit (`pids.max`); 0 when unlimited.
    pub threads_max: u64,
}

/// One reading of a cgroup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CgroupUsage {
    /// When read.
    pub time: DateTime<Utc>,
    /// CPU, when the CPU controllers could be read.
    pub cpu: Option<CpuUsage>,
    /// Memory, when the memory controller could be read.
    pub memory: Option<MemoryUsage>,
    /// Processes, when the pids controller could be read.
    pub processes: Option<ProcessUsage>,
    /// OOM kills in the cgroup (`oom_kill` of `memory.oom_control` or `memory.events`).
    pub oom_kills: Option<u64>,
}

/// CPU spec of a cgroup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuSpec {
    /// `cpu.shares` (v2: the weight converted back to shares).
    pub shares: u64,
    /// CFS period in microseconds.
    pub period: u64,
    /// CFS quota in microseconds; `None` when unlimited.
    pub quota: Option<u64>,
}

/// Memory spec of a cgroup, in bytes as the kernel reports them (huge = unlimited).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemorySpec {
    /// The hard limit.
    pub limit: u64,
    /// Memory plus swap limit (v1) or swap limit (v2); 0 when not accounted.
    pub swap_limit: u64,
    /// The soft limit (v1) or `memory.min` (v2).
    pub reservation: u64,
}

/// What a cgroup is configured with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CgroupSpec {
    /// CPU, when the cgroup has the CPU controller.
    pub cpu: Option<CpuSpec>,
    /// Memory, when the cgroup has the memory controller.
    pub memory: Option<MemorySpec>,
}

/// The value of `key` in a flat-keyed file (`memory.stat`, `cpu.stat`, `cpuacct.stat`).
fn value(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(' ')?;
            (k == key).then(|| v.trim().parse().ok()).flatten()
        })
        .unwrap_or(0)
}

/// User and system time in nanoseconds from v1 `cpuacct.stat` (clock ticks).
pub fn parse_cpuacct_stat(text: &str) -> (u64, u64) {
    let ns = |ticks: u64| ticks * (1_000_000_000 / CLOCK_TICKS);
    (ns(value(text, "user")), ns(value(text, "system")))
}

/// CPU usage from v1 `cpuacct.usage`, `cpuacct.stat` and `cpu.stat`.
pub fn parse_v1_cpu(usage_ns: u64, cpuacct_stat: &str, cpu_stat: &str) -> CpuUsage {
    let (user_ns, system_ns) = parse_cpuacct_stat(cpuacct_stat);
    CpuUsage {
        total_ns: usage_ns,
        user_ns,
        system_ns,
        periods: value(cpu_stat, "nr_periods"),
        throttled_periods: value(cpu_stat, "nr_throttled"),
        throttled_ns: value(cpu_stat, "throttled_time"),
    }
}

/// CPU usage from v2 `cpu.stat` (microseconds); `None` without `usage_usec`.
pub fn parse_v2_cpu(cpu_stat: &str) -> Option<CpuUsage> {
    if !cpu_stat.lines().any(|l| l.starts_with("usage_usec ")) {
        return None;
    }
    let ns = |k| value(cpu_stat, k) * 1000;
    Some(CpuUsage {
        total_ns: ns("usage_usec"),
        user_ns: ns("user_usec"),
        system_ns: ns("system_usec"),
        periods: value(cpu_stat, "nr_periods"),
        throttled_periods: value(cpu_stat, "nr_throttled"),
        throttled_ns: ns("throttled_usec"),
    })
}

/// Memory from v1 `memory.usage_in_bytes`, `memory.max_usage_in_bytes`,
/// `memory.failcnt` and `memory.stat`.
pub fn parse_v1_memory(usage: u64, max_usage: u64, failcnt: u64, stat: &str) -> MemoryUsage {
    let inactive_file = value(stat, "total_inactive_file");
    MemoryUsage {
        usage,
        max_usage,
        working_set: usage.saturating_sub(inactive_file),
        rss: value(stat, "total_rss"),
        cache: value(stat, "total_cache"),
        swap: value(stat, "total_swap"),
        mapped_file: value(stat, "total_mapped_file"),
        failcnt,
        // Read apart, from `memory.kmem.usage_in_bytes`.
        kernel: 0,
        active_file: value(stat, "total_active_file"),
        inactive_file,
        pgfault: value(stat, "pgfault"),
        pgmajfault: value(stat, "pgmajfault"),
        hierarchical_pgfault: value(stat, "total_pgfault"),
        hierarchical_pgmajfault: value(stat, "total_pgmajfault"),
    }
}

/// Memory from v2 `memory.current`, `memory.peak` (0 when absent), `memory.events`
/// (`max` counts as failures) and `memory.stat`.
pub fn parse_v2_memory(current: u64, peak: u64, events: &str, stat: &str) -> MemoryUsage {
    let inactive_file = value(stat, "inactive_file");
    MemoryUsage {
        usage: current,
        max_usage: peak,
        working_set: current.saturating_sub(inactive_file),
        rss: value(stat, "anon"),
        cache: value(stat, "file"),
        swap: 0,
        mapped_file: value(stat, "file_mapped"),
        failcnt: value(events, "max"),
        kernel: value(stat, "kernel"),
        active_file: value(stat, "active_file"),
        inactive_file,
        pgfault: value(stat, "pgfault"),
        pgmajfault: value(stat, "pgmajfault"),
        hierarchical_pgfault: value(stat, "pgfault"),
        hierarchical_pgmajfault: value(stat, "pgmajfault"),
    }
}

/// CPU spec from v1 `cpu.shares`, `cpu.cfs_period_us` and `cpu.cfs_quota_us` (`-1` =
/// no quota).
pub fn parse_v1_cpu_spec(shares: u64, period: u64, quota: &str) -> CpuSpec {
    CpuSpec {
        shares,
        period,
        quota: quota.trim().parse::<u64>().ok(),
    }
}

/// CPU spec from v2 `cpu.weight` and `cpu.max` (`<quota|max> <period>`), the weight
/// mapped back to shares as cAdvisor does.
pub fn parse_v2_cpu_spec(weight: u64, max: &str) -> CpuSpec {
    let mut parts = max.split_whitespace();
    let quota = parts.next().and_then(|q| q.parse::<u64>().ok());
    let period = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let shares = if (1..=10000).contains(&weight) {
        2 + ((weight - 1) * 262142) / 9999
    } else {
        0
    };
    CpuSpec {
        shares,
        period,
        quota,
    }
}

/// `pids.max`: a number, or `max` (unlimited, 0 as cAdvisor reports it).
pub fn parse_pids_max(text: &str) -> u64 {
    text.trim().parse().unwrap_or(0)
}

/// The `oom_kill` count of `memory.oom_control` (v1) or `memory.events` (v2).
pub fn parse_oom_kills(text: &str) -> Option<u64> {
    text.lines()
        .any(|l| l.starts_with("oom_kill "))
        .then(|| value(text, "oom_kill"))
}

/// Processes and threads from the pids directory `dir`.
fn read_processes(dir: &Path) -> Option<ProcessUsage> {
    Some(ProcessUsage {
        threads: read_u64(&dir.join("pids.current"))?,
        threads_max: parse_pids_max(&read_string(&dir.join("pids.max")).unwrap_or_default()),
        processes: crate::stats::cgroupfs::count_procs(dir).unwrap_or(0),
    })
}

fn read_string(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok()
}

/// A v2 memory file: a number, or `max` (unlimited, reported as `u64::MAX`).
fn read_v2_limit(p: &Path) -> u64 {
    match read_string(p) {
        Some(s) if s.trim() == "max" => u64::MAX,
        Some(s) => s.trim().parse().unwrap_or(0),
        None => 0,
    }
}

/// Reads the spec and usage of the cgroup at `path`; `None` when it does not exist.
pub fn read(fs: &CgroupFs, path: &str) -> Option<(CgroupSpec, CgroupUsage)> {
    if !fs.exists(path) {
        return None;
    }
    let time = Utc::now();
    if fs.is_v2() {
        let dir = fs.controller_dir("", path);
        let f = |name: &str| dir.join(name);
        let cpu_stat = read_string(&f("cpu.stat"));
        let spec = CgroupSpec {
            cpu: cpu_stat.as_ref().map(|_| {
                parse_v2_cpu_spec(
                    read_u64(&f("cpu.weight")).unwrap_or(0),
                    &read_string(&f("cpu.max")).unwrap_or_default(),
                )
            }),
            memory: f("memory.max").exists().then(|| MemorySpec {
                limit: read_v2_limit(&f("memory.max")),
                swap_limit: read_v2_limit(&f("memory.swap.max")),
                reservation: read_v2_limit(&f("memory.min")),
            }),
        };
        let memory = read_u64(&f("memory.current")).map(|current| MemoryUsage {
            swap: read_u64(&f("memory.swap.current")).unwrap_or(0),
            ..parse_v2_memory(
                current,
                read_u64(&f("memory.peak")).unwrap_or(0),
                &read_string(&f("memory.events")).unwrap_or_default(),
                &read_string(&f("memory.stat")).unwrap_or_default(),
            )
        });
        let usage = CgroupUsage {
            time,
            cpu: cpu_stat.as_deref().and_then(parse_v2_cpu),
            memory,
            processes: read_processes(&dir),
            oom_kills: read_string(&f("memory.events")).and_then(|t| parse_oom_kills(&t)),
        };
        return Some((spec, usage));
    }
    let cpu = fs.controller_dir("cpu", path);
    let cpuacct = fs.controller_dir("cpuacct", path);
    let mem = fs.controller_dir("memory", path);
    let spec = CgroupSpec {
        cpu: cpu.is_dir().then(|| {
            parse_v1_cpu_spec(
                read_u64(&cpu.join("cpu.shares")).unwrap_or(0),
                read_u64(&cpu.join("cpu.cfs_period_us")).unwrap_or(0),
                &read_string(&cpu.join("cpu.cfs_quota_us")).unwrap_or_default(),
            )
        }),
        memory: mem.is_dir().then(|| MemorySpec {
            limit: read_u64(&mem.join("memory.limit_in_bytes")).unwrap_or(0),
            swap_limit: read_u64(&mem.join("memory.memsw.limit_in_bytes")).unwrap_or(0),
            reservation: read_u64(&mem.join("memory.soft_limit_in_bytes")).unwrap_or(0),
        }),
    };
    let usage = CgroupUsage {
        time,
        cpu: read_u64(&cpuacct.join("cpuacct.usage")).map(|total| {
            parse_v1_cpu(
                total,
                &read_string(&cpuacct.join("cpuacct.stat")).unwrap_or_default(),
                &read_string(&cpu.join("cpu.stat")).unwrap_or_default(),
            )
        }),
        memory: read_u64(&mem.join("memory.usage_in_bytes")).map(|usage| MemoryUsage {
            kernel: read_u64(&mem.join("memory.kmem.usage_in_bytes")).unwrap_or(0),
            ..parse_v1_memory(
                usage,
                read_u64(&mem.join("memory.max_usage_in_bytes")).unwrap_or(0),
                read_u64(&mem.join("memory.failcnt")).unwrap_or(0),
                &read_string(&mem.join("memory.stat")).unwrap_or_default(),
            )
        }),
        processes: read_processes(&fs.controller_dir("pids", path)),
        oom_kills: read_string(&mem.join("memory.oom_control")).and_then(|t| parse_oom_kills(&t)),
    };
    Some((spec, usage))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_cpu_time_and_throttling() {
        let c = parse_v1_cpu(
            2_500_000_000,
            "user 150\nsystem 25\n",
            "nr_periods 40\nnr_throttled 12\nthrottled_time 987654321\n",
        );
        assert_eq!(c.total_ns, 2_500_000_000);
        assert_eq!((c.user_ns, c.system_ns), (1_500_000_000, 250_000_000));
        assert_eq!(
            (c.periods, c.throttled_periods, c.throttled_ns),
            (40, 12, 987654321)
        );
    }

    #[test]
    fn v2_cpu_time_in_microseconds() {
        let c = parse_v2_cpu(
            "usage_usec 3000\nuser_usec 2000\nsystem_usec 1000\nnr_periods 5\nnr_throttled 2\nthrottled_usec 70\n",
        )
        .unwrap();
        assert_eq!(
            (c.total_ns, c.user_ns, c.system_ns),
            (3_000_000, 2_000_000, 1_000_000)
        );
        assert_eq!(
            (c.periods, c.throttled_periods, c.throttled_ns),
            (5, 2, 70_000)
        );
        assert_eq!(parse_v2_cpu("nr_periods 1\n"), None);
    }

    #[test]
    fn v1_memory_takes_the_hierarchical_totals() {
        let stat = "cache 1\nrss 2\npgfault 30\npgmajfault 3\ntotal_cache 4096\ntotal_rss 8192\n\
total_mapped_file 1024\ntotal_swap 0\ntotal_active_file 512\ntotal_inactive_file 2048\n\
total_pgfault 300\ntotal_pgmajfault 7\n";
        let m = parse_v1_memory(20_000, 30_000, 4, stat);
        assert_eq!(m.usage, 20_000);
        assert_eq!(m.max_usage, 30_000);
        assert_eq!(m.working_set, 20_000 - 2048);
        assert_eq!((m.rss, m.cache, m.mapped_file), (8192, 4096, 1024));
        assert_eq!((m.active_file, m.inactive_file, m.failcnt), (512, 2048, 4));
        assert_eq!((m.pgfault, m.pgmajfault), (30, 3));
        assert_eq!(
            (m.hierarchical_pgfault, m.hierarchical_pgmajfault),
            (300, 7)
        );
        // More inactive file pages than usage does not underflow.
        assert_eq!(parse_v1_memory(100, 0, 0, stat).working_set, 0);
    }

    #[test]
    fn v2_memory() {
        let m = parse_v2_memory(
            10_000,
            12_000,
            "low 0\nhigh 0\nmax 3\noom 0\n",
            "anon 4000\nfile 5000\nkernel 600\nfile_mapped 100\nactive_file 1000\ninactive_file 3000\n",
        );
        assert_eq!((m.working_set, m.rss, m.cache), (7000, 4000, 5000));
        assert_eq!((m.max_usage, m.failcnt, m.mapped_file), (12_000, 3, 100));
        assert_eq!(m.kernel, 600);
    }

    #[test]
    fn cpu_specs() {
        assert_eq!(
            parse_v1_cpu_spec(102, 100000, "10000\n"),
            CpuSpec {
                shares: 102,
                period: 100000,
                quota: Some(10000)
            }
        );
        assert_eq!(parse_v1_cpu_spec(1024, 100000, "-1\n").quota, None);
        let v2 = parse_v2_cpu_spec(100, "max 100000\n");
        assert_eq!((v2.shares, v2.period, v2.quota), (2597, 100000, None));
        assert_eq!(parse_v2_cpu_spec(1, "5000 100000").quota, Some(5000));
        assert_eq!(parse_v2_cpu_spec(1, "5000 100000").shares, 2);
    }

    #[test]
    fn pids_and_oom_kills() {
        assert_eq!(parse_pids_max("max\n"), 0);
        assert_eq!(parse_pids_max("4096\n"), 4096);
        assert_eq!(
            parse_oom_kills("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"),
            Some(2)
        );
        assert_eq!(
            parse_oom_kills("low 0\nmax 1\noom 1\noom_kill 1\n"),
            Some(1)
        );
        // Kernels before 4.13 have no oom_kill line.
        assert_eq!(parse_oom_kills("oom_kill_disable 0\nunder_oom 0\n"), None);
    }

    #[test]
    fn reads_a_v1_tree() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let put = |rel: &str, text: &str| {
            let p = root.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        };
        put("cpu/kubepods/p/c/cpu.shares", "102\n");
        put("cpu/kubepods/p/c/cpu.cfs_period_us", "100000\n");
        put("cpu/kubepods/p/c/cpu.cfs_quota_us", "10000\n");
        put(
            "cpu/kubepods/p/c/cpu.stat",
            "nr_periods 9\nnr_throttled 8\nthrottled_time 7\n",
        );
        put("cpuacct/kubepods/p/c/cpuacct.usage", "123456789\n");
        put("cpuacct/kubepods/p/c/cpuacct.stat", "user 10\nsystem 2\n");
        put("memory/kubepods/p/c/memory.usage_in_bytes", "65536\n");
        put("memory/kubepods/p/c/memory.max_usage_in_bytes", "70000\n");
        put("memory/kubepods/p/c/memory.failcnt", "1\n");
        put("memory/kubepods/p/c/memory.limit_in_bytes", "100663296\n");
        put(
            "memory/kubepods/p/c/memory.soft_limit_in_bytes",
            "9223372036854771712\n",
        );
        put(
            "memory/kubepods/p/c/memory.stat",
            "total_rss 32768\ntotal_inactive_file 4096\n",
        );
        put(
            "memory/kubepods/p/c/memory.oom_control",
            "oom_kill_disable 0\noom_kill 3\n",
        );
        put("pids/kubepods/p/c/pids.current", "5\n");
        put("pids/kubepods/p/c/pids.max", "max\n");
        put("pids/kubepods/p/c/cgroup.procs", "10\n11\n");
        put("pids/kubepods/p/c/child/cgroup.procs", "12\n");
        let fs = CgroupFs::new(root.to_path_buf());
        let (spec, usage) = read(&fs, "/kubepods/p/c").unwrap();
        assert_eq!(spec.cpu.unwrap().quota, Some(10000));
        assert_eq!(spec.cpu.unwrap().shares, 102);
        let mspec = spec.memory.unwrap();
        assert_eq!((mspec.limit, mspec.swap_limit), (100663296, 0));
        assert!(mspec.reservation > UNLIMITED);
        let cpu = usage.cpu.unwrap();
        assert_eq!(
            (cpu.total_ns, cpu.user_ns, cpu.periods),
            (123456789, 100_000_000, 9)
        );
        let mem = usage.memory.unwrap();
        assert_eq!((mem.usage, mem.working_set, mem.rss), (65536, 61440, 32768));
        assert_eq!(usage.oom_kills, Some(3));
        assert_eq!(
            usage.processes,
            Some(ProcessUsage {
                processes: 3,
                threads: 5,
                threads_max: 0
            })
        );
        assert!(read(&fs, "/kubepods/p/gone").is_none());
    }
}
