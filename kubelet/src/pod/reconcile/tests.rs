use super::*;
use crate::pod::observed::ObservedSandbox;

const SEC: i64 = 1_000_000_000;

fn pod(restart_policy: &str, init: &[&str], containers: &[&str]) -> Pod {
    let c = |n: &&str| serde_json::json!({"name": n, "image": "busybox"});
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
        "spec": {
            "restartPolicy": restart_policy,
            "initContainers": init.iter().map(c).collect::<Vec<_>>(),
            "containers": containers.iter().map(c).collect::<Vec<_>>(),
        }
    }))
    .unwrap()
}

fn sandbox(ready: bool) -> ObservedSandbox {
    ObservedSandbox {
        id: "sb1".into(),
        attempt: 0,
        ready,
        created_at: 0,
        ips: vec!["10.244.0.5".into()],
    }
}

fn container(
    p: &Pod,
    name: &str,
    state: ContainerState,
    exit: i32,
    rc: i32,
    finished: i64,
) -> ObservedContainer {
    let (_, c) = crate::pod::containers::find(p, name).unwrap();
    ObservedContainer {
        id: format!("{name}-{rc}"),
        sandbox_id: "sb1".into(),
        name: name.into(),
        restart_count: rc,
        hash: container_hash(&c),
        state,
        exit_code: exit,
        reason: String::new(),
        message: String::new(),
        created_at: finished - SEC,
        started_at: finished - SEC,
        finished_at: finished,
        image: "busybox".into(),
        image_ref: "sha256:x".into(),
    }
}

#[test]
fn new_pod_gets_a_sandbox_first() {
    let p = pod("Always", &[], &["a"]);
    let a = compute_pod_actions(&p, &ObservedPod::default(), false, 0);
    assert_eq!(a.create_sandbox, Some(0));
    assert!(a.start.is_empty() && !a.kill_pod);
}

#[test]
fn init_containers_run_in_order_before_app_containers() {
    let p = pod("Always", &["i1", "i2"], &["a"]);
    let mut o = ObservedPod {
        sandboxes: vec![sandbox(true)],
        containers: vec![],
    };
    let a = compute_pod_actions(&p, &o, false, 0);
    assert_eq!(
        a.start.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["i1"]
    );
    o.containers
        .push(container(&p, "i1", ContainerState::Running, 0, 0, 0));
    assert!(
        compute_pod_actions(&p, &o, false, 0).is_noop(),
        "waits for i1"
    );
    o.containers[0] = container(&p, "i1", ContainerState::Exited, 0, 0, SEC);
    let a = compute_pod_actions(&p, &o, false, 2 * SEC);
    assert_eq!(a.start[0].name, "i2");
    o.containers
        .push(container(&p, "i2", ContainerState::Exited, 0, 0, SEC));
    let a = compute_pod_actions(&p, &o, false, 2 * SEC);
    assert_eq!(
        a.start,
        vec![StartContainer {
            name: "a".into(),
            kind: ContainerKind::App,
            restart_count: 0
        }]
    );
}

#[test]
fn crashing_container_restarts_immediately_then_backs_off() {
    let p = pod("Always", &[], &["a"]);
    let mut o = ObservedPod {
        sandboxes: vec![sandbox(true)],
        containers: vec![container(&p, "a", ContainerState::Exited, 1, 0, 100 * SEC)],
    };
    let a = compute_pod_actions(&p, &o, false, 100 * SEC);
    assert_eq!(a.start[0].restart_count, 1, "first restart is immediate");
    o.containers
        .push(container(&p, "a", ContainerState::Exited, 1, 1, 200 * SEC));
    let a = compute_pod_actions(&p, &o, false, 205 * SEC);
    assert!(a.start.is_empty());
    let (reason, msg) = &a.waiting["a"];
    assert_eq!(reason, "CrashLoopBackOff");
    assert!(
        msg.starts_with("back-off 10s restarting failed container=a pod=p_ns(u1)"),
        "{msg}"
    );
    assert_eq!(a.requeue_after, Some(Duration::from_secs(5)));
    let a = compute_pod_actions(&p, &o, false, 210 * SEC);
    assert_eq!(a.start[0].restart_count, 2);
}

