//! e2e: the kubelet binary, run as a process against a real kube-apiserver + etcd and a
//! real containerd. The node registers Ready and renews its Lease; a pod bound to it runs,
//! gets an IP from CNI, reads its configMap/secret/token volumes and reports upstream
//! status; deletion stops it gracefully; a crashing container backs off. A pod deleted while
//! the kubelet was down is stopped when it comes back, with the preStop hook it was created
//! with.

mod common;

use common::process::{wait, KubeletProcess};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, Secret, ServiceAccount};
use kube::api::{Api, DeleteParams, PostParams};
use kubelet::testing::{containerd::unavailable_reason, TestContainerd};
use std::time::{Duration, Instant};

fn condition(node: &Node, kind: &str) -> Option<String> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == kind)
        .map(|c| c.status.clone())
}

#[tokio::test]
async fn node_runs_pods_end_to_end() {
    let cluster = e2e::cluster_or_skip!();
    if let Some(reason) = unavailable_reason() {
        e2e::skip_test!("{reason}");
    }
    let containerd = TestContainerd::start().await.expect("start containerd");
    let id = std::process::id() % 10000;
    let pod_cidr = format!("10.88.{}.0/24", id % 250);
    let mut kubelet = KubeletProcess::builder(&cluster, &containerd, "e2e")
        .config(serde_json::json!({
            "clusterDNS": ["10.96.0.10"],
            "clusterDomain": "cluster.local",
            "authentication": {"anonymous": {"enabled": false}},
        }))
        .flag(format!("--pod-cidr={pod_cidr}"))
        .flag("--node-labels=ferrokube.io/e2e=true")
        .flag("--v=2")
        .start();
    let node_name = kubelet.node_name.clone();
    let dir = kubelet.dir.clone();
    let client = cluster.client();

    // The node registers and turns Ready (CNI config written from the podCIDR).
    let node = kubelet.wait_ready(Duration::from_secs(60)).await;
    let labels = node.metadata.labels.clone().unwrap();
    assert_eq!(labels["kubernetes.io/hostname"], node_name);
    assert_eq!(labels["ferrokube.io/e2e"], "true");
    let status = node.status.clone().unwrap();
    assert_eq!(status.addresses.as_ref().unwrap()[0].address, "127.0.0.1");
    assert!(status
        .node_info
        .as_ref()
        .unwrap()
        .container_runtime_version
        .starts_with("containerd://"));
    for c in ["MemoryPressure", "DiskPressure", "PIDPressure"] {
        assert_eq!(condition(&node, c).as_deref(), Some("False"), "{c}");
    }
    // The Lease is renewed (every 10s).
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let first = wait("lease", Duration::from_secs(20), || async {
        leases.get_opt(&node_name).await.ok().flatten()
    })
    .await;
    let t0 = first.spec.as_ref().unwrap().renew_time.clone().unwrap();
    assert_eq!(
        first.spec.as_ref().unwrap().holder_identity.as_deref(),
        Some(node_name.as_str())
    );
    wait("lease renewal", Duration::from_secs(25), || async {
        let l = leases.get_opt(&node_name).await.ok().flatten()?;
        (l.spec?.renew_time? != t0).then_some(())
    })
    .await;

    // No controller-manager here: create what it would (default SA, kube-root-ca.crt).
    let ns = "default";
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let _ = sas
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({"metadata": {"name": "default"}})).unwrap(),
        )
        .await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let ca = std::fs::read_to_string(cluster.pki().ca_cert()).unwrap_or_else(|_| "ca".into());
    let _ = cms.create(&PostParams::default(), &serde_json::from_value(serde_json::json!({"metadata": {"name": "kube-root-ca.crt"}, "data": {"ca.crt": ca}})).unwrap()).await;
    cms.create(&PostParams::default(), &serde_json::from_value(serde_json::json!({"metadata": {"name": "app-config"}, "data": {"greeting": "hello-from-configmap"}})).unwrap()).await.unwrap();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    secrets.create(&PostParams::default(), &serde_json::from_value(serde_json::json!({"metadata": {"name": "app-secret"}, "stringData": {"password": "s3cret"}})).unwrap()).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let web: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web"},
        "spec": {
            "nodeName": node_name,
            "terminationGracePeriodSeconds": 20,
            "containers": [{
                "name": "app", "image": "busybox:1.35",
                "command": ["sh", "-c", "cat /cfg/greeting; echo; cat /sec/password; echo; echo token-bytes=$(wc -c < /var/run/secrets/kubernetes.io/serviceaccount/token); echo ip=$(hostname -i); trap 'echo got-term; exit 0' TERM; while true; do sleep 0.2; done"],
                "env": [{"name": "FROM_CM", "valueFrom": {"configMapKeyRef": {"name": "app-config", "key": "greeting"}}}],
                "volumeMounts": [{"name": "cfg", "mountPath": "/cfg"}, {"name": "sec", "mountPath": "/sec"}]
            }],
            "volumes": [{"name": "cfg", "configMap": {"name": "app-config"}}, {"name": "sec", "secret": {"secretName": "app-secret"}}]
        }
    }))
    .unwrap();
    pods.create(&PostParams::default(), &web).await.unwrap();
    let running = wait("pod Running and Ready", Duration::from_secs(60), || async {
        let p = pods.get_opt("web").await.ok().flatten()?;
        let s = p.status.clone()?;
        (s.phase.as_deref() == Some("Running")
            && s.conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == "Ready" && c.status == "True"))
        .then_some(p)
    })
    .await;
    let s = running.status.unwrap();
    let ip = s.pod_ip.clone().expect("podIP");
    let prefix = pod_cidr.trim_end_matches("0/24");
    assert!(ip.starts_with(prefix), "pod IP {ip} from CNI in {pod_cidr}");
    assert_eq!(s.host_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(s.qos_class.as_deref(), Some("BestEffort"));
    assert!(s.start_time.is_some());
    let cs = &s.container_statuses.as_ref().unwrap()[0];
    assert!(cs
        .container_id
        .as_deref()
        .unwrap()
        .starts_with("containerd://"));
    assert!(cs.image_id.starts_with("sha256:"), "{cs:?}");
    assert_eq!(cs.restart_count, 0);
    let types: Vec<&str> = s
        .conditions
        .iter()
        .flatten()
        .map(|c| c.type_.as_str())
        .collect();
    for t in [
        "PodReadyToStartContainers",
        "Initialized",
        "Ready",
        "ContainersReady",
        "PodScheduled",
    ] {
        assert!(types.contains(&t), "{t} in {types:?}");
    }
    let uid = running.metadata.uid.clone().unwrap();
    let log = dir
        .join("logs")
        .join(format!("default_web_{uid}"))
        .join("app/0.log");
    let text = wait(
        "volume contents in the log",
        Duration::from_secs(20),
        || async {
            let t = std::fs::read_to_string(&log).ok()?;
            t.contains("token-bytes=").then_some(t)
        },
    )
    .await;
    assert!(text.contains("hello-from-configmap"), "{text}");
    assert!(text.contains("s3cret"), "{text}");
    let token_len: usize = text
        .split("token-bytes=")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(token_len > 100, "a real service-account token: {text}");

    // Graceful deletion: SIGTERM reaches the app, then the kubelet removes the pod from the API.
    let started = Instant::now();
    common::delete_pod_and_wait_gone(&pods, "web", Duration::from_secs(30)).await;
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "graceful stop took {:?}",
        started.elapsed()
    );
    assert!(std::fs::read_to_string(&log).unwrap().contains("got-term"));

    // A crashing container backs off.
    let crash: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "crash"},
        "spec": {"nodeName": node_name, "terminationGracePeriodSeconds": 1, "automountServiceAccountToken": false,
                 "containers": [{"name": "c", "image": "busybox:1.35", "command": ["sh", "-c", "exit 1"]}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &crash).await.unwrap();
    let status = wait("CrashLoopBackOff", Duration::from_secs(40), || async {
        let p = pods.get_opt("crash").await.ok().flatten()?;
        let cs = p.status?.container_statuses?.into_iter().next()?;
        let waiting = cs.state.as_ref()?.waiting.as_ref()?.reason.clone()?;
        (waiting == "CrashLoopBackOff").then_some(cs)
    })
    .await;
    assert!(status.restart_count >= 1);
    assert_eq!(status.last_state.unwrap().terminated.unwrap().exit_code, 1);
    common::delete_pod_and_wait_gone(&pods, "crash", Duration::from_secs(30)).await;

    kubelet.stop();
}

