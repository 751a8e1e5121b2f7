//! QoS classes and the resource values upstream derives from a pod's requests and limits:
//! CPU shares/quota, memory limits and OOM score adjustments.

use api_helpers::quantity::{milli_value, value};
use k8s_openapi::api::core::v1::{Container, Pod, ResourceRequirements};

/// CFS period the kubelet uses (100ms), in microseconds.
pub const CPU_PERIOD_US: i64 = 100_000;
/// Smallest cpu.shares value the kernel accepts.
pub const MIN_SHARES: u64 = 2;
/// Smallest CFS quota upstream writes (1ms).
pub const MIN_QUOTA_US: i64 = 1000;

/// A pod's QoS class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QosClass {
    /// Every container has equal CPU and memory requests and limits.
    Guaranteed,
    /// Some request or limit, not guaranteed.
    Burstable,
    /// No requests or limits at all.
    BestEffort,
}

impl QosClass {
    /// The name in `status.qosClass`.
    pub fn as_str(self) -> &'static str {
        match self {
            QosClass::Guaranteed => "Guaranteed",
            QosClass::Burstable => "Burstable",
            QosClass::BestEffort => "BestEffort",
        }
    }
}

/// CPU and memory of one container: requests and limits, in millicores and bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resources {
    /// CPU request (millicores); when only a limit is set the request defaults to it.
    pub cpu_request: Option<i64>,
    /// CPU limit (millicores).
    pub cpu_limit: Option<i64>,
    /// Memory request (bytes).
    pub memory_request: Option<i64>,
    /// Memory limit (bytes).
    pub memory_limit: Option<i64>,
}

fn get(r: Option<&ResourceRequirements>, limits: bool, name: &str) -> Option<String> {
    let r = r?;
    let map = if limits {
        r.limits.as_ref()
    } else {
        r.requests.as_ref()
    };
    map?.get(name).map(|q| q.0.clone())
}

impl Resources {
    /// Reads a container's resources (malformed quantities count as absent: the apiserver
    /// validated them already).
    pub fn of(c: &Container) -> Self {
        let r = c.resources.as_ref();
        let cpu_limit = get(r, true, "cpu").and_then(|q| milli_value(&q).ok());
        let memory_limit = get(r, true, "memory").and_then(|q| value(&q).ok());
        Resources {
            cpu_request: get(r, false, "cpu")
                .and_then(|q| milli_value(&q).ok())
                .or(cpu_limit),
            cpu_limit,
            memory_request: get(r, false, "memory")
                .and_then(|q| value(&q).ok())
                .or(memory_limit),
            memory_limit,
        }
    }
}

fn all_containers(pod: &Pod) -> Vec<&Container> {
    let spec = pod.spec.as_ref();
    spec.into_iter()
        .flat_map(|s| {
            s.init_containers
                .iter()
                .flatten()
                .chain(s.containers.iter())
        })
        .collect()
}

/// The pod's QoS class, as upstream's `GetPodQOS`.
pub fn qos_class(pod: &Pod) -> QosClass {
    let containers = all_containers(pod);
    let res: Vec<Resources> = containers.iter().map(|c| Resources::of(c)).collect();
    let any = res.iter().any(|r| {
        r.cpu_request.is_some_and(|v| v > 0)
            || r.memory_request.is_some_and(|v| v > 0)
            || r.cpu_limit.is_some()
            || r.memory_limit.is_some()
    });
    if !any {
        return QosClass::BestEffort;
    }
    let guaranteed = res.iter().all(|r| {
        r.cpu_limit.is_some()
            && r.memory_limit.is_some()
            && r.cpu_request == r.cpu_limit
            && r.memory_request == r.memory_limit
    });
    if guaranteed {
        QosClass::Guaranteed
    } else {
        QosClass::Burstable
    }
}

/// cpu.shares for a CPU request, as upstream's `MilliCPUToShares`.
pub fn milli_cpu_to_shares(milli: i64) -> u64 {
    if milli <= 0 {
        return MIN_SHARES;
    }
    ((milli as u64) * 1024 / 1000).max(MIN_SHARES)
}

/// CFS quota for a CPU limit, as upstream's `MilliCPUToQuota` (period 100ms).
pub fn milli_cpu_to_quota(milli: i64) -> i64 {
    (milli * CPU_PERIOD_US / 1000).max(MIN_QUOTA_US)
}

/// The OOM score adjustment of a container, as upstream's `GetContainerOOMScoreAdjust`.
pub fn oom_score_adj(qos: QosClass, memory_request: Option<i64>, memory_capacity: i64) -> i64 {
    match qos {
        QosClass::Guaranteed => -997,
        QosClass::BestEffort => 1000,
        QosClass::Burstable => {
            let req = memory_request.unwrap_or(0);
            let adj = 1000 - (1000 * req) / memory_capacity.max(1);
            adj.clamp(2, 999)
        }
    }
}

