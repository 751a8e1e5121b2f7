//! Slim copies of the API objects the scheduler caches: only the fields its plugins,
//! queue, cache and effects read. A Pod as the apiserver returns it carries much the
//! scheduler never looks at (managed fields, annotations, env, probes, volume mounts, the
//! service-account projected volume, container statuses…); with thousands of pods cached,
//! those dominate the scheduler's memory. Upstream's informers keep whole objects; we keep
//! what scheduling reads, once, here.

use k8s_openapi::api::core::v1::{
    Container, Node, NodeSpec, NodeStatus, Pod, PodCondition, PodSpec, PodStatus, Volume,
};
use kube::api::ObjectMeta;

/// The pod metadata the scheduler reads: identity, labels, deletion.
fn slim_pod_meta(m: ObjectMeta) -> ObjectMeta {
    ObjectMeta {
        name: m.name,
        namespace: m.namespace,
        uid: m.uid,
        resource_version: m.resource_version,
        labels: m.labels,
        deletion_timestamp: m.deletion_timestamp,
        ..Default::default()
    }
}

/// A container as resource accounting, host ports, image locality and sidecar detection
/// read it.
fn slim_container(c: Container) -> Container {
    Container {
        name: c.name,
        image: c.image,
        ports: c.ports,
        resources: c.resources,
        restart_policy: c.restart_policy,
        ..Default::default()
    }
}

/// Volumes that name a claim (persistentVolumeClaim, generic ephemeral); the volume
/// plugins read nothing else.
fn keeps_volume(v: &Volume) -> bool {
    v.persistent_volume_claim.is_some() || v.ephemeral.is_some()
}

/// The pod spec fields the plugins, queue and binder read.
fn slim_pod_spec(s: PodSpec) -> PodSpec {
    let volumes = s
        .volumes
        .map(|vs| vs.into_iter().filter(keeps_volume).collect::<Vec<_>>())
        .filter(|vs| !vs.is_empty());
    PodSpec {
        affinity: s.affinity,
        containers: s.containers.into_iter().map(slim_container).collect(),
        init_containers: s
            .init_containers
            .map(|cs| cs.into_iter().map(slim_container).collect()),
        node_name: s.node_name,
        node_selector: s.node_selector,
        overhead: s.overhead,
        preemption_policy: s.preemption_policy,
        priority: s.priority,
        resources: s.resources,
        scheduler_name: s.scheduler_name,
        scheduling_gates: s.scheduling_gates,
        tolerations: s.tolerations,
        topology_spread_constraints: s.topology_spread_constraints,
        volumes,
        ..Default::default()
    }
}

/// Status: phase, start time (preemption), nominatedNodeName and the PodScheduled
/// condition (whether a failure's status write would change anything).
fn slim_pod_status(s: PodStatus) -> PodStatus {
    let conditions: Option<Vec<PodCondition>> = s
        .conditions
        .map(|cs| {
            cs.into_iter()
                .filter(|c| c.type_ == "PodScheduled")
                .collect::<Vec<_>>()
        })
        .filter(|cs| !cs.is_empty());
    PodStatus {
        phase: s.phase,
        start_time: s.start_time,
        nominated_node_name: s.nominated_node_name,
        conditions,
        ..Default::default()
    }
}

/// The scheduler's copy of a pod: everything else dropped.
pub fn slim_pod(p: Pod) -> Pod {
    Pod {
        metadata: slim_pod_meta(p.metadata),
        spec: p.spec.map(slim_pod_spec),
        status: p.status.map(slim_pod_status),
    }
}

/// A slim pod without its containers, once [`crate::snapshot::PodInfo`] derived requests,
/// host ports and images from them: a cached pod's containers are read by nothing else.
pub fn without_containers(mut p: Pod) -> Pod {
    if let Some(s) = p.spec.as_mut() {
        s.containers = Vec::new();
        s.init_containers = None;
    }
    p
}

