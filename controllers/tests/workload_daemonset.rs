//! e2e: a DaemonSet covers the eligible fake nodes — nodeSelector, taints it does not
//! tolerate, and the automatic daemon tolerations (not-ready NoExecute, unschedulable) —
//! with pods pinned by a `metadata.name` node affinity; it follows node label and taint
//! changes (misscheduled pods stay under NoSchedule, go under NoExecute), rolls updates with
//! maxUnavailable and with maxSurge, leaves pods alone under OnDelete, and reports status.

#[path = "workload_support.rs"]
mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{Node, Pod, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use support::{eventually, fake_kubelet, start_kcm, Outcome};
use tokio_util::sync::CancellationToken;

const NS: &str = "default";
const REVISION_LABEL: &str = "controller-revision-hash";

/// The node a daemon pod is pinned to by its required `matchFields` term.
fn pinned_node(p: &Pod) -> Option<String> {
    let terms = &p
        .spec
        .as_ref()?
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    let field = terms.first()?.match_fields.as_ref()?.first()?;
    (field.key == "metadata.name" && field.operator == "In")
        .then(|| field.values.as_ref()?.first().cloned())
        .flatten()
}

/// Live daemon pods by node.
async fn by_node(api: &Api<Pod>) -> anyhow::Result<BTreeMap<String, Vec<Pod>>> {
    let mut out: BTreeMap<String, Vec<Pod>> = BTreeMap::new();
    for p in api
        .list(&ListParams::default().labels("app=ds"))
        .await?
        .items
    {
        if p.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let node = pinned_node(&p).ok_or_else(|| anyhow::anyhow!("{} unpinned", p.name_any()))?;
        out.entry(node).or_default().push(p);
    }
    Ok(out)
}

fn hash(p: &Pod) -> String {
    p.labels().get(REVISION_LABEL).cloned().unwrap_or_default()
}

/// Sets the node's taints (replacing the `not-ready` taint the apiserver's admission adds to
/// new nodes, as a kubelet's first status would clear it) and labels.
async fn set_node(
    nodes: &Api<Node>,
    name: &str,
    labels: serde_json::Value,
    taints: serde_json::Value,
) {
    nodes
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(
                serde_json::json!({"metadata": {"labels": labels}, "spec": {"taints": taints}}),
            ),
        )
        .await
        .unwrap();
}

fn counts(s: &DaemonSetStatus) -> (i32, i32, i32, i32, i32, i32, i32) {
    (
        s.desired_number_scheduled,
        s.current_number_scheduled,
        s.number_misscheduled,
        s.number_ready,
        s.updated_number_scheduled.unwrap_or(0),
        s.number_available.unwrap_or(0),
        s.number_unavailable.unwrap_or(0),
    )
}

