//! Facts about this machine the node object reports: CPU, memory (procfs, capped by the
//! root memory cgroup), ephemeral storage, hugepages, kernel, OS image and machine IDs.

use api_helpers::quantity;
use std::collections::BTreeMap;
use std::path::Path;

/// What the node reports about its host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostFacts {
    /// Logical CPUs.
    pub cpus: i64,
    /// Memory in bytes.
    pub memory: i64,
    /// Size of the filesystem holding the root dir, in bytes.
    pub ephemeral_storage: i64,
    /// Hugepages by size name (`hugepages-2Mi`) in bytes.
    pub hugepages: BTreeMap<String, i64>,
    /// `uname -r`.
    pub kernel_version: String,
    /// PRETTY_NAME of /etc/os-release.
    pub os_image: String,
    /// /etc/machine-id.
    pub machine_id: String,
    /// /sys/class/dmi/id/product_uuid (may be unreadable).
    pub system_uuid: String,
    /// /proc/sys/kernel/random/boot_id.
    pub boot_id: String,
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// `MemTotal` of a /proc/meminfo text, in bytes.
pub fn mem_total(meminfo: &str) -> Option<i64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: i64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// PRETTY_NAME of an os-release text.
pub fn pretty_name(os_release: &str) -> String {
    os_release
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| "Linux".into())
}

/// Reads the facts (`root_dir` decides which filesystem is ephemeral storage).
pub fn gather(root_dir: &Path) -> HostFacts {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get() as i64)
        .unwrap_or(1);
    let mut memory = mem_total(&read("/proc/meminfo")).unwrap_or(0);
    // A memory limit on the root cgroup (e.g. inside a container) caps what pods can use.
    for limit in [
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
        "/sys/fs/cgroup/memory.max",
    ] {
        if let Ok(v) = read(limit).parse::<i64>() {
            if v > 0 && v < memory {
                memory = v;
            }
        }
    }
    let fs_dir = std::iter::successors(Some(root_dir), |p| p.parent())
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"));
    let ephemeral_storage = nix::sys::statvfs::statvfs(fs_dir)
        .map(|s| (s.blocks() as i64) * (s.fragment_size() as i64))
        .unwrap_or(0);
    let mut hugepages = BTreeMap::new();
    if let Ok(entries) = std::fs::read_dir("/sys/kernel/mm/hugepages") {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            let Some(kb) = name
                .strip_prefix("hugepages-")
                .and_then(|s| s.strip_suffix("kB"))
                .and_then(|s| s.parse::<i64>().ok())
            else {
                continue;
            };
            let count: i64 = read(&format!("{}/nr_hugepages", e.path().display()))
                .parse()
                .unwrap_or(0);
            hugepages.insert(
                format!("hugepages-{}", size_name(kb * 1024)),
                count * kb * 1024,
            );
        }
    }
    HostFacts {
        cpus,
        memory,
        ephemeral_storage,
        hugepages,
        kernel_version: nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().to_string())
            .unwrap_or_default(),
        os_image: pretty_name(&std::fs::read_to_string("/etc/os-release").unwrap_or_default()),
        machine_id: read("/etc/machine-id"),
        system_uuid: read("/sys/class/dmi/id/product_uuid"),
        boot_id: read("/proc/sys/kernel/random/boot_id"),
    }
}

/// `2Mi`, `1Gi`: a page size as a quantity suffix.
fn size_name(bytes: i64) -> String {
    if bytes % (1 << 30) == 0 {
        format!("{}Gi", bytes >> 30)
    } else if bytes % (1 << 20) == 0 {
        format!("{}Mi", bytes >> 20)
    } else {
        format!("{}Ki", bytes >> 10)
    }
}

/// Capacity minus reservations and the hard eviction threshold, as upstream's node
/// allocatable: memory − 100Mi (default `memory.available`), storage − 10% (`nodefs.available`).
pub fn allocatable(
    capacity: i64,
    reserved: &[&BTreeMap<String, String>],
    resource: &str,
    eviction: i64,
) -> i64 {
    let r: i64 = reserved
        .iter()
        .filter_map(|m| m.get(resource))
        .filter_map(|q| {
            if resource == "cpu" {
                quantity::milli_value(q).ok()
            } else {
                quantity::value(q).ok()
            }
        })
        .sum();
    (capacity - r - eviction).max(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_and_os_release() {
        assert_eq!(
            mem_total("MemTotal:       24576000 kB\nMemFree: 1 kB\n"),
            Some(24576000 * 1024)
        );
        assert_eq!(
            pretty_name("NAME=x\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n"),
            "Debian GNU/Linux 12 (bookworm)"
        );
        assert_eq!(size_name(2 << 20), "2Mi");
        assert_eq!(size_name(1 << 30), "1Gi");
    }

    #[test]
    fn allocatable_subtracts_reservations_and_eviction() {
        let kube = BTreeMap::from([
            ("memory".to_string(), "1Gi".to_string()),
            ("cpu".to_string(), "500m".to_string()),
        ]);
        let sys = BTreeMap::from([("memory".to_string(), "512Mi".to_string())]);
        assert_eq!(
            allocatable(4 << 30, &[&kube, &sys], "memory", 100 << 20),
            (4 << 30) - (1 << 30) - (512 << 20) - (100 << 20)
        );
        assert_eq!(allocatable(2000, &[&kube], "cpu", 0), 1500);
    }

    #[test]
    fn gathers_this_host() {
        let f = gather(Path::new("/var/lib/kubelet"));
        assert!(
            f.cpus >= 1 && f.memory > 0 && f.ephemeral_storage > 0,
            "{f:?}"
        );
        assert!(!f.kernel_version.is_empty());
    }
}