/// Limits of a pod-level cgroup, as upstream's `ResourceConfigForPod`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PodCgroupConfig {
    /// cpu.shares.
    pub cpu_shares: u64,
    /// CFS quota in µs (`None`: unlimited).
    pub cpu_quota: Option<i64>,
    /// Memory limit in bytes (`None`: unlimited).
    pub memory_limit: Option<i64>,
}

/// The pod cgroup's limits: shares from the summed requests; quota and memory limit only
/// when every container has a limit.
pub fn pod_cgroup_config(pod: &Pod) -> PodCgroupConfig {
    let spec = pod.spec.as_ref();
    let app: Vec<Resources> = spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .map(Resources::of)
        .collect();
    let init: Vec<Resources> = spec
        .iter()
        .flat_map(|s| s.init_containers.iter().flatten())
        .map(Resources::of)
        .collect();
    let sum = |f: fn(&Resources) -> Option<i64>| -> i64 { app.iter().filter_map(f).sum() };
    let max_init =
        |f: fn(&Resources) -> Option<i64>| -> i64 { init.iter().filter_map(f).max().unwrap_or(0) };
    let cpu_req = sum(|r| r.cpu_request).max(max_init(|r| r.cpu_request));
    let all_cpu_limited = app.iter().chain(&init).all(|r| r.cpu_limit.is_some());
    let all_mem_limited = app.iter().chain(&init).all(|r| r.memory_limit.is_some());
    let cpu_limit = sum(|r| r.cpu_limit).max(max_init(|r| r.cpu_limit));
    let mem_limit = sum(|r| r.memory_limit).max(max_init(|r| r.memory_limit));
    match qos_class(pod) {
        QosClass::BestEffort => PodCgroupConfig {
            cpu_shares: MIN_SHARES,
            cpu_quota: None,
            memory_limit: None,
        },
        _ => PodCgroupConfig {
            cpu_shares: milli_cpu_to_shares(cpu_req),
            cpu_quota: all_cpu_limited.then(|| milli_cpu_to_quota(cpu_limit)),
            memory_limit: all_mem_limited.then_some(mem_limit),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodSpec;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use std::collections::BTreeMap;

    fn container(req: &[(&str, &str)], lim: &[(&str, &str)]) -> Container {
        let map = |kv: &[(&str, &str)]| {
            (!kv.is_empty()).then(|| {
                kv.iter()
                    .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                    .collect::<BTreeMap<_, _>>()
            })
        };
        Container {
            name: "c".into(),
            resources: Some(ResourceRequirements {
                requests: map(req),
                limits: map(lim),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn pod(cs: Vec<Container>) -> Pod {
        Pod {
            spec: Some(PodSpec {
                containers: cs,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn classifies_qos_like_upstream() {
        assert_eq!(
            qos_class(&pod(vec![container(&[], &[])])),
            QosClass::BestEffort
        );
        let g = container(&[], &[("cpu", "1"), ("memory", "1Gi")]);
        assert_eq!(qos_class(&pod(vec![g.clone()])), QosClass::Guaranteed);
        let b = container(&[("cpu", "100m")], &[]);
        assert_eq!(qos_class(&pod(vec![g, b])), QosClass::Burstable);
    }

    #[test]
    fn pod_cgroup_values() {
        let p = pod(vec![
            container(&[("cpu", "250m")], &[("cpu", "500m"), ("memory", "64Mi")]),
            container(&[("cpu", "250m")], &[("cpu", "500m"), ("memory", "64Mi")]),
        ]);
        let cfg = pod_cgroup_config(&p);
        assert_eq!(cfg.cpu_shares, 512);
        assert_eq!(cfg.cpu_quota, Some(100_000));
        assert_eq!(cfg.memory_limit, Some(128 << 20));
        let partly = pod(vec![container(&[("cpu", "100m")], &[])]);
        assert_eq!(
            pod_cgroup_config(&partly),
            PodCgroupConfig {
                cpu_shares: 102,
                cpu_quota: None,
                memory_limit: None
            }
        );
        assert_eq!(
            pod_cgroup_config(&pod(vec![container(&[], &[])])).cpu_shares,
            2
        );
    }

    #[test]
    fn shares_quota_and_oom_adj() {
        assert_eq!(milli_cpu_to_shares(0), 2);
        assert_eq!(milli_cpu_to_shares(1000), 1024);
        assert_eq!(milli_cpu_to_quota(5), 1000);
        assert_eq!(milli_cpu_to_quota(1500), 150_000);
        assert_eq!(oom_score_adj(QosClass::Guaranteed, None, 1), -997);
        assert_eq!(oom_score_adj(QosClass::BestEffort, None, 1), 1000);
        assert_eq!(oom_score_adj(QosClass::Burstable, Some(500), 1000), 500);
        assert_eq!(oom_score_adj(QosClass::Burstable, Some(1000), 1000), 2);
    }
}
