//! e2e: a StatefulSet scales up one ordinal at a time (OrderedReady) creating its claims,
//! scales down from the highest ordinal with `whenScaled: Delete` handing the condemned
//! claims to the garbage collector, rolls an update from the highest ordinal honouring the
//! partition, and reports revisions and counts in status; a `Parallel` + `OnDelete` set
//! creates all pods at once and replaces a pod only when it is deleted.

#[path = "workload_support.rs"]
mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use support::{eventually, start_kcm, status_for, Outcome};
use tokio_util::sync::CancellationToken;

const NS: &str = "default";
const REVISION_LABEL: &str = "controller-revision-hash";

/// What the fake kubelet saw, shared with the test.
#[derive(Default)]
struct Observed {
    /// Pod names in the order they were made Ready.
    readied: Vec<String>,
    /// Breaches of the OrderedReady invariant.
    violations: Vec<String>,
}

fn ordinal(name: &str) -> Option<i32> {
    name.rsplit_once('-')?.1.parse().ok()
}

fn is_ready(p: &Pod) -> bool {
    p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
}

/// A kubelet for the pods labelled `app=<app>`: while `check` is on, it asserts that the
/// live ordinals form a prefix `0..=k` of which only the highest may be unready; unless
/// `hold` is on, it makes one new pod Running/Ready per round, lowest ordinal first.
fn ordered_kubelet(
    client: kube::Client,
    app: &'static str,
    stop: CancellationToken,
    check: Arc<AtomicBool>,
    hold: Arc<AtomicBool>,
    observed: Arc<Mutex<Observed>>,
) {
    let api: Api<Pod> = Api::namespaced(client, NS);
    tokio::spawn(async move {
        while !stop.is_cancelled() {
            let lp = ListParams::default().labels(&format!("app={app}"));
            if let Ok(list) = api.list(&lp).await {
                let mut live: Vec<&Pod> = list
                    .items
                    .iter()
                    .filter(|p| p.metadata.deletion_timestamp.is_none())
                    .collect();
                live.sort_by_key(|p| ordinal(&p.name_any()));
                if check.load(Ordering::SeqCst) {
                    let ords: Vec<i32> =
                        live.iter().filter_map(|p| ordinal(&p.name_any())).collect();
                    let prefix = ords.iter().enumerate().all(|(i, o)| *o == i as i32);
                    let unready_below_top = live.iter().rev().skip(1).any(|p| !is_ready(p));
                    if !prefix || unready_below_top {
                        let state: Vec<String> = live
                            .iter()
                            .map(|p| format!("{}:{}", p.name_any(), is_ready(p)))
                            .collect();
                        observed.lock().unwrap().violations.push(state.join(","));
                    }
                }
                if !hold.load(Ordering::SeqCst) {
                    if let Some(p) = live.iter().find(|p| !is_ready(p)) {
                        let name = p.name_any();
                        let patch = Patch::Merge(status_for(Outcome::Ready));
                        if api
                            .patch_status(&name, &PatchParams::default(), &patch)
                            .await
                            .is_ok()
                        {
                            observed.lock().unwrap().readied.push(name);
                        }
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    });
}

fn set(name: &str, replicas: i32, extra: serde_json::Value) -> StatefulSet {
    let mut v = serde_json::json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "serviceName": name,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "busybox:1"}]}}
        }
    });
    merge(&mut v["spec"], extra);
    serde_json::from_value(v).unwrap()
}

fn merge(into: &mut serde_json::Value, from: serde_json::Value) {
    if let (Some(a), serde_json::Value::Object(b)) = (into.as_object_mut(), from) {
        a.extend(b);
    }
}

async fn live_pods(api: &Api<Pod>, app: &str) -> anyhow::Result<BTreeMap<String, Pod>> {
    let list = api
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await?;
    Ok(list
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| (p.name_any(), p))
        .collect())
}

fn revision(p: &Pod) -> String {
    p.labels().get(REVISION_LABEL).cloned().unwrap_or_default()
}

