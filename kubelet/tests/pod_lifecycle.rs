//! Component tests against a real containerd (started by the test): sandbox and container
//! lifecycle, logs in the /var/log/pods layout, cgroup limits, restart back-off and
//! re-adoption after a kubelet restart.

mod common;

use common::{pod, Rig};
use kubelet::pod::observed::ContainerState;
use kubelet::pod::qos::QosClass;
use kubelet::runtime::{PodInputs, PodRuntime};
use std::time::{Duration, Instant};

async fn wait_for<F: Fn(&kubelet::pod::observed::ObservedPod) -> bool>(
    rt: &PodRuntime,
    p: &k8s_openapi::api::core::v1::Pod,
    what: &str,
    f: F,
) -> kubelet::runtime::SyncResult {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = rt
            .sync_pod(p, false, &PodInputs::default())
            .await
            .expect("sync");
        if f(&r.observed) {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test]
async fn pod_runs_logs_and_stops_gracefully() {
    let Some(rig) = Rig::start("pod_runs_logs_and_stops_gracefully").await else {
        return;
    };
    let rt = &rig.runtime;
    let p = pod(serde_json::json!({
        "metadata": {"name": "web", "namespace": "default", "uid": "uid-lifecycle-1"},
        "spec": {
            "hostNetwork": true,
            "terminationGracePeriodSeconds": 5,
            "initContainers": [{"name": "init", "image": "busybox:1.35", "command": ["sh", "-c", "echo init-done"],
                "resources": {"limits": {"cpu": "100m", "memory": "16Mi"}}}],
            "containers": [{
                "name": "app", "image": "busybox:1.35",
                "command": ["sh", "-c", "echo hello $(GREETING); trap 'echo got-term; exit 0' TERM; while true; do sleep 0.2; done"],
                "env": [{"name": "GREETING", "value": "world"}],
                "resources": {"requests": {"cpu": "100m", "memory": "32Mi"}, "limits": {"cpu": "200m", "memory": "64Mi"}}
            }]
        }
    }));
    let r = wait_for(rt, &p, "app running", |o| {
        o.latest("app", None)
            .is_some_and(|c| c.state == ContainerState::Running)
    })
    .await;
    let init = r.observed.latest("init", None).unwrap();
    assert_eq!(
        (init.state, init.exit_code),
        (ContainerState::Exited, 0),
        "init ran to completion first"
    );
    // Logs in /var/log/pods/<ns>_<name>_<uid>/<container>/<restart>.log, CRI log format.
    let logs = rt.ctx.pod_logs_dir.join("default_web_uid-lifecycle-1");
    let deadline = Instant::now() + Duration::from_secs(10);
    let app_log = logs.join("app/0.log");
    while !std::fs::read_to_string(&app_log)
        .unwrap_or_default()
        .contains("hello world")
    {
        assert!(Instant::now() < deadline, "no 'hello world' in {app_log:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let line = std::fs::read_to_string(&app_log).unwrap();
    assert!(
        line.contains(" stdout F hello world"),
        "CRI log format: {line}"
    );
    assert!(std::fs::read_to_string(logs.join("init/0.log"))
        .unwrap()
        .contains("init-done"));
    // Pod cgroup holds the pod's limits (burstable: requests → shares; every container,
    // init included, has limits → quota and memory limit, as upstream's ResourceConfigForPod).
    let cg = rt.ctx.cgroups.pod(QosClass::Burstable, "uid-lifecycle-1");
    let limits = rig.cgroups().read(&cg).expect("pod cgroup exists");
    assert_eq!(limits.cpu_shares, 102);
    assert_eq!(limits.cpu_quota, Some(20_000));
    assert_eq!(limits.memory_limit, Some(64 << 20));
    // Stopping: SIGTERM reaches the app, which exits 0 well within the grace period.
    let started = Instant::now();
    let r = rt.sync_pod(&p, true, &PodInputs::default()).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "graceful stop took {:?}",
        started.elapsed()
    );
    let app = r.observed.latest("app", None).unwrap();
    assert_eq!(
        (app.state, app.exit_code),
        (ContainerState::Exited, 0),
        "{app:?}"
    );
    assert!(std::fs::read_to_string(&app_log)
        .unwrap()
        .contains("got-term"));
    assert!(r.observed.sandboxes.iter().all(|s| !s.ready));
    let pod_ref = kubelet::runtime::config::pod_ref(&p);
    rt.remove_pod(&pod_ref, &r.observed).await.unwrap();
    assert!(!rig.cgroups().exists(&cg), "pod cgroup removed");
    let left = kubelet::runtime::observe::observe_pod(&rt.cri, "uid-lifecycle-1")
        .await
        .unwrap();
    assert!(left.sandboxes.is_empty() && left.containers.is_empty());
}

#[tokio::test]
async fn crashing_container_backs_off_and_restarts_survive_kubelet_restart() {
    let Some(rig) =
        Rig::start("crashing_container_backs_off_and_restarts_survive_kubelet_restart").await
    else {
        return;
    };
    let rt = &rig.runtime;
    let p = pod(serde_json::json!({
        "metadata": {"name": "crash", "namespace": "default", "uid": "uid-crash-1"},
        "spec": {
            "hostNetwork": true,
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {"name": "crasher", "image": "busybox:1.35", "command": ["sh", "-c", "exit 3"]},
                {"name": "steady", "image": "busybox:1.35", "command": ["sleep", "3600"]}
            ]
        }
    }));
    // First crash restarts at once (restartCount 1); the second crash backs off 10s.
    let r = wait_for(rt, &p, "CrashLoopBackOff", |o| {
        o.latest("crasher", None)
            .is_some_and(|c| c.restart_count == 1 && c.state == ContainerState::Exited)
    })
    .await;
    let crasher = r.observed.latest("crasher", None).unwrap();
    assert_eq!(crasher.exit_code, 3);
    let r = rt.sync_pod(&p, false, &PodInputs::default()).await.unwrap();
    let (reason, msg) = r.waiting.get("crasher").expect("back-off reported");
    assert_eq!(reason, "CrashLoopBackOff");
    assert!(
        msg.starts_with("back-off 10s restarting failed container=crasher"),
        "{msg}"
    );
    let wait = r.requeue_after.expect("requeue at back-off expiry");
    assert!(wait <= Duration::from_secs(10), "{wait:?}");
    // A "restarted kubelet": a new runtime with no memory re-adopts from CRI labels alone.
    let steady_before = r.observed.latest("steady", None).unwrap().clone();
    let fresh = PodRuntime {
        cri: std::sync::Arc::new(
            kubelet::cri::Cri::connect(&rig.containerd.endpoint())
                .await
                .unwrap(),
        ),
        ..rt.clone()
    };
    let again = fresh
        .sync_pod(&p, false, &PodInputs::default())
        .await
        .unwrap();
    let steady_after = again.observed.latest("steady", None).unwrap();
    assert_eq!(
        steady_after.id, steady_before.id,
        "running container was not restarted"
    );
    assert_eq!(steady_after.restart_count, 0);
    assert_eq!(
        again
            .observed
            .latest("crasher", None)
            .unwrap()
            .restart_count,
        1,
        "no restart during back-off"
    );
    assert_eq!(again.waiting["crasher"].0, "CrashLoopBackOff");
    // After the back-off the crasher restarts with restartCount 2.
    tokio::time::sleep(wait + Duration::from_millis(200)).await;
    let r = wait_for(&fresh, &p, "second restart", |o| {
        o.latest("crasher", None)
            .is_some_and(|c| c.restart_count == 2)
    })
    .await;
    assert_eq!(
        r.observed.latest("steady", None).unwrap().id,
        steady_before.id
    );
    let r = fresh
        .sync_pod(&p, true, &PodInputs::default())
        .await
        .unwrap();
    fresh
        .remove_pod(&kubelet::runtime::config::pod_ref(&p), &r.observed)
        .await
        .unwrap();
}
