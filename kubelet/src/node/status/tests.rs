use super::*;

fn opts() -> Options {
    let m = crate::config::flags::command().get_matches_from([
        "kubelet",
        "--hostname-override=Node-A",
        "--node-ip=10.200.0.2",
        "--node-labels=role=worker",
        "--register-with-taints=dedicated=x:NoSchedule",
        "--provider-id=kind://docker/kind/node-a",
    ]);
    Options::resolve_with(&m, None).unwrap()
}

fn facts() -> HostFacts {
    HostFacts {
        cpus: 2,
        memory: 4 << 30,
        ephemeral_storage: 100 << 30,
        kernel_version: "6.18".into(),
        os_image: "Debian GNU/Linux 12 (bookworm)".into(),
        ..Default::default()
    }
}

#[test]
fn registers_like_upstream() {
    let o = opts();
    let now = Timestamp::now();
    let empty = BTreeMap::new();
    let health = RuntimeHealth {
        version: "containerd://1.6.20".into(),
        not_ready: None,
        ..Default::default()
    };
    let node = initial_node(
        &o,
        node_status(&o, &facts(), &health, None, &now, (&empty, &empty)),
    );
    let labels = node.metadata.labels.as_ref().unwrap();
    assert_eq!(node.metadata.name.as_deref(), Some("node-a"));
    assert_eq!(labels["kubernetes.io/hostname"], "node-a");
    assert_eq!(labels["kubernetes.io/os"], "linux");
    assert_eq!(labels["role"], "worker");
    let spec = node.spec.as_ref().unwrap();
    assert_eq!(
        spec.provider_id.as_deref(),
        Some("kind://docker/kind/node-a")
    );
    assert_eq!(spec.taints.as_ref().unwrap()[0].key, "dedicated");
    let s = node.status.unwrap();
    assert_eq!(s.addresses.as_ref().unwrap()[0].type_, "InternalIP");
    assert_eq!(s.addresses.as_ref().unwrap()[0].address, "10.200.0.2");
    assert_eq!(s.capacity.as_ref().unwrap()["cpu"].0, "2");
    assert_eq!(s.capacity.as_ref().unwrap()["pods"].0, "110");
    assert_eq!(
        s.allocatable.as_ref().unwrap()["memory"].0,
        format!("{}Ki", ((4i64 << 30) - (100 << 20)) / 1024)
    );
    let info = s.node_info.as_ref().unwrap();
    assert!(info.kubelet_version.starts_with("v1.35.0+ferrokube"));
    assert_eq!(info.container_runtime_version, "containerd://1.6.20");
    let types: Vec<&str> = s
        .conditions
        .as_ref()
        .unwrap()
        .iter()
        .map(|c| c.type_.as_str())
        .collect();
    assert_eq!(
        types,
        ["MemoryPressure", "DiskPressure", "PIDPressure", "Ready"]
    );
    assert_eq!(
        s.conditions.as_ref().unwrap()[3].reason.as_deref(),
        Some("KubeletReady")
    );
}

#[test]
fn only_real_changes_count_and_transitions_keep_their_time() {
    let o = opts();
    let empty = BTreeMap::new();
    let t0 = Timestamp::now();
    let ok = RuntimeHealth {
        version: "containerd://1.6.20".into(),
        not_ready: None,
        ..Default::default()
    };
    let first = node_status(&o, &facts(), &ok, None, &t0, (&empty, &empty));
    let t1 = t0 + k8s_openapi::jiff::SignedDuration::from_secs(10);
    let second = node_status(&o, &facts(), &ok, Some(&first), &t1, (&empty, &empty));
    assert!(!node_status_changed(&first, &second), "heartbeat only");
    assert_eq!(
        second.conditions.as_ref().unwrap()[3].last_transition_time,
        first.conditions.as_ref().unwrap()[3].last_transition_time
    );
    let bad = RuntimeHealth {
        version: ok.version.clone(),
        not_ready: Some("container runtime network not ready".into()),
        ..Default::default()
    };
    let third = node_status(&o, &facts(), &bad, Some(&second), &t1, (&empty, &empty));
    assert!(node_status_changed(&second, &third));
    assert_eq!(third.conditions.as_ref().unwrap()[3].status, "False");
}

#[test]
fn downward_allocatable_is_the_reported_allocatable() {
    let mut o = opts();
    o.kube_reserved = BTreeMap::from([
        ("cpu".to_string(), "500m".to_string()),
        ("memory".to_string(), "1Gi".to_string()),
    ]);
    let f = facts();
    let a = downward_allocatable(&o, &f);
    let (_, alloc) = resources(&o, &f, &o.kube_reserved, &o.system_reserved);
    assert_eq!(a.cpu_milli, 1500);
    assert_eq!(
        a.memory,
        api_helpers::quantity::value(&alloc["memory"].0).unwrap()
    );
    assert!(a.memory < (3 << 30) + 1, "reservations come off: {a:?}");
    assert_eq!(
        a.ephemeral_storage,
        api_helpers::quantity::value(&alloc["ephemeral-storage"].0).unwrap()
    );
    assert!(a.ephemeral_storage > 0 && a.ephemeral_storage <= 100 << 30);
}

#[test]
fn a_node_marked_unknown_by_the_controller_is_reported_ready_at_the_next_tick() {
    use crate::node::sync::should_post;
    use std::time::Duration;
    let o = opts();
    let empty = BTreeMap::new();
    let ok = RuntimeHealth {
        version: "containerd://1.6.20".into(),
        not_ready: None,
        ..Default::default()
    };
    let t0 = Timestamp::now();
    let posted = node_status(&o, &facts(), &ok, None, &t0, (&empty, &empty));
    // The kubelet could not reach the API server (a network cut): the node lifecycle
    // controller marked the node Unknown. The kubelet's own view has not changed.
    let mut on_server = posted.clone();
    for c in on_server.conditions.iter_mut().flatten() {
        c.status = "Unknown".into();
        c.reason = Some("NodeStatusUnknown".into());
        c.message = Some("Kubelet stopped posting node status.".into());
    }
    let t1 = t0 + k8s_openapi::jiff::SignedDuration::from_secs(70);
    let every = Duration::from_secs(300);
    let again = node_status(&o, &facts(), &ok, Some(&posted), &t1, (&empty, &empty));
    assert!(
        !should_post(&posted, &again, Duration::from_secs(70), every),
        "nothing changed since the kubelet's last post"
    );
    // Compared with the API server's status, it is out of date: posted now, Ready again
    // with a new transition time.
    let fixed = node_status(&o, &facts(), &ok, Some(&on_server), &t1, (&empty, &empty));
    assert!(should_post(
        &on_server,
        &fixed,
        Duration::from_secs(70),
        every
    ));
    let ready = fixed
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.status, "True");
    assert_eq!(ready.last_transition_time.as_ref().map(|t| t.0), Some(t1));
    // And a report is due every nodeStatusReportFrequency regardless.
    assert!(should_post(&posted, &again, every, every));
}