#[tokio::test]
async fn statefulset_orders_pods_claims_and_updates() {
    let cluster = e2e::cluster_or_skip!();
    let mut kcm = start_kcm(&cluster, "statefulset,garbagecollector");
    let client = cluster.client();
    let stop = CancellationToken::new();
    let _guard = stop.clone().drop_guard();
    eventually(
        "default ServiceAccount",
        Duration::from_secs(30),
        &mut kcm,
        || async {
            Ok(Api::<ServiceAccount>::namespaced(cluster.client(), NS)
                .get_opt("default")
                .await?
                .map(|_| ()))
        },
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), NS);
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), NS);
    let revisions: Api<ControllerRevision> = Api::namespaced(client.clone(), NS);

    let check = Arc::new(AtomicBool::new(true));
    let observed = Arc::new(Mutex::new(Observed::default()));
    ordered_kubelet(
        client.clone(),
        "web",
        stop.clone(),
        check.clone(),
        Arc::new(AtomicBool::new(false)),
        observed.clone(),
    );
    let web = set(
        "web",
        3,
        serde_json::json!({
            "volumeClaimTemplates": [{"metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}],
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Delete"}
        }),
    );
    let uid = sets
        .create(&PostParams::default(), &web)
        .await
        .unwrap()
        .uid()
        .unwrap();

    // Scale-up in order, with claims and identities; status settles on one revision.
    let status = eventually("web ready", Duration::from_secs(30), &mut kcm, || async {
        let s = sets.get("web").await?.status.unwrap_or_default();
        let ok = s.replicas == 3
            && s.ready_replicas == Some(3)
            && s.available_replicas == Some(3)
            && s.current_replicas == Some(3)
            && s.updated_replicas == Some(3)
            && s.observed_generation == Some(1)
            && s.current_revision.is_some()
            && s.current_revision == s.update_revision;
        Ok(ok.then_some(s))
    })
    .await;
    let rev1 = status.update_revision.clone().unwrap();
    {
        let o = observed.lock().unwrap();
        assert_eq!(o.readied, ["web-0", "web-1", "web-2"]);
        assert!(o.violations.is_empty(), "{:?}", o.violations);
    }
    let cr = revisions.get(&rev1).await.unwrap();
    assert!(cr
        .owner_references()
        .iter()
        .any(|r| r.uid == uid && r.controller == Some(true)));
    assert_eq!(cr.revision, 1);
    assert!(cr.labels().contains_key("controller.kubernetes.io/hash"));
    for (name, p) in live_pods(&pods, "web").await.unwrap() {
        let l = p.labels();
        assert_eq!(l["statefulset.kubernetes.io/pod-name"], name);
        assert_eq!(
            l["apps.kubernetes.io/pod-index"],
            ordinal(&name).unwrap().to_string()
        );
        assert_eq!(revision(&p), rev1);
        let spec = p.spec.unwrap();
        assert_eq!(spec.hostname.as_deref(), Some(name.as_str()));
        assert_eq!(spec.subdomain.as_deref(), Some("web"));
        let vol = spec
            .volumes
            .unwrap_or_default()
            .into_iter()
            .find(|v| v.name == "data")
            .expect("claim volume");
        assert_eq!(
            vol.persistent_volume_claim.unwrap().claim_name,
            format!("data-{name}")
        );
        let claim = claims.get(&format!("data-{name}")).await.unwrap();
        assert_eq!(claim.labels()["app"], "web");
    }

    // Upstream's events on the set.
    let events: Api<Event> = Api::namespaced(client.clone(), NS);
    eventually("web events", Duration::from_secs(10), &mut kcm, || async {
        let notes: Vec<String> = events
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.uid.as_deref()) == Some(&uid))
            .filter_map(|e| e.note)
            .collect();
        let ok = notes
            .iter()
            .any(|n| n == "create Pod web-2 in StatefulSet web successful")
            && notes
                .iter()
                .any(|n| n == "create Claim data-web-0 Pod web-0 in StatefulSet web success");
        Ok(ok.then_some(()))
    })
    .await;

    // Scale down to 1: highest ordinal first; the condemned pods' claims are deleted by the
    // garbage collector (their pod became their owner), web-0's stays.
    sets.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"replicas": 1}})),
    )
    .await
    .unwrap();
    eventually(
        "scale-down with claims released",
        Duration::from_secs(30),
        &mut kcm,
        || async {
            let live = live_pods(&pods, "web").await?;
            let s = sets.get("web").await?.status.unwrap_or_default();
            let mut gone = true;
            for n in ["data-web-1", "data-web-2"] {
                if let Some(c) = claims.get_opt(n).await? {
                    gone &= c.metadata.deletion_timestamp.is_some();
                }
            }
            let kept = claims.get_opt("data-web-0").await?.is_some();
            let ok = live.keys().eq(["web-0"]) && s.replicas == 1 && gone && kept;
            Ok(ok.then_some(()))
        },
    )
    .await;
    assert!(
        observed.lock().unwrap().violations.is_empty(),
        "{:?}",
        observed.lock().unwrap().violations
    );

    // Back to 3, then a rolling update with partition 1: web-2 then web-1 move to the new
    // revision, web-0 stays; partition 0 finishes the rollout.
    sets.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"replicas": 3}})),
    )
    .await
    .unwrap();
    eventually(
        "web back to 3",
        Duration::from_secs(30),
        &mut kcm,
        || async {
            let s = sets.get("web").await?.status.unwrap_or_default();
            Ok((s.ready_replicas == Some(3)).then_some(()))
        },
    )
    .await;
    check.store(false, Ordering::SeqCst);
    observed.lock().unwrap().readied.clear();
    sets.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 1}},
            "template": {"spec": {"containers": [{"name": "c", "image": "busybox:2"}]}}}})),
    )
    .await
    .unwrap();
    let status = eventually(
        "partitioned rollout",
        Duration::from_secs(30),
        &mut kcm,
        || async {
            let s = sets.get("web").await?.status.unwrap_or_default();
            let ok = s.ready_replicas == Some(3)
                && s.updated_replicas == Some(2)
                && s.current_replicas == Some(1)
                && s.current_revision.as_deref() == Some(rev1.as_str())
                && s.update_revision.as_deref() != Some(rev1.as_str());
            Ok(ok.then_some(s))
        },
    )
    .await;
    let rev2 = status.update_revision.unwrap();
    let live = live_pods(&pods, "web").await.unwrap();
    assert_eq!(revision(&live["web-0"]), rev1);
    assert_eq!(revision(&live["web-1"]), rev2);
    assert_eq!(revision(&live["web-2"]), rev2);
    assert_eq!(observed.lock().unwrap().readied, ["web-2", "web-1"]);
    assert_eq!(revisions.get(&rev2).await.unwrap().revision, 2);
    sets.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}}})),
    )
    .await
    .unwrap();
    eventually(
        "rollout complete",
        Duration::from_secs(30),
        &mut kcm,
        || async {
            let s = sets.get("web").await?.status.unwrap_or_default();
            let ok = s.ready_replicas == Some(3)
                && s.updated_replicas == Some(3)
                && s.current_replicas == Some(3)
                && s.current_revision.as_deref() == Some(rev2.as_str())
                && s.update_revision.as_deref() == Some(rev2.as_str())
                && s.observed_generation == Some(5);
            Ok(ok.then_some(()))
        },
    )
    .await;
    assert_eq!(
        observed.lock().unwrap().readied,
        ["web-2", "web-1", "web-0"]
    );

    // Parallel + OnDelete: every pod at once (none Ready yet); a template change replaces
    // only the pod that is deleted.
    let hold = Arc::new(AtomicBool::new(true));
    ordered_kubelet(
        client.clone(),
        "par",
        stop.clone(),
        Arc::new(AtomicBool::new(false)),
        hold.clone(),
        Arc::new(Mutex::new(Observed::default())),
    );
    let par = set(
        "par",
        3,
        serde_json::json!({"podManagementPolicy": "Parallel", "updateStrategy": {"type": "OnDelete"}}),
    );
    sets.create(&PostParams::default(), &par).await.unwrap();
    eventually(
        "parallel creation before readiness",
        Duration::from_secs(30),
        &mut kcm,
        || async { Ok((live_pods(&pods, "par").await?.len() == 3).then_some(())) },
    )
    .await;
    hold.store(false, Ordering::SeqCst);
    let old = eventually("par ready", Duration::from_secs(30), &mut kcm, || async {
        let s = sets.get("par").await?.status.unwrap_or_default();
        Ok((s.ready_replicas == Some(3)).then_some(s.update_revision.unwrap_or_default()))
    })
    .await;
    sets.patch(
        "par",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"template": {"spec": {
            "containers": [{"name": "c", "image": "busybox:2"}]}}}})),
    )
    .await
    .unwrap();
    let new = eventually(
        "par new update revision",
        Duration::from_secs(30),
        &mut kcm,
        || async {
            let s = sets.get("par").await?.status.unwrap_or_default();
            Ok(s.update_revision
                .filter(|r| *r != old && s.observed_generation == Some(2)))
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let live = live_pods(&pods, "par").await.unwrap();
    assert!(
        live.values().all(|p| revision(p) == old),
        "OnDelete kept pods"
    );
    pods.delete("par-1", &DeleteParams::default())
        .await
        .unwrap();
    eventually(
        "par-1 recreated at the update revision",
        Duration::from_secs(30),
        &mut kcm,
        || async {
            let live = live_pods(&pods, "par").await?;
            let s = sets.get("par").await?.status.unwrap_or_default();
            let ok = live.get("par-1").is_some_and(|p| revision(p) == new)
                && live.len() == 3
                && s.updated_replicas == Some(1)
                && s.current_replicas == Some(2);
            Ok(ok.then_some(()))
        },
    )
    .await;
    let live = live_pods(&pods, "par").await.unwrap();
    assert_eq!(revision(&live["par-0"]), old);
    assert_eq!(revision(&live["par-2"]), old);
}
