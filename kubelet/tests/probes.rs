//! Probes against a real containerd (started by the test), driven as the pod worker drives
//! them: sync through CRI, probe workers per running container, status from the results.
//! Exec readiness flips Ready when a file appears; httpGet (busybox httpd) and tcpSocket
//! probes pass; a startup probe holds liveness back, then a failing liveness probe
//! restarts the container.

mod common;

use common::process::{wait, KubeletProcess};
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
}

/// Deletes the pod as `kubectl delete --grace-period=1` would.
async fn stop(rt: &PodRuntime, p: &Pod) {
    let mut p = p.clone();
    p.metadata.deletion_grace_period_seconds = Some(1);
    let p = &p;
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
    let text = kubelet::prober::metrics::render();
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
    // The pod's probes ended: its series are gone, as upstream's workers delete them.
    let after = kubelet::prober::metrics::render();
    assert!(!after.contains("pod=\"ready\""), "{after}");
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
                                   "terminationGracePeriodSeconds": 1}},
                {"name": "slow", "image": "busybox:1.35", "command": ["sleep", "3600"],
                 "readinessProbe": {"exec": {"command": ["sleep", "5"]}, "timeoutSeconds": 1,
                                    "periodSeconds": 1}}
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
    // An exec probe that outlives timeoutSeconds fails, as upstream's ExecProbeTimeout.
    assert!(!status_of(&s, "slow").ready);
    let timed_out = d.events_with("Unhealthy", "slow");
    assert!(
        timed_out
            .iter()
            .any(|m| m
                == "Readiness probe failed: command timed out: \"sleep 5\" timed out after 1s"),
        "{timed_out:?}"
    );
    drop(d);
    stop(rt, &p).await;
}

