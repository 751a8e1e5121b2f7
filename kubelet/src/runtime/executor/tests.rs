//! The executor against the in-memory runtime: which CRI calls a sync makes, in which
//! order, and what the pod's result says.

use super::*;
use crate::cgroups::{CgroupManager, Hierarchy, Limits};
use crate::cri::fake::{FakeCri, SANDBOX_IP};
use crate::events::Record;
use k8s_openapi::api::core::v1::PodSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::BTreeSet;
use std::sync::Mutex;
use tokio::sync::mpsc::UnboundedReceiver;

/// Cgroups kept in memory: the paths applied and removed.
#[derive(Default)]
struct MemCgroups(Mutex<BTreeSet<String>>);

impl CgroupManager for MemCgroups {
    fn version(&self) -> &'static str {
        "v2"
    }
    fn apply(&self, path: &str, _: &Limits) -> std::io::Result<()> {
        self.0.lock().unwrap().insert(path.to_string());
        Ok(())
    }
    fn read(&self, _: &str) -> std::io::Result<Limits> {
        Ok(Limits::default())
    }
    fn remove(&self, path: &str) -> std::io::Result<()> {
        self.0.lock().unwrap().remove(path);
        Ok(())
    }
    fn exists(&self, path: &str) -> bool {
        self.0.lock().unwrap().contains(path)
    }
}

const IMAGE: &str = "registry.k8s.io/busybox:1.36";

struct Rig {
    fake: Arc<FakeCri>,
    rt: PodRuntime,
    cgroups: Arc<MemCgroups>,
    _dir: tempfile::TempDir,
}

fn rig() -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let fake = Arc::new(FakeCri::with_images(&[IMAGE]));
    let cgroups = Arc::new(MemCgroups::default());
    let rt = PodRuntime {
        cri: fake.clone(),
        cgroups: cgroups.clone(),
        ctx: NodeContext {
            pod_logs_dir: dir.path().join("logs"),
            cgroups: Hierarchy::new("/"),
            cluster_dns: vec!["10.96.0.10".into()],
            cluster_domain: "cluster.local".into(),
            host_resolv_conf: String::new(),
            memory_capacity: 8 << 30,
        },
        root_dir: dir.path().join("kubelet"),
        image_manager: Default::default(),
    };
    Rig {
        fake,
        rt,
        cgroups,
        _dir: dir,
    }
}

fn container(name: &str) -> Container {
    Container {
        name: name.into(),
        image: Some(IMAGE.into()),
        image_pull_policy: Some("IfNotPresent".into()),
        ..Default::default()
    }
}

