use super::*;
use crate::pod::observed::{ContainerState, ObservedContainer, ObservedSandbox};
use k8s_openapi::api::core::v1::{Container, ContainerPort, PodSpec, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

fn pod(uid: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(format!("pod-{uid}")),
            namespace: Some("default".into()),
            uid: Some(uid.into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "c".into(),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn with_host_port(mut p: Pod, port: i32) -> Pod {
    p.spec.as_mut().unwrap().containers[0].ports = Some(vec![ContainerPort {
        container_port: port,
        host_port: Some(port),
        ..Default::default()
    }]);
    p
}

fn with_phase(mut p: Pod, phase: &str, reason: Option<&str>) -> Pod {
    p.status = Some(PodStatus {
        phase: Some(phase.into()),
        reason: reason.map(str::to_string),
        ..Default::default()
    });
    p
}

fn none() -> BTreeSet<String> {
    BTreeSet::new()
}

fn eviction(uid: &str) -> Eviction {
    Eviction {
        uid: uid.into(),
        message: "The node was low on resource: memory. ".into(),
        grace_period: 0,
    }
}

fn runtime_pod(uid: &str, state: ContainerState) -> (PodRef, ObservedPod) {
    let r = PodRef {
        namespace: "default".into(),
        name: format!("pod-{uid}"),
        uid: uid.into(),
    };
    let o = ObservedPod {
        sandboxes: vec![ObservedSandbox {
            id: format!("sb-{uid}"),
            attempt: 0,
            ready: true,
            created_at: 1,
            ips: vec![],
        }],
        containers: vec![ObservedContainer {
            id: format!("c-{uid}"),
            sandbox_id: format!("sb-{uid}"),
            name: "c".into(),
            restart_count: 0,
            hash: String::new(),
            state,
            exit_code: 0,
            reason: String::new(),
            message: String::new(),
            created_at: 1,
            started_at: 2,
            finished_at: 0,
            image: String::new(),
            image_ref: String::new(),
        }],
    };
    (r, o)
}

#[test]
fn a_new_pod_gets_a_worker_and_updates_go_to_it() {
    let mut s = State::default();
    let p = pod("a");
    assert_eq!(s.apply(p.clone(), &none(), []), [Effect::Upsert(p.clone())]);
    assert!(s.has_worker("a"));
    let mut changed = p.clone();
    changed.metadata.labels = Some([("x".to_string(), "y".to_string())].into());
    assert_eq!(
        s.apply(changed.clone(), &none(), [&p]),
        [Effect::Upsert(changed)]
    );
}

#[test]
fn a_pod_under_pressure_is_rejected_once_and_never_again() {
    let mut s = State::default();
    let p = pod("a");
    let pressure = BTreeSet::from(["DiskPressure".to_string()]);
    let effects = s.apply(p.clone(), &pressure, []);
    let [Effect::Reject(rejected, r)] = &effects[..] else {
        panic!("{effects:?}")
    };
    assert_eq!(rejected, &p);
    assert_eq!(r.reason, "Evicted");
    assert_eq!(r.message, "The node had condition: [DiskPressure]. ");
    assert!(!s.has_worker("a"));
    // Not checked again, even once the pressure is gone…
    assert!(s.apply(p.clone(), &none(), []).is_empty());
    // …until the pod is deleted (a pod of the same UID never comes back, but the memory goes).
    assert_eq!(s.delete(&p), [Effect::Forget("a".into())]);
    assert_eq!(s.apply(p.clone(), &none(), []), [Effect::Upsert(p)]);
}

#[test]
fn a_host_port_conflict_is_rejected_against_the_kubelets_pods() {
    let mut s = State::default();
    let running = with_host_port(pod("a"), 8080);
    s.apply(running.clone(), &none(), []);
    let effects = s.apply(with_host_port(pod("b"), 8080), &none(), [&running]);
    assert!(
        matches!(&effects[..], [Effect::Reject(_, r)] if r.reason == crate::eviction::predicate::NODE_PORTS),
        "{effects:?}"
    );
    // A pod the API already reports Running was admitted before: not checked again.
    let seen = with_phase(with_host_port(pod("c"), 8080), "Running", None);
    assert_eq!(
        s.apply(seen.clone(), &none(), [&running]),
        [Effect::Upsert(seen)]
    );
}

#[test]
fn deletion_stops_the_worker_which_is_reaped_when_done() {
    let mut s = State::default();
    let p = pod("a");
    s.apply(p.clone(), &none(), []);
    assert_eq!(
        s.delete(&p),
        [Effect::Forget("a".into()), Effect::Stop("a".into())]
    );
    assert_eq!(
        s.worker_done("a"),
        [Effect::Reap("a".into()), Effect::Forget("a".into())]
    );
    assert!(!s.has_worker("a"));
}

#[test]
fn an_evicted_pod_is_stopped_then_left_evicted_and_never_restarted() {
    let mut s = State::default();
    let p = pod("a");
    s.apply(p.clone(), &none(), []);
    assert_eq!(
        s.evict(eviction("a"), Some(p.clone())),
        [Effect::Evict("a".into(), 0)]
    );
    // Updates from the API no longer reach the worker.
    assert!(s.apply(p.clone(), &none(), []).is_empty());
    assert_eq!(
        s.worker_done("a"),
        [
            Effect::Reap("a".into()),
            Effect::Forget("a".into()),
            Effect::WriteEvicted(p.clone(), "The node was low on resource: memory. ".into()),
        ]
    );
    // The pod comes back from the API as Failed/Evicted: nothing starts it again.
    assert!(s
        .apply(with_phase(p, "Failed", Some("Evicted")), &none(), [])
        .is_empty());
}

#[test]
fn only_pods_with_a_worker_are_evicted() {
    let mut s = State::default();
    assert!(s.evict(eviction("a"), Some(pod("a"))).is_empty());
    s.apply(pod("b"), &none(), []);
    assert!(s.evict(eviction("b"), None).is_empty());
}

#[test]
fn static_pods_start_and_a_changed_file_replaces_the_pod() {
    let mut s = State::default();
    let (a, b) = (pod("a"), pod("b"));
    assert_eq!(
        s.statics(vec![a.clone(), b.clone()]),
        [Effect::Upsert(a.clone()), Effect::Upsert(b.clone())]
    );
    // b's file changed (a new UID): the old b stops, the new one starts.
    let b2 = pod("b2");
    assert_eq!(
        s.statics(vec![a.clone(), b2.clone()]),
        [
            Effect::Forget("b".into()),
            Effect::Stop("b".into()),
            Effect::Upsert(a),
            Effect::Upsert(b2),
        ]
    );
}

#[test]
fn relist_wakes_workers_whose_pods_changed() {
    let mut s = State::default();
    s.apply(pod("a"), &none(), []);
    let mut all = HashMap::from([("a".to_string(), runtime_pod("a", ContainerState::Running))]);
    assert_eq!(s.relist(&all), [Effect::Wake("a".into())]);
    // Nothing changed: nobody is woken.
    assert!(s.relist(&all).is_empty());
    // The container exited.
    all.insert("a".into(), runtime_pod("a", ContainerState::Exited));
    assert_eq!(s.relist(&all), [Effect::Wake("a".into())]);
}

#[test]
fn orphans_are_cleaned_up_only_once_the_watch_has_synced() {
    let mut s = State::default();
    s.apply(pod("a"), &none(), []);
    let all = HashMap::from([
        ("a".to_string(), runtime_pod("a", ContainerState::Running)),
        (
            "gone".to_string(),
            runtime_pod("gone", ContainerState::Running),
        ),
    ]);
    // Before the first full list a pod without a worker may just not be listed yet.
    assert_eq!(s.relist(&all), [Effect::Wake("a".into())]);
    s.synced();
    let (r, o) = all["gone"].clone();
    assert_eq!(s.relist(&all), [Effect::CleanupOrphan(r, o)]);
}

#[test]
fn static_pods_are_never_orphans() {
    let mut s = State::default();
    s.statics(vec![pod("static")]);
    s.synced();
    let all = HashMap::from([(
        "static".to_string(),
        runtime_pod("static", ContainerState::Running),
    )]);
    assert_eq!(s.relist(&all), [Effect::Wake("static".into())]);
}

#[test]
fn fingerprints_follow_sandbox_readiness_and_container_states() {
    let (_, running) = runtime_pod("a", ContainerState::Running);
    let (_, exited) = runtime_pod("a", ContainerState::Exited);
    assert_ne!(fingerprint(&running), fingerprint(&exited));
    let mut not_ready = running.clone();
    not_ready.sandboxes[0].ready = false;
    assert_ne!(fingerprint(&running), fingerprint(&not_ready));
    assert_eq!(fingerprint(&running), fingerprint(&running.clone()));
}
