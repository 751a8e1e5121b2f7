//! What the node reports about itself from /proc: boot time, memory capacity, network
//! interface counters (the host's or a pod's network namespace) and process limits.

use super::types::{InterfaceStats, NetworkStats, RlimitStats, Time};
use chrono::{DateTime, Utc};
use std::path::Path;

/// The interface named in the inline part of NetworkStats (upstream's
/// `defaultNetworkInterfaceName`).
pub const DEFAULT_INTERFACE: &str = "eth0";

/// Interfaces cAdvisor never reports in a container's network stats.
const IGNORED_PREFIXES: &[&str] = &["lo", "veth", "docker", "nerdctl"];

/// Counters of every interface in a `/proc/<pid>/net/dev` text.
pub fn parse_net_dev(text: &str) -> Vec<InterfaceStats> {
    text.lines()
        .skip(2)
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let f: Vec<u64> = rest
                .split_whitespace()
                .map(|v| v.parse().unwrap_or(0))
                .collect();
            if f.len() < 16 {
                return None;
            }
            Some(InterfaceStats {
                name: name.trim().to_string(),
                rx_bytes: Some(f[0]),
                rx_errors: Some(f[2]),
                tx_bytes: Some(f[8]),
                tx_errors: Some(f[10]),
            })
        })
        .collect()
}

/// NetworkStats from interface counters: the ones `keep` accepts, sorted by name, with
/// `eth0` inline when present.
pub fn network_stats(
    time: Time,
    all: Vec<InterfaceStats>,
    keep: impl Fn(&str) -> bool,
) -> Option<NetworkStats> {
    let mut interfaces: Vec<InterfaceStats> = all.into_iter().filter(|i| keep(&i.name)).collect();
    if interfaces.is_empty() {
        return None;
    }
    interfaces.sort_by(|a, b| a.name.cmp(&b.name));
    let default = interfaces
        .iter()
        .find(|i| i.name == DEFAULT_INTERFACE)
        .cloned()
        .unwrap_or_default();
    Some(NetworkStats {
        time,
        default,
        interfaces,
    })
}

/// Whether cAdvisor would report `name` for a container (not loopback, veth, docker).
pub fn container_interface(name: &str) -> bool {
    !IGNORED_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// Whether `name` is a physical interface of the host (cAdvisor's machine network
/// devices: those backed by a device).
pub fn physical_interface(name: &str) -> bool {
    container_interface(name)
        && Path::new("/sys/class/net")
            .join(name)
            .join("device")
            .exists()
}

/// The network namespace of process `pid` as NetworkStats (containers' rules).
pub fn pid_network(pid: u32) -> Option<NetworkStats> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).ok()?;
    network_stats(Time::now(), parse_net_dev(&text), container_interface)
}

/// The host's physical interfaces.
pub fn node_network() -> Option<NetworkStats> {
    let text = std::fs::read_to_string("/proc/net/dev").ok()?;
    network_stats(Time::now(), parse_net_dev(&text), physical_interface)
}

/// `btime` of `/proc/stat`.
pub fn parse_boot_time(stat: &str) -> Option<DateTime<Utc>> {
    let secs: i64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    DateTime::from_timestamp(secs, 0)
}

/// The node's boot time.
pub fn boot_time() -> Option<DateTime<Utc>> {
    parse_boot_time(&std::fs::read_to_string("/proc/stat").ok()?)
}

/// `MemTotal` of `/proc/meminfo` in bytes.
pub fn parse_mem_total(meminfo: &str) -> Option<u64> {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .split_whitespace()
        .next()?
        .parse::<u64>()
        .ok()
        .map(|kb| kb * 1024)
}

/// The machine's memory.
pub fn mem_total() -> Option<u64> {
    parse_mem_total(&std::fs::read_to_string("/proc/meminfo").ok()?)
}

/// Running tasks from `/proc/loadavg` (the total after the slash of the fourth field).
pub fn parse_loadavg_tasks(loadavg: &str) -> Option<i64> {
    loadavg
        .split_whitespace()
        .nth(3)?
        .split_once('/')?
        .1
        .parse()
        .ok()
}

/// RlimitStats as upstream's pidlimit: the lower of pid_max and threads-max, and the
/// running task count.
pub fn rlimit() -> RlimitStats {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .ok()
            .and_then(|s| s.trim().parse::<i64>().ok())
    };
    let max_pid = [
        read("/proc/sys/kernel/pid_max"),
        read("/proc/sys/kernel/threads-max"),
    ]
    .into_iter()
    .flatten()
    .min();
    let running = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| parse_loadavg_tasks(&s))
        .or_else(|| {
            nix::sys::sysinfo::sysinfo()
                .ok()
                .map(|i| i.process_count() as i64)
        });
    RlimitStats {
        time: Time::now(),
        max_pid,
        num_of_running_processes: running,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NET_DEV: &str = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:  1000      10    0    0    0     0          0         0     1000      10    0    0    0     0       0          0
  eth0: 123456     100    1    0    0     0          0         0    654321     90    2    0    0     0       0          0
vethab12:  5        1    0    0    0     0          0         0        6      1    0    0    0     0       0          0
  net1:   77        1    0    0    0     0          0         0       88      1    0    0    0     0       0          0
";

    #[test]
    fn net_dev_counters() {
        let all = parse_net_dev(NET_DEV);
        assert_eq!(all.len(), 4);
        let eth0 = &all[1];
        assert_eq!(eth0.name, "eth0");
        assert_eq!(
            (eth0.rx_bytes, eth0.rx_errors, eth0.tx_bytes, eth0.tx_errors),
            (Some(123456), Some(1), Some(654321), Some(2))
        );
    }

    #[test]
    fn pod_network_skips_loopback_and_veths() {
        let n =
            network_stats(Time::default(), parse_net_dev(NET_DEV), container_interface).unwrap();
        let names: Vec<_> = n.interfaces.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["eth0", "net1"]);
        assert_eq!(n.default.name, "eth0");
        assert_eq!(n.default.rx_bytes, Some(123456));
        // Only loopback: no network stats at all.
        let lo_only: String = NET_DEV.lines().take(3).collect::<Vec<_>>().join("\n");
        assert!(network_stats(
            Time::default(),
            parse_net_dev(&lo_only),
            container_interface
        )
        .is_none());
    }

    #[test]
    fn proc_files() {
        assert_eq!(
            parse_boot_time("cpu  1 2 3\nbtime 1700000000\nprocesses 5\n"),
            DateTime::from_timestamp(1_700_000_000, 0)
        );
        assert_eq!(
            parse_mem_total("MemTotal:       24576000 kB\nMemFree: 1 kB\n"),
            Some(24576000 * 1024)
        );
        assert_eq!(
            parse_loadavg_tasks("0.10 0.20 0.30 2/345 6789\n"),
            Some(345)
        );
        assert_eq!(parse_loadavg_tasks("garbage"), None);
    }

    #[test]
    fn rlimit_of_this_host() {
        let r = rlimit();
        assert!(r.max_pid.unwrap() > 0);
        assert!(r.num_of_running_processes.unwrap() > 0);
    }
}
