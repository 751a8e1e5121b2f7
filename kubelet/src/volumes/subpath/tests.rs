use super::*;
use std::os::unix::fs::symlink;

fn env(kv: &[(&str, &str)]) -> Vec<(String, String)> {
    kv.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn container(mounts: serde_json::Value) -> Container {
    serde_json::from_value(serde_json::json!({"name": "c", "volumeMounts": mounts})).unwrap()
}

#[test]
fn sub_path_expr_expands_from_the_environment_and_refuses_missing_values() {
    let e = env(&[("POD", "web-0"), ("NS", "prod"), ("EMPTY", "")]);
    assert_eq!(
        expand_expr("$(NS)/$(POD)/logs", &e).unwrap(),
        "prod/web-0/logs"
    );
    assert_eq!(expand_expr("a$$(POD)", &e).unwrap(), "a$(POD)");
    assert_eq!(
        expand_expr("$(NOPE)/$(EMPTY)/$(NOPE)", &e).unwrap_err(),
        "missing value for EMPTY, NOPE"
    );
}

#[test]
fn absolute_and_backstepping_sub_paths_are_refused_with_upstream_messages() {
    assert!(validate("a/b").is_ok());
    assert!(
        validate("a..b/..c").is_ok(),
        "only a whole '..' element backsteps"
    );
    assert_eq!(
        validate("/etc").unwrap_err(),
        "error SubPath `/etc` must not be an absolute path"
    );
    assert_eq!(
        validate("a/../../etc").unwrap_err(),
        "unable to provision SubPath `a/../../etc`: must not contain '..'"
    );
}

#[test]
fn safe_make_dir_creates_missing_directories_with_the_volume_mode() {
    let vol = tempfile::tempdir().unwrap();
    safe_make_dir(Path::new("a/b/c"), vol.path(), 0o777).unwrap();
    let m = std::fs::metadata(vol.path().join("a/b/c")).unwrap();
    assert!(m.is_dir());
    assert_eq!(m.mode() & 0o7777, 0o777, "umask does not apply");
    // Existing directories are fine; an existing file is not.
    safe_make_dir(Path::new("a/b"), vol.path(), 0o777).unwrap();
    std::fs::write(vol.path().join("f"), b"").unwrap();
    assert!(safe_make_dir(Path::new("f"), vol.path(), 0o777).is_err());
    // A symlink inside the volume to a directory inside it may be followed.
    symlink("a", vol.path().join("alias")).unwrap();
    safe_make_dir(Path::new("alias/new"), vol.path(), 0o755).unwrap();
    assert!(vol.path().join("a/new").is_dir());
}

#[test]
fn safe_make_dir_does_not_create_through_a_symlink_leaving_the_volume() {
    let vol = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    symlink(outside.path(), vol.path().join("escape")).unwrap();
    let e = safe_make_dir(Path::new("escape/new"), vol.path(), 0o777).unwrap_err();
    assert!(e.to_string().contains("outside of allowed base"), "{e}");
    assert!(!outside.path().join("new").exists());
}

#[test]
fn safe_open_refuses_any_symlink_on_the_way() {
    let vol = tempfile::tempdir().unwrap();
    let base = std::fs::canonicalize(vol.path()).unwrap();
    std::fs::create_dir(base.join("d")).unwrap();
    symlink("d", base.join("link")).unwrap();
    assert!(safe_open(&base.join("d"), &base).is_ok());
    let e = safe_open(&base.join("link"), &base).unwrap_err();
    assert!(e.to_string().contains("unexpected symlink"), "{e}");
    assert!(safe_open(Path::new("/etc"), &base).is_err());
}

/// Bind mounts need root (the kubelet's tests run as root on these machines).
fn can_mount() -> bool {
    nix::unistd::geteuid().is_root()
}

#[test]
fn prepare_bind_mounts_the_subdirectory_and_refuses_symlinks_out_of_the_volume() {
    if !can_mount() {
        eprintln!("SKIPPED: bind mounts need root");
        return;
    }
    let pod = tempfile::tempdir().unwrap();
    let vol = pod.path().join("volumes/kubernetes.io~empty-dir/data");
    std::fs::create_dir_all(vol.join("sub")).unwrap();
    std::fs::write(vol.join("sub/file"), b"inside").unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), b"host").unwrap();
    symlink(outside.path(), vol.join("escape")).unwrap();
    symlink(outside.path().join("secret"), vol.join("escape-file")).unwrap();
    symlink("sub", vol.join("alias")).unwrap();
    let sub = |p: &str, index| {
        let path = vol.join(p);
        let s = SubPath {
            pod_dir: pod.path(),
            volume: "data",
            container: "c",
            index,
            volume_path: &vol,
            path: &path,
        };
        prepare(&s)
    };
    let target = sub("sub", 0).unwrap();
    assert_eq!(target, pod.path().join("volume-subpaths/data/c/0"));
    assert_eq!(
        std::fs::read_to_string(target.join("file")).unwrap(),
        "inside"
    );
    // Again (a restarted container): the existing mount is reused.
    assert_eq!(sub("sub", 0).unwrap(), target);
    // A symlink that stays inside the volume is resolved.
    let alias = sub("alias", 1).unwrap();
    assert_eq!(
        std::fs::read_to_string(alias.join("file")).unwrap(),
        "inside"
    );
    // A symlink (to a directory or a file) leading out of the volume is refused.
    for (p, i) in [("escape", 2), ("escape-file", 3), ("escape/secret", 4)] {
        let e = sub(p, i).unwrap_err();
        assert!(e.to_string().contains("not within volume path"), "{p}: {e}");
        assert!(!super::super::is_mountpoint(
            &pod.path().join(format!("volume-subpaths/data/c/{i}"))
        ));
    }
    // Teardown unmounts before removing: the volume's data is never deleted through a
    // bind mount, and the pod directory goes.
    let keep = tempfile::tempdir().unwrap();
    std::fs::create_dir(keep.path().join("shared")).unwrap();
    std::fs::write(keep.path().join("shared/f"), b"x").unwrap();
    let host_vol = keep.path().to_path_buf();
    let shared = host_vol.join("shared");
    let s = SubPath {
        pod_dir: pod.path(),
        volume: "host",
        container: "c",
        index: 5,
        volume_path: &host_vol,
        path: &shared,
    };
    prepare(&s).unwrap();
    super::super::teardown_pod_dir(pod.path()).unwrap();
    assert!(!pod.path().exists());
    assert_eq!(std::fs::read(keep.path().join("shared/f")).unwrap(), b"x");
}

