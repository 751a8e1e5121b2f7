//! Image pull failures against a real containerd (started by the test), as upstream's
//! kubelet reports them: a failed pull is `ErrImagePull` (Warning Failed events), a sync
//! inside the back-off window is `ImagePullBackOff` without pulling again (Normal BackOff),
//! and `imagePullPolicy: Never` with an absent image is `ErrImageNeverPull`.
//!
//! No registry is reachable here: `localhost:1` refuses the connection, so pulls fail fast.

mod common;

use common::{pod, Rig};
use kubelet::events::{EventType, Recorder};
use kubelet::pod::status::{pod_status, StatusInputs};
use kubelet::runtime::PodInputs;
use std::time::{Duration, Instant};

const MISSING: &str = "localhost:1/none:latest";
const NEVER: &str = "localhost:1/absent:v1";
const UID: &str = "uid-image-pull-1";

fn waiting_in_status(
    p: &k8s_openapi::api::core::v1::Pod,
    r: &kubelet::runtime::SyncResult,
    name: &str,
) -> (String, String) {
    let inputs = StatusInputs {
        waiting: r.waiting.clone(),
        runtime_name: "containerd".into(),
        ..Default::default()
    };
    let status = pod_status(p, &r.observed, &inputs, k8s_openapi::jiff::Timestamp::now());
    let c = status
        .container_statuses
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no status for {name}"));
    let w = c
        .state
        .and_then(|s| s.waiting)
        .unwrap_or_else(|| panic!("{name} is not waiting"));
    (w.reason.unwrap_or_default(), w.message.unwrap_or_default())
}

#[tokio::test]
async fn failed_pulls_back_off_and_never_pull_is_reported() {
    let Some(rig) = Rig::start("failed_pulls_back_off_and_never_pull_is_reported").await else {
        return;
    };
    let rt = &rig.runtime;
    let p = pod(serde_json::json!({
        "metadata": {"name": "pull", "namespace": "default", "uid": UID},
        "spec": {
            "hostNetwork": true,
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {"name": "app", "image": MISSING},
                {"name": "never", "image": NEVER, "imagePullPolicy": "Never"}
            ]
        }
    }));
    let (recorder, mut events) = Recorder::capture();
    let inputs = PodInputs {
        recorder,
        ..Default::default()
    };
    let started = Instant::now();

    // First sync: the pull is attempted and fails.
    let r = rt.sync_pod(&p, false, &inputs).await.expect("sync");
    let (reason, message) = waiting_in_status(&p, &r, "app");
    assert_eq!(reason, "ErrImagePull", "{message}");
    assert!(message.starts_with("rpc error: code = "), "{message}");
    let (reason, message) = waiting_in_status(&p, &r, "never");
    assert_eq!(reason, "ErrImageNeverPull");
    assert_eq!(
        message,
        format!("Container image \"{NEVER}\" is not present with pull policy of Never")
    );
    let first: Vec<_> = std::iter::from_fn(|| events.try_recv().ok()).collect();
    let of =
        |evs: &[kubelet::events::Record], container: &str| -> Vec<(EventType, String, String)> {
            let path = format!("spec.containers{{{container}}}");
            evs.iter()
                .filter(|e| e.involved.field_path.as_deref() == Some(path.as_str()))
                .map(|e| (e.type_, e.reason.clone(), e.message.clone()))
                .collect()
        };
    let app = of(&first, "app");
    assert_eq!(
        app[0],
        (
            EventType::Normal,
            "Pulling".into(),
            format!("Pulling image \"{MISSING}\"")
        )
    );
    assert_eq!(
        (app[1].0, app[1].1.as_str()),
        (EventType::Warning, "Failed")
    );
    assert!(
        app[1].2.starts_with(&format!(
            "Failed to pull image \"{MISSING}\": rpc error: code = "
        )),
        "{app:?}"
    );
    assert_eq!(
        app[2],
        (
            EventType::Warning,
            "Failed".into(),
            "Error: ErrImagePull".into()
        )
    );
    assert_eq!(app.len(), 3, "{app:?}");
    let never = of(&first, "never");
    assert_eq!(
        never,
        vec![
            (
                EventType::Warning,
                "ErrImageNeverPull".into(),
                format!("Container image \"{NEVER}\" is not present with pull policy of Never")
            ),
            (
                EventType::Warning,
                "Failed".into(),
                "Error: ErrImageNeverPull".into()
            ),
        ]
    );
    let pull_error = message_of_first_failure(&app);
    let remaining = rt.image_manager.backoff_remaining(UID, MISSING);
    assert!(
        remaining > Duration::ZERO && remaining <= Duration::from_secs(10),
        "{remaining:?}"
    );

    // Second sync inside the 10 s window: ImagePullBackOff, and no pull is attempted.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let r = rt.sync_pod(&p, false, &inputs).await.expect("sync");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "too slow to test the window"
    );
    let (reason, message) = waiting_in_status(&p, &r, "app");
    assert_eq!(reason, "ImagePullBackOff");
    assert_eq!(
        message,
        format!("Back-off pulling image \"{MISSING}\": ErrImagePull: {pull_error}")
    );
    assert_eq!(waiting_in_status(&p, &r, "never").0, "ErrImageNeverPull");
    let second: Vec<_> = std::iter::from_fn(|| events.try_recv().ok()).collect();
    let app = of(&second, "app");
    assert_eq!(
        app,
        vec![
            (
                EventType::Normal,
                "BackOff".into(),
                format!("Back-off pulling image \"{MISSING}\"")
            ),
            (
                EventType::Warning,
                "Failed".into(),
                "Error: ImagePullBackOff".into()
            ),
        ],
        "no Pulling: PullImage is not called while backing off"
    );
    assert!(r.observed.containers.is_empty(), "{:?}", r.observed);

    // The pod is to be synced again when the back-off is over (not after a fixed period):
    // that sync pulls again, fails, and the back-off doubles to 20 s.
    let requeue = r.requeue_after.expect("requeue at back-off expiry");
    let remaining = rt.image_manager.backoff_remaining(UID, MISSING);
    assert!(
        requeue >= remaining
            && requeue <= remaining + Duration::from_millis(100)
            && requeue < Duration::from_secs(9),
        "requeue {requeue:?}, back-off left {remaining:?}"
    );
    tokio::time::sleep(requeue).await;
    let r = rt.sync_pod(&p, false, &inputs).await.expect("sync");
    assert_eq!(waiting_in_status(&p, &r, "app").0, "ErrImagePull");
    let third: Vec<_> = std::iter::from_fn(|| events.try_recv().ok()).collect();
    assert_eq!(of(&third, "app")[0].1, "Pulling", "pulled again at expiry");
    let remaining = rt.image_manager.backoff_remaining(UID, MISSING);
    assert!(
        remaining > Duration::from_secs(10) && remaining <= Duration::from_secs(20),
        "{remaining:?}"
    );

    // Clean up the sandbox.
    let r = rt.sync_pod(&p, true, &inputs).await.expect("stop");
    let pod_ref = kubelet::runtime::config::pod_ref(&p);
    rt.remove_pod(&pod_ref, &r.observed).await.expect("remove");
    assert!(started.elapsed() < Duration::from_secs(60));
}

/// The CRI error of the `Failed to pull image "x": <error>` event.
fn message_of_first_failure(app: &[(EventType, String, String)]) -> String {
    let prefix = format!("Failed to pull image \"{MISSING}\": ");
    app.iter()
        .find_map(|(_, _, m)| m.strip_prefix(&prefix).map(str::to_string))
        .expect("a Failed to pull event")
}
