//! Probes against a real containerd (started by the test), driven as the pod worker drives
//! them: sync through CRI, probe workers per running container, status from the results.
//! Exec readiness flips Ready when a file appears; httpGet (busybox httpd) and tcpSocket
//! probes pass; a startup probe holds liveness back, then a failing liveness probe
//! restarts the container.

mod common;

use common::{pod, Rig};
use k8s_openapi::api::core::v1::{Pod, PodStatus};
use k8s_openapi::jiff::Timestamp;
use kubelet::events::{Record, Recorder};
use kubelet::pod::observed::ContainerState;
use kubelet::pod::status::{pod_status, StatusInputs};
use kubelet::prober::PodProbes;
use kubelet::runtime::{PodInputs, PodRuntime, SyncResult};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Notify};

const HOST_IP: &str = "127.0.0.1";

/// The pod worker's loop without the apiserver.
struct Driver<'a> {
    rt: &'a PodRuntime,
    probes: PodProbes,
    recorder: Recorder,
    events: mpsc::UnboundedReceiver<Record>,
    seen: Vec<Record>,
    wake: Arc<Notify>,
}

impl<'a> Driver<'a> {
    fn new(rt: &'a PodRuntime) -> Self {
        let (recorder, events) = Recorder::capture();
        let wake = Arc::new(Notify::new());
        Driver {
            rt,
            probes: PodProbes::new(rt.cri.clone(), recorder.clone(), wake.clone()),
            recorder,
            events,
            seen: Vec::new(),
            wake,
        }
    }

    async fn step(&mut self, p: &Pod) -> (SyncResult, PodStatus) {
        let inputs = PodInputs {
            unhealthy: self.probes.kills(p),
            recorder: self.recorder.clone(),
            host_ips: vec![HOST_IP.into()],
            ..Default::default()
        };
        let r = self.rt.sync_pod(p, false, &inputs).await.expect("sync");
        self.probes.sync(p, &r.observed, HOST_IP, false);
        let status_inputs = StatusInputs {
            waiting: r.waiting.clone(),
            host_ips: vec![HOST_IP.into()],
            runtime_name: "containerd".into(),
            probes: self.probes.health(),
            ..Default::default()
        };
        let status = pod_status(p, &r.observed, &status_inputs, Timestamp::now());
        while let Ok(e) = self.events.try_recv() {
            self.seen.push(e);
        }
        (r, status)
    }

    /// Steps until `f` holds, waking on probe results as the worker does.
    async fn until<F: Fn(&SyncResult, &PodStatus) -> bool>(
        &mut self,
        p: &Pod,
        what: &str,
        within: Duration,
        f: F,
    ) -> (SyncResult, PodStatus) {
        let deadline = Instant::now() + within;
        loop {
            let (r, s) = self.step(p).await;
            if f(&r, &s) {
                return (r, s);
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {:#?}",
                s.container_statuses
            );
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(300)) => {}
            }
        }
    }

    fn events_with(&self, reason: &str, container: &str) -> Vec<String> {
        let path = format!("spec.containers{{{container}}}");
        self.seen
            .iter()
            .filter(|e| e.reason == reason && e.involved.field_path.as_deref() == Some(&path))
            .map(|e| e.message.clone())
            .collect()
    }
}

fn status_of<'s>(s: &'s PodStatus, name: &str) -> &'s k8s_openapi::api::core::v1::ContainerStatus {
    s.container_statuses
        .iter()
        .flatten()
        .find(|c| c.name == name)
        .unwrap()
}

