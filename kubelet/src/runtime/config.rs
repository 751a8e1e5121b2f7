//! Pure translations of a pod into CRI requests: the sandbox config (hostname, DNS, ports,
//! namespaces, cgroup parent, log directory) and each container's config (command, env,
//! mounts, resources, labels for re-adoption).

use crate::cri::labels::{self, PodRef};
use crate::pod::qos::{self, QosClass, Resources};
use crate::pod::reconcile::container_hash;
use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::{Container, Pod};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Node-wide settings the translations need.
#[derive(Debug, Clone)]
pub struct NodeContext {
    /// Where container logs go (`/var/log/pods`).
    pub pod_logs_dir: PathBuf,
    /// The kubelet's cgroup names.
    pub cgroups: crate::cgroups::Hierarchy,
    /// `clusterDNS`.
    pub cluster_dns: Vec<String>,
    /// `clusterDomain`.
    pub cluster_domain: String,
    /// The host's resolv.conf contents (`resolvConf`), for dnsPolicy Default.
    pub host_resolv_conf: String,
    /// Node memory capacity in bytes, for OOM score adjustments.
    pub memory_capacity: i64,
}

/// `<ns>_<name>_<uid>`: the pod's directory under `/var/log/pods`.
pub fn pod_log_dir(ctx: &NodeContext, p: &PodRef) -> PathBuf {
    ctx.pod_logs_dir
        .join(format!("{}_{}_{}", p.namespace, p.name, p.uid))
}

/// `<container>/<restartCount>.log`, relative to the pod's log directory.
pub fn container_log_path(name: &str, restart_count: i32) -> String {
    format!("{name}/{restart_count}.log")
}

/// The reference to `pod` that its CRI labels carry.
pub fn pod_ref(pod: &Pod) -> PodRef {
    let m = &pod.metadata;
    PodRef {
        namespace: m.namespace.clone().unwrap_or_default(),
        name: m.name.clone().unwrap_or_default(),
        uid: m.uid.clone().unwrap_or_default(),
    }
}

fn host_network(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false)
}

/// The pod's hostname, as upstream's `GeneratePodHostNameAndDomain` (empty for hostNetwork
/// pods: runc cannot set a hostname without a private UTS namespace).
pub fn hostname(pod: &Pod) -> String {
    if host_network(pod) {
        return String::new();
    }
    let spec = pod.spec.as_ref();
    let name = spec
        .and_then(|s| s.hostname.clone())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| pod.metadata.name.clone().unwrap_or_default());
    // Hostnames are at most 63 characters, trimmed of trailing '-' and '.'.
    let mut h: String = name.chars().take(63).collect();
    while h.ends_with(['-', '.']) {
        h.pop();
    }
    h
}

fn parse_resolv_conf(text: &str) -> cri::DnsConfig {
    let mut dns = cri::DnsConfig::default();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => dns.servers.extend(words.next().map(str::to_string)),
            Some("search") => dns.searches = words.map(str::to_string).collect(),
            Some("options") => dns.options = words.map(str::to_string).collect(),
            _ => {}
        }
    }
    dns
}

/// The sandbox's DNS config per `dnsPolicy`, as upstream's `GetPodDNS`.
pub fn dns_config(ctx: &NodeContext, pod: &Pod) -> cri::DnsConfig {
    let spec = pod.spec.as_ref();
    let policy = spec
        .and_then(|s| s.dns_policy.as_deref())
        .unwrap_or("ClusterFirst");
    let cluster = match policy {
        "ClusterFirstWithHostNet" => true,
        "ClusterFirst" => !host_network(pod),
        _ => false,
    } && !ctx.cluster_dns.is_empty();
    let mut dns = if policy == "None" {
        cri::DnsConfig::default()
    } else if cluster {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let d = &ctx.cluster_domain;
        let host = parse_resolv_conf(&ctx.host_resolv_conf);
        let mut searches = vec![format!("{ns}.svc.{d}"), format!("svc.{d}"), d.clone()];
        searches.extend(host.searches);
        cri::DnsConfig {
            servers: ctx.cluster_dns.clone(),
            searches,
            options: vec!["ndots:5".into()],
        }
    } else {
        parse_resolv_conf(&ctx.host_resolv_conf)
    };
    if let Some(extra) = spec.and_then(|s| s.dns_config.as_ref()) {
        dns.servers
            .extend(extra.nameservers.iter().flatten().cloned());
        dns.searches
            .extend(extra.searches.iter().flatten().cloned());
        for o in extra.options.iter().flatten() {
            let name = o.name.clone().unwrap_or_default();
            dns.options
                .retain(|x| x.split(':').next() != Some(name.as_str()));
            dns.options.push(match &o.value {
                Some(v) => format!("{name}:{v}"),
                None => name,
            });
        }
    }
    dns.searches.dedup();
    dns.searches.truncate(32);
    dns.servers.truncate(3);
    dns
}

