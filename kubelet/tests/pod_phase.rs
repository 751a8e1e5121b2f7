//! e2e: how pods end, on a real containerd and apiserver with the kubelet binary — a pod
//! past its `activeDeadlineSeconds` is stopped and left `Failed` with reason
//! `DeadlineExceeded` and upstream's message, with a `DeadlineExceeded` event; a pod whose
//! init container fails under `restartPolicy: Never` is `Failed` and not `Initialized`;
//! a condition another component set (`DisruptionTarget`) survives the kubelet's writes;
//! a deleted pod whose container the kubelet killed ends `Failed` before it leaves the
//! API, and its `/var/log/pods` directory is removed.

#[macro_use]
mod common;

use common::process::{wait, KubeletProcess};
use common::{create_pod, default_pods, wait_pod_phase};
use k8s_openapi::api::core::v1::Event;
use kube::api::Api;
use std::time::Duration;

#[tokio::test]
async fn pod_past_its_active_deadline_fails_and_is_stopped() {
    let (cluster, containerd) = cluster_and_containerd_or_skip!();
    let kubelet = KubeletProcess::builder(&cluster, &containerd, "deadline").start();
    let node_name = kubelet.node_name.clone();
    let client = cluster.client();
    let pods = default_pods(&client).await;
    let name = format!("deadline-{}", std::process::id() % 10000);
    create_pod(
        &pods,
        serde_json::json!({
            "metadata": {"name": name},
            "spec": {"nodeName": node_name, "hostNetwork": true,
                "automountServiceAccountToken": false,
                "terminationGracePeriodSeconds": 1, "activeDeadlineSeconds": 4,
                "containers": [{"name": "app", "image": "busybox:1.35",
                    "command": ["sleep", "3600"]}]}
        }),
    )
    .await;
    wait_pod_phase(&pods, &name, "Running", Duration::from_secs(30)).await;
    let status = wait_pod_phase(&pods, &name, "Failed", Duration::from_secs(30)).await;
    assert_eq!(
        (status.reason.as_deref(), status.message.as_deref()),
        (
            Some("DeadlineExceeded"),
            Some("Pod was active on the node longer than the specified deadline")
        ),
        "{}",
        kubelet.log_tail(30)
    );
    // Its container is stopped.
    let terminated = wait("app terminated", Duration::from_secs(20), || async {
        let s = pods.get(&name).await.ok()?.status?;
        let cs = s
            .container_statuses?
            .into_iter()
            .find(|c| c.name == "app")?;
        cs.state?.terminated
    })
    .await;
    assert_ne!(terminated.exit_code, 0);
    let cri = kubelet::cri::Cri::connect(&containerd.endpoint())
        .await
        .unwrap();
    let all = kubelet::runtime::observe::observe_all(&cri).await.unwrap();
    let (_, observed) = all.values().find(|(r, _)| r.name == name).unwrap();
    assert!(!observed.any_running(), "{observed:?}");
    assert!(observed.sandboxes.iter().all(|s| !s.ready), "{observed:?}");
    // Upstream's event.
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let event = wait(
        "DeadlineExceeded event",
        Duration::from_secs(20),
        || async {
            let list = events.list(&Default::default()).await.ok()?;
            list.items.into_iter().find(|e| {
                e.reason.as_deref() == Some("DeadlineExceeded")
                    && e.involved_object.name.as_deref() == Some(name.as_str())
            })
        },
    )
    .await;
    assert_eq!(event.type_.as_deref(), Some("Normal"));
    // It stays Failed.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let p = pods.get(&name).await.unwrap();
    assert_eq!(p.status.unwrap().phase.as_deref(), Some("Failed"));
    common::delete_pod_and_wait_gone(&pods, &name, Duration::from_secs(30)).await;
    kubelet.stop();
}

#[tokio::test]
async fn failed_init_container_fails_the_pod_uninitialized() {
    let (cluster, containerd) = cluster_and_containerd_or_skip!();
    let kubelet = KubeletProcess::builder(&cluster, &containerd, "initfail").start();
    let client = cluster.client();
    let pods = default_pods(&client).await;
    let name = format!("init-fails-{}", std::process::id() % 10000);
    create_pod(
        &pods,
        serde_json::json!({
            "metadata": {"name": name},
            "spec": {"nodeName": kubelet.node_name, "hostNetwork": true,
                "automountServiceAccountToken": false, "restartPolicy": "Never",
                "terminationGracePeriodSeconds": 1,
                "initContainers": [{"name": "init", "image": "busybox:1.35",
                    "command": ["sh", "-c", "exit 1"]}],
                "containers": [{"name": "app", "image": "busybox:1.35",
                    "command": ["sleep", "3600"]}]}
        }),
    )
    .await;
    let status = wait_pod_phase(&pods, &name, "Failed", Duration::from_secs(60)).await;
    let initialized = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Initialized")
        .cloned()
        .unwrap();
    assert_eq!(
        (initialized.status.as_str(), initialized.reason.as_deref()),
        ("False", Some("ContainersNotInitialized")),
        "{}",
        kubelet.log_tail(30)
    );
    let app = &status.container_statuses.unwrap()[0];
    assert!(
        app.state.as_ref().unwrap().waiting.is_some(),
        "the app container never ran: {app:?}"
    );
    common::delete_pod_and_wait_gone(&pods, &name, Duration::from_secs(30)).await;
    kubelet.stop();
}

