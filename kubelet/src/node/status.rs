//! The Node object the kubelet registers and keeps up to date, built purely from options,
//! host facts and runtime health: labels, taints, capacity/allocatable, addresses, nodeInfo
//! and the four conditions, with upstream's reasons and messages.

use super::host::{allocatable, HostFacts};
use crate::config::Options;
use crate::pod::resource_field::NodeAllocatable;
use api_helpers::quantity;
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus,
    NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use std::collections::BTreeMap;

/// Runtime health, from CRI's Status call, and the eviction manager's pressure.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeHealth {
    /// `containerd://1.6.20`.
    pub version: String,
    /// RuntimeReady and NetworkReady both true; otherwise why not.
    pub not_ready: Option<String>,
    /// Conditions under pressure (`MemoryPressure`, `DiskPressure`, `PIDPressure`).
    pub pressure: std::collections::BTreeSet<String>,
}

/// The labels the kubelet sets on its node (well-known ones plus `--node-labels`).
pub fn node_labels(opts: &Options) -> BTreeMap<String, String> {
    let arch = component_base::version::go_arch().to_string();
    let mut l = BTreeMap::from([
        ("kubernetes.io/hostname".to_string(), opts.node_name.clone()),
        ("kubernetes.io/os".to_string(), "linux".to_string()),
        ("kubernetes.io/arch".to_string(), arch.clone()),
        ("beta.kubernetes.io/os".to_string(), "linux".to_string()),
        ("beta.kubernetes.io/arch".to_string(), arch),
    ]);
    l.extend(opts.node_labels.clone());
    l
}

/// Capacity and allocatable.
pub fn resources(
    opts: &Options,
    facts: &HostFacts,
    kube_reserved: &BTreeMap<String, String>,
    system_reserved: &BTreeMap<String, String>,
) -> (BTreeMap<String, Quantity>, BTreeMap<String, Quantity>) {
    let q = |v: i64| Quantity(v.to_string());
    let reserved = [kube_reserved, system_reserved];
    let mut capacity = BTreeMap::from([
        ("cpu".to_string(), q(facts.cpus)),
        (
            "memory".to_string(),
            Quantity(format!("{}Ki", facts.memory / 1024)),
        ),
        (
            "ephemeral-storage".to_string(),
            Quantity(format!("{}Ki", facts.ephemeral_storage / 1024)),
        ),
        ("pods".to_string(), q(opts.max_pods as i64)),
    ]);
    let hugepages_total: i64 = facts.hugepages.values().sum();
    for (k, v) in &facts.hugepages {
        capacity.insert(k.clone(), q(*v));
    }
    let cpu_milli = allocatable(facts.cpus * 1000, &reserved, "cpu", 0);
    let cpu = if cpu_milli % 1000 == 0 {
        (cpu_milli / 1000).to_string()
    } else {
        format!("{cpu_milli}m")
    };
    // Hard eviction thresholds are held back from allocatable (invalid ones were refused
    // at startup).
    let thresholds = crate::eviction::threshold::parse(&opts.eviction_hard).unwrap_or_default();
    let (memory_eviction, storage_eviction) =
        crate::eviction::threshold::reservation(&thresholds, facts.memory, facts.ephemeral_storage);
    let memory = allocatable(
        facts.memory - hugepages_total,
        &reserved,
        "memory",
        memory_eviction,
    );
    let storage = allocatable(
        facts.ephemeral_storage,
        &reserved,
        "ephemeral-storage",
        storage_eviction,
    );
    let mut alloc = capacity.clone();
    alloc.insert("cpu".into(), Quantity(cpu));
    alloc.insert("memory".into(), Quantity(format!("{}Ki", memory / 1024)));
    alloc.insert("ephemeral-storage".into(), q(storage));
    (capacity, alloc)
}

/// The node's allocatable as the downward API uses it (the limits of a container that sets
/// none), from the same figures the Node reports.
pub fn downward_allocatable(opts: &Options, facts: &HostFacts) -> NodeAllocatable {
    let (_, alloc) = resources(opts, facts, &opts.kube_reserved, &opts.system_reserved);
    let get = |k: &str, parse: fn(&str) -> Result<i64, quantity::QuantityError>| {
        alloc.get(k).and_then(|q| parse(&q.0).ok()).unwrap_or(0)
    };
    NodeAllocatable {
        cpu_milli: get("cpu", quantity::milli_value),
        memory: get("memory", quantity::value),
        ephemeral_storage: get("ephemeral-storage", quantity::value),
    }
}

