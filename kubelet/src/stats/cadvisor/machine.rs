//! The machine as cAdvisor describes it on `/metrics/cadvisor`: logical CPUs, memory and
//! swap capacity, and the identifiers every machine metric is labelled with.

use chrono::{DateTime, Utc};

/// What the machine metrics report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Machine {
    /// When read.
    pub time: DateTime<Utc>,
    /// Logical CPUs.
    pub cores: u64,
    /// Installed memory (`MemTotal`).
    pub memory_bytes: u64,
    /// Swap (`SwapTotal`).
    pub swap_bytes: u64,
    /// `/etc/machine-id`.
    pub machine_id: String,
    /// The firmware's system UUID.
    pub system_uuid: String,
    /// This boot's ID.
    pub boot_id: String,
}

/// Logical CPUs in a `/proc/cpuinfo` text (its `processor` entries).
pub fn parse_cpuinfo_cores(cpuinfo: &str) -> u64 {
    cpuinfo
        .lines()
        .filter(|l| {
            l.split_once(':')
                .is_some_and(|(k, _)| k.trim() == "processor")
        })
        .count() as u64
}

/// A `/proc/meminfo` field in bytes.
pub fn parse_meminfo(meminfo: &str, field: &str) -> Option<u64> {
    meminfo.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        if k != field {
            return None;
        }
        let kb: u64 = v.split_whitespace().next()?.parse().ok()?;
        Some(kb * 1024)
    })
}

/// The source device of the mount holding `path` in a `/proc/self/mountinfo` text (the
/// mount with the longest mount point that contains `path`).
pub fn mount_source(mountinfo: &str, path: &std::path::Path) -> Option<String> {
    mountinfo
        .lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let mount_point = left.split(' ').nth(4)?.replace("\\040", " ");
            let source = right.split(' ').nth(1)?;
            path.starts_with(&mount_point)
                .then(|| (mount_point.len(), source.to_string()))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, source)| source)
}

fn read_trimmed(paths: &[&str]) -> String {
    paths
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Reads this machine; `None` when /proc cannot be read.
pub fn read() -> Option<Machine> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    Some(Machine {
        time: Utc::now(),
        cores: parse_cpuinfo_cores(&cpuinfo),
        memory_bytes: parse_meminfo(&meminfo, "MemTotal")?,
        swap_bytes: parse_meminfo(&meminfo, "SwapTotal").unwrap_or(0),
        machine_id: read_trimmed(&["/etc/machine-id", "/var/lib/dbus/machine-id"]),
        system_uuid: read_trimmed(&["/sys/class/dmi/id/product_uuid"]),
        boot_id: read_trimmed(&["/proc/sys/kernel/random/boot_id"]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpuinfo_and_meminfo() {
        let cpuinfo = "processor\t: 0\nmodel name\t: X\n\nprocessor\t: 1\nmodel name\t: X\n";
        assert_eq!(parse_cpuinfo_cores(cpuinfo), 2);
        let meminfo = "MemTotal:       24576000 kB\nSwapTotal:             0 kB\n";
        assert_eq!(parse_meminfo(meminfo, "MemTotal"), Some(24576000 * 1024));
        assert_eq!(parse_meminfo(meminfo, "SwapTotal"), Some(0));
        assert_eq!(parse_meminfo(meminfo, "Nope"), None);
    }

    #[test]
    fn mount_sources() {
        let mountinfo = "22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw\n\
30 22 0:25 / /var/lib/kubelet rw shared:5 - xfs /dev/vdb rw\n\
31 22 0:26 / /var/lib/kubelet-other rw shared:6 - tmpfs tmpfs rw\n";
        let src = |p: &str| mount_source(mountinfo, std::path::Path::new(p));
        assert_eq!(src("/var/lib/kubelet/pods").as_deref(), Some("/dev/vdb"));
        assert_eq!(src("/var/lib/kubelet").as_deref(), Some("/dev/vdb"));
        assert_eq!(src("/var/lib/kubelet-x").as_deref(), Some("/dev/vda1"));
        assert_eq!(src("/var/lib/kubelet-other/a").as_deref(), Some("tmpfs"));
    }

    #[test]
    fn this_machine() {
        let m = read().unwrap();
        assert!(m.cores >= 1 && m.memory_bytes > 0);
        assert!(!m.boot_id.is_empty());
    }
}