#[tokio::test]
async fn daemonset_covers_eligible_nodes_and_rolls_updates() {
    let cluster = e2e::cluster_or_skip!();
    let mut kcm = start_kcm(&cluster, "daemonset");
    let client = cluster.client();
    let stop = CancellationToken::new();
    let _guard = stop.clone().drop_guard();
    fake_kubelet(client.clone(), NS, stop.clone(), |p| {
        (p.labels().get("app").map(String::as_str) == Some("ds")).then_some(Outcome::Ready)
    });
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
    let nodes: Api<Node> = Api::all(client.clone());
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let sets: Api<DaemonSet> = Api::namespaced(client.clone(), NS);

    // n1, n2: plain workers; n3: a worker with a taint the pods do not tolerate; n4: not a
    // worker; n5: a cordoned, not-ready worker (tolerated automatically).
    for n in ["n1", "n2", "n3", "n4", "n5"] {
        let node: Node =
            serde_json::from_value(serde_json::json!({"metadata": {"name": n}})).unwrap();
        nodes.create(&PostParams::default(), &node).await.unwrap();
    }
    let worker = serde_json::json!({"role": "worker"});
    set_node(&nodes, "n1", worker.clone(), serde_json::json!([])).await;
    set_node(&nodes, "n2", worker.clone(), serde_json::json!([])).await;
    set_node(
        &nodes,
        "n3",
        worker.clone(),
        serde_json::json!([{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]),
    )
    .await;
    set_node(
        &nodes,
        "n4",
        serde_json::json!({"role": "other"}),
        serde_json::json!([]),
    )
    .await;
    set_node(
        &nodes,
        "n5",
        worker.clone(),
        serde_json::json!([
            {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"},
            {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}
        ]),
    )
    .await;

    let ds: DaemonSet = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "ds"},
        "spec": {
            "selector": {"matchLabels": {"app": "ds"}},
            "template": {"metadata": {"labels": {"app": "ds"}},
                "spec": {"nodeSelector": {"role": "worker"},
                    "containers": [{"name": "c", "image": "busybox:1"}]}}
        }
    }))
    .unwrap();
    let uid = sets
        .create(&PostParams::default(), &ds)
        .await
        .unwrap()
        .uid()
        .unwrap();
    eventually(
        "ds on n1 n2 n5",
        Duration::from_secs(30),
        &mut kcm,
        || async {
            let s = sets.get("ds").await?.status.unwrap_or_default();
            let placed = by_node(&pods).await?;
            let ok = counts(&s) == (3, 3, 0, 3, 3, 3, 0)
                && s.observed_generation == Some(1)
                && placed.keys().eq(["n1", "n2", "n5"])
                && placed.values().all(|v| v.len() == 1);
            Ok(ok.then_some(()))
        },
    )
    .await;
    let placed = by_node(&pods).await.unwrap();
    let first_hash = hash(&placed["n1"][0]);
    for p in placed.values().flatten() {
        assert!(p
            .owner_references()
            .iter()
            .any(|r| r.uid == uid && r.controller == Some(true)));
        assert_eq!(hash(p), first_hash);
        let spec = p.spec.as_ref().unwrap();
        assert!(spec.node_name.is_none(), "the scheduler binds, not us");
        let tolerated: Vec<(String, String)> = spec
            .tolerations
            .iter()
            .flatten()
            .map(|t| {
                (
                    t.key.clone().unwrap_or_default(),
                    t.effect.clone().unwrap_or_default(),
                )
            })
            .collect();
        for (k, e) in [
            ("node.kubernetes.io/not-ready", "NoExecute"),
            ("node.kubernetes.io/unreachable", "NoExecute"),
            ("node.kubernetes.io/disk-pressure", "NoSchedule"),
            ("node.kubernetes.io/memory-pressure", "NoSchedule"),
            ("node.kubernetes.io/pid-pressure", "NoSchedule"),
            ("node.kubernetes.io/unschedulable", "NoSchedule"),
        ] {
            assert!(
                tolerated.contains(&(k.to_string(), e.to_string())),
                "{k}:{e} in {tolerated:?}"
            );
        }
    }
    let revisions = Api::<ControllerRevision>::namespaced(client.clone(), NS)
        .list(&ListParams::default().labels("app=ds"))
        .await
        .unwrap()
        .items;
    assert_eq!(revisions.len(), 1);
    assert_eq!(revisions[0].labels()[REVISION_LABEL], first_hash);

    // A failed daemon pod is killed (with upstream's warning) and replaced.
    let failed = placed["n2"][0].name_any();
    pods.patch_status(
        &failed,
        &PatchParams::default(),
        &Patch::Merge(support::status_for(Outcome::Fail)),
    )
    .await
    .unwrap();
    let events: Api<Event> = Api::namespaced(client.clone(), NS);
    eventually(
        "failed pod replaced",
        Duration::from_secs(30),
        &mut kcm,
        || async {
            let placed = by_node(&pods).await?;
            let replaced = placed
                .get("n2")
                .is_some_and(|v| v.len() == 1 && v[0].name_any() != failed);
            let warned = events
                .list(&ListParams::default())
                .await?
                .items
                .iter()
                .any(|e| {
                    e.reason.as_deref() == Some("FailedDaemonPod")
                        && e.note.as_deref().is_some_and(|n| n.contains(&failed))
                });
            Ok((replaced && warned).then_some(()))
        },
    )
    .await;

    // n4 becomes a worker: it gets a pod. n2 gets a NoSchedule taint: its pod stays but is
    // misscheduled. n1 gets a NoExecute taint: its pod goes.
    set_node(&nodes, "n4", worker.clone(), serde_json::json!([])).await;
    set_node(
        &nodes,
        "n2",
        worker.clone(),
        serde_json::json!([{"key": "maint", "effect": "NoSchedule"}]),
    )
    .await;
    set_node(
        &nodes,
        "n1",
        worker.clone(),
        serde_json::json!([{"key": "evict", "effect": "NoExecute"}]),
    )
    .await;
    eventually(
        "ds follows node changes",
        Duration::from_secs(30),
        &mut kcm,
        || async {
            let s = sets.get("ds").await?.status.unwrap_or_default();
            let placed = by_node(&pods).await?;
            let ok = counts(&s) == (2, 2, 1, 2, 2, 2, 0) && placed.keys().eq(["n2", "n4", "n5"]);
            Ok(ok.then_some(()))
        },
    )
    .await;
    set_node(&nodes, "n1", worker.clone(), serde_json::json!([])).await;
    set_node(&nodes, "n2", worker.clone(), serde_json::json!([])).await;
    eventually(
        "ds on 4 nodes",
        Duration::from_secs(30),
        &mut kcm,
        || async {
            let s = sets.get("ds").await?.status.unwrap_or_default();
            Ok((counts(&s) == (4, 4, 0, 4, 4, 4, 0)).then_some(()))
        },
    )
    .await;

    // A watcher records, during each rollout, the fewest ready pods and the most live pods
    // on one node.
    let seen = Arc::new(Mutex::new((i32::MAX, 0usize)));
    {
        let (pods, seen, stop) = (pods.clone(), seen.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                if let Ok(placed) = by_node(&pods).await {
                    let ready = placed
                        .values()
                        .flatten()
                        .filter(|p| {
                            p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
                        })
                        .count() as i32;
                    let most = placed.values().map(Vec::len).max().unwrap_or(0);
                    let mut s = seen.lock().unwrap();
                    *s = (s.0.min(ready), s.1.max(most));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
    }
    let rolled = |image: &'static str| {
        let (sets, pods) = (sets.clone(), pods.clone());
        move || {
            let (sets, pods) = (sets.clone(), pods.clone());
            async move {
                let ds = sets.get("ds").await?;
                let s = ds.status.clone().unwrap_or_default();
                let placed = by_node(&pods).await?;
                let images_ok = placed.values().flatten().all(|p| {
                    p.spec.as_ref().unwrap().containers[0].image.as_deref() == Some(image)
                });
                let ok = counts(&s) == (4, 4, 0, 4, 4, 4, 0)
                    && s.observed_generation == ds.metadata.generation
                    && placed.len() == 4
                    && placed.values().all(|v| v.len() == 1)
                    && images_ok;
                Ok(ok.then(|| hash(&placed["n1"][0])))
            }
        }
    };

    // RollingUpdate, maxUnavailable 1: delete first, never more than one node short.
    *seen.lock().unwrap() = (i32::MAX, 0);
    sets.patch(
        "ds",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"template": {"spec": {
            "containers": [{"name": "c", "image": "busybox:2"}]}}}})),
    )
    .await
    .unwrap();
    let second_hash = eventually(
        "maxUnavailable rollout",
        Duration::from_secs(30),
        &mut kcm,
        rolled("busybox:2"),
    )
    .await;
    assert_ne!(second_hash, first_hash);
    let (fewest_ready, most_on_node) = *seen.lock().unwrap();
    assert!(
        fewest_ready >= 3,
        "at most one unavailable, saw {fewest_ready} ready"
    );
    assert_eq!(most_on_node, 1, "no surge");

    // RollingUpdate, maxSurge 1 / maxUnavailable 0: the new pod comes up beside the old one.
    *seen.lock().unwrap() = (i32::MAX, 0);
    sets.patch(
        "ds",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {"spec": {"containers": [{"name": "c", "image": "busybox:3"}]}}}})),
    )
    .await
    .unwrap();
    eventually(
        "maxSurge rollout",
        Duration::from_secs(30),
        &mut kcm,
        rolled("busybox:3"),
    )
    .await;
    let (fewest_ready, most_on_node) = *seen.lock().unwrap();
    assert!(
        fewest_ready >= 4,
        "never below desired, saw {fewest_ready} ready"
    );
    assert_eq!(most_on_node, 2, "surge pod beside the old one");

    // OnDelete: a template change replaces only a deleted pod.
    sets.patch(
        "ds",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {
            "updateStrategy": {"type": "OnDelete", "rollingUpdate": null},
            "template": {"spec": {"containers": [{"name": "c", "image": "busybox:4"}]}}}})),
    )
    .await
    .unwrap();
    eventually(
        "OnDelete observed",
        Duration::from_secs(30),
        &mut kcm,
        || async {
            let ds = sets.get("ds").await?;
            let s = ds.status.unwrap_or_default();
            let ok = s.observed_generation == ds.metadata.generation
                && s.updated_number_scheduled.unwrap_or(0) == 0;
            Ok(ok.then_some(()))
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let placed = by_node(&pods).await.unwrap();
    let old_image = |p: &Pod| p.spec.as_ref().unwrap().containers[0].image.clone();
    assert!(placed
        .values()
        .flatten()
        .all(|p| old_image(p).as_deref() == Some("busybox:3")));
    pods.delete(&placed["n2"][0].name_any(), &DeleteParams::default())
        .await
        .unwrap();
    eventually(
        "n2 replaced from the new template",
        Duration::from_secs(30),
        &mut kcm,
        || async {
            let s = sets.get("ds").await?.status.unwrap_or_default();
            let placed = by_node(&pods).await?;
            let ok = counts(&s) == (4, 4, 0, 4, 1, 4, 0)
                && placed
                    .get("n2")
                    .is_some_and(|v| old_image(&v[0]).as_deref() == Some("busybox:4"));
            Ok(ok.then_some(()))
        },
    )
    .await;
}
