use super::*;
use crate::pod::observed::ObservedSandbox;
use crate::pod::reconcile::container_hash;

const SEC: i64 = 1_000_000_000;

fn pod() -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
        "spec": {
            "initContainers": [{"name": "init", "image": "busybox:1.35"}],
            "containers": [{"name": "app", "image": "busybox:1.35"}]
        },
        "status": {"conditions": [{"type": "PodScheduled", "status": "True"}]}
    }))
    .unwrap()
}

fn c(p: &Pod, name: &str, state: ContainerState, exit: i32, rc: i32) -> ObservedContainer {
    let (_, cs) = crate::pod::containers::find(p, name).unwrap();
    ObservedContainer {
        id: format!("{name}{rc}"),
        sandbox_id: "sb".into(),
        name: name.into(),
        restart_count: rc,
        hash: container_hash(&cs),
        state,
        exit_code: exit,
        reason: String::new(),
        message: String::new(),
        created_at: SEC,
        started_at: 2 * SEC,
        finished_at: if state == ContainerState::Exited {
            3 * SEC
        } else {
            0
        },
        image: "busybox:1.35".into(),
        image_ref: "sha256:abc".into(),
    }
}

fn sandbox() -> ObservedSandbox {
    ObservedSandbox {
        id: "sb".into(),
        attempt: 0,
        ready: true,
        created_at: SEC,
        ips: vec!["10.244.0.7".into()],
    }
}

fn inputs() -> StatusInputs {
    StatusInputs {
        host_ips: vec!["10.200.0.1".into()],
        runtime_name: "containerd".into(),
        ..Default::default()
    }
}

fn cond<'a>(s: &'a PodStatus, t: &str) -> &'a PodCondition {
    s.conditions
        .as_ref()
        .unwrap()
        .iter()
        .find(|c| c.type_ == t)
        .unwrap()
}

#[test]
fn pending_pod_waits_in_pod_initializing() {
    let p = pod();
    let o = ObservedPod {
        sandboxes: vec![sandbox()],
        containers: vec![c(&p, "init", ContainerState::Running, 0, 0)],
    };
    let s = pod_status(&p, &o, &inputs(), Timestamp::now());
    assert_eq!(s.phase.as_deref(), Some("Pending"));
    assert_eq!(cond(&s, "Initialized").status, "False");
    assert_eq!(
        cond(&s, "Initialized").reason.as_deref(),
        Some("ContainersNotInitialized")
    );
    assert_eq!(cond(&s, "PodReadyToStartContainers").status, "True");
    let app = &s.container_statuses.as_ref().unwrap()[0];
    assert_eq!(
        app.state
            .as_ref()
            .unwrap()
            .waiting
            .as_ref()
            .unwrap()
            .reason
            .as_deref(),
        Some("PodInitializing")
    );
    assert_eq!(s.qos_class.as_deref(), Some("BestEffort"));
}

#[test]
fn running_pod_reports_upstream_shape() {
    let p = pod();
    let o = ObservedPod {
        sandboxes: vec![sandbox()],
        containers: vec![
            c(&p, "init", ContainerState::Exited, 0, 0),
            c(&p, "app", ContainerState::Running, 0, 0),
        ],
    };
    let s = pod_status(&p, &o, &inputs(), Timestamp::now());
    assert_eq!(s.phase.as_deref(), Some("Running"));
    for t in [
        "PodReadyToStartContainers",
        "Initialized",
        "Ready",
        "ContainersReady",
        "PodScheduled",
    ] {
        assert_eq!(cond(&s, t).status, "True", "{t}");
    }
    assert_eq!(s.pod_ip.as_deref(), Some("10.244.0.7"));
    assert_eq!(s.host_ip.as_deref(), Some("10.200.0.1"));
    let app = &s.container_statuses.as_ref().unwrap()[0];
    assert_eq!(app.container_id.as_deref(), Some("containerd://app0"));
    assert_eq!(app.image_id, "sha256:abc");
    assert!(app.ready && app.started == Some(true));
    let init = &s.init_container_statuses.as_ref().unwrap()[0];
    assert_eq!(
        init.state
            .as_ref()
            .unwrap()
            .terminated
            .as_ref()
            .unwrap()
            .reason
            .as_deref(),
        Some("Completed")
    );
}