fn pod(init: &[&str], containers: &[&str], restart_policy: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            uid: Some("uid-1".into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            init_containers: (!init.is_empty())
                .then(|| init.iter().map(|n| container(n)).collect()),
            containers: containers.iter().map(|n| container(n)).collect(),
            restart_policy: Some(restart_policy.into()),
            termination_grace_period_seconds: Some(7),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn inputs() -> (PodInputs, UnboundedReceiver<Record>) {
    let (recorder, rx) = Recorder::capture();
    let inputs = PodInputs {
        recorder,
        host_ips: vec!["192.168.0.2".into()],
        ..Default::default()
    };
    (inputs, rx)
}

fn events(rx: &mut UnboundedReceiver<Record>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    while let Ok(r) = rx.try_recv() {
        out.push((r.reason, r.message));
    }
    out
}

fn running(r: &SyncResult, name: &str) -> bool {
    r.observed
        .latest(name, None)
        .is_some_and(|c| c.state == ContainerState::Running)
}

#[tokio::test]
async fn starts_sandbox_then_init_containers_then_containers() {
    let Rig {
        fake, rt, cgroups, ..
    } = rig();
    let p = pod(&["setup"], &["app", "sidecar"], "Always");
    let (inputs, mut ev) = inputs();

    let r = rt.sync_pod(&p, false, &inputs).await.unwrap();
    // The sandbox first (in the pod's cgroup), then the init container alone.
    assert_eq!(fake.calls_of("RunPodSandbox"), ["default/web#0"]);
    assert_eq!(fake.calls_of("CreateContainer"), ["setup"]);
    assert!(running(&r, "setup"));
    assert!(r.observed.latest("app", None).is_none());
    assert_eq!(r.observed.sandbox().unwrap().ips, [SANDBOX_IP]);
    assert!(cgroups
        .0
        .lock()
        .unwrap()
        .iter()
        .any(|c| c.contains("uid-1")));
    let names: Vec<_> = fake
        .call_names()
        .into_iter()
        .filter(|n| n.ends_with("Container") || n == "RunPodSandbox")
        .collect();
    assert_eq!(
        names,
        ["RunPodSandbox", "CreateContainer", "StartContainer"]
    );
    let reasons: Vec<_> = events(&mut ev).into_iter().map(|(r, _)| r).collect();
    assert_eq!(reasons, ["Pulled", "Created", "Started"]);

    // The init container completes: both containers start, in the same sandbox.
    let setup = fake.containers_named("setup")[0].clone();
    fake.exit(&setup, 0);
    fake.clear_calls();
    let r = rt.sync_pod(&p, false, &inputs).await.unwrap();
    assert_eq!(fake.calls_of("CreateContainer"), ["app", "sidecar"]);
    assert!(fake.calls_of("RunPodSandbox").is_empty());
    assert!(running(&r, "app") && running(&r, "sidecar"));
    assert!(r.waiting.is_empty(), "{:?}", r.waiting);
    let sandbox = r.observed.sandbox().unwrap().id.clone();
    assert!(r
        .observed
        .containers
        .iter()
        .all(|c| c.sandbox_id == sandbox));
    // The pod's /etc/hosts names its IP.
    let hosts = std::fs::read_to_string(rt.pod_dir("uid-1").join("etc-hosts")).unwrap();
    assert!(hosts.contains(&format!("{SANDBOX_IP}\tweb")), "{hosts}");
}

#[tokio::test]
async fn a_missing_image_is_pulled_first() {
    let Rig { fake, rt, .. } = rig();
    let mut p = pod(&[], &["app"], "Always");
    p.spec.as_mut().unwrap().containers[0].image = Some("example.com/app:2".into());
    let (inputs, mut ev) = inputs();
    let r = rt.sync_pod(&p, false, &inputs).await.unwrap();
    assert_eq!(fake.calls_of("PullImage"), ["example.com/app:2"]);
    assert!(running(&r, "app"));
    let reasons: Vec<_> = events(&mut ev).into_iter().map(|(r, _)| r).collect();
    assert_eq!(reasons, ["Pulling", "Pulled", "Created", "Started"]);
}

#[tokio::test]
async fn a_crashed_container_restarts_then_backs_off() {
    let Rig { fake, rt, .. } = rig();
    let p = pod(&[], &["app"], "Always");
    let (inputs, mut ev) = inputs();
    rt.sync_pod(&p, false, &inputs).await.unwrap();
    let first = fake.containers_named("app")[0].clone();

    // The first crash restarts at once, with restartCount 1 recorded on the new container.
    fake.exit(&first, 1);
    let r = rt.sync_pod(&p, false, &inputs).await.unwrap();
    let app = r.observed.latest("app", None).unwrap();
    assert_ne!(app.id, first);
    assert_eq!(app.restart_count, 1);
    assert_eq!(app.state, ContainerState::Running);

    // The second crash backs off: nothing is created, the container waits.
    fake.exit(&app.id, 1);
    fake.clear_calls();
    events(&mut ev);
    let r = rt.sync_pod(&p, false, &inputs).await.unwrap();
    assert!(fake.calls_of("CreateContainer").is_empty());
    let (why, msg) = &r.waiting["app"];
    assert_eq!(why, "CrashLoopBackOff");
    assert!(
        msg.starts_with("back-off 10s restarting failed container=app"),
        "{msg}"
    );
    let wait = r.requeue_after.expect("requeued at the back-off's end");
    assert!(wait <= Duration::from_secs(10), "{wait:?}");
    let backoff = events(&mut ev);
    assert_eq!(backoff.len(), 1, "{backoff:?}");
    assert_eq!(backoff[0].0, "BackOff");
    assert!(
        backoff[0]
            .1
            .starts_with("Back-off restarting failed container app in pod web_default"),
        "{}",
        backoff[0].1
    );
}

#[tokio::test]
async fn kill_pod_stops_containers_within_the_grace_period_then_the_sandbox() {
    let Rig { fake, rt, .. } = rig();
    let p = pod(&[], &["app", "sidecar"], "Always");
    let (inputs, mut ev) = inputs();
    let r = rt.sync_pod(&p, false, &inputs).await.unwrap();
    fake.clear_calls();
    events(&mut ev);

    rt.kill_pod_with(&p, &r.observed, 7, &inputs).await.unwrap();
    let stopped = fake.calls_of("StopContainer");
    assert_eq!(stopped.len(), 2);
    let s = fake.lock();
    for id in &stopped {
        assert_eq!(s.containers[id].stop_timeout, Some(7));
        assert_eq!(s.containers[id].state, cri::ContainerState::ContainerExited);
    }
    assert!(s.sandboxes.values().all(|sb| !sb.ready));
    drop(s);
    // Containers first, the sandbox last.
    assert_eq!(fake.call_names().last().unwrap(), "StopPodSandbox");
    let mut killing: Vec<_> = events(&mut ev);
    killing.sort();
    assert_eq!(
        killing,
        [
            ("Killing".to_string(), "Stopping container app".to_string()),
            (
                "Killing".to_string(),
                "Stopping container sidecar".to_string()
            ),
        ]
    );
}

#[tokio::test]
async fn a_terminating_pod_is_stopped_and_nothing_restarts() {
    let Rig { fake, rt, .. } = rig();
    let p = pod(&[], &["app"], "Always");
    let (inputs, _ev) = inputs();
    rt.sync_pod(&p, false, &inputs).await.unwrap();
    fake.clear_calls();
    let r = rt.sync_pod(&p, true, &inputs).await.unwrap();
    assert_eq!(fake.calls_of("StopContainer").len(), 1);
    assert!(fake.calls_of("CreateContainer").is_empty());
    assert!(!r.observed.any_running());
    assert!(r.observed.sandboxes.iter().all(|s| !s.ready));

    // Removal takes the containers, the sandbox, the pod cgroup and directory.
    rt.remove_pod(&config::pod_ref(&p), &r.observed)
        .await
        .unwrap();
    let s = fake.lock();
    assert!(s.containers.is_empty() && s.sandboxes.is_empty());
    assert!(!rt.pod_dir("uid-1").exists());
}

#[tokio::test]
async fn a_restarted_kubelet_adopts_running_containers() {
    let Rig { fake, rt, .. } = rig();
    let p = pod(&["setup"], &["app"], "Always");
    let (inputs, _ev) = inputs();
    rt.sync_pod(&p, false, &inputs).await.unwrap();
    fake.exit(&fake.containers_named("setup")[0], 0);
    let before = rt.sync_pod(&p, false, &inputs).await.unwrap();
    let app = before.observed.latest("app", None).unwrap().clone();

    // A new runtime with no memory of the pod reads everything back from CRI's labels.
    let fresh = PodRuntime {
        image_manager: Default::default(),
        ..rt.clone()
    };
    fake.clear_calls();
    let after = fresh.sync_pod(&p, false, &inputs).await.unwrap();
    assert!(fake.calls_of("RunPodSandbox").is_empty());
    assert!(fake.calls_of("CreateContainer").is_empty());
    assert!(fake.calls_of("StopContainer").is_empty());
    assert_eq!(after.observed.latest("app", None).unwrap().id, app.id);
    // The completed init container is not run again.
    assert_eq!(fake.containers_named("setup").len(), 1);
}

#[tokio::test]
async fn a_dead_sandbox_is_recreated_with_the_next_attempt() {
    let Rig { fake, rt, .. } = rig();
    let p = pod(&[], &["app"], "Always");
    let (inputs, _ev) = inputs();
    let r = rt.sync_pod(&p, false, &inputs).await.unwrap();
    let old = r.observed.sandbox().unwrap().id.clone();
    // The sandbox dies under the pod (e.g. the node rebooted): its containers with it.
    fake.lock().sandboxes.get_mut(&old).unwrap().ready = false;
    let old_app = fake.containers_named("app")[0].clone();
    fake.exit(&old_app, 137);
    fake.clear_calls();

    let r = rt.sync_pod(&p, false, &inputs).await.unwrap();
    assert_eq!(fake.calls_of("RunPodSandbox"), ["default/web#1"]);
    let new = r.observed.sandbox().unwrap();
    assert_ne!(new.id, old);
    assert!(new.ready);
    let app = r.observed.latest("app", None).unwrap();
    assert_eq!(app.sandbox_id, new.id);
    assert_eq!(app.state, ContainerState::Running);
}

#[tokio::test]
async fn a_start_error_is_the_containers_waiting_reason_and_a_failed_event() {
    let Rig { fake, rt, .. } = rig();
    let p = pod(&[], &["app"], "Always");
    let (inputs, mut ev) = inputs();
    fake.fail_next(
        "StartContainer",
        tonic::Status::unknown("failed to create shim task: exec: \"/nope\": not found"),
    );
    let r = rt.sync_pod(&p, false, &inputs).await.unwrap();
    let (why, msg) = &r.waiting["app"];
    assert_eq!(why, "RunContainerError");
    assert!(msg.contains("/nope"), "{msg}");
    assert_eq!(r.requeue_after, Some(START_RETRY));
    assert_eq!(
        r.observed.latest("app", None).unwrap().state,
        ContainerState::Created
    );
    let failed: Vec<_> = events(&mut ev)
        .into_iter()
        .filter(|(r, _)| r == "Failed")
        .collect();
    assert_eq!(failed.len(), 1);
    assert!(failed[0].1.starts_with("Error: "), "{}", failed[0].1);

    // The next sync tries again (a new container) and succeeds.
    let r = rt.sync_pod(&p, false, &inputs).await.unwrap();
    assert!(running(&r, "app"));
    assert!(r.waiting.is_empty());
}

#[tokio::test]
async fn a_sandbox_error_fails_the_sync_with_failed_create_pod_sandbox() {
    let Rig { fake, rt, .. } = rig();
    let p = pod(&[], &["app"], "Always");
    let (inputs, mut ev) = inputs();
    fake.fail_next("RunPodSandbox", tonic::Status::internal("no network"));
    let err = rt.sync_pod(&p, false, &inputs).await.unwrap_err();
    assert!(format!("{err:#}").contains("no network"), "{err:#}");
    assert!(fake.calls_of("CreateContainer").is_empty());
    let e = events(&mut ev);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].0, "FailedCreatePodSandBox");
    assert_eq!(
        e[0].1,
        "Failed to create pod sandbox: rpc error: code = Internal desc = no network"
    );
    // The caller can tell the runtime's refusal from the node's own failures.
    assert!(matches!(
        err.downcast_ref::<SandboxError>(),
        Some(SandboxError::Runtime(s)) if s.code() == tonic::Code::Internal
    ));
}

