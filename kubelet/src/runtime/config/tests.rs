use super::*;

fn ctx() -> NodeContext {
    NodeContext {
        pod_logs_dir: "/var/log/pods".into(),
        cgroups: crate::cgroups::Hierarchy::new("/"),
        cluster_dns: vec!["10.96.0.10".into()],
        cluster_domain: "cluster.local".into(),
        host_resolv_conf: "nameserver 1.1.1.1\nsearch example.com\n".into(),
        memory_capacity: 8 << 30,
    }
}

fn pod(extra: serde_json::Value) -> Pod {
    let mut v = serde_json::json!({
        "metadata": {"name": "web", "namespace": "ns", "uid": "u1", "labels": {"app": "web"}},
        "spec": {"containers": [{
            "name": "c", "image": "busybox",
            "ports": [{"containerPort": 80, "hostPort": 8080}],
            "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}, "requests": {"cpu": "250m", "memory": "32Mi"}},
            "volumeMounts": [{"name": "data", "mountPath": "/data", "subPath": "x"}]
        }]}
    });
    if let serde_json::Value::Object(m) = extra {
        for (k, val) in m {
            v["spec"][k] = val;
        }
    }
    serde_json::from_value(v).unwrap()
}

#[test]
fn sandbox_has_upstream_layout() {
    let s = sandbox_config(&ctx(), &pod(serde_json::json!({})), 2);
    let m = s.metadata.unwrap();
    assert_eq!(
        (
            m.name.as_str(),
            m.namespace.as_str(),
            m.uid.as_str(),
            m.attempt
        ),
        ("web", "ns", "u1", 2)
    );
    assert_eq!(s.hostname, "web");
    assert_eq!(s.log_directory, "/var/log/pods/ns_web_u1");
    assert_eq!(s.labels["app"], "web");
    assert_eq!(s.labels[labels::POD_UID], "u1");
    assert_eq!(s.port_mappings[0].host_port, 8080);
    assert_eq!(s.linux.unwrap().cgroup_parent, "/kubepods/burstable/podu1");
    let dns = s.dns_config.unwrap();
    assert_eq!(dns.servers, vec!["10.96.0.10"]);
    assert_eq!(
        dns.searches,
        vec![
            "ns.svc.cluster.local",
            "svc.cluster.local",
            "cluster.local",
            "example.com"
        ]
    );
    assert_eq!(dns.options, vec!["ndots:5"]);
}

#[test]
fn host_network_pods_have_no_hostname_and_host_dns() {
    let s = sandbox_config(&ctx(), &pod(serde_json::json!({"hostNetwork": true})), 0);
    assert_eq!(s.hostname, "");
    let ns = s
        .linux
        .unwrap()
        .security_context
        .unwrap()
        .namespace_options
        .unwrap();
    assert_eq!(ns.network, cri::NamespaceMode::Node as i32);
    assert_eq!(s.dns_config.unwrap().servers, vec!["1.1.1.1"]);
}

#[test]
fn container_config_carries_resources_mounts_and_readoption_labels() {
    let p = pod(serde_json::json!({}));
    let c = &p.spec.as_ref().unwrap().containers[0];
    let inputs = ContainerInputs {
        mount_sources: vec![PathBuf::from(
            "/var/lib/kubelet/pods/u1/volume-subpaths/data/c/0",
        )],
        image: "docker.io/library/busybox:1.35".into(),
        ..Default::default()
    };
    let cfg = container_config(&ctx(), &p, c, 3, &inputs);
    assert_eq!(cfg.log_path, "c/3.log");
    assert_eq!(cfg.metadata.unwrap().attempt, 3);
    assert_eq!(labels::restart_count(&cfg.annotations), 3);
    assert_eq!(cfg.labels[labels::CONTAINER_NAME], "c");
    assert_eq!(
        cfg.mounts[0].host_path,
        "/var/lib/kubelet/pods/u1/volume-subpaths/data/c/0"
    );
    let r = cfg.linux.unwrap().resources.unwrap();
    assert_eq!(
        (r.cpu_shares, r.cpu_quota, r.cpu_period),
        (256, 50_000, 100_000)
    );
    assert_eq!(r.memory_limit_in_bytes, 64 << 20);
    assert!(r.oom_score_adj > 2 && r.oom_score_adj < 1000);
}

#[test]
fn fs_group_joins_the_supplemental_groups() {
    let p = pod(serde_json::json!({"securityContext": {
        "runAsUser": 1000, "supplementalGroups": [10, 2000], "fsGroup": 2000}}));
    let c = &p.spec.as_ref().unwrap().containers[0];
    let inputs = ContainerInputs {
        mount_sources: vec![PathBuf::from("/x")],
        ..Default::default()
    };
    let cfg = container_config(&ctx(), &p, c, 0, &inputs);
    let sc = cfg.linux.unwrap().security_context.unwrap();
    assert_eq!(sc.supplemental_groups, vec![10, 2000]);
    let p = pod(serde_json::json!({"securityContext": {"fsGroup": 3000}}));
    let sb = sandbox_config(&ctx(), &p, 0);
    let sc = sb.linux.unwrap().security_context.unwrap();
    assert_eq!(sc.supplemental_groups, vec![3000]);
    let c = &p.spec.as_ref().unwrap().containers[0];
    let cfg = container_config(&ctx(), &p, c, 0, &inputs);
    assert_eq!(
        cfg.linux
            .unwrap()
            .security_context
            .unwrap()
            .supplemental_groups,
        vec![3000]
    );
}

#[test]
fn an_ephemeral_container_with_a_target_joins_its_process_namespace() {
    let p = pod(serde_json::json!({}));
    let c = &p.spec.as_ref().unwrap().containers[0];
    let pid_of = |inputs: &ContainerInputs| {
        let cfg = container_config(&ctx(), &p, c, 0, inputs);
        let ns = cfg
            .linux
            .unwrap()
            .security_context
            .unwrap()
            .namespace_options
            .unwrap();
        (ns.pid, ns.target_id)
    };
    let targeted = ContainerInputs {
        pid_target: Some("abc123".into()),
        ..Default::default()
    };
    assert_eq!(
        pid_of(&targeted),
        (cri::NamespaceMode::Target as i32, "abc123".to_string())
    );
    assert_eq!(
        pid_of(&ContainerInputs::default()),
        (cri::NamespaceMode::Container as i32, String::new())
    );
}

/// With the systemd driver the sandbox's cgroup parent is the pod slice in cgroupfs form,
/// as upstream's GetPodCgroupParent (`cgroupManager.Name`): containerd and CRI-O take the
/// slice from its last part (runc's cgroupsPath `<slice>:cri-containerd:<id>`).
#[test]
fn sandbox_cgroup_parent_is_the_pod_slice_with_systemd() {
    use crate::cgroups::{CgroupDriver, Hierarchy};
    let ctx = NodeContext {
        cgroups: Hierarchy::with_driver("/", CgroupDriver::Systemd),
        ..ctx()
    };
    let mut p = pod(serde_json::json!({}));
    p.metadata.uid = Some("6c1a4e95-6bb6-11e6".into());
    let s = sandbox_config(&ctx, &p, 0);
    assert_eq!(
        s.linux.unwrap().cgroup_parent,
        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod6c1a4e95_6bb6_11e6.slice"
    );
}