fn protocol(p: Option<&str>) -> i32 {
    match p {
        Some("UDP") => cri::Protocol::Udp as i32,
        Some("SCTP") => cri::Protocol::Sctp as i32,
        _ => cri::Protocol::Tcp as i32,
    }
}

/// The sandbox config for `pod` with the given attempt number.
pub fn sandbox_config(ctx: &NodeContext, pod: &Pod, attempt: u32) -> cri::PodSandboxConfig {
    let r = pod_ref(pod);
    let spec = pod.spec.clone().unwrap_or_default();
    let mut sandbox_labels: HashMap<String, String> = pod
        .metadata
        .labels
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    sandbox_labels.extend(r.labels());
    let mut annotations: HashMap<String, String> = pod
        .metadata
        .annotations
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    annotations.insert(
        labels::POD_TERMINATION_GRACE_PERIOD.into(),
        spec.termination_grace_period_seconds
            .unwrap_or(30)
            .to_string(),
    );
    let port_mappings = spec
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter(|p| p.host_port.is_some_and(|h| h > 0) || host_network(pod))
        .map(|p| cri::PortMapping {
            protocol: protocol(p.protocol.as_deref()),
            container_port: p.container_port,
            host_port: p.host_port.unwrap_or(p.container_port),
            host_ip: p.host_ip.clone().unwrap_or_default(),
        })
        .collect();
    let node = cri::NamespaceMode::Node as i32;
    let namespace_options = cri::NamespaceOption {
        network: if host_network(pod) {
            node
        } else {
            cri::NamespaceMode::Pod as i32
        },
        pid: if spec.host_pid.unwrap_or(false) {
            node
        } else if spec.share_process_namespace.unwrap_or(false) {
            cri::NamespaceMode::Pod as i32
        } else {
            cri::NamespaceMode::Container as i32
        },
        ipc: if spec.host_ipc.unwrap_or(false) {
            node
        } else {
            cri::NamespaceMode::Pod as i32
        },
        ..Default::default()
    };
    let psc = spec.security_context.clone().unwrap_or_default();
    let sysctls = psc
        .sysctls
        .iter()
        .flatten()
        .map(|s| (s.name.clone(), s.value.clone()))
        .collect();
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: r.name.clone(),
            uid: r.uid.clone(),
            namespace: r.namespace.clone(),
            attempt,
        }),
        hostname: hostname(pod),
        log_directory: pod_log_dir(ctx, &r).display().to_string(),
        dns_config: Some(dns_config(ctx, pod)),
        port_mappings,
        labels: sandbox_labels,
        annotations,
        linux: Some(cri::LinuxPodSandboxConfig {
            cgroup_parent: ctx.cgroups.pod(qos::qos_class(pod), &r.uid),
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(namespace_options),
                run_as_user: psc.run_as_user.map(|value| cri::Int64Value { value }),
                run_as_group: psc.run_as_group.map(|value| cri::Int64Value { value }),
                supplemental_groups: supplemental_groups(&psc),
                privileged: spec.containers.iter().any(|c| {
                    c.security_context
                        .as_ref()
                        .and_then(|s| s.privileged)
                        .unwrap_or(false)
                }),
                ..Default::default()
            }),
            sysctls,
            ..Default::default()
        }),
        windows: None,
    }
}