#[tokio::test]
async fn a_runtime_class_that_cannot_be_read_holds_the_sandbox_back() {
    let Rig { fake, rt, .. } = rig();
    let p = pod(&[], &["app"], "Always");
    let (mut inputs, mut ev) = inputs();
    inputs.runtime_handler = Some(Err("runtimeclasses.node.k8s.io \"gvisor\" not found".into()));
    let err = rt.sync_pod(&p, false, &inputs).await.unwrap_err();
    assert!(matches!(
        err.downcast_ref::<SandboxError>(),
        Some(SandboxError::RuntimeClass(_))
    ));
    assert!(fake.calls_of("RunPodSandbox").is_empty());
    assert_eq!(
        events(&mut ev),
        [(
            "FailedCreatePodSandBox".to_string(),
            "Failed to create pod sandbox: runtimeclasses.node.k8s.io \"gvisor\" not found"
                .to_string()
        )]
    );
    // The handler it names goes to the runtime.
    inputs.runtime_handler = Some(Ok("runsc".into()));
    rt.sync_pod(&p, false, &inputs).await.unwrap();
    let s = fake.lock();
    assert_eq!(
        s.sandboxes.values().next().unwrap().runtime_handler,
        "runsc"
    );
}

#[tokio::test]
async fn a_failed_post_start_hook_kills_the_container() {
    let Rig { fake, rt, .. } = rig();
    let mut p = pod(&[], &["app"], "Always");
    p.spec.as_mut().unwrap().containers[0].lifecycle = Some(
        serde_json::from_value(serde_json::json!({
            "postStart": {"exec": {"command": ["sh", "-c", "exit 3"]}}
        }))
        .unwrap(),
    );
    fake.lock().exec_result = Some((3, b"nope".to_vec()));
    let (inputs, mut ev) = inputs();
    let r = rt.sync_pod(&p, false, &inputs).await.unwrap();
    let id = fake.containers_named("app")[0].clone();
    assert_eq!(fake.calls_of("ExecSync"), [format!("{id} sh -c exit 3")]);
    assert_eq!(fake.calls_of("StopContainer"), std::slice::from_ref(&id));
    assert_eq!(
        fake.state_of(&id),
        Some(cri::ContainerState::ContainerExited)
    );
    let (why, msg) = &r.waiting["app"];
    assert_eq!(why, "PostStartHookError");
    assert!(
        msg.starts_with("Exec lifecycle hook ([\"sh\", \"-c\", \"exit 3\"]) for Container \"app\""),
        "{msg}"
    );
    let reasons: Vec<_> = events(&mut ev)
        .into_iter()
        .map(|(r, m)| format!("{r}: {m}"))
        .collect();
    assert!(
        reasons.contains(&"FailedPostStartHook: PostStartHook failed".to_string()),
        "{reasons:?}"
    );
    assert!(
        reasons.contains(&"Killing: FailedPostStartHook".to_string()),
        "{reasons:?}"
    );
}

#[tokio::test]
async fn a_create_error_is_create_container_error() {
    let Rig { fake, rt, .. } = rig();
    let p = pod(&[], &["app"], "Always");
    let (inputs, _ev) = inputs();
    fake.fail_next("CreateContainer", tonic::Status::internal("disk full"));
    let r = rt.sync_pod(&p, false, &inputs).await.unwrap();
    assert_eq!(
        r.waiting["app"],
        ("CreateContainerError".to_string(), "disk full".to_string())
    );
    assert!(fake.calls_of("StartContainer").is_empty());
}

#[tokio::test]
async fn stopping_a_container_that_is_already_gone_succeeds() {
    let Rig { fake, rt, .. } = rig();
    fake.fail_next(
        "StopContainer",
        tonic::Status::not_found("no such container"),
    );
    rt.kill_container("c9999", None, 5).await.unwrap();
    assert_eq!(fake.calls_of("StopContainer"), ["c9999"]);
}