/// The scheduler's copy of a node: name and labels, taints and unschedulable,
/// allocatable, conditions, images (image locality).
pub fn slim_node(n: Node) -> Node {
    Node {
        metadata: ObjectMeta {
            name: n.metadata.name,
            uid: n.metadata.uid,
            resource_version: n.metadata.resource_version,
            labels: n.metadata.labels,
            deletion_timestamp: n.metadata.deletion_timestamp,
            ..Default::default()
        },
        spec: n.spec.map(|s| NodeSpec {
            taints: s.taints,
            unschedulable: s.unschedulable,
            ..Default::default()
        }),
        status: n.status.map(|s| NodeStatus {
            allocatable: s.allocatable,
            conditions: s.conditions,
            images: s.images,
            ..Default::default()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pod_keeps_what_scheduling_reads_and_drops_the_rest() {
        let p: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u", "resourceVersion": "7",
                "labels": {"app": "a"}, "annotations": {"big": "x"},
                "managedFields": [{"manager": "m"}], "ownerReferences": [
                    {"apiVersion": "v1", "kind": "ReplicaSet", "name": "r", "uid": "r"}]},
            "spec": {
                "schedulerName": "s", "priority": 5, "preemptionPolicy": "Never",
                "nodeSelector": {"k": "v"}, "tolerations": [{"key": "t", "operator": "Exists"}],
                "overhead": {"cpu": "10m"}, "schedulingGates": [{"name": "g"}],
                "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone",
                    "whenUnsatisfiable": "DoNotSchedule"}],
                "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                    {"topologyKey": "zone", "labelSelector": {}}]}},
                "containers": [{"name": "c", "image": "i", "env": [{"name": "E", "value": "v"}],
                    "command": ["sleep"], "ports": [{"containerPort": 80, "hostPort": 8080}],
                    "volumeMounts": [{"name": "tok", "mountPath": "/var/run"}],
                    "resources": {"requests": {"cpu": "100m"}}}],
                "initContainers": [{"name": "side", "restartPolicy": "Always",
                    "resources": {"requests": {"memory": "1Mi"}}}],
                "volumes": [
                    {"name": "data", "persistentVolumeClaim": {"claimName": "claim"}},
                    {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}},
                    {"name": "tok", "projected": {"sources": [{"serviceAccountToken": {"path": "t"}}]}}]
            },
            "status": {"phase": "Pending", "nominatedNodeName": "n1",
                "startTime": "2024-01-01T00:00:00Z", "qosClass": "Burstable",
                "conditions": [
                    {"type": "PodScheduled", "status": "False", "reason": "Unschedulable"},
                    {"type": "Ready", "status": "False"}],
                "containerStatuses": [{"name": "c", "image": "i", "imageID": "", "ready": false,
                    "restartCount": 0}]}
        }))
        .unwrap();
        let s = serde_json::to_value(slim_pod(p)).unwrap();
        assert_eq!(
            s,
            json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "p", "namespace": "ns", "uid": "u", "resourceVersion": "7",
                    "labels": {"app": "a"}},
                "spec": {
                    "schedulerName": "s", "priority": 5, "preemptionPolicy": "Never",
                    "nodeSelector": {"k": "v"}, "tolerations": [{"key": "t", "operator": "Exists"}],
                    "overhead": {"cpu": "10m"}, "schedulingGates": [{"name": "g"}],
                    "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone",
                        "whenUnsatisfiable": "DoNotSchedule"}],
                    "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                        {"topologyKey": "zone", "labelSelector": {}}]}},
                    "containers": [{"name": "c", "image": "i",
                        "ports": [{"containerPort": 80, "hostPort": 8080}],
                        "resources": {"requests": {"cpu": "100m"}}}],
                    "initContainers": [{"name": "side", "restartPolicy": "Always",
                        "resources": {"requests": {"memory": "1Mi"}}}],
                    "volumes": [
                        {"name": "data", "persistentVolumeClaim": {"claimName": "claim"}},
                        {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}}]
                },
                "status": {"phase": "Pending", "nominatedNodeName": "n1",
                    "startTime": "2024-01-01T00:00:00Z",
                    "conditions": [
                        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]}
            })
        );
    }

    #[test]
    fn node_keeps_labels_taints_allocatable_conditions_images() {
        let n: Node = serde_json::from_value(json!({
            "metadata": {"name": "n", "labels": {"zone": "a"}, "annotations": {"x": "y"},
                "managedFields": [{"manager": "m"}]},
            "spec": {"podCIDR": "10.0.0.0/24", "unschedulable": true,
                "taints": [{"key": "k", "effect": "NoSchedule"}]},
            "status": {"allocatable": {"cpu": "4"}, "capacity": {"cpu": "4"},
                "conditions": [{"type": "Ready", "status": "True"}],
                "images": [{"names": ["img:1"], "sizeBytes": 10}],
                "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}],
                "nodeInfo": {"architecture": "amd64", "bootID": "", "containerRuntimeVersion": "",
                    "kernelVersion": "", "kubeProxyVersion": "", "kubeletVersion": "",
                    "machineID": "", "operatingSystem": "linux", "osImage": "", "systemUUID": ""}}
        }))
        .unwrap();
        let s = serde_json::to_value(slim_node(n)).unwrap();
        assert_eq!(
            s,
            json!({
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": "n", "labels": {"zone": "a"}},
                "spec": {"unschedulable": true, "taints": [{"key": "k", "effect": "NoSchedule"}]},
                "status": {"allocatable": {"cpu": "4"},
                    "conditions": [{"type": "Ready", "status": "True"}],
                    "images": [{"names": ["img:1"], "sizeBytes": 10}]}
            })
        );
    }

    #[test]
    fn pod_info_from_api_derives_from_containers_then_drops_them() {
        let p: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u"},
            "spec": {
                "initContainers": [{"name": "i", "image": "init:1",
                    "resources": {"requests": {"cpu": "1"}}}],
                "containers": [{"name": "c", "image": "app",
                    "ports": [{"containerPort": 80, "hostPort": 8080}],
                    "resources": {"requests": {"cpu": "100m", "memory": "1Mi"}}}]}
        }))
        .unwrap();
        let info = crate::snapshot::PodInfo::from_api(p);
        assert_eq!(info.images, vec!["init:1".to_string(), "app".to_string()]);
        assert_eq!(
            (info.requests.milli_cpu, info.requests.memory),
            (1000, 1 << 20)
        );
        assert_eq!(info.host_ports.len(), 1);
        let spec = info.pod.spec.as_ref().unwrap();
        assert!(spec.containers.is_empty() && spec.init_containers.is_none());
    }
}