#[tokio::test]
async fn pod_deleted_while_the_kubelet_was_down_gets_its_pre_stop_hook() {
    let (cluster, containerd) = cluster_and_containerd_or_skip!();
    let mut kubelet = KubeletProcess::builder(&cluster, &containerd, "orphan").start();
    // A host-network pod: it runs whether or not the node's pod network is ready.
    let node_name = kubelet.node_name.clone();
    let pods = common::default_pods(&cluster.client()).await;
    let out = kubelet.dir.join("prestop-out");
    std::fs::create_dir_all(&out).unwrap();
    let name = format!("orphan-{}", std::process::id() % 10000);
    let mut pod = common::sleeping_pod(&name, &node_name);
    pod["spec"]["terminationGracePeriodSeconds"] = serde_json::json!(30);
    pod["spec"]["volumes"] = serde_json::json!([{"name": "out", "hostPath": {"path": out}}]);
    pod["spec"]["containers"][0]["volumeMounts"] =
        serde_json::json!([{"name": "out", "mountPath": "/out"}]);
    pod["spec"]["containers"][0]["lifecycle"] = serde_json::json!({"preStop": {"exec": {
        "command": ["sh", "-c", "echo stopped-by-prestop > /out/marker"]}}});
    let uid = common::create_pod(&pods, pod).await.metadata.uid.unwrap();
    common::wait_pod_phase(&pods, &name, "Running", Duration::from_secs(60)).await;

    // The kubelet goes away (running pods stay), the pod object is removed at once.
    kubelet.terminate(Duration::from_secs(5));
    pods.delete(&name, &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    common::wait_pod_gone(&pods, &name, Duration::from_secs(30)).await;
    let cri = kubelet::cri::Cri::connect(&containerd.endpoint())
        .await
        .unwrap();
    let observed = kubelet::runtime::observe::observe_pod(&cri, &uid)
        .await
        .unwrap();
    assert!(
        observed
            .containers
            .iter()
            .any(|c| c.state == kubelet::pod::observed::ContainerState::Running),
        "the container kept running while the kubelet was down"
    );
    assert!(!out.join("marker").exists());

    // Back up, it finds the orphan and stops it as upstream: hook first, 1 s grace.
    kubelet.spawn();
    let marker = wait("preStop marker", Duration::from_secs(60), || async {
        std::fs::read_to_string(out.join("marker")).ok()
    })
    .await;
    assert_eq!(marker.trim(), "stopped-by-prestop");
    wait(
        "orphan's sandbox removed",
        Duration::from_secs(60),
        || async {
            let all = kubelet::runtime::observe::observe_all(&cri).await.ok()?;
            (!all.contains_key(&uid)).then_some(())
        },
    )
    .await;
    assert!(
        kubelet.log().contains("Cleaning up orphaned pod"),
        "{}",
        kubelet.log_tail(30)
    );
}