#[test]
fn mount_sources_resolve_sub_paths_and_name_the_failing_field() {
    if !can_mount() {
        eprintln!("SKIPPED: bind mounts need root");
        return;
    }
    let pod = tempfile::tempdir().unwrap();
    let vol = pod.path().join("volumes/kubernetes.io~empty-dir/data");
    std::fs::create_dir_all(&vol).unwrap();
    std::fs::set_permissions(&vol, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let volumes = HashMap::from([("data".to_string(), vol.clone())]);
    let c = container(serde_json::json!([
        {"name": "data", "mountPath": "/all"},
        {"name": "data", "mountPath": "/mine", "subPathExpr": "pods/$(POD_NAME)"}
    ]));
    let e = env(&[("POD_NAME", "web-0")]);
    let got = mount_sources(pod.path(), &c, &volumes, &e).unwrap();
    assert_eq!(got[0], vol);
    assert_eq!(got[1], pod.path().join("volume-subpaths/data/c/1"));
    let created = vol.join("pods/web-0");
    assert!(created.is_dir(), "missing subPath created");
    assert_eq!(std::fs::metadata(&created).unwrap().mode() & 0o7777, 0o777);
    std::fs::write(got[1].join("x"), b"1").unwrap();
    assert_eq!(std::fs::read(created.join("x")).unwrap(), b"1");

    let fail = |mounts: serde_json::Value, env: &[(String, String)]| {
        mount_sources(pod.path(), &container(mounts), &volumes, env).unwrap_err()
    };
    assert_eq!(
        fail(serde_json::json!([{"name": "nope", "mountPath": "/x"}]), &e),
        "cannot find volume \"nope\" to mount into container \"c\""
    );
    assert_eq!(
        fail(
            serde_json::json!([{"name": "data", "mountPath": "/x", "subPathExpr": "$(HOST)"}]),
            &e
        ),
        "volumeMounts[0].subPathExpr \"$(HOST)\" (volume \"data\"): missing value for HOST"
    );
    assert_eq!(
        fail(
            serde_json::json!([{"name": "data", "mountPath": "/x", "subPath": "../../etc"}]),
            &e
        ),
        "unable to provision SubPath `../../etc`: must not contain '..'"
    );
    symlink("/etc", vol.join("etc")).unwrap();
    assert_eq!(
        fail(
            serde_json::json!([{"name": "data", "mountPath": "/x", "subPath": "etc"}]),
            &e
        ),
        "failed to prepare subPath for volumeMount \"data\" of container \"c\""
    );
    super::super::teardown_pod_dir(pod.path()).unwrap();
}