/// Everything a container config needs beyond the pod and the container spec.
#[derive(Debug, Clone, Default)]
pub struct ContainerInputs {
    /// The resolved environment, in order.
    pub env: Vec<(String, String)>,
    /// The expanded command and args.
    pub command: (Vec<String>, Vec<String>),
    /// The host path of each of the container's volumeMounts, in order (subPaths already
    /// prepared: see [`crate::volumes::subpath::mount_sources`]).
    pub mount_sources: Vec<PathBuf>,
    /// The host file mounted at terminationMessagePath.
    pub termination_log: Option<PathBuf>,
    /// The kubelet-managed /etc/hosts (non-hostNetwork pods).
    pub etc_hosts: Option<PathBuf>,
    /// The image reference to run (resolved by the image manager).
    pub image: String,
    /// For an ephemeral container with a target: the CRI id of the target container, whose
    /// process namespace it joins (CRI's `NamespaceMode::Target`).
    pub pid_target: Option<String>,
}

/// The container config for container `c` of `pod` at `restart_count`.
pub fn container_config(
    ctx: &NodeContext,
    pod: &Pod,
    c: &Container,
    restart_count: i32,
    inputs: &ContainerInputs,
) -> cri::ContainerConfig {
    let r = pod_ref(pod);
    let mut container_labels = r.labels();
    container_labels.insert(labels::CONTAINER_NAME.into(), c.name.clone());
    let term_path = c
        .termination_message_path
        .clone()
        .unwrap_or_else(|| "/dev/termination-log".into());
    let mut annotations = HashMap::from([
        (labels::CONTAINER_HASH.to_string(), container_hash(c)),
        (
            labels::CONTAINER_RESTART_COUNT.to_string(),
            restart_count.to_string(),
        ),
        (
            labels::TERMINATION_MESSAGE_PATH.to_string(),
            term_path.clone(),
        ),
        (
            labels::TERMINATION_MESSAGE_POLICY.to_string(),
            c.termination_message_policy
                .clone()
                .unwrap_or_else(|| "File".into()),
        ),
        (
            labels::POD_TERMINATION_GRACE_PERIOD.to_string(),
            pod.spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
                .unwrap_or(30)
                .to_string(),
        ),
    ]);
    // Upstream records the preStop handler so that a container whose pod is gone (deleted
    // while the kubelet was down) still gets its hook.
    if let Some(pre_stop) = c.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref()) {
        if let Ok(json) = serde_json::to_string(pre_stop) {
            annotations.insert(labels::PRE_STOP_HANDLER.to_string(), json);
        }
    }
    let mut mounts: Vec<cri::Mount> = c
        .volume_mounts
        .iter()
        .flatten()
        .zip(&inputs.mount_sources)
        .map(|(m, host)| cri::Mount {
            container_path: m.mount_path.clone(),
            host_path: host.display().to_string(),
            readonly: m.read_only.unwrap_or(false),
            propagation: match m.mount_propagation.as_deref() {
                Some("HostToContainer") => cri::MountPropagation::PropagationHostToContainer as i32,
                Some("Bidirectional") => cri::MountPropagation::PropagationBidirectional as i32,
                _ => cri::MountPropagation::PropagationPrivate as i32,
            },
            ..Default::default()
        })
        .collect();
    let mounted = |p: &str, mounts: &[cri::Mount]| mounts.iter().any(|m| m.container_path == p);
    if let Some(hosts) = &inputs.etc_hosts {
        if !mounted("/etc/hosts", &mounts) {
            mounts.push(cri::Mount {
                container_path: "/etc/hosts".into(),
                host_path: hosts.display().to_string(),
                ..Default::default()
            });
        }
    }
    if let Some(log) = &inputs.termination_log {
        if !mounted(&term_path, &mounts) {
            mounts.push(cri::Mount {
                container_path: term_path,
                host_path: log.display().to_string(),
                ..Default::default()
            });
        }
    }
    let res = Resources::of(c);
    let qos_class = qos::qos_class(pod);
    let resources = cri::LinuxContainerResources {
        cpu_period: if res.cpu_limit.is_some() {
            qos::CPU_PERIOD_US
        } else {
            0
        },
        cpu_quota: res.cpu_limit.map(qos::milli_cpu_to_quota).unwrap_or(0),
        cpu_shares: qos::milli_cpu_to_shares(res.cpu_request.unwrap_or(0)) as i64,
        memory_limit_in_bytes: res.memory_limit.unwrap_or(0),
        oom_score_adj: qos::oom_score_adj(qos_class, res.memory_request, ctx.memory_capacity),
        ..Default::default()
    };
    let sc = c.security_context.clone().unwrap_or_default();
    let psc = pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.clone())
        .unwrap_or_default();
    let pid = if pod
        .spec
        .as_ref()
        .and_then(|s| s.share_process_namespace)
        .unwrap_or(false)
    {
        cri::NamespaceMode::Pod
    } else if inputs.pid_target.is_some() {
        cri::NamespaceMode::Target
    } else {
        cri::NamespaceMode::Container
    };
    let security_context = cri::LinuxContainerSecurityContext {
        privileged: sc.privileged.unwrap_or(false),
        run_as_user: sc
            .run_as_user
            .or(psc.run_as_user)
            .map(|value| cri::Int64Value { value }),
        run_as_group: sc
            .run_as_group
            .or(psc.run_as_group)
            .map(|value| cri::Int64Value { value }),
        readonly_rootfs: sc.read_only_root_filesystem.unwrap_or(false),
        no_new_privs: sc.allow_privilege_escalation == Some(false),
        supplemental_groups: supplemental_groups(&psc),
        capabilities: sc.capabilities.as_ref().map(|caps| cri::Capability {
            add_capabilities: caps.add.clone().unwrap_or_default(),
            drop_capabilities: caps.drop.clone().unwrap_or_default(),
            ..Default::default()
        }),
        namespace_options: Some(cri::NamespaceOption {
            network: if host_network(pod) {
                cri::NamespaceMode::Node as i32
            } else {
                cri::NamespaceMode::Pod as i32
            },
            pid: pid as i32,
            ipc: cri::NamespaceMode::Pod as i32,
            target_id: if pid == cri::NamespaceMode::Target {
                inputs.pid_target.clone().unwrap_or_default()
            } else {
                String::new()
            },
            ..Default::default()
        }),
        ..Default::default()
    };
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: c.name.clone(),
            attempt: restart_count as u32,
        }),
        image: Some(cri::ImageSpec {
            image: inputs.image.clone(),
            ..Default::default()
        }),
        command: inputs.command.0.clone(),
        args: inputs.command.1.clone(),
        working_dir: c.working_dir.clone().unwrap_or_default(),
        envs: inputs
            .env
            .iter()
            .map(|(key, value)| cri::KeyValue {
                key: key.clone(),
                value: value.clone(),
            })
            .collect(),
        mounts,
        labels: container_labels,
        annotations,
        log_path: container_log_path(&c.name, restart_count),
        stdin: c.stdin.unwrap_or(false),
        stdin_once: c.stdin_once.unwrap_or(false),
        tty: c.tty.unwrap_or(false),
        linux: Some(cri::LinuxContainerConfig {
            resources: Some(resources),
            security_context: Some(security_context),
        }),
        ..Default::default()
    }
}

/// The pod's supplemental groups plus its fsGroup, as upstream's effective security
/// context: a non-root container can use the volumes group-owned by the fsGroup.
fn supplemental_groups(psc: &k8s_openapi::api::core::v1::PodSecurityContext) -> Vec<i64> {
    let mut groups = psc.supplemental_groups.clone().unwrap_or_default();
    groups.extend(psc.fs_group.filter(|g| !groups.contains(g)));
    groups
}

/// Whether the QoS class puts the pod directly under `kubepods`.
pub fn is_guaranteed(pod: &Pod) -> bool {
    qos::qos_class(pod) == QosClass::Guaranteed
}

/// The file a container's termination message is written to on the host.
pub fn termination_log_path(pod_dir: &Path, container: &str, restart_count: i32) -> PathBuf {
    pod_dir
        .join("containers")
        .join(container)
        .join(format!("termination-log-{restart_count}"))
}

#[cfg(test)]
mod tests;