fn condition(s: &PodStatus, t: &str) -> String {
    s.conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == t)
        .map(|c| c.status.clone())
        .unwrap_or_default()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn exec(rt: &PodRuntime, id: &str, cmd: &[&str]) {
    let r = rt
        .cri
        .runtime
        .clone()
        .exec_sync(k8s_cri::v1::ExecSyncRequest {
            container_id: id.into(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout: 5,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r.exit_code,
        0,
        "{cmd:?}: {:?}",
        String::from_utf8_lossy(&r.stderr)
    );
}

async fn stop(rt: &PodRuntime, p: &Pod) {
    let r = rt.sync_pod(p, true, &PodInputs::default()).await.unwrap();
    rt.remove_pod(&kubelet::runtime::config::pod_ref(p), &r.observed)
        .await
        .unwrap();
}

#[tokio::test]
async fn readiness_follows_exec_http_and_tcp_probes() {
    let Some(rig) = Rig::start("readiness_follows_exec_http_and_tcp_probes").await else {
        return;
    };
    let rt = &rig.runtime;
    let port = free_port();
    let p = pod(serde_json::json!({
        "metadata": {"name": "ready", "namespace": "default", "uid": "uid-probe-ready"},
        "spec": {
            "hostNetwork": true,
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {"name": "app", "image": "busybox:1.35", "command": ["sleep", "3600"],
                 "env": [{"name": "MARK", "value": "/tmp/ready"}],
                 "readinessProbe": {"exec": {"command": ["cat", "$(MARK)"]},
                                    "periodSeconds": 1, "failureThreshold": 1}},
                {"name": "web", "image": "busybox:1.35",
                 "command": ["sh", "-c", format!("mkdir -p /www && echo ok > /www/healthz && exec httpd -f -p 127.0.0.1:{port} -h /www")],
                 "ports": [{"name": "http", "containerPort": port}],
                 "startupProbe": {"tcpSocket": {"port": port}, "periodSeconds": 1, "failureThreshold": 30},
                 "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 1},
                 "livenessProbe": {"httpGet": {"path": "/healthz", "port": port}, "periodSeconds": 1}}
            ]
        }
    }));
    let mut d = Driver::new(rt);
    // Both run; web becomes ready through its probes, app stays unready without the file.
    let (r, s) = d
        .until(&p, "web ready", Duration::from_secs(30), |_, s| {
            status_of(s, "web").ready
        })
        .await;
    let app = status_of(&s, "app");
    assert!(app.state.as_ref().unwrap().running.is_some());
    assert_eq!(
        app.started,
        Some(true),
        "no startup probe: started once running"
    );
    assert!(!app.ready, "exec readiness fails until /tmp/ready exists");
    assert_eq!(condition(&s, "Ready"), "False");
    assert_eq!(condition(&s, "ContainersReady"), "False");
    assert_eq!(status_of(&s, "web").started, Some(true));
    assert_eq!(
        d.probes.worker_count(),
        4,
        "one worker per container and probe"
    );
    // The file appears: app turns ready and so does the pod.
    let app_id = r.observed.latest("app", None).unwrap().id.clone();
    exec(rt, &app_id, &["touch", "/tmp/ready"]).await;
    let (_, s) = d
        .until(&p, "pod Ready", Duration::from_secs(15), |_, s| {
            condition(s, "Ready") == "True"
        })
        .await;
    assert!(status_of(&s, "app").ready);
    assert_eq!(condition(&s, "ContainersReady"), "True");
    // And back: removing the file makes it unready again, with upstream's event.
    exec(rt, &app_id, &["rm", "/tmp/ready"]).await;
    let (r, _) = d
        .until(&p, "app unready again", Duration::from_secs(15), |_, s| {
            !status_of(s, "app").ready && condition(s, "Ready") == "False"
        })
        .await;
    let unhealthy = d.events_with("Unhealthy", "app");
    assert!(
        unhealthy
            .iter()
            .any(|m| m.starts_with("Readiness probe failed: cat: can't open '/tmp/ready'")),
        "{unhealthy:?}"
    );
    assert_eq!(
        r.observed.latest("web", None).unwrap().restart_count,
        0,
        "the passing liveness probe restarted nothing"
    );
    // prober_probe_total counts by type and result.
    let metrics = component_base::metrics::Metrics::new();
    kubelet::prober::metrics::register(&metrics);
    let text = metrics.render();
    for (kind, result, container) in [
        ("Readiness", "failed", "app"),
        ("Readiness", "successful", "app"),
        ("Readiness", "successful", "web"),
        ("Liveness", "successful", "web"),
        ("Startup", "successful", "web"),
    ] {
        assert!(
            text.lines().any(|l| l.starts_with("prober_probe_total{")
                && l.contains(&format!("probe_type=\"{kind}\""))
                && l.contains(&format!("result=\"{result}\""))
                && l.contains(&format!("container=\"{container}\""))
                && l.contains("pod=\"ready\"")),
            "no {kind}/{result}/{container} in:\n{text}"
        );
    }
    drop(d);
    stop(rt, &p).await;
}

#[tokio::test]
async fn startup_probe_gates_liveness_which_then_restarts_the_container() {
    let Some(rig) =
        Rig::start("startup_probe_gates_liveness_which_then_restarts_the_container").await
    else {
        return;
    };
    let rt = &rig.runtime;
    let p = pod(serde_json::json!({
        "metadata": {"name": "live", "namespace": "default", "uid": "uid-probe-live"},
        "spec": {
            "hostNetwork": true,
            "terminationGracePeriodSeconds": 30,
            "containers": [
                {"name": "app", "image": "busybox:1.35", "command": ["sleep", "3600"],
                 "startupProbe": {"exec": {"command": ["cat", "/tmp/started"]},
                                  "periodSeconds": 1, "failureThreshold": 100},
                 "livenessProbe": {"exec": {"command": ["cat", "/tmp/alive"]},
                                   "periodSeconds": 1, "failureThreshold": 2,
                                   "terminationGracePeriodSeconds": 1}}
            ]
        }
    }));
    let mut d = Driver::new(rt);
    let (r, s) = d
        .until(&p, "app running", Duration::from_secs(30), |r, _| {
            r.observed
                .latest("app", None)
                .is_some_and(|c| c.state == ContainerState::Running)
        })
        .await;
    assert_eq!(status_of(&s, "app").started, Some(false));
    // Liveness would fail at once (no /tmp/alive) but waits for the startup probe.
    let first = r.observed.latest("app", None).unwrap().clone();
    let gated_until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < gated_until {
        let (r, s) = d.step(&p).await;
        let app = r.observed.latest("app", None).unwrap();
        assert_eq!(app.id, first.id, "no restart before the container started");
        assert_eq!(status_of(&s, "app").started, Some(false));
        assert!(!status_of(&s, "app").ready);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(d.events_with("Killing", "app").is_empty());
    assert!(d
        .events_with("Unhealthy", "app")
        .iter()
        .all(|m| m.starts_with("Startup probe failed: ")));
    // Started: liveness now runs, fails twice, and the container is killed and restarted.
    let started_at = Instant::now();
    exec(rt, &first.id, &["touch", "/tmp/started"]).await;
    d.until(&p, "started", Duration::from_secs(10), |_, s| {
        status_of(s, "app").started == Some(true)
    })
    .await;
    let (r, s) = d
        .until(&p, "restart", Duration::from_secs(30), |_, s| {
            status_of(s, "app").restart_count >= 1
        })
        .await;
    let elapsed = started_at.elapsed();
    let previous = r
        .observed
        .containers
        .iter()
        .find(|c| c.id == first.id)
        .expect("the killed container is kept");
    assert_eq!(previous.state, ContainerState::Exited);
    assert_eq!(
        previous.exit_code, 137,
        "sleep ignores SIGTERM: killed after the probe's grace period"
    );
    // Probe grace 1s (raised to upstream's 2s minimum), not the pod's 30s.
    assert!(elapsed < Duration::from_secs(15), "took {elapsed:?}");
    let app = status_of(&s, "app");
    assert_eq!(app.started, Some(false), "the new container starts over");
    assert!(app
        .last_state
        .as_ref()
        .and_then(|l| l.terminated.as_ref())
        .is_some_and(|t| t.exit_code == 137));
    let killing = d.events_with("Killing", "app");
    assert_eq!(
        killing,
        vec!["Container app failed liveness probe, will be restarted".to_string()]
    );
    assert!(d
        .events_with("Unhealthy", "app")
        .iter()
        .any(|m| m.starts_with("Liveness probe failed: cat: can't open '/tmp/alive'")));
    drop(d);
    stop(rt, &p).await;
}
