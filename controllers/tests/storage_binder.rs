//! persistentvolume-binder against a real apiserver: static binding to the smallest fitting
//! volume, selectors, `claimRef` and `volumeName` pre-binding, Retain → Released, Delete of
//! a `/tmp` hostPath volume, the retroactive default class, WaitForFirstConsumer with the
//! scheduler's selected-node annotation, the hand-off to an external provisioner, and
//! upstream's events.

#[path = "lifecycle_support.rs"]
mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::{json, Value};

const TIMEOUT: Duration = Duration::from_secs(30);

fn annotated(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta, key: &str) -> bool {
    meta.annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(key))
}

fn pv(name: &str, size: &str, extra: Value) -> PersistentVolume {
    let mut v = json!({
        "metadata": {"name": name},
        "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"],
                 "hostPath": {"path": format!("/tmp/ferrokube-pvbinder-e2e/{name}")}}
    });
    merge(&mut v, extra);
    serde_json::from_value(v).unwrap()
}

fn pvc(name: &str, size: &str, extra: Value) -> PersistentVolumeClaim {
    let mut v = json!({
        "metadata": {"name": name},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}},
                 "storageClassName": ""}
    });
    merge(&mut v, extra);
    serde_json::from_value(v).unwrap()
}

fn merge(base: &mut Value, extra: Value) {
    match (base, extra) {
        (Value::Object(b), Value::Object(e)) => {
            for (k, v) in e {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, e) => *b = e,
    }
}

fn phase_of_pv(v: &PersistentVolume) -> &str {
    v.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn phase_of_pvc(c: &PersistentVolumeClaim) -> &str {
    c.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn volume_of(c: &PersistentVolumeClaim) -> &str {
    c.spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .unwrap_or("")
}

struct Env {
    claims: Api<PersistentVolumeClaim>,
    volumes: Api<PersistentVolume>,
    events: Api<Event>,
}

impl Env {
    /// Waits until claim `name` is Bound to `volume` and the volume Bound to it.
    async fn bound(
        &self,
        kcm: &mut e2e::ManagedProcess,
        name: &str,
        volume: &str,
    ) -> (PersistentVolumeClaim, PersistentVolume) {
        support::eventually(
            &format!("claim {name} bound to {volume}"),
            TIMEOUT,
            kcm,
            || async {
                let c = self.claims.get(name).await?;
                let v = self.volumes.get(volume).await?;
                let ok = phase_of_pvc(&c) == "Bound"
                    && volume_of(&c) == volume
                    && phase_of_pv(&v) == "Bound"
                    && v.spec
                        .as_ref()
                        .and_then(|s| s.claim_ref.as_ref())
                        .and_then(|r| r.uid.clone())
                        == c.metadata.uid;
                Ok(ok.then_some((c, v)))
            },
        )
        .await
    }

    /// Waits for an event with `reason` about object `name`, returning its message.
    async fn event(&self, kcm: &mut e2e::ManagedProcess, name: &str, reason: &str) -> String {
        support::eventually(
            &format!("event {reason} on {name}"),
            TIMEOUT,
            kcm,
            || async {
                let list = self.events.list(&ListParams::default()).await?;
                Ok(list.items.into_iter().find_map(|e| {
                    (e.involved_object.name.as_deref() == Some(name)
                        && e.reason.as_deref() == Some(reason))
                    .then(|| e.message.unwrap_or_default())
                }))
            },
        )
        .await
    }
}

#[tokio::test]
async fn claims_bind_release_and_wait_as_upstream() {
    let cluster = e2e::cluster_or_skip!();
    let client = cluster.client();
    let env = Env {
        claims: Api::namespaced(client.clone(), "default"),
        volumes: Api::all(client.clone()),
        events: Api::namespaced(client.clone(), "default"),
    };
    let classes: Api<StorageClass> = Api::all(client.clone());
    let pp = PostParams::default();
    let tmp = tempfile::Builder::new()
        .prefix("ferrokube-pvbinder-")
        .tempdir_in("/tmp")
        .unwrap();
    let doomed = tmp.path().join("doomed");
    std::fs::create_dir(&doomed).unwrap();
    std::fs::write(doomed.join("data"), "x").unwrap();

    for v in [
        pv("pv-small", "1Gi", json!({})),
        pv("pv-big", "5Gi", json!({})),
        pv(
            "pv-gold",
            "10Gi",
            json!({"metadata": {"labels": {"tier": "gold"}}}),
        ),
        pv(
            "pv-reserved",
            "8Gi",
            json!({"spec": {"claimRef": {"namespace": "default", "name": "c-reserved"}}}),
        ),
        pv("pv-named", "3Gi", json!({})),
        pv(
            "pv-delete",
            "20Gi",
            json!({"spec": {"persistentVolumeReclaimPolicy": "Delete",
                                               "hostPath": {"path": doomed.to_str().unwrap()}}}),
        ),
        pv(
            "pv-wffc",
            "1Gi",
            json!({"spec": {"storageClassName": "local-wffc"}}),
        ),
    ] {
        env.volumes.create(&pp, &v).await.unwrap();
    }
    for c in [
        json!({"metadata": {"name": "local-wffc"}, "provisioner": "kubernetes.io/no-provisioner",
               "volumeBindingMode": "WaitForFirstConsumer"}),
        json!({"metadata": {"name": "ext-wffc"}, "provisioner": "example.com/ext",
               "volumeBindingMode": "WaitForFirstConsumer"}),
    ] {
        classes
            .create(&pp, &serde_json::from_value(c).unwrap())
            .await
            .unwrap();
    }
    for c in [
        pvc("c-small", "1Gi", json!({})),
        pvc(
            "c-gold",
            "1Gi",
            json!({"spec": {"selector": {"matchLabels": {"tier": "gold"}}}}),
        ),
        pvc("c-reserved", "1Gi", json!({})),
        pvc(
            "c-named",
            "1Gi",
            json!({"spec": {"volumeName": "pv-named"}}),
        ),
        pvc("c-delete", "20Gi", json!({})),
        pvc("c-nothing", "100Gi", json!({})),
        pvc(
            "c-wffc",
            "1Gi",
            json!({"spec": {"storageClassName": "local-wffc"}}),
        ),
        pvc(
            "c-ext",
            "1Gi",
            json!({"spec": {"storageClassName": "ext-wffc"}}),
        ),
        // No class at all, created before any default class exists; too big for every volume.
        pvc(
            "c-default",
            "50Gi",
            json!({"spec": {"storageClassName": null}}),
        ),
    ] {
        env.claims.create(&pp, &c).await.unwrap();
    }

    let (mut kcm, port) = support::start_kcm_on_port(
        &cluster,
        "persistentvolume-binder,pvc-protection,pv-protection",
        &["--pvclaimbinder-sync-period=2s"],
    );

    // Smallest fitting volume, both sides annotated as upstream.
    let (c, v) = env.bound(&mut kcm, "c-small", "pv-small").await;
    assert!(annotated(&c.metadata, "pv.kubernetes.io/bind-completed"));
    assert!(annotated(
        &c.metadata,
        "pv.kubernetes.io/bound-by-controller"
    ));
    assert!(annotated(
        &v.metadata,
        "pv.kubernetes.io/bound-by-controller"
    ));
    let status = c.status.unwrap();
    assert_eq!(status.capacity.unwrap()["storage"].0, "1Gi");
    assert_eq!(status.access_modes.unwrap(), ["ReadWriteOnce"]);
    // Selector.
    env.bound(&mut kcm, "c-gold", "pv-gold").await;
    // claimRef pre-binding by the admin: the reserved volume, though a smaller one fits;
    // the controller did not choose it, so no bound-by-controller on the volume.
    let (_, v) = env.bound(&mut kcm, "c-reserved", "pv-reserved").await;
    assert!(!annotated(
        &v.metadata,
        "pv.kubernetes.io/bound-by-controller"
    ));
    // volumeName pre-binding by the user: the claim is not marked bound-by-controller.
    let (c, _) = env.bound(&mut kcm, "c-named", "pv-named").await;
    assert!(!annotated(
        &c.metadata,
        "pv.kubernetes.io/bound-by-controller"
    ));
    assert!(annotated(&c.metadata, "pv.kubernetes.io/bind-completed"));
    env.bound(&mut kcm, "c-delete", "pv-delete").await;
    // Nothing fits and no class: FailedBinding, Pending.
    let msg = env.event(&mut kcm, "c-nothing", "FailedBinding").await;
    assert_eq!(
        msg,
        "no persistent volumes available for this claim and no storage class is set"
    );
    assert_eq!(
        phase_of_pvc(&env.claims.get("c-nothing").await.unwrap()),
        "Pending"
    );
    // WaitForFirstConsumer: no binding, an event instead; pv-big stays Available.
    let msg = env.event(&mut kcm, "c-wffc", "WaitForFirstConsumer").await;
    assert_eq!(
        msg,
        "waiting for first consumer to be created before binding"
    );
    assert_eq!(volume_of(&env.claims.get("c-wffc").await.unwrap()), "");
    assert_eq!(
        phase_of_pv(&env.volumes.get("pv-big").await.unwrap()),
        "Available"
    );

    // Retain: the released volume keeps its claimRef and turns Released.
    env.claims
        .delete("c-small", &DeleteParams::default())
        .await
        .unwrap();
    support::eventually("pv-small Released", TIMEOUT, &mut kcm, || async {
        let v = env.volumes.get("pv-small").await?;
        Ok((phase_of_pv(&v) == "Released").then_some(()))
    })
    .await;
    // Delete of a /tmp hostPath volume: the directory and the object go.
    env.claims
        .delete("c-delete", &DeleteParams::default())
        .await
        .unwrap();
    support::eventually(
        "pv-delete deleted with its directory",
        TIMEOUT,
        &mut kcm,
        || async {
            Ok(
                (env.volumes.get_opt("pv-delete").await?.is_none() && !doomed.exists())
                    .then_some(()),
            )
        },
    )
    .await;

    // The scheduler's part for a static WaitForFirstConsumer volume: it pre-binds the
    // volume to the claim and annotates the claim with the node; the binder completes.
    let prebind = json!({"spec": {"claimRef": {"namespace": "default", "name": "c-wffc"}}});
    env.volumes
        .patch("pv-wffc", &PatchParams::default(), &Patch::Merge(&prebind))
        .await
        .unwrap();
    let node =
        json!({"metadata": {"annotations": {"volume.kubernetes.io/selected-node": "node-a"}}});
    env.claims
        .patch("c-wffc", &PatchParams::default(), &Patch::Merge(&node))
        .await
        .unwrap();
    env.bound(&mut kcm, "c-wffc", "pv-wffc").await;

    // An external provisioner's class: after the node is selected, the claim is handed
    // over through the storage-provisioner annotations.
    env.claims
        .patch("c-ext", &PatchParams::default(), &Patch::Merge(&node))
        .await
        .unwrap();
    let msg = env.event(&mut kcm, "c-ext", "ExternalProvisioning").await;
    assert!(msg.contains("'example.com/ext'"), "{msg}");
    let c = env.claims.get("c-ext").await.unwrap();
    let ann = c.metadata.annotations.unwrap();
    assert_eq!(
        ann["volume.kubernetes.io/storage-provisioner"],
        "example.com/ext"
    );
    assert_eq!(
        ann["volume.beta.kubernetes.io/storage-provisioner"],
        "example.com/ext"
    );

    // A default class created later is assigned to the class-less claim.
    let default: StorageClass = serde_json::from_value(json!({
        "metadata": {"name": "standard",
                     "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": "example.com/std", "volumeBindingMode": "Immediate"
    }))
    .unwrap();
    classes.create(&pp, &default).await.unwrap();
    support::eventually("default class assigned", TIMEOUT, &mut kcm, || async {
        let c = env.claims.get("c-default").await?;
        let class = c.spec.and_then(|s| s.storage_class_name);
        Ok((class.as_deref() == Some("standard")).then_some(()))
    })
    .await;
    env.event(&mut kcm, "c-default", "ExternalProvisioning")
        .await;

    // Upstream's metrics: the pv_collector gauges (set every resync) and the retroactive
    // class assignment.
    let metrics = support::scrape_metrics_until(&cluster, &mut kcm, port, |m| {
        m.contains(r#"pv_collector_bound_pv_count{storage_class="local-wffc"} 1"#)
    })
    .await;
    assert_eq!(
        support::sample(&metrics, "retroactive_storageclass_total"),
        Some(1.0)
    );
    assert!(
        metrics.contains(
            r#"pv_collector_total_pv_count{plugin_name="kubernetes.io/host-path",volume_mode="Filesystem"}"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"workqueue_adds_total{name="claims"}"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn grown_claims_are_handed_to_their_resizer() {
    let cluster = e2e::cluster_or_skip!();
    let client = cluster.client();
    let env = Env {
        claims: Api::namespaced(client.clone(), "default"),
        volumes: Api::all(client.clone()),
        events: Api::namespaced(client.clone(), "default"),
    };
    let pp = PostParams::default();
    let class: StorageClass = serde_json::from_value(json!({
        "metadata": {"name": "resizable"}, "provisioner": "example.com/ext",
        "volumeBindingMode": "Immediate", "allowVolumeExpansion": true
    }))
    .unwrap();
    Api::<StorageClass>::all(client.clone())
        .create(&pp, &class)
        .await
        .unwrap();
    let in_class = json!({"spec": {"storageClassName": "resizable", "hostPath": null}});
    let mut csi = in_class.clone();
    merge(
        &mut csi,
        json!({"spec": {"csi": {"driver": "ext.example.com", "volumeHandle": "h"}}}),
    );
    let mut gce = in_class.clone();
    merge(
        &mut gce,
        json!({"spec": {"gcePersistentDisk": {"pdName": "disk"}}}),
    );
    env.volumes
        .create(&pp, &pv("pv-csi", "1Gi", csi))
        .await
        .unwrap();
    env.volumes
        .create(&pp, &pv("pv-gce", "1Gi", gce))
        .await
        .unwrap();
    let claim_of =
        |volume: &str| json!({"spec": {"storageClassName": "resizable", "volumeName": volume}});
    env.claims
        .create(&pp, &pvc("c-csi", "1Gi", claim_of("pv-csi")))
        .await
        .unwrap();
    env.claims
        .create(&pp, &pvc("c-gce", "1Gi", claim_of("pv-gce")))
        .await
        .unwrap();

    let mut kcm = support::start_kcm(
        &cluster,
        "persistentvolume-binder,persistentvolume-expander",
        &[],
    );
    env.bound(&mut kcm, "c-csi", "pv-csi").await;
    env.bound(&mut kcm, "c-gce", "pv-gce").await;
    let grow = json!({"spec": {"resources": {"requests": {"storage": "2Gi"}}}});
    for c in ["c-csi", "c-gce"] {
        env.claims
            .patch(c, &PatchParams::default(), &Patch::Merge(&grow))
            .await
            .unwrap();
    }
    let msg = env.event(&mut kcm, "c-csi", "ExternalExpanding").await;
    assert_eq!(msg, "waiting for an external controller to expand this PVC");
    let msg = env.event(&mut kcm, "c-gce", "ExternalExpanding").await;
    assert_eq!(
        msg,
        "CSI migration enabled for kubernetes.io/gce-pd; waiting for external resizer to expand the pvc"
    );
    support::eventually("resizer annotation", TIMEOUT, &mut kcm, || async {
        let c = env.claims.get("c-gce").await?;
        let resizer = c
            .metadata
            .annotations
            .and_then(|a| a.get("volume.kubernetes.io/storage-resizer").cloned());
        Ok((resizer.as_deref() == Some("pd.csi.storage.gke.io")).then_some(()))
    })
    .await;
}
