//! The Summary API's types (`k8s.io/kubelet/pkg/apis/stats/v1alpha1`), serialized with the
//! same JSON names and omissions as upstream so metrics-server and `kubectl top` read them.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A `metav1.Time`: RFC 3339 with second precision, `null` when unset (the zero time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Time(pub Option<DateTime<Utc>>);

impl Time {
    /// A set time.
    pub fn at(t: DateTime<Utc>) -> Self {
        Time(Some(t))
    }

    /// The time of a Unix timestamp in nanoseconds (as CRI reports them).
    pub fn from_unix_nanos(nanos: i64) -> Self {
        Time(Some(DateTime::from_timestamp_nanos(nanos)))
    }

    /// Now.
    pub fn now() -> Self {
        Time(Some(Utc::now()))
    }

    /// The later of two times (upstream's `maxUpdateTime`).
    pub fn max(self, other: Time) -> Time {
        if self < other {
            other
        } else {
            self
        }
    }
}

impl Serialize for Time {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Some(t) => s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Secs, true)),
            None => s.serialize_none(),
        }
    }
}

impl<'de> Deserialize<'de> for Time {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s: Option<String> = Option::deserialize(d)?;
        match s {
            None => Ok(Time(None)),
            Some(s) => DateTime::parse_from_rfc3339(&s)
                .map(|t| Time(Some(t.with_timezone(&Utc))))
                .map_err(serde::de::Error::custom),
        }
    }
}

/// `Summary`: the node and its pods.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// The node.
    pub node: NodeStats,
    /// The pods (always present, possibly empty).
    pub pods: Vec<PodStats>,
}

/// `NodeStats`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeStats {
    /// The node's name.
    pub node_name: String,
    /// `kubelet`, `runtime`, `misc`, `pods`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub system_containers: Vec<ContainerStats>,
    /// The node's boot time.
    pub start_time: Time,
    /// Root cgroup CPU.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuStats>,
    /// Root cgroup memory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryStats>,
    /// Physical interfaces.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkStats>,
    /// The filesystem of the kubelet's root directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fs: Option<FsStats>,
    /// The runtime's image and container filesystems.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime: Option<RuntimeStats>,
    /// Process limits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rlimit: Option<RlimitStats>,
    /// Swap.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub swap: Option<SwapStats>,
}

/// `RlimitStats`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RlimitStats {
    /// When read.
    pub time: Time,
    /// The kernel's limit on tasks (min of pid_max and threads-max).
    #[serde(rename = "maxpid", skip_serializing_if = "Option::is_none")]
    pub max_pid: Option<i64>,
    /// Tasks running now.
    #[serde(rename = "curproc", skip_serializing_if = "Option::is_none")]
    pub num_of_running_processes: Option<i64>,
}

/// `RuntimeStats`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeStats {
    /// Where images live.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_fs: Option<FsStats>,
    /// Where container writable layers live.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_fs: Option<FsStats>,
}

/// `ProcessStats`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessStats {
    /// Processes in the pod's containers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process_count: Option<u64>,
}

/// `PodStats`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStats {
    /// Which pod.
    pub pod_ref: PodReference,
    /// The sandbox's creation time.
    pub start_time: Time,
    /// The running containers.
    pub containers: Vec<ContainerStats>,
    /// Pod cgroup CPU.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuStats>,
    /// Pod cgroup memory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryStats>,
    /// The sandbox's network namespace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkStats>,
    /// Volumes with metrics (emptyDir, configMap, secret, …).
    #[serde(rename = "volume", default, skip_serializing_if = "Vec::is_empty")]
    pub volume_stats: Vec<VolumeStats>,
    /// Rootfs + logs + local ephemeral volumes + etc-hosts.
    #[serde(rename = "ephemeral-storage", skip_serializing_if = "Option::is_none")]
    pub ephemeral_storage: Option<FsStats>,
    /// Process count.
    #[serde(rename = "process_stats", skip_serializing_if = "Option::is_none")]
    pub process_stats: Option<ProcessStats>,
    /// Swap.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub swap: Option<SwapStats>,
}

/// `ContainerStats`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStats {
    /// Container (or system container) name.
    pub name: String,
    /// Creation time.
    pub start_time: Time,
    /// CPU.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuStats>,
    /// Memory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryStats>,
    /// Writable layer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rootfs: Option<FsStats>,
    /// The container's log files.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logs: Option<FsStats>,
    /// Swap.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub swap: Option<SwapStats>,
}

/// `PodReference`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PodReference {
    /// Name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// UID.
    pub uid: String,
}

/// `InterfaceStats`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InterfaceStats {
    /// Interface name.
    pub name: String,
    /// Received bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rx_bytes: Option<u64>,
    /// Receive errors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rx_errors: Option<u64>,
    /// Sent bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tx_bytes: Option<u64>,
    /// Send errors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tx_errors: Option<u64>,
}

/// `NetworkStats`: the default interface (`eth0`) inline, and every interface.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NetworkStats {
    /// When read.
    pub time: Time,
    /// The default interface.
    #[serde(flatten)]
    pub default: InterfaceStats,
    /// All interfaces.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<InterfaceStats>,
}