#[tokio::test]
async fn conditions_set_by_others_survive_the_kubelets_status_writes() {
    let (cluster, containerd) = cluster_and_containerd_or_skip!();
    let kubelet = KubeletProcess::builder(&cluster, &containerd, "conds").start();
    let client = cluster.client();
    let pods = default_pods(&client).await;
    let name = format!("conds-{}", std::process::id() % 10000);
    create_pod(
        &pods,
        serde_json::json!({
            "metadata": {"name": name},
            "spec": {"nodeName": kubelet.node_name, "hostNetwork": true,
                "automountServiceAccountToken": false, "restartPolicy": "Never",
                "terminationGracePeriodSeconds": 1,
                "containers": [{"name": "app", "image": "busybox:1.35",
                    "command": ["sleep", "6"]}]}
        }),
    )
    .await;
    wait_pod_phase(&pods, &name, "Running", Duration::from_secs(30)).await;
    // What the scheduler's preemption (or the taint manager) writes.
    let patch = serde_json::json!({"status": {"conditions": [{
        "type": "DisruptionTarget", "status": "True",
        "reason": "PreemptionByScheduler", "message": "preempted by test",
        "lastTransitionTime": "2024-01-01T00:00:00Z"}]}});
    pods.patch_status(
        &name,
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Strategic(&patch),
    )
    .await
    .unwrap();
    // The kubelet writes the pod's end; the condition is still there.
    let status = wait_pod_phase(&pods, &name, "Succeeded", Duration::from_secs(30)).await;
    let conditions = status.conditions.unwrap_or_default();
    let disruption = conditions
        .iter()
        .find(|c| c.type_ == "DisruptionTarget")
        .unwrap_or_else(|| panic!("DisruptionTarget dropped: {conditions:?}"));
    assert_eq!(
        (disruption.status.as_str(), disruption.reason.as_deref()),
        ("True", Some("PreemptionByScheduler"))
    );
    assert!(conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "False"));
    common::delete_pod_and_wait_gone(&pods, &name, Duration::from_secs(30)).await;
    kubelet.stop();
}

#[tokio::test]
async fn deleted_pod_ends_terminal_and_its_logs_are_removed() {
    use futures::StreamExt;
    use kube::runtime::watcher;
    let (cluster, containerd) = cluster_and_containerd_or_skip!();
    let kubelet = KubeletProcess::builder(&cluster, &containerd, "delphase").start();
    let client = cluster.client();
    let pods = default_pods(&client).await;
    let name = format!("del-phase-{}", std::process::id() % 10000);
    // `sleep` as PID 1 ignores SIGTERM: killed after the grace period (exit 137).
    let created = create_pod(&pods, common::sleeping_pod(&name, &kubelet.node_name)).await;
    let uid = created.metadata.uid.clone().unwrap();
    wait_pod_phase(&pods, &name, "Running", Duration::from_secs(30)).await;
    let logs_dir = kubelet.dir.join("logs");
    let pod_logs = logs_dir.join(format!("default_{name}_{uid}"));
    assert!(pod_logs.is_dir(), "{pod_logs:?}");

    // Every phase the pod shows until it is gone.
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut events = watcher(pods.clone(), config).boxed();
    pods.delete(&name, &Default::default()).await.unwrap();
    let mut phases = Vec::new();
    let seen = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(e) = events.next().await {
            match e {
                Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => {
                    phases.extend(p.status.and_then(|s| s.phase));
                }
                Ok(watcher::Event::Delete(_)) => return,
                _ => {}
            }
        }
    })
    .await;
    assert!(seen.is_ok(), "pod not gone: {phases:?}");
    assert_eq!(
        phases.last().map(String::as_str),
        Some("Failed"),
        "{phases:?}\n{}",
        kubelet.log_tail(30)
    );
    // The container GC (every minute, first at start) removes the log directory.
    wait(
        "pod log directory removed",
        Duration::from_secs(90),
        || async { (!pod_logs.exists()).then_some(()) },
    )
    .await;
    kubelet.stop();
}
