//! Lifecycle hooks against a real containerd (started by the test): postStart and preStop
//! run as exec in the container and as httpGet against a listener of this test (the pods
//! use the host network, so everything stays on loopback); a failing postStart kills the
//! container, which restarts per restartPolicy, with upstream's events.

mod common;

use common::{pod, Rig};
use k8s_openapi::api::core::v1::Pod;
use kubelet::events::{Record, Recorder};
use kubelet::pod::observed::ContainerState;
use kubelet::runtime::{PodInputs, PodRuntime, SyncResult};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

const HOST_IP: &str = "127.0.0.1";

/// A loopback TCP listener that keeps what each connection sent: a plain line (from `nc`)
/// or an HTTP request's head, which it answers with 200.
struct Listener {
    port: u16,
    received: Arc<Mutex<Vec<String>>>,
}

impl Listener {
    async fn start() -> Listener {
        let l = tokio::net::TcpListener::bind((HOST_IP, 0)).await.unwrap();
        let port = l.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let store = received.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = l.accept().await {
                let store = store.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while let Ok(Ok(n)) =
                        tokio::time::timeout(Duration::from_secs(5), conn.read(&mut chunk)).await
                    {
                        if n == 0 {
                            break;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        let http = buf.starts_with(b"GET ");
                        if !http || buf.windows(4).any(|w| w == b"\r\n\r\n") {
                            break;
                        }
                    }
                    if buf.starts_with(b"GET ") {
                        let _ = conn
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                            .await;
                    }
                    store
                        .lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&buf).into_owned());
                });
            }
        });
        Listener { port, received }
    }

    fn received(&self) -> Vec<String> {
        self.received.lock().unwrap().clone()
    }

    async fn wait_for(&self, what: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            if let Some(r) = self.received().into_iter().find(|r| r.contains(what)) {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "nothing with {what:?} arrived: {:?}",
                self.received()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Syncs as the pod worker does, keeping the events.
struct Driver<'a> {
    rt: &'a PodRuntime,
    recorder: Recorder,
    events: mpsc::UnboundedReceiver<Record>,
    seen: Vec<Record>,
}

impl<'a> Driver<'a> {
    fn new(rt: &'a PodRuntime) -> Self {
        let (recorder, events) = Recorder::capture();
        Driver {
            rt,
            recorder,
            events,
            seen: Vec::new(),
        }
    }

    async fn step(&mut self, p: &Pod, terminating: bool) -> SyncResult {
        let inputs = PodInputs {
            recorder: self.recorder.clone(),
            host_ips: vec![HOST_IP.into()],
            ..Default::default()
        };
        let r = self
            .rt
            .sync_pod(p, terminating, &inputs)
            .await
            .expect("sync");
        while let Ok(e) = self.events.try_recv() {
            self.seen.push(e);
        }
        r
    }

    async fn until<F: Fn(&SyncResult) -> bool>(
        &mut self,
        p: &Pod,
        terminating: bool,
        what: &str,
        within: Duration,
        f: F,
    ) -> SyncResult {
        let deadline = Instant::now() + within;
        loop {
            let r = self.step(p, terminating).await;
            if f(&r) {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {:#?}",
                r.observed.containers
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
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

fn running(r: &SyncResult, name: &str) -> bool {
    r.observed
        .latest(name, None)
        .is_some_and(|c| c.state == ContainerState::Running)
}

async fn exec_output(rt: &PodRuntime, id: &str, cmd: &[&str]) -> String {
    let r = rt
        .cri
        .exec_sync(k8s_cri::v1::ExecSyncRequest {
            container_id: id.into(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout: 5,
        })
        .await
        .unwrap();
    assert_eq!(
        r.exit_code,
        0,
        "{cmd:?}: {:?}",
        String::from_utf8_lossy(&r.stderr)
    );
    String::from_utf8_lossy(&r.stdout).into_owned()
}

async fn remove(rt: &PodRuntime, p: &Pod) {
    let r = rt.sync_pod(p, true, &PodInputs::default()).await.unwrap();
    rt.remove_pod(&kubelet::runtime::config::pod_ref(p), &r.observed)
        .await
        .unwrap();
}

#[tokio::test]
async fn post_start_and_pre_stop_hooks_run_as_exec_and_http() {
    let Some(rig) = Rig::start("post_start_and_pre_stop_hooks_run_as_exec_and_http").await else {
        return;
    };
    let rt = &rig.runtime;
    let listener = Listener::start().await;
    let port = listener.port;
    let trap = "trap 'exit 0' TERM; while true; do sleep 0.2; done";
    let p = pod(serde_json::json!({
        "metadata": {"name": "hooked", "namespace": "default", "uid": "uid-hooks-run"},
        "spec": {
            "hostNetwork": true,
            "terminationGracePeriodSeconds": 20,
            "containers": [
                {"name": "app", "image": "busybox:1.35", "command": ["sh", "-c", trap],
                 "lifecycle": {
                    "postStart": {"exec": {"command": ["sh", "-c", "echo started > /tmp/post-start"]}},
                    "preStop": {"exec": {"command": ["sh", "-c", format!("echo pre-stop-exec | nc {HOST_IP} {port}")]}}
                 }},
                {"name": "web", "image": "busybox:1.35", "command": ["sh", "-c", trap],
                 "ports": [{"name": "hooks", "containerPort": port}],
                 "lifecycle": {
                    "postStart": {"httpGet": {"path": "/post-start", "port": port,
                                              "httpHeaders": [{"name": "X-Hook", "value": "web"}]}},
                    "preStop": {"httpGet": {"path": "pre-stop", "port": "hooks"}}
                 }}
            ]
        }
    }));
    let mut d = Driver::new(rt);
    let r = d
        .until(&p, false, "both running", Duration::from_secs(30), |r| {
            running(r, "app") && running(r, "web")
        })
        .await;
    // postStart exec ran inside the container before it counted as started.
    let app_id = r.observed.latest("app", None).unwrap().id.clone();
    assert_eq!(
        exec_output(rt, &app_id, &["cat", "/tmp/post-start"]).await,
        "started\n"
    );
    // postStart httpGet reached our listener on the pod's (host) IP, upstream's shape.
    let get = listener
        .wait_for("GET /post-start", Duration::from_secs(1))
        .await;
    assert!(get.starts_with("GET /post-start HTTP/1.1\r\n"), "{get}");
    let head = get.to_ascii_lowercase();
    assert!(
        head.contains("user-agent: kube-lifecycle/1.35\r\n"),
        "{get}"
    );
    assert!(head.contains("x-hook: web\r\n"), "{get}");
    assert!(d.events_with("FailedPostStartHook", "app").is_empty());
    assert_eq!(d.events_with("Started", "web"), vec!["Container started"]);
    assert_eq!(d.events_with("Created", "app"), vec!["Container created"]);
    assert!(listener.received().iter().all(|r| !r.contains("pre-stop")));
    // Termination: each preStop runs, then SIGTERM; the trap exits long before the grace
    // period ends.
    let stopping = Instant::now();
    d.until(&p, true, "stopped", Duration::from_secs(30), |r| {
        !r.observed.any_running()
    })
    .await;
    assert!(
        stopping.elapsed() < Duration::from_secs(15),
        "{:?}",
        stopping.elapsed()
    );
    listener
        .wait_for("pre-stop-exec\n", Duration::from_secs(1))
        .await;
    let get = listener
        .wait_for("GET /pre-stop", Duration::from_secs(1))
        .await;
    assert!(get.starts_with("GET /pre-stop HTTP/1.1\r\n"), "{get}");
    for name in ["app", "web"] {
        assert_eq!(
            d.events_with("Killing", name),
            vec![format!("Stopping container {name}")]
        );
        assert!(d.events_with("FailedPreStopHook", name).is_empty());
    }
    remove(rt, &p).await;
}

#[tokio::test]
async fn failed_post_start_kills_and_restarts_and_pre_stop_is_bounded_by_the_grace_period() {
    let Some(rig) = Rig::start(
        "failed_post_start_kills_and_restarts_and_pre_stop_is_bounded_by_the_grace_period",
    )
    .await
    else {
        return;
    };
    let rt = &rig.runtime;
    let p = pod(serde_json::json!({
        "metadata": {"name": "badhook", "namespace": "default", "uid": "uid-hooks-fail"},
        "spec": {
            "hostNetwork": true,
            "terminationGracePeriodSeconds": 2,
            "containers": [
                {"name": "app", "image": "busybox:1.35", "command": ["sleep", "3600"],
                 "lifecycle": {"postStart": {"exec": {"command": ["sh", "-c", "exit 3"]}}}},
                {"name": "slow", "image": "busybox:1.35", "command": ["sleep", "3600"],
                 "lifecycle": {"preStop": {"sleep": {"seconds": 600}}}}
            ]
        }
    }));
    let mut d = Driver::new(rt);
    // The first kill is followed by an immediate restart (no back-off yet), whose hook
    // fails again.
    let r = d
        .until(&p, false, "app restarted", Duration::from_secs(40), |r| {
            r.observed
                .containers
                .iter()
                .filter(|c| c.name == "app")
                .count()
                >= 2
                && running(r, "slow")
        })
        .await;
    let first = r
        .observed
        .containers
        .iter()
        .filter(|c| c.name == "app")
        .min_by_key(|c| c.restart_count)
        .unwrap();
    assert_eq!(
        first.state,
        ContainerState::Exited,
        "killed after its hook failed"
    );
    assert_eq!(first.restart_count, 0);
    assert!(r
        .observed
        .containers
        .iter()
        .any(|c| c.name == "app" && c.restart_count == 1));
    let failed = d.events_with("FailedPostStartHook", "app");
    assert!(!failed.is_empty());
    assert!(
        failed.iter().all(|m| m == "PostStartHook failed"),
        "{failed:?}"
    );
    let killing = d.events_with("Killing", "app");
    assert!(!killing.is_empty());
    assert!(
        killing.iter().all(|m| m == "FailedPostStartHook"),
        "{killing:?}"
    );
    assert!(d.events_with("FailedPostStartHook", "slow").is_empty());
    // A preStop sleep of 10 minutes is cut at the 2s grace period; `sleep` ignores
    // SIGTERM, so after upstream's 2s minimum it is killed.
    let stopping = Instant::now();
    d.until(&p, true, "stopped", Duration::from_secs(30), |r| {
        !r.observed.any_running()
    })
    .await;
    let took = stopping.elapsed();
    assert!(took >= Duration::from_secs(2), "{took:?}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    let slow = d.step(&p, true).await;
    let slow = slow.observed.latest("slow", None).unwrap();
    assert_eq!((slow.state, slow.exit_code), (ContainerState::Exited, 137));
    remove(rt, &p).await;
}
