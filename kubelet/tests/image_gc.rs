//! Component tests against a real containerd: image garbage collection removes unused
//! images (and keeps the ones containers use, running or exited, and the sandbox image);
//! dead container GC keeps only the newest exited container per name.

mod common;

use common::{image_tags, pod, tiny_image, Rig};
use kubelet::container_gc::{self, policy::PodState};
use kubelet::events::Recorder;
use kubelet::image::busybox::{BUSYBOX_IMAGE, PAUSE_IMAGE};
use kubelet::image::gc::policy::Policy;
use kubelet::image::gc::{reason, ImageGc};
use kubelet::image::{ImageLoader, K8S_NAMESPACE};
use kubelet::pod::observed::{ContainerState, ObservedPod};
use kubelet::runtime::{PodInputs, PodRuntime};
use std::time::{Duration, Instant};

async fn tags(rt: &PodRuntime) -> Vec<String> {
    image_tags(&rt.cri).await
}

async fn sync_until(
    rt: &PodRuntime,
    p: &k8s_openapi::api::core::v1::Pod,
    stop: bool,
    what: &str,
    f: impl Fn(&ObservedPod) -> bool,
) -> ObservedPod {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = rt
            .sync_pod(p, stop, &PodInputs::default())
            .await
            .expect("sync");
        if f(&r.observed) {
            return r.observed;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn app_pod(uid: &str, command: &str) -> k8s_openapi::api::core::v1::Pod {
    pod(serde_json::json!({
        "metadata": {"name": "gc", "namespace": "default", "uid": uid},
        "spec": {"hostNetwork": true, "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "app", "image": "busybox:1.35", "command": ["sh", "-c", command]}]}
    }))
}

#[tokio::test]
async fn unused_images_go_and_used_and_sandbox_images_stay() {
    let Some(rig) = Rig::start("unused_images_go_and_used_and_sandbox_images_stay").await else {
        return;
    };
    let rt = &rig.runtime;
    let loader = ImageLoader::connect(&rig.containerd.endpoint(), K8S_NAMESPACE)
        .await
        .unwrap();
    let extra = ["docker.io/library/gc-old:1", "docker.io/library/gc-new:1"];
    for name in extra {
        loader.load(&tiny_image(name)).await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let t = tags(rt).await;
        if extra.iter().all(|e| t.contains(&e.to_string())) {
            break;
        }
        assert!(Instant::now() < deadline, "CRI never listed {extra:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // busybox is used by a running container; pause is the runtime's sandbox image.
    let p = app_pod("uid-image-gc-1", "sleep 3600");
    sync_until(rt, &p, false, "app running", |o| {
        o.latest("app", None)
            .is_some_and(|c| c.state == ContainerState::Running)
    })
    .await;

    // Thresholds that always demand space: every unused image goes.
    let policy = Policy {
        high_threshold_percent: 1,
        low_threshold_percent: 0,
        min_age: Duration::ZERO,
        max_age: Duration::ZERO,
    };
    let (recorder, mut events) = Recorder::capture();
    let gc = ImageGc::new(
        rt.cri.clone(),
        policy,
        recorder,
        "gc-node",
        rig.containerd.dir().join("root"),
    );
    let usage = gc.usage().await.expect("imagefs usage from ImageFsInfo");
    assert!(
        usage.capacity > 0 && usage.available <= usage.capacity,
        "{usage:?}"
    );
    let err = gc
        .garbage_collect()
        .await
        .expect_err("cannot reach 0% usage");
    let msg = format!("{err:#}");
    assert!(
        msg.starts_with("Insufficient free disk space on the node's image filesystem"),
        "{msg}"
    );
    let ev = events.try_recv().expect("an event");
    assert_eq!(ev.reason, reason::FREE_DISK_SPACE_FAILED);
    assert_eq!(ev.message, msg);
    let left = tags(rt).await;
    for gone in extra {
        assert!(
            !left.contains(&gone.to_string()),
            "{gone} still in {left:?}"
        );
    }
    for kept in [BUSYBOX_IMAGE, PAUSE_IMAGE] {
        assert!(left.contains(&kept.to_string()), "{kept} removed: {left:?}");
    }

    // An exited container still holds its image.
    let stopped = sync_until(rt, &p, true, "app stopped", |o| !o.any_running()).await;
    let removed = gc.delete_unused().await.unwrap();
    assert!(removed.images.is_empty(), "{removed:?}");
    assert!(tags(rt).await.contains(&BUSYBOX_IMAGE.to_string()));

    // Once the pod is gone busybox is unused; the sandbox image never is.
    rt.remove_pod(&kubelet::runtime::config::pod_ref(&p), &stopped)
        .await
        .unwrap();
    let removed = gc.delete_unused().await.unwrap();
    assert_eq!(removed.images.len(), 1, "{removed:?}");
    assert!(
        removed.freed > 500_000,
        "busybox's size counted: {removed:?}"
    );
    let left = tags(rt).await;
    assert!(!left.contains(&BUSYBOX_IMAGE.to_string()), "{left:?}");
    assert!(left.contains(&PAUSE_IMAGE.to_string()), "{left:?}");
}

#[tokio::test]
async fn young_images_are_not_collected() {
    let Some(rig) = Rig::start("young_images_are_not_collected").await else {
        return;
    };
    let rt = &rig.runtime;
    let gc = ImageGc::new(
        rt.cri.clone(),
        Policy {
            high_threshold_percent: 1,
            low_threshold_percent: 0,
            ..Policy::default()
        },
        Recorder::disabled(),
        "gc-node",
        rig.containerd.dir().join("root"),
    );
    // imageMinimumGCAge (2m) protects images just detected.
    let removed = gc.delete_unused().await.unwrap();
    assert!(removed.images.is_empty(), "{removed:?}");
    assert!(tags(rt).await.contains(&BUSYBOX_IMAGE.to_string()));
}

#[tokio::test]
async fn dead_containers_beyond_the_newest_per_name_are_removed() {
    let Some(rig) = Rig::start("dead_containers_beyond_the_newest_per_name_are_removed").await
    else {
        return;
    };
    let rt = &rig.runtime;
    // A changed spec replaces the container: two dead "app" containers and a running one.
    let uid = "uid-container-gc-1";
    let mut ids = Vec::new();
    for i in 0..3 {
        let p = app_pod(uid, &format!("sleep 360{i}"));
        let o = sync_until(rt, &p, false, "app running", |o| {
            o.latest("app", None)
                .is_some_and(|c| c.state == ContainerState::Running && !ids.contains(&c.id))
        })
        .await;
        ids.push(o.latest("app", None).unwrap().id.clone());
    }
    let active = |_: &str| PodState::Active;
    let done = container_gc::collect(&rt.cri, &active).await.unwrap();
    assert_eq!(
        done.containers,
        vec![ids[0].clone()],
        "only the oldest dead one goes"
    );
    let o = kubelet::runtime::observe::observe_pod(&rt.cri, uid)
        .await
        .unwrap();
    let mut left: Vec<_> = o.containers.iter().map(|c| c.id.clone()).collect();
    left.sort();
    let mut want = vec![ids[1].clone(), ids[2].clone()];
    want.sort();
    assert_eq!(left, want);
    // Pods nobody knows are left to the pod manager.
    let unknown = |_: &str| PodState::Unknown;
    assert_eq!(
        container_gc::collect(&rt.cri, &unknown).await.unwrap(),
        Default::default()
    );
    // A finished pod loses every dead container.
    let p = app_pod(uid, "sleep 3602");
    sync_until(rt, &p, true, "stopped", |o| !o.any_running()).await;
    let removable = |_: &str| PodState::Removable;
    let done = container_gc::collect(&rt.cri, &removable).await.unwrap();
    assert_eq!(done.containers.len(), 2, "{done:?}");
    let o = kubelet::runtime::observe::observe_pod(&rt.cri, uid)
        .await
        .unwrap();
    assert!(o.containers.is_empty(), "{o:?}");
    rt.remove_pod(&kubelet::runtime::config::pod_ref(&p), &o)
        .await
        .unwrap();
}
