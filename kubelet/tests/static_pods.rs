//! e2e: static pods from `staticPodPath` on a real containerd, with mirror pods in a real
//! kube-apiserver — the mirror carries config.mirror/config.source and the Node as owner,
//! is recreated when deleted, follows file edits (new hash, new container), and goes away
//! with its file while the pod stops.

mod common;

use common::process::{wait, KubeletProcess};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::Api;
use kubelet::testing::{containerd::unavailable_reason, TestContainerd};
use std::time::Duration;

fn annotation(p: &Pod, k: &str) -> Option<String> {
    p.metadata.annotations.as_ref()?.get(k).cloned()
}

fn manifest(word: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  namespace: default\nspec:\n  hostNetwork: true\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: app\n    image: busybox:1.35\n    command: [sh, -c, 'echo {word}; exec sleep 3600']\n"
    )
}

#[tokio::test]
async fn static_pods_run_from_files_with_mirror_pods() {
    let cluster = e2e::cluster_or_skip!();
    if let Some(reason) = unavailable_reason() {
        e2e::skip_test!("{reason}");
    }
    let containerd = TestContainerd::start().await.expect("start containerd");
    let dir = containerd.dir().join("kubelet");
    let manifests = dir.join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    std::fs::write(manifests.join("web.yaml"), manifest("first")).unwrap();
    std::fs::write(manifests.join(".swp"), "not a pod").unwrap();
    let kubelet = KubeletProcess::builder(&cluster, &containerd, "static")
        .config(serde_json::json!({
            "staticPodPath": manifests,
            "fileCheckFrequency": "1s",
            "authentication": {
                "anonymous": {"enabled": false},
                "x509": {"clientCAFile": cluster.pki().ca_cert()},
            },
        }))
        .start();
    let node_name = kubelet.node_name.clone();
    let client = cluster.client();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mirror_name = format!("web-{node_name}");

    // The mirror pod appears, marked and owned by the Node.
    let mirror = wait("mirror pod", Duration::from_secs(60), || async {
        pods.get_opt(&mirror_name).await.ok().flatten()
    })
    .await;
    let hash = annotation(&mirror, "kubernetes.io/config.mirror").expect("config.mirror");
    assert_eq!(
        annotation(&mirror, "kubernetes.io/config.hash").as_deref(),
        Some(hash.as_str())
    );
    assert_eq!(
        annotation(&mirror, "kubernetes.io/config.source").as_deref(),
        Some("file")
    );
    let node = Api::<Node>::all(client.clone())
        .get(&node_name)
        .await
        .unwrap();
    let owner = &mirror.metadata.owner_references.as_ref().expect("owner")[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("Node", node_name.as_str())
    );
    assert_eq!(Some(&owner.uid), node.metadata.uid.as_ref());

    // The static pod really runs: its log reaches kubectl through the kubelet API.
    let logs = |want: &'static str| {
        let cluster = &cluster;
        let mirror_name = mirror_name.clone();
        async move {
            let o = cluster.kubectl(&["logs", &mirror_name]).ok()?;
            String::from_utf8_lossy(&o.stdout)
                .contains(want)
                .then_some(())
        }
    };
    wait("first log", Duration::from_secs(60), || logs("first")).await;

    // The static pod's status is reported on its mirror pod, as upstream's status manager.
    wait(
        "mirror pod Running with Ready=True",
        Duration::from_secs(60),
        || async {
            let p = pods.get_opt(&mirror_name).await.ok().flatten()?;
            let status = p.status?;
            let ready = status
                .conditions?
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            (status.phase.as_deref() == Some("Running") && ready).then_some(())
        },
    )
    .await;

    // A deleted mirror pod is recreated; the static pod keeps running untouched.
    pods.delete(&mirror_name, &Default::default())
        .await
        .unwrap();
    let old_uid = mirror.metadata.uid.clone();
    wait("mirror recreated", Duration::from_secs(30), || async {
        let p = pods.get_opt(&mirror_name).await.ok().flatten()?;
        (p.metadata.uid != old_uid).then_some(())
    })
    .await;

    // Editing the file replaces the pod: new hash on the mirror, the new command runs.
    std::fs::write(manifests.join("web.yaml"), manifest("second")).unwrap();
    wait(
        "mirror with the new hash",
        Duration::from_secs(30),
        || async {
            let p = pods.get_opt(&mirror_name).await.ok().flatten()?;
            let h = annotation(&p, "kubernetes.io/config.mirror")?;
            (h != hash && p.metadata.deletion_timestamp.is_none()).then_some(())
        },
    )
    .await;
    wait("second log", Duration::from_secs(60), || logs("second")).await;

    // Removing the file stops the pod and deletes its mirror.
    std::fs::remove_file(manifests.join("web.yaml")).unwrap();
    common::wait_pod_gone(&pods, &mirror_name, Duration::from_secs(30)).await;
    let cri = kubelet::cri::Cri::connect(&containerd.endpoint())
        .await
        .unwrap();
    wait("static pod stopped", Duration::from_secs(30), || async {
        let all = kubelet::runtime::observe::observe_all(&cri).await.ok()?;
        all.values()
            .all(|(r, o)| {
                r.name != mirror_name || (!o.any_running() && o.sandboxes.iter().all(|s| !s.ready))
            })
            .then_some(())
    })
    .await;

    kubelet.stop();
}
