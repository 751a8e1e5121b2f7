//! Component test against a real containerd: with `securityContext.fsGroup` a non-root
//! container reads a configMap volume of mode 0400 (group-readable through the fsGroup)
//! and writes to an emptyDir, its files inheriting the fsGroup.

mod common;

use common::{pod, Rig};
use kubelet::pod::observed::ContainerState;
use kubelet::runtime::PodInputs;
use kubelet::volumes::StaticVolumeSource;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

#[tokio::test]
async fn fs_group_lets_a_non_root_user_use_its_volumes() {
    let Some(rig) = Rig::start("fs_group_lets_a_non_root_user_use_its_volumes").await else {
        return;
    };
    let rt = &rig.runtime;
    let p = pod(serde_json::json!({
        "metadata": {"name": "fsgroup", "namespace": "default", "uid": "uid-fs-group"},
        "spec": {
            "hostNetwork": true,
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "securityContext": {"runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 2345},
            "volumes": [
                {"name": "cfg", "configMap": {"name": "cm", "defaultMode": 0o400}},
                {"name": "scratch", "emptyDir": {}}
            ],
            "containers": [{"name": "app", "image": "busybox:1.35",
                "command": ["sh", "-c",
                    "cat /cfg/key && touch /scratch/made && stat -c 'gid=%g' /scratch/made && id -G"],
                "volumeMounts": [
                    {"name": "cfg", "mountPath": "/cfg", "readOnly": true},
                    {"name": "scratch", "mountPath": "/scratch"}
                ]}]
        }
    }));
    let mut source = StaticVolumeSource::default();
    source.config_maps.insert(
        "default/cm".into(),
        BTreeMap::from([("key".to_string(), b"secret-ish\n".to_vec())]),
    );
    let pod_dir = rt.pod_dir("uid-fs-group");
    let volumes = kubelet::volumes::setup(&p, &pod_dir, &source, &Default::default())
        .await
        .unwrap();
    let inputs = PodInputs {
        volumes,
        ..Default::default()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let observed = loop {
        let r = rt.sync_pod(&p, false, &inputs).await.expect("sync");
        if r.observed
            .latest("app", None)
            .is_some_and(|c| c.state == ContainerState::Exited)
        {
            break r.observed;
        }
        assert!(Instant::now() < deadline, "app did not finish: {r:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let log = rt
        .ctx
        .pod_logs_dir
        .join("default_fsgroup_uid-fs-group/app/0.log");
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    let app = observed.latest("app", None).unwrap();
    assert_eq!(app.exit_code, 0, "{log}");
    assert!(log.contains("secret-ish"), "{log}");
    assert!(log.contains("gid=2345"), "{log}");
    // `id -G`: the fsGroup is one of the process's groups.
    let in_groups = log
        .lines()
        .any(|l| !l.contains("gid=") && l.split_whitespace().any(|g| g == "2345"));
    assert!(in_groups, "fsGroup is a supplemental group: {log}");
    rt.remove_pod(&kubelet::runtime::config::pod_ref(&p), &observed)
        .await
        .unwrap();
}