#[test]
fn crash_loop_shows_waiting_with_last_state() {
    let p = pod();
    let o = ObservedPod {
        sandboxes: vec![sandbox()],
        containers: vec![
            c(&p, "init", ContainerState::Exited, 0, 0),
            c(&p, "app", ContainerState::Exited, 1, 0),
            c(&p, "app", ContainerState::Exited, 2, 1),
        ],
    };
    let mut i = inputs();
    i.waiting.insert(
        "app".into(),
        (
            "CrashLoopBackOff".into(),
            "back-off 10s restarting failed container=app pod=p_ns(u1)".into(),
        ),
    );
    let s = pod_status(&p, &o, &i, Timestamp::now());
    assert_eq!(s.phase.as_deref(), Some("Running"));
    let app = &s.container_statuses.as_ref().unwrap()[0];
    assert_eq!(app.restart_count, 1);
    assert_eq!(
        app.state
            .as_ref()
            .unwrap()
            .waiting
            .as_ref()
            .unwrap()
            .reason
            .as_deref(),
        Some("CrashLoopBackOff")
    );
    let last = app
        .last_state
        .as_ref()
        .unwrap()
        .terminated
        .as_ref()
        .unwrap();
    assert_eq!((last.exit_code, last.reason.as_deref()), (2, Some("Error")));
    assert_eq!(
        cond(&s, "Ready").reason.as_deref(),
        Some("ContainersNotReady")
    );
    assert_eq!(
        cond(&s, "Ready").message.as_deref(),
        Some("containers with unready status: [app]")
    );
}

#[test]
fn finished_pods_succeed_or_fail_and_unchanged_status_is_not_rewritten() {
    let mut p = pod();
    p.spec.as_mut().unwrap().restart_policy = Some("Never".into());
    let o = ObservedPod {
        sandboxes: vec![sandbox()],
        containers: vec![
            c(&p, "init", ContainerState::Exited, 0, 0),
            c(&p, "app", ContainerState::Exited, 0, 0),
        ],
    };
    let s = pod_status(&p, &o, &inputs(), Timestamp::now());
    assert_eq!(s.phase.as_deref(), Some("Succeeded"));
    assert_eq!(cond(&s, "Ready").reason.as_deref(), Some("PodCompleted"));
    p.status = Some(s.clone());
    let again = pod_status(
        &p,
        &o,
        &inputs(),
        Timestamp::now() + k8s_openapi::jiff::SignedDuration::from_secs(30),
    );
    assert!(!status_changed(&s, &again));
    let failed = ObservedPod {
        sandboxes: vec![sandbox()],
        containers: vec![
            c(&p, "init", ContainerState::Exited, 0, 0),
            c(&p, "app", ContainerState::Exited, 1, 0),
        ],
    };
    assert_eq!(phase(&p, &failed), "Failed");
    assert!(status_changed(
        &s,
        &pod_status(&p, &failed, &inputs(), Timestamp::now())
    ));
}

#[test]
fn readiness_probe_drives_ready_and_conditions() {
    let mut p = pod();
    p.spec.as_mut().unwrap().containers[0].readiness_probe = Some(Default::default());
    p.spec.as_mut().unwrap().containers[0].startup_probe = Some(Default::default());
    let o = ObservedPod {
        sandboxes: vec![sandbox()],
        containers: vec![
            c(&p, "init", ContainerState::Exited, 0, 0),
            c(&p, "app", ContainerState::Running, 0, 0),
        ],
    };
    // No result yet: not started, not ready.
    let s = pod_status(&p, &o, &inputs(), Timestamp::now());
    let init = &s.init_container_statuses.as_ref().unwrap()[0];
    assert_eq!(
        (init.ready, init.started),
        (true, Some(false)),
        "a completed init container is ready, not started"
    );
    let app = &s.container_statuses.as_ref().unwrap()[0];
    assert_eq!((app.started, app.ready), (Some(false), false));
    assert_eq!(cond(&s, "ContainersReady").status, "False");
    assert_eq!(
        cond(&s, "Ready").message.as_deref(),
        Some("containers with unready status: [app]")
    );
    // Started, readiness failing.
    let mut i = inputs();
    i.probes.insert(
        "app0".into(),
        (Some(ProbeResult::Success), Some(ProbeResult::Failure)),
    );
    let s = pod_status(&p, &o, &i, Timestamp::now());
    let app = &s.container_statuses.as_ref().unwrap()[0];
    assert_eq!((app.started, app.ready), (Some(true), false));
    assert_eq!(cond(&s, "Ready").status, "False");
    // Readiness succeeded.
    i.probes.insert(
        "app0".into(),
        (Some(ProbeResult::Success), Some(ProbeResult::Success)),
    );
    let s = pod_status(&p, &o, &i, Timestamp::now());
    assert!(s.container_statuses.as_ref().unwrap()[0].ready);
    assert_eq!(cond(&s, "Ready").status, "True");
    assert_eq!(cond(&s, "ContainersReady").status, "True");
}

