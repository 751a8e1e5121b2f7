//! Component test against a real containerd: volumeMounts with subPath and subPathExpr.
//! Two containers share one emptyDir through different subdirectories (created by the
//! kubelet), a third mounts one key of a configMap volume as a file, and a mount whose
//! subPath leads out of the volume through a symlink is refused with
//! CreateContainerConfigError and a Failed event — all checked from inside the containers.

mod common;

use common::{pod, Rig};
use k8s_openapi::api::core::v1::Pod;
use kubelet::events::Recorder;
use kubelet::pod::observed::ContainerState;
use kubelet::runtime::{PodInputs, PodRuntime, SyncResult};
use kubelet::volumes::StaticVolumeSource;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

async fn exec(rt: &PodRuntime, id: &str, script: &str) -> (i32, String) {
    let r = rt
        .cri
        .exec_sync(k8s_cri::v1::ExecSyncRequest {
            container_id: id.into(),
            cmd: vec!["sh".into(), "-c".into(), script.into()],
            timeout: 5,
        })
        .await
        .unwrap();
    let out = String::from_utf8_lossy(&r.stdout).into_owned() + &String::from_utf8_lossy(&r.stderr);
    (r.exit_code, out)
}

async fn sync_until(
    rt: &PodRuntime,
    p: &Pod,
    inputs: &PodInputs,
    what: &str,
    f: impl Fn(&SyncResult) -> bool,
) -> SyncResult {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let r = rt.sync_pod(p, false, inputs).await.expect("sync");
        if f(&r) {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {r:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn running(r: &SyncResult, name: &str) -> bool {
    r.observed
        .latest(name, None)
        .is_some_and(|c| c.state == ContainerState::Running)
}

#[tokio::test]
async fn sub_paths_share_an_empty_dir_and_mount_a_config_map_key() {
    let Some(rig) = Rig::start("sub_paths_share_an_empty_dir_and_mount_a_config_map_key").await
    else {
        return;
    };
    let rt = &rig.runtime;
    let sleep = "trap 'exit 0' TERM; while true; do sleep 0.2; done";
    let p = pod(serde_json::json!({
        "metadata": {"name": "sub", "namespace": "default", "uid": "uid-subpath-1"},
        "spec": {
            "hostNetwork": true,
            "terminationGracePeriodSeconds": 2,
            "volumes": [
                {"name": "shared", "emptyDir": {}},
                {"name": "cfg", "configMap": {"name": "app-config"}}
            ],
            "containers": [
                {"name": "writer", "image": "busybox:1.35", "command": ["sh", "-c", sleep],
                 "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                 "volumeMounts": [
                    {"name": "shared", "mountPath": "/out", "subPathExpr": "pods/$(POD_NAME)"},
                    {"name": "shared", "mountPath": "/whole"}
                 ]},
                {"name": "reader", "image": "busybox:1.35", "command": ["sh", "-c", sleep],
                 "volumeMounts": [
                    {"name": "shared", "mountPath": "/in", "subPath": "pods/sub", "readOnly": true},
                    {"name": "shared", "mountPath": "/other", "subPath": "reader-only"},
                    {"name": "cfg", "mountPath": "/etc/app/settings.conf", "subPath": "settings.conf"}
                 ]}
            ]
        }
    }));
    let pod_dir = rt.pod_dir("uid-subpath-1");
    let mut source = StaticVolumeSource::default();
    source.config_maps.insert(
        "default/app-config".into(),
        BTreeMap::from([
            ("settings.conf".to_string(), b"level=debug\n".to_vec()),
            ("other".to_string(), b"unused".to_vec()),
        ]),
    );
    let volumes = kubelet::volumes::setup(&p, &pod_dir, &source, &Default::default())
        .await
        .unwrap();
    let inputs = PodInputs {
        volumes,
        ..Default::default()
    };
    let r = sync_until(rt, &p, &inputs, "both containers running", |r| {
        running(r, "writer") && running(r, "reader")
    })
    .await;
    let writer = r.observed.latest("writer", None).unwrap().id.clone();
    let reader = r.observed.latest("reader", None).unwrap().id.clone();

    // The writer's subPathExpr directory is the reader's subPath: one file, two views.
    let (code, out) = exec(rt, &writer, "echo from-writer > /out/msg && cat /out/msg").await;
    assert_eq!((code, out.as_str()), (0, "from-writer\n"));
    let (code, out) = exec(rt, &reader, "cat /in/msg").await;
    assert_eq!((code, out.as_str()), (0, "from-writer\n"));
    // The subdirectories were created by the kubelet and are what the whole volume shows.
    let (code, out) = exec(rt, &writer, "ls /whole /whole/pods").await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("reader-only") && out.contains("sub"), "{out}");
    // The reader's subPath mount is read-only.
    let (code, _) = exec(rt, &reader, "echo x > /in/nope").await;
    assert_ne!(code, 0, "readOnly subPath mount must refuse writes");
    // Only the reader's own subdirectory is at /other, not the rest of the volume.
    let (code, out) = exec(rt, &reader, "echo r > /other/f && ls -A /other").await;
    assert_eq!((code, out.as_str()), (0, "f\n"));
    // One configMap key as a file, not the volume directory.
    let (code, out) = exec(
        rt,
        &reader,
        "cat /etc/app/settings.conf; test -f /etc/app/settings.conf && echo is-file",
    )
    .await;
    assert_eq!((code, out.as_str()), (0, "level=debug\nis-file\n"));
    // As upstream, a subPath file mount does not follow later updates of the configMap.
    source.config_maps.insert(
        "default/app-config".into(),
        BTreeMap::from([("settings.conf".to_string(), b"level=info\n".to_vec())]),
    );
    kubelet::volumes::setup(&p, &pod_dir, &source, &Default::default())
        .await
        .unwrap();
    let (_, out) = exec(rt, &reader, "cat /etc/app/settings.conf").await;
    assert_eq!(out, "level=debug\n");

    // Teardown unmounts the subPath bind mounts before removing the pod directory.
    let r = rt.sync_pod(&p, true, &PodInputs::default()).await.unwrap();
    rt.remove_pod(&kubelet::runtime::config::pod_ref(&p), &r.observed)
        .await
        .unwrap();
    assert!(!pod_dir.exists(), "pod directory removed");
}

#[tokio::test]
async fn sub_path_escaping_the_volume_is_a_create_container_config_error() {
    let Some(rig) =
        Rig::start("sub_path_escaping_the_volume_is_a_create_container_config_error").await
    else {
        return;
    };
    let rt = &rig.runtime;
    let p = pod(serde_json::json!({
        "metadata": {"name": "escape", "namespace": "default", "uid": "uid-subpath-2"},
        "spec": {
            "hostNetwork": true,
            "terminationGracePeriodSeconds": 1,
            "volumes": [{"name": "data", "emptyDir": {}}],
            "containers": [
                {"name": "evil", "image": "busybox:1.35", "command": ["sleep", "3600"],
                 "volumeMounts": [{"name": "data", "mountPath": "/host-etc", "subPath": "etc"}]},
                {"name": "unset", "image": "busybox:1.35", "command": ["sleep", "3600"],
                 "volumeMounts": [{"name": "data", "mountPath": "/x", "subPathExpr": "$(NOT_SET)"}]}
            ]
        }
    }));
    let pod_dir = rt.pod_dir("uid-subpath-2");
    let volumes = kubelet::volumes::setup(
        &p,
        &pod_dir,
        &StaticVolumeSource::default(),
        &Default::default(),
    )
    .await
    .unwrap();
    // What another container of the pod could have done inside the shared volume.
    std::os::unix::fs::symlink("/etc", volumes["data"].join("etc")).unwrap();
    let (recorder, mut events) = Recorder::capture();
    let inputs = PodInputs {
        volumes,
        recorder,
        ..Default::default()
    };
    let r = rt.sync_pod(&p, false, &inputs).await.unwrap();
    let (reason, message) = &r.waiting["evil"];
    assert_eq!(reason, "CreateContainerConfigError");
    assert_eq!(
        message,
        "failed to prepare subPath for volumeMount \"data\" of container \"evil\""
    );
    let (reason, message) = &r.waiting["unset"];
    assert_eq!(reason, "CreateContainerConfigError");
    assert!(
        message.contains("subPathExpr") && message.contains("missing value for NOT_SET"),
        "{message}"
    );
    assert!(r.observed.latest("evil", None).is_none(), "never created");
    let mut failed = Vec::new();
    while let Ok(e) = events.try_recv() {
        if e.reason == "Failed" {
            failed.push(e.message);
        }
    }
    assert!(
        failed
            .iter()
            .any(|m| m.starts_with("Error: failed to prepare subPath for volumeMount \"data\"")),
        "{failed:?}"
    );
    let r = rt.sync_pod(&p, true, &PodInputs::default()).await.unwrap();
    rt.remove_pod(&kubelet::runtime::config::pod_ref(&p), &r.observed)
        .await
        .unwrap();
    assert!(
        std::path::Path::new("/etc/hostname").exists()
            || std::path::Path::new("/etc/passwd").exists(),
        "host /etc untouched"
    );
}