/// `CPUStats`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CpuStats {
    /// When sampled.
    pub time: Time,
    /// Average usage over the last sampling interval, in nanocores.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_nano_cores: Option<u64>,
    /// Cumulative usage in core-nanoseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_core_nano_seconds: Option<u64>,
}

/// `MemoryStats`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemoryStats {
    /// When sampled.
    pub time: Time,
    /// Limit minus working set (when limited).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available_bytes: Option<u64>,
    /// Total usage (incl. page cache).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_bytes: Option<u64>,
    /// Usage minus inactive file pages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub working_set_bytes: Option<u64>,
    /// Anonymous and swap cache memory.
    #[serde(rename = "rssBytes", skip_serializing_if = "Option::is_none")]
    pub rss_bytes: Option<u64>,
    /// Page faults.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page_faults: Option<u64>,
    /// Major page faults.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub major_page_faults: Option<u64>,
}

/// `SwapStats`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SwapStats {
    /// When sampled.
    pub time: Time,
    /// Swap still available.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub swap_available_bytes: Option<u64>,
    /// Swap in use.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub swap_usage_bytes: Option<u64>,
}

/// `VolumeStats`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeStats {
    /// Usage of the volume's filesystem.
    #[serde(flatten)]
    pub fs: FsStats,
    /// The volume's name in the pod spec.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// The claim behind it, for PVC and ephemeral volumes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pvc_ref: Option<PvcReference>,
}

/// `PVCReference`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PvcReference {
    /// Claim name.
    pub name: String,
    /// Claim namespace.
    pub namespace: String,
}

/// `FsStats`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FsStats {
    /// When read.
    pub time: Time,
    /// Free bytes for unprivileged users.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available_bytes: Option<u64>,
    /// Size of the filesystem.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capacity_bytes: Option<u64>,
    /// Bytes used (by this object, for per-object stats).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub used_bytes: Option<u64>,
    /// Free inodes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inodes_free: Option<u64>,
    /// Total inodes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inodes: Option<u64>,
    /// Inodes used (by this object, for per-object stats).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inodes_used: Option<u64>,
}

/// Names of the node's system containers (`SystemContainer*` constants).
pub mod system_container {
    /// The kubelet's own cgroup.
    pub const KUBELET: &str = "kubelet";
    /// The container runtime's cgroup.
    pub const RUNTIME: &str = "runtime";
    /// Other system processes.
    pub const MISC: &str = "misc";
    /// The cgroup all pods live under.
    pub const PODS: &str = "pods";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_names_follow_v1alpha1() {
        let pod = PodStats {
            pod_ref: PodReference {
                name: "p".into(),
                namespace: "ns".into(),
                uid: "u".into(),
            },
            start_time: Time::from_unix_nanos(1_700_000_000_123_000_000),
            containers: vec![ContainerStats {
                name: "c".into(),
                memory: Some(MemoryStats {
                    rss_bytes: Some(1),
                    working_set_bytes: Some(2),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            network: Some(NetworkStats {
                time: Time::from_unix_nanos(0),
                default: InterfaceStats {
                    name: "eth0".into(),
                    rx_bytes: Some(5),
                    ..Default::default()
                },
                interfaces: vec![],
            }),
            volume_stats: vec![VolumeStats {
                name: "cache".into(),
                fs: FsStats {
                    used_bytes: Some(4096),
                    ..Default::default()
                },
                pvc_ref: None,
            }],
            ephemeral_storage: Some(FsStats::default()),
            process_stats: Some(ProcessStats {
                process_count: Some(3),
            }),
            ..Default::default()
        };
        let v = serde_json::to_value(&pod).unwrap();
        assert_eq!(v["podRef"]["uid"], "u");
        assert_eq!(v["startTime"], "2023-11-14T22:13:20Z");
        assert_eq!(v["containers"][0]["memory"]["rssBytes"], 1);
        assert_eq!(v["containers"][0]["memory"]["workingSetBytes"], 2);
        assert_eq!(v["containers"][0]["startTime"], serde_json::Value::Null);
        assert!(v["containers"][0].get("cpu").is_none());
        assert_eq!(v["network"]["name"], "eth0");
        assert_eq!(v["network"]["rxBytes"], 5);
        assert!(v["network"].get("interfaces").is_none());
        assert_eq!(v["volume"][0]["name"], "cache");
        assert_eq!(v["volume"][0]["usedBytes"], 4096);
        assert!(v.get("ephemeral-storage").is_some());
        assert_eq!(v["process_stats"]["process_count"], 3);
        let back: PodStats = serde_json::from_value(v).unwrap();
        assert_eq!(back.containers[0].memory, pod.containers[0].memory);
        let rl = serde_json::to_value(RlimitStats {
            time: Time::default(),
            max_pid: Some(10),
            num_of_running_processes: Some(2),
        })
        .unwrap();
        assert_eq!(rl["maxpid"], 10);
        assert_eq!(rl["curproc"], 2);
    }

    #[test]
    fn summary_always_has_pods() {
        let v = serde_json::to_value(Summary::default()).unwrap();
        assert_eq!(v["pods"], serde_json::json!([]));
        assert_eq!(v["node"]["nodeName"], "");
    }
}