#[test]
fn past_the_active_deadline_the_pod_fails_with_deadline_exceeded() {
    let p = pod();
    let o = ObservedPod {
        sandboxes: vec![sandbox()],
        containers: vec![
            c(&p, "init", ContainerState::Exited, 0, 0),
            c(&p, "app", ContainerState::Running, 0, 0),
        ],
    };
    let mut i = inputs();
    i.deadline_exceeded = true;
    let s = pod_status(&p, &o, &i, Timestamp::now());
    assert_eq!(
        (
            s.phase.as_deref(),
            s.reason.as_deref(),
            s.message.as_deref()
        ),
        (
            Some("Failed"),
            Some("DeadlineExceeded"),
            Some("Pod was active on the node longer than the specified deadline")
        )
    );
    assert_eq!(cond(&s, "Ready").status, "False");
    // A pod that already finished keeps its phase.
    let mut done = p.clone();
    done.spec.as_mut().unwrap().restart_policy = Some("Never".into());
    let finished = ObservedPod {
        sandboxes: vec![sandbox()],
        containers: vec![
            c(&done, "init", ContainerState::Exited, 0, 0),
            c(&done, "app", ContainerState::Exited, 0, 0),
        ],
    };
    let s = pod_status(&done, &finished, &i, Timestamp::now());
    assert_eq!((s.phase.as_deref(), s.reason), (Some("Succeeded"), None));
}

#[test]
fn a_failed_init_container_leaves_the_pod_failed_and_not_initialized() {
    let mut p = pod();
    p.spec.as_mut().unwrap().restart_policy = Some("Never".into());
    let o = ObservedPod {
        sandboxes: vec![sandbox()],
        containers: vec![c(&p, "init", ContainerState::Exited, 1, 0)],
    };
    let s = pod_status(&p, &o, &inputs(), Timestamp::now());
    assert_eq!(s.phase.as_deref(), Some("Failed"));
    let init = cond(&s, "Initialized");
    assert_eq!(
        (
            init.status.as_str(),
            init.reason.as_deref(),
            init.message.as_deref()
        ),
        (
            "False",
            Some("ContainersNotInitialized"),
            Some("containers with incomplete status: [init]")
        )
    );
    assert_eq!(cond(&s, "Ready").status, "False");
    // An app container that ran means the pod was initialized.
    let ran = ObservedPod {
        sandboxes: vec![sandbox()],
        containers: vec![
            c(&p, "init", ContainerState::Exited, 0, 0),
            c(&p, "app", ContainerState::Exited, 1, 0),
        ],
    };
    let s = pod_status(&p, &ran, &inputs(), Timestamp::now());
    assert_eq!(
        (s.phase.as_deref(), cond(&s, "Initialized").status.as_str()),
        (Some("Failed"), "True")
    );
}

#[test]
fn conditions_the_kubelet_does_not_own_are_kept() {
    let mut p = pod();
    let disruption = PodCondition {
        type_: "DisruptionTarget".into(),
        status: "True".into(),
        reason: Some("PreemptionByScheduler".into()),
        message: Some("preempted".into()),
        ..Default::default()
    };
    let gate = PodCondition {
        type_: "example.com/gate".into(),
        status: "True".into(),
        ..Default::default()
    };
    p.status.as_mut().unwrap().conditions = Some(vec![
        PodCondition {
            type_: "PodScheduled".into(),
            status: "True".into(),
            ..Default::default()
        },
        disruption.clone(),
        PodCondition {
            type_: "Ready".into(),
            status: "True".into(),
            ..Default::default()
        },
        gate.clone(),
    ]);
    let o = ObservedPod {
        sandboxes: vec![sandbox()],
        containers: vec![c(&p, "init", ContainerState::Exited, 0, 0)],
    };
    let s = pod_status(&p, &o, &inputs(), Timestamp::now());
    assert_eq!(cond(&s, "DisruptionTarget"), &disruption);
    assert_eq!(cond(&s, "example.com/gate"), &gate);
    // The kubelet's own are recomputed, once each.
    assert_eq!(cond(&s, "Ready").status, "False");
    let types: Vec<&str> = s
        .conditions
        .as_ref()
        .unwrap()
        .iter()
        .map(|c| c.type_.as_str())
        .collect();
    assert_eq!(
        types.iter().filter(|t| **t == "Ready").count(),
        1,
        "{types:?}"
    );
    assert_eq!(types.len(), 7, "{types:?}");
    assert!(!owned_by_kubelet("DisruptionTarget"));
}