fn condition(
    kind: &str,
    status: bool,
    reason: &str,
    message: &str,
    old: Option<&NodeStatus>,
    now: &Timestamp,
) -> NodeCondition {
    let status = if status { "True" } else { "False" };
    let prev = old
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == kind));
    let transition = match prev {
        Some(p) if p.status == status => p.last_transition_time.clone(),
        _ => Some(Time(*now)),
    };
    NodeCondition {
        type_: kind.to_string(),
        status: status.to_string(),
        reason: Some(reason.to_string()),
        message: Some(message.to_string()),
        last_heartbeat_time: Some(Time(*now)),
        last_transition_time: transition,
    }
}

/// The four node conditions; the pressure ones as the eviction manager reports them.
pub fn conditions(
    health: &RuntimeHealth,
    old: Option<&NodeStatus>,
    now: &Timestamp,
) -> Vec<NodeCondition> {
    let ready = match &health.not_ready {
        None => condition(
            "Ready",
            true,
            "KubeletReady",
            "kubelet is posting ready status",
            old,
            now,
        ),
        Some(why) => condition("Ready", false, "KubeletNotReady", why, old, now),
    };
    let under = |c: &str| health.pressure.contains(c);
    let pressure =
        |kind: &str, (yes_reason, yes_msg): (&str, &str), (no_reason, no_msg): (&str, &str)| {
            if under(kind) {
                condition(kind, true, yes_reason, yes_msg, old, now)
            } else {
                condition(kind, false, no_reason, no_msg, old, now)
            }
        };
    vec![
        pressure(
            "MemoryPressure",
            (
                "KubeletHasInsufficientMemory",
                "kubelet has insufficient memory available",
            ),
            (
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            ),
        ),
        pressure(
            "DiskPressure",
            ("KubeletHasDiskPressure", "kubelet has disk pressure"),
            ("KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        ),
        pressure(
            "PIDPressure",
            (
                "KubeletHasInsufficientPID",
                "kubelet has insufficient PID available",
            ),
            (
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
            ),
        ),
        ready,
    ]
}

/// The node's status.
pub fn node_status(
    opts: &Options,
    facts: &HostFacts,
    health: &RuntimeHealth,
    old: Option<&NodeStatus>,
    now: &Timestamp,
    reserved: (&BTreeMap<String, String>, &BTreeMap<String, String>),
) -> NodeStatus {
    let (capacity, allocatable) = resources(opts, facts, reserved.0, reserved.1);
    let mut addresses: Vec<NodeAddress> = opts
        .node_ips
        .iter()
        .map(|ip| NodeAddress {
            type_: "InternalIP".into(),
            address: ip.to_string(),
        })
        .collect();
    addresses.push(NodeAddress {
        type_: "Hostname".into(),
        address: opts.node_name.clone(),
    });
    NodeStatus {
        capacity: Some(capacity),
        allocatable: Some(allocatable),
        addresses: Some(addresses),
        conditions: Some(conditions(health, old, now)),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint {
                port: opts.server.1 as i32,
            }),
        }),
        node_info: Some(NodeSystemInfo {
            architecture: component_base::version::go_arch().into(),
            boot_id: facts.boot_id.clone(),
            container_runtime_version: health.version.clone(),
            kernel_version: facts.kernel_version.clone(),
            kube_proxy_version: String::new(),
            kubelet_version: component_base::version::version(),
            machine_id: facts.machine_id.clone(),
            operating_system: "linux".into(),
            os_image: facts.os_image.clone(),
            system_uuid: facts.system_uuid.clone(),
            swap: None,
        }),
        ..Default::default()
    }
}

/// The Node object to register.
pub fn initial_node(opts: &Options, status: NodeStatus) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(opts.node_name.clone()),
            labels: Some(node_labels(opts)),
            annotations: Some(BTreeMap::from([(
                "volumes.kubernetes.io/controller-managed-attach-detach".to_string(),
                "true".to_string(),
            )])),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            provider_id: opts.provider_id.clone(),
            taints: Some(opts.register_with_taints.clone()).filter(|t| !t.is_empty()),
            pod_cidr: opts.pod_cidr.clone(),
            pod_cidrs: opts.pod_cidr.clone().map(|c| vec![c]),
            ..Default::default()
        }),
        status: Some(status),
    }
}

/// Whether a status differs from the last posted one in anything but heartbeat times.
pub fn node_status_changed(old: &NodeStatus, new: &NodeStatus) -> bool {
    let strip = |s: &NodeStatus| {
        let mut s = s.clone();
        for c in s.conditions.iter_mut().flatten() {
            c.last_heartbeat_time = None;
            c.last_transition_time = None;
        }
        // volumesInUse is the kubelet's to report (empty and absent alike); volumesAttached
        // is the attach-detach controller's.
        s.volumes_in_use = s.volumes_in_use.filter(|v| !v.is_empty());
        s.volumes_attached = None;
        s.config = None;
        s.runtime_handlers = None;
        s.features = None;
        s
    };
    strip(old) != strip(new)
}

#[cfg(test)]
mod tests;