/// The kubelet binary with a real kube-apiserver: probe results reach the pod's status in
/// the API (Ready flips both ways, a failed liveness probe restarts a container), the
/// postStart hook ran, and the events are listed by `source=kubelet`, as upstream's e2e
/// tests look for them.
#[tokio::test]
async fn probes_and_hooks_through_the_apiserver() {
    use k8s_openapi::api::core::v1::{Event, ServiceAccount};
    use kube::api::{Api, ListParams, PostParams};

    let (cluster, containerd) = cluster_and_containerd_or_skip!();
    let id = std::process::id() % 10000;
    let pod_cidr = format!("10.89.{}.0/24", id % 250);
    let mut kubelet = KubeletProcess::builder(&cluster, &containerd, "probe")
        .config(serde_json::json!({
            "clusterDNS": ["10.96.0.10"],
            "clusterDomain": "cluster.local",
        }))
        .flag(format!("--pod-cidr={pod_cidr}"))
        .flag("--v=2")
        .webhook_auth()
        .start();
    let node_name = kubelet.node_name.clone();
    let client = cluster.client();
    kubelet.wait_ready(Duration::from_secs(60)).await;
    let ns = "default";
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let _ = sas
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({"metadata": {"name": "default"}})).unwrap(),
        )
        .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    // web: ready once /www/ready exists (4s), unready again once it is gone (14s); its
    // postStart hook writes /www/hook, which httpd then serves to this test.
    // live: healthy for 3s, then its liveness probe fails and it is restarted.
    let web_cmd =
        "httpd -p 8080 -h /www; sleep 4; echo ok > /www/ready; sleep 10; rm /www/ready; sleep 3600";
    let p: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "probed"},
        "spec": {
            "nodeName": node_name,
            "terminationGracePeriodSeconds": 30,
            "automountServiceAccountToken": false,
            "containers": [
                {"name": "web", "image": "busybox:1.35", "command": ["sh", "-c", web_cmd],
                 "volumeMounts": [{"name": "www", "mountPath": "/www"}],
                 "lifecycle": {"postStart": {"exec": {"command": ["sh", "-c", "echo hooked > /www/hook"]}}},
                 "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}, "periodSeconds": 1, "failureThreshold": 1}},
                {"name": "live", "image": "busybox:1.35",
                 "command": ["sh", "-c", "touch /tmp/alive; sleep 3; rm /tmp/alive; sleep 3600"],
                 "livenessProbe": {"exec": {"command": ["cat", "/tmp/alive"]}, "periodSeconds": 1,
                                   "failureThreshold": 1, "terminationGracePeriodSeconds": 1}}
            ],
            "volumes": [{"name": "www", "emptyDir": {}}]
        }
    }))
    .unwrap();
    pods.create(&PostParams::default(), &p).await.unwrap();
    let ready = |p: &Pod, t: &str| {
        p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == t))
            .is_some_and(|c| c.status == "True")
    };
    let container = |p: &Pod, name: &str| {
        p.status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.name == name).cloned())
    };
    // Running but not Ready until the readiness probe passes.
    let running = wait("pod Running", Duration::from_secs(40), || async {
        let p = pods.get_opt("probed").await.ok().flatten()?;
        let phase = p.status.as_ref()?.phase.clone()?;
        (phase == "Running").then_some(p)
    })
    .await;
    let web = container(&running, "web").unwrap();
    assert_eq!(web.started, Some(true));
    let uid = running.metadata.uid.clone().unwrap();
    let up = wait("Ready", Duration::from_secs(30), || async {
        let p = pods.get_opt("probed").await.ok().flatten()?;
        (ready(&p, "Ready") && ready(&p, "ContainersReady")).then_some(p)
    })
    .await;
    assert!(container(&up, "web").unwrap().ready);
    // The postStart hook ran in the container: httpd serves what it wrote.
    let pod_ip = up.status.as_ref().unwrap().pod_ip.clone().unwrap();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let hook = http
        .get(format!("http://{pod_ip}:8080/hook"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(hook, "hooked\n");
    // The liveness probe restarted `live`; lastState keeps the killed instance.
    let restarted = wait("live restarted", Duration::from_secs(30), || async {
        let p = pods.get_opt("probed").await.ok().flatten()?;
        let c = container(&p, "live")?;
        (c.restart_count >= 1).then_some(c)
    })
    .await;
    let last = restarted.last_state.unwrap().terminated.unwrap();
    assert_eq!(last.exit_code, 137, "{last:?}");
    // Readiness flips back once /www/ready is gone.
    let down = wait("not Ready again", Duration::from_secs(30), || async {
        let p = pods.get_opt("probed").await.ok().flatten()?;
        (!ready(&p, "Ready") && container(&p, "web").is_some_and(|c| !c.ready)).then_some(p)
    })
    .await;
    assert_eq!(container(&down, "web").unwrap().restart_count, 0);
    // What operators scrape: probe results and durations on /metrics/probes (not on
    // /metrics, as upstream), the kubelet's pod/container gauges on /metrics.
    let probes = common::kubelet_get(&cluster, kubelet.port, "/metrics/probes");
    let probed = |probe_type: &str, result: &str, container: &str| {
        common::sample(
            &probes,
            "prober_probe_total",
            &[
                ("probe_type", probe_type),
                ("result", result),
                ("container", container),
                ("pod", "probed"),
                ("namespace", ns),
                ("pod_uid", uid.as_str()),
            ],
        )
        .unwrap_or(0.0)
    };
    assert!(probed("Readiness", "successful", "web") >= 1.0, "{probes}");
    assert!(probed("Readiness", "failed", "web") >= 1.0, "{probes}");
    assert!(probed("Liveness", "failed", "live") >= 1.0, "{probes}");
    let durations = common::sample(
        &probes,
        "prober_probe_duration_seconds_count",
        &[
            ("probe_type", "Readiness"),
            ("container", "web"),
            ("pod", "probed"),
        ],
    );
    assert!(durations.is_some_and(|n| n >= 1.0), "{probes}");
    assert!(probes.contains("process_start_time_seconds "), "{probes}");
    let metrics = common::kubelet_get(&cluster, kubelet.port, "/metrics");
    assert!(!metrics.contains("prober_probe_total"), "{metrics}");
    let gauge = |name: &str, labels: &[(&str, &str)]| {
        common::sample(&metrics, name, labels).unwrap_or_else(|| panic!("no {name} in\n{metrics}"))
    };
    assert_eq!(gauge("kubelet_running_pods", &[]), 1.0);
    // web runs; live may be between restarts; live's killed instance has exited.
    assert!(
        gauge(
            "kubelet_running_containers",
            &[("container_state", "running")]
        ) >= 1.0
    );
    assert!(
        gauge(
            "kubelet_running_containers",
            &[("container_state", "exited")]
        ) >= 1.0
    );
    assert!(gauge("kubelet_pod_start_duration_seconds_count", &[]) >= 1.0);
    // Events by the kubelet about this pod, with upstream's reasons and messages.
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    let selector = format!(
        "involvedObject.uid={uid},involvedObject.kind=Pod,involvedObject.namespace={ns},source=kubelet"
    );
    let seen = wait("kubelet events", Duration::from_secs(15), || async {
        let list = events
            .list(&ListParams::default().fields(&selector))
            .await
            .ok()?;
        let seen: Vec<(String, String, String)> = list
            .items
            .into_iter()
            .map(|e| {
                (
                    e.reason.unwrap_or_default(),
                    e.involved_object.field_path.unwrap_or_default(),
                    e.message.unwrap_or_default(),
                )
            })
            .collect();
        seen.iter().any(|(r, _, _)| r == "Killing").then_some(seen)
    })
    .await;
    let has = |reason: &str, path: &str, message: &str| {
        seen.iter()
            .any(|(r, f, m)| r == reason && f == path && m.starts_with(message))
    };
    for (reason, path, message) in [
        (
            "Pulled",
            "spec.containers{web}",
            "Container image \"busybox:1.35\" already present on machine",
        ),
        ("Created", "spec.containers{web}", "Container created"),
        ("Started", "spec.containers{live}", "Container started"),
        (
            "Unhealthy",
            "spec.containers{web}",
            "Readiness probe failed: HTTP probe failed with statuscode: 404",
        ),
        (
            "Unhealthy",
            "spec.containers{live}",
            "Liveness probe failed: cat: can't open '/tmp/alive'",
        ),
        (
            "Killing",
            "spec.containers{live}",
            "Container live failed liveness probe, will be restarted",
        ),
    ] {
        assert!(
            has(reason, path, message),
            "no {reason} {path} {message:?} in {seen:#?}"
        );
    }

    common::delete_pod_and_wait_gone(&pods, "probed", Duration::from_secs(40)).await;
    kubelet.stop();
}