#[test]
fn a_deleted_pod_whose_containers_stopped_ends_succeeded_or_failed() {
    // restartPolicy Always: exited containers alone leave the pod Running…
    let p = pod();
    let exited = |code| ObservedPod {
        sandboxes: vec![ObservedSandbox {
            ready: false,
            ..sandbox()
        }],
        containers: vec![
            c(&p, "init", ContainerState::Exited, 0, 0),
            c(&p, "app", ContainerState::Exited, code, 0),
        ],
    };
    assert_eq!(
        pod_status(&p, &exited(137), &inputs(), Timestamp::now())
            .phase
            .as_deref(),
        Some("Running")
    );
    // …but once the kubelet stopped it for deletion it is terminal.
    let mut i = inputs();
    i.pod_is_terminal = true;
    let s = pod_status(&p, &exited(137), &i, Timestamp::now());
    assert_eq!(s.phase.as_deref(), Some("Failed"));
    assert_eq!(cond(&s, "Ready").status, "False");
    let s = pod_status(&p, &exited(0), &i, Timestamp::now());
    assert_eq!(s.phase.as_deref(), Some("Succeeded"));
    // A container that never started keeps the usual phase.
    let never = ObservedPod {
        sandboxes: vec![sandbox()],
        containers: vec![c(&p, "init", ContainerState::Exited, 0, 0)],
    };
    assert_eq!(terminal_phase(&p, &never), None);
    // Static pods are left as they are, as upstream.
    let mut st = p.clone();
    st.metadata.annotations = Some(
        [(
            "kubernetes.io/config.source".to_string(),
            "file".to_string(),
        )]
        .into(),
    );
    assert_eq!(terminal_phase(&st, &exited(0)), None);
}

#[test]
fn ephemeral_containers_report_their_own_statuses_never_ready() {
    let mut p = pod();
    p.spec.as_mut().unwrap().ephemeral_containers = Some(
        serde_json::from_value(serde_json::json!([
            {"name": "dbg2", "image": "busybox:1.35"},
            {"name": "dbg1", "image": "busybox:1.35", "targetContainerName": "app"}
        ]))
        .unwrap(),
    );
    let o = ObservedPod {
        sandboxes: vec![sandbox()],
        containers: vec![
            c(&p, "init", ContainerState::Exited, 0, 0),
            c(&p, "app", ContainerState::Running, 0, 0),
            c(&p, "dbg1", ContainerState::Running, 0, 0),
        ],
    };
    let s = pod_status(&p, &o, &inputs(), Timestamp::now());
    let eph = s.ephemeral_container_statuses.as_ref().unwrap();
    assert_eq!(
        eph.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(),
        ["dbg1", "dbg2"]
    );
    assert!(eph[0].state.as_ref().unwrap().running.is_some());
    assert_eq!(eph[0].container_id.as_deref(), Some("containerd://dbg10"));
    let waiting = eph[1].state.as_ref().unwrap().waiting.as_ref().unwrap();
    assert_eq!(waiting.reason.as_deref(), Some("ContainerCreating"));
    assert!(eph.iter().all(|e| !e.ready));
    // The pod itself is as ready as its app containers.
    assert_eq!(cond(&s, "Ready").status, "True");
    // A started ephemeral container is a change the kubelet writes.
    let mut before = s.clone();
    before.ephemeral_container_statuses = None;
    assert!(status_changed(&before, &s));
}

#[test]
fn pods_marked_not_ready_by_the_node_controller_are_overridden_others_are_kept() {
    let status = |conds: &[(&str, &str)]| PodStatus {
        phase: Some("Running".into()),
        conditions: Some(
            conds
                .iter()
                .map(|(t, s)| PodCondition {
                    type_: t.to_string(),
                    status: s.to_string(),
                    ..Default::default()
                })
                .collect(),
        ),
        ..Default::default()
    };
    let ours = status(&[
        ("Ready", "True"),
        ("ContainersReady", "True"),
        ("Initialized", "True"),
    ]);
    // The node lifecycle controller's MarkPodsNotReady, in another order and with the
    // scheduler's condition beside.
    let api = status(&[
        ("PodScheduled", "True"),
        ("Initialized", "True"),
        ("ContainersReady", "True"),
        ("Ready", "False"),
    ]);
    assert!(overridden(&api, &ours));
    // The API's copy agreeing on the kubelet's conditions, whatever others say, is not.
    let agreeing = status(&[
        ("PodScheduled", "True"),
        ("DisruptionTarget", "True"),
        ("Initialized", "True"),
        ("Ready", "True"),
        ("ContainersReady", "True"),
    ]);
    assert!(!overridden(&agreeing, &ours));
}