#[test]
fn restart_policy_decides_what_restarts() {
    for (policy, exit, restarts) in [
        ("Never", 1, false),
        ("OnFailure", 0, false),
        ("OnFailure", 1, true),
        ("Always", 0, true),
    ] {
        let p = pod(policy, &[], &["a"]);
        let o = ObservedPod {
            sandboxes: vec![sandbox(true)],
            containers: vec![container(&p, "a", ContainerState::Exited, exit, 0, SEC)],
        };
        let a = compute_pod_actions(&p, &o, false, 100 * SEC);
        assert_eq!(!a.start.is_empty(), restarts, "{policy} exit {exit}");
        assert_eq!(
            a.kill_pod, !restarts,
            "{policy} exit {exit}: a finished pod's sandbox stops"
        );
    }
}

#[test]
fn running_pod_is_left_alone_and_readopted() {
    let p = pod("Always", &[], &["a", "b"]);
    let o = ObservedPod {
        sandboxes: vec![sandbox(true)],
        containers: vec![
            container(&p, "a", ContainerState::Running, 0, 3, 0),
            container(&p, "b", ContainerState::Running, 0, 0, 0),
        ],
    };
    assert!(compute_pod_actions(&p, &o, false, 1000 * SEC).is_noop());
}

#[test]
fn changed_spec_restarts_the_container() {
    let p = pod("Always", &[], &["a"]);
    let mut c = container(&p, "a", ContainerState::Running, 0, 0, 0);
    c.hash = "old".into();
    let o = ObservedPod {
        sandboxes: vec![sandbox(true)],
        containers: vec![c],
    };
    let a = compute_pod_actions(&p, &o, false, 0);
    assert_eq!(a.kill.len(), 1);
}

#[test]
fn dead_sandbox_is_replaced_and_terminating_pod_is_killed() {
    let p = pod("Always", &[], &["a"]);
    let o = ObservedPod {
        sandboxes: vec![sandbox(false)],
        containers: vec![],
    };
    let a = compute_pod_actions(&p, &o, false, 0);
    assert_eq!(a.create_sandbox, Some(1));
    assert!(a.kill_pod);
    let running = ObservedPod {
        sandboxes: vec![sandbox(true)],
        containers: vec![container(&p, "a", ContainerState::Running, 0, 0, 0)],
    };
    let a = compute_pod_actions(&p, &running, true, 0);
    assert!(a.kill_pod && a.start.is_empty());
}

#[test]
fn failed_init_container_with_never_fails_the_pod() {
    let p = pod("Never", &["i"], &["a"]);
    let o = ObservedPod {
        sandboxes: vec![sandbox(true)],
        containers: vec![container(&p, "i", ContainerState::Exited, 2, 0, SEC)],
    };
    assert!(init_failed(&p, &o));
    let a = compute_pod_actions(&p, &o, false, 100 * SEC);
    assert!(a.start.is_empty());
}

#[test]
fn sidecars_start_and_keep_running_alongside_app_containers() {
    let p: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
        "spec": {
            "initContainers": [{"name": "side", "image": "busybox", "restartPolicy": "Always"}],
            "containers": [{"name": "a", "image": "busybox"}],
        }
    }))
    .unwrap();
    let mut o = ObservedPod {
        sandboxes: vec![sandbox(true)],
        containers: vec![],
    };
    let a = compute_pod_actions(&p, &o, false, 0);
    assert_eq!(a.start[0].kind, ContainerKind::Sidecar);
    o.containers
        .push(container(&p, "side", ContainerState::Running, 0, 0, 0));
    let a = compute_pod_actions(&p, &o, false, 0);
    assert_eq!(a.start[0].name, "a");
}

