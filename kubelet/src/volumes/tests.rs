use super::*;

fn pod() -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "p", "namespace": "ns", "uid": "u", "labels": {"app": "web", "tier": "a"}},
        "spec": {
            "containers": [{"name": "c", "image": "busybox"}],
            "volumes": [
                {"name": "cache", "emptyDir": {}},
                {"name": "cfg", "configMap": {"name": "cm", "items": [{"key": "k", "path": "dir/file", "mode": 256}]}},
                {"name": "info", "downwardAPI": {"items": [
                    {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                    {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}}
                ]}},
                {"name": "host", "hostPath": {"path": "/tmp", "type": "Directory"}}
            ]
        }
    }))
    .unwrap()
}

#[tokio::test]
async fn disk_volumes_are_set_up_with_upstream_paths() {
    let dir = tempfile::tempdir().unwrap();
    let mut src = StaticVolumeSource::default();
    src.config_maps.insert(
        "ns/cm".into(),
        BTreeMap::from([("k".to_string(), b"v".to_vec())]),
    );
    let paths = setup(&pod(), dir.path(), &src, &Default::default())
        .await
        .unwrap();
    assert_eq!(
        paths["cache"],
        dir.path().join("volumes/kubernetes.io~empty-dir/cache")
    );
    assert!(paths["cache"].is_dir());
    let cfg = &paths["cfg"];
    assert_eq!(std::fs::read_to_string(cfg.join("dir/file")).unwrap(), "v");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(cfg.join("dir/file"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o400
    );
    let info = &paths["info"];
    assert_eq!(
        std::fs::read_to_string(info.join("labels")).unwrap(),
        "app=\"web\"\ntier=\"a\""
    );
    assert_eq!(std::fs::read_to_string(info.join("name")).unwrap(), "p");
    assert_eq!(paths["host"], PathBuf::from("/tmp"));
    teardown_pod_dir(dir.path()).unwrap();
    assert!(!dir.path().exists());
}

#[tokio::test]
async fn missing_configmap_and_bad_host_path_fail_the_mount() {
    let dir = tempfile::tempdir().unwrap();
    let err = setup(
        &pod(),
        dir.path(),
        &StaticVolumeSource::default(),
        &Default::default(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.volume, "cfg");
    assert!(
        err.to_string().contains("configmap \"cm\" not found"),
        "{err}"
    );
    assert!(check_host_path(Path::new("/etc/hostname-nope"), "File").is_err());
    assert!(check_host_path(Path::new("/etc"), "Directory").is_ok());
}

#[tokio::test]
async fn downward_resource_fields_default_to_allocatable_and_honour_divisors() {
    let dir = tempfile::tempdir().unwrap();
    let p: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "p", "namespace": "ns", "uid": "u"},
        "spec": {
            "containers": [{"name": "c", "image": "busybox",
                "resources": {"requests": {"memory": "32Mi"}}}],
            "volumes": [
                {"name": "info", "downwardAPI": {"items": [
                    {"path": "cpu_limit", "resourceFieldRef": {"containerName": "c", "resource": "limits.cpu"}},
                    {"path": "mem_limit", "resourceFieldRef": {"containerName": "c", "resource": "limits.memory", "divisor": "1Mi"}},
                    {"path": "mem_request", "resourceFieldRef": {"containerName": "c", "resource": "requests.memory", "divisor": "1Mi"}}
                ]}},
                {"name": "proj", "projected": {"sources": [{"downwardAPI": {"items": [
                    {"path": "cpu_limit", "resourceFieldRef": {"containerName": "c", "resource": "limits.cpu", "divisor": "1m"}}
                ]}}]}}
            ]
        }
    }))
    .unwrap();
    let alloc = NodeAllocatable {
        cpu_milli: 1500,
        memory: 2 << 30,
        ephemeral_storage: 10 << 30,
    };
    let paths = setup(&p, dir.path(), &StaticVolumeSource::default(), &alloc)
        .await
        .unwrap();
    let read = |v: &str, f: &str| std::fs::read_to_string(paths[v].join(f)).unwrap();
    assert_eq!(read("info", "cpu_limit"), "2");
    assert_eq!(read("info", "mem_limit"), "2048");
    assert_eq!(read("info", "mem_request"), "32");
    assert_eq!(read("proj", "cpu_limit"), "1500");
    teardown_pod_dir(dir.path()).unwrap();
}