#[test]
fn failed_liveness_kills_and_restarts_per_policy() {
    for (policy, restarts) in [("Always", true), ("OnFailure", true), ("Never", false)] {
        let p = pod(policy, &[], &["app", "other"]);
        let o = ObservedPod {
            sandboxes: vec![sandbox(true)],
            containers: vec![
                container(&p, "app", ContainerState::Running, 0, 2, 0),
                container(&p, "other", ContainerState::Running, 0, 0, 0),
            ],
        };
        let unhealthy = BTreeMap::from([(
            "app-2".to_string(),
            ProbeKill {
                probe: "liveness",
                grace_period: Some(3),
            },
        )]);
        let a = compute_pod_actions_probed(&p, &o, false, 100 * SEC, &unhealthy);
        let message = if restarts {
            "Container app failed liveness probe, will be restarted"
        } else {
            "Container app failed liveness probe"
        };
        assert_eq!(
            a.kill,
            vec![("app-2".to_string(), "app".to_string(), message.to_string())],
            "{policy}"
        );
        assert_eq!(a.kill_grace.get("app-2"), Some(&3));
        let started: Vec<(String, i32)> = a
            .start
            .iter()
            .map(|s| (s.name.clone(), s.restart_count))
            .collect();
        let expected = if restarts {
            vec![("app".to_string(), 3)]
        } else {
            vec![]
        };
        assert_eq!(started, expected, "{policy}");
        // Nothing condemned: a healthy pod is left alone.
        assert!(compute_pod_actions_probed(&p, &o, false, 100 * SEC, &BTreeMap::new()).is_noop());
    }
}

fn with_ephemeral(mut p: Pod, name: &str) -> Pod {
    let spec = p.spec.as_mut().unwrap();
    spec.ephemeral_containers.get_or_insert_with(Vec::new).push(
        serde_json::from_value(serde_json::json!({"name": name, "image": "busybox"})).unwrap(),
    );
    p
}

#[test]
fn an_ephemeral_container_starts_once_even_during_initialization_and_never_restarts() {
    let p = with_ephemeral(pod("Always", &["i1"], &["a"]), "debugger");
    let mut o = ObservedPod {
        sandboxes: vec![sandbox(true)],
        containers: vec![container(&p, "i1", ContainerState::Running, 0, 0, 0)],
    };
    let a = compute_pod_actions(&p, &o, false, 10 * SEC);
    assert_eq!(
        a.start,
        vec![StartContainer {
            name: "debugger".into(),
            kind: ContainerKind::Ephemeral,
            restart_count: 0,
        }]
    );
    o.containers = vec![
        container(&p, "i1", ContainerState::Exited, 0, 0, SEC),
        container(&p, "a", ContainerState::Running, 0, 0, 0),
        container(&p, "debugger", ContainerState::Exited, 1, 0, 2 * SEC),
    ];
    let a = compute_pod_actions(&p, &o, false, 600 * SEC);
    assert!(
        a.is_noop(),
        "an exited ephemeral container stays exited: {a:?}"
    );
}

#[test]
fn a_finished_or_terminating_pod_starts_no_ephemeral_container() {
    let p = with_ephemeral(pod("Never", &[], &["a"]), "debugger");
    let o = ObservedPod {
        sandboxes: vec![sandbox(true)],
        containers: vec![container(&p, "a", ContainerState::Exited, 0, 0, SEC)],
    };
    let a = compute_pod_actions(&p, &o, false, 10 * SEC);
    assert!(a.start.is_empty(), "{a:?}");
    let running = ObservedPod {
        sandboxes: vec![sandbox(true)],
        containers: vec![container(&p, "a", ContainerState::Running, 0, 0, 0)],
    };
    assert!(compute_pod_actions(&p, &running, true, 10 * SEC)
        .start
        .is_empty());
}