#[tokio::test]
async fn fs_group_owns_projected_and_empty_dir_volumes() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let p: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "p", "namespace": "ns", "uid": "u"},
        "spec": {
            "securityContext": {"fsGroup": 3456},
            "containers": [{"name": "c", "image": "busybox"}],
            "volumes": [
                {"name": "cache", "emptyDir": {}},
                {"name": "cfg", "configMap": {"name": "cm", "defaultMode": 0o400}}
            ]
        }
    }))
    .unwrap();
    let mut src = StaticVolumeSource::default();
    src.config_maps.insert(
        "ns/cm".into(),
        BTreeMap::from([("k".to_string(), b"v".to_vec())]),
    );
    let paths = setup(&p, dir.path(), &src, &Default::default())
        .await
        .unwrap();
    let cache = std::fs::metadata(&paths["cache"]).unwrap();
    assert_eq!((cache.gid(), cache.mode() & 0o7777), (3456, 0o2777));
    let file = std::fs::metadata(paths["cfg"].join("k")).unwrap();
    assert_eq!((file.gid(), file.mode() & 0o7777), (3456, 0o440));
    // An unchanged payload is not rewritten on the next sync.
    let data = std::fs::read_link(paths["cfg"].join("..data")).unwrap();
    setup(&p, dir.path(), &src, &Default::default())
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_link(paths["cfg"].join("..data")).unwrap(),
        data
    );
    teardown_pod_dir(dir.path()).unwrap();
}

fn claim_pod(read_only: bool) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "p", "namespace": "ns", "uid": "u"},
        "spec": {
            "containers": [{"name": "c", "image": "busybox"}],
            "volumes": [{"name": "data",
                         "persistentVolumeClaim": {"claimName": "data", "readOnly": read_only}}]
        }
    }))
    .unwrap()
}

fn claim_source(disk: &Path, phase: &str) -> StaticVolumeSource {
    let mut src = StaticVolumeSource::default();
    src.claims.insert(
        "ns/data".into(),
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "data", "namespace": "ns", "uid": "claim-uid"},
            "spec": {"volumeName": "local-pv"},
            "status": {"phase": phase}
        }))
        .unwrap(),
    );
    src.persistent_volumes.insert(
        "local-pv".into(),
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "local-pv"},
            "spec": {"local": {"path": disk},
                     "claimRef": {"name": "data", "namespace": "ns", "uid": "claim-uid"}}
        }))
        .unwrap(),
    );
    src
}

/// Bind mounts need CAP_SYS_ADMIN: skipped (recorded) without it.
fn can_mount() -> bool {
    nix::unistd::geteuid().is_root()
}

#[tokio::test]
async fn bound_local_claim_is_bind_mounted_and_read_only_is_honoured() {
    if !can_mount() {
        eprintln!("SKIPPED: bind mounts need root");
        return;
    }
    let disk = tempfile::tempdir().unwrap();
    std::fs::write(disk.path().join("kept"), "data").unwrap();
    let src = claim_source(disk.path(), "Bound");
    for read_only in [false, true] {
        let pod_dir = tempfile::tempdir().unwrap();
        let paths = setup(
            &claim_pod(read_only),
            pod_dir.path(),
            &src,
            &Default::default(),
        )
        .await
        .unwrap();
        let dir = &paths["data"];
        assert_eq!(
            *dir,
            pod_dir
                .path()
                .join("volumes/kubernetes.io~local-volume/local-pv")
        );
        assert!(is_mountpoint(dir));
        assert_eq!(std::fs::read_to_string(dir.join("kept")).unwrap(), "data");
        let write = std::fs::write(dir.join("new"), "x");
        if read_only {
            assert_eq!(write.unwrap_err().raw_os_error(), Some(nix::libc::EROFS));
        } else {
            write.unwrap();
        }
        // A second sync keeps the one mount.
        setup(
            &claim_pod(read_only),
            pod_dir.path(),
            &src,
            &Default::default(),
        )
        .await
        .unwrap();
        teardown_pod_dir(pod_dir.path()).unwrap();
        assert!(!pod_dir.path().exists());
    }
    // The volume's data outlives the pod.
    assert_eq!(
        std::fs::read_to_string(disk.path().join("kept")).unwrap(),
        "data"
    );
    assert!(disk.path().join("new").exists());
}

#[tokio::test]
async fn unbound_claim_is_refused_with_upstreams_message() {
    let disk = tempfile::tempdir().unwrap();
    let pod_dir = tempfile::tempdir().unwrap();
    let err = setup(
        &claim_pod(false),
        pod_dir.path(),
        &claim_source(disk.path(), "Pending"),
        &Default::default(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.volume, "data");
    assert_eq!(
        err.message,
        "error processing PVC ns/data: PVC is not bound"
    );
}
