//! The persistentvolume-binder's shell: shared informers for volumes, claims, classes and
//! pods, one queue of claims and one of volumes (a worker each: a sync is not reentrant, as
//! upstream's), a resync every `--pvclaimbinder-sync-period`, and the API writes and events
//! of the steps [`super::decide`] picks.

use anyhow::Context as _;
use component_base::events::{EventRecorder, EventSpec, EventType};
use futures::future::FutureExt;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::PostParams;
use kube::{Api, Resource};

use super::binding::{
    bind_claim_to_volume, bind_volume_to_claim, claim_phase, claim_with_status, unbind_volume,
    volume_with_phase,
};
use super::decide::{
    decide_claim, decide_reclaim, decide_volume, external_provisioning_event, has_provisioner,
    is_released_or_failed, is_volume_released, ClaimStep, Event, Observed, Reclaim, VolumeStep,
};
use super::metrics::{count, BinderMetrics};
use super::{ANN_BETA_STORAGE_PROVISIONER, ANN_STORAGE_PROVISIONER};
use crate::machinery::context::{event_recorder, ControllerContext};
use crate::machinery::informers::handlers::{self as informer, Change};
use crate::machinery::informers::Informer;
use crate::machinery::queue::WorkQueue;
use crate::machinery::ControllerDescriptor;
use crate::storage::volume_protection::{pod_is_terminated, pod_pvc_keys, POD_PVC_INDEX};
use api_helpers::errors;

/// The identity of the binder with `--use-service-account-credentials` (upstream's).
pub const SERVICE_ACCOUNT: &str = "persistent-volume-binder";
/// The event source upstream's binder reports as.
pub const EVENT_COMPONENT: &str = "persistentvolume-controller";

/// Registry entry (`persistentvolume-binder-controller`).
pub fn descriptor() -> ControllerDescriptor {
    ControllerDescriptor {
        name: "persistentvolume-binder",
        enabled_by_default: true,
        start: |ctx| run(ctx).boxed(),
    }
}

type ClaimKey = (String, String);

/// The binder's caches, queues and writer.
#[derive(Clone)]
struct Binder {
    client: kube::Client,
    volumes: Informer<PersistentVolume>,
    claims: Informer<PersistentVolumeClaim>,
    classes: Informer<StorageClass>,
    pods: Informer<Pod>,
    claim_queue: WorkQueue<ClaimKey>,
    recorder: EventRecorder,
    metrics: BinderMetrics,
}

fn claim_key_of(c: &PersistentVolumeClaim) -> Option<ClaimKey> {
    Some((c.metadata.namespace.clone()?, c.metadata.name.clone()?))
}

async fn run(ctx: ControllerContext) -> anyhow::Result<()> {
    let sd = ctx.shutdown.clone();
    let claim_queue: WorkQueue<ClaimKey> = WorkQueue::new().with_metrics(&ctx.metrics, "claims");
    let volume_queue: WorkQueue<String> = WorkQueue::new().with_metrics(&ctx.metrics, "volumes");

    let volumes = ctx.informers().informer::<PersistentVolume>();
    let (cq, vq) = (claim_queue.clone(), volume_queue.clone());
    informer::on(&volumes, move |pv: &PersistentVolume, change| {
        match change {
            Change::Applied => {
                if let Some(n) = &pv.metadata.name {
                    vq.add(n.clone());
                }
            }
            // A deleted volume's claim becomes Lost without waiting for the resync.
            Change::Deleted => {
                if let Some(r) = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) {
                    if let (Some(ns), Some(n)) = (&r.namespace, &r.name) {
                        cq.add((ns.clone(), n.clone()));
                    }
                }
            }
        }
    });
    let claims = ctx.informers().informer::<PersistentVolumeClaim>();
    let (cq, vq) = (claim_queue.clone(), volume_queue.clone());
    informer::on(
        &claims,
        move |c: &PersistentVolumeClaim, change| match change {
            Change::Applied => {
                if let Some(k) = claim_key_of(c) {
                    cq.add(k);
                }
            }
            // A deleted claim releases its volume without waiting for the resync.
            Change::Deleted => {
                if let Some(v) = c.spec.as_ref().and_then(|s| s.volume_name.as_ref()) {
                    if !v.is_empty() {
                        vq.add(v.clone());
                    }
                }
            }
        },
    );
    let classes = ctx.informers().informer::<StorageClass>();
    let pods = ctx.informers().informer::<Pod>();
    pods.add_index(POD_PVC_INDEX, pod_pvc_keys);
    informer::wait_synced(&sd, async {
        tokio::join!(
            volumes.wait_synced(),
            claims.wait_synced(),
            classes.wait_synced(),
            pods.wait_synced()
        );
    })
    .await?;
    let client = ctx.client_for(SERVICE_ACCOUNT).await?;
    let binder = Binder {
        recorder: event_recorder(client.clone(), EVENT_COMPONENT),
        client,
        volumes,
        claims,
        classes,
        pods,
        claim_queue: claim_queue.clone(),
        metrics: ctx.metrics.families(BinderMetrics::register),
    };
    tracing::info!("Starting persistent volume controller");

    // Upstream's own resync: every claim and volume again each period.
    let period = ctx
        .options
        .pvclaimbinder_sync_period
        .max(std::time::Duration::from_secs(1));
    let resync = {
        let (b, vq, sd) = (binder.clone(), volume_queue.clone(), sd.clone());
        async move {
            let mut tick = tokio::time::interval(period);
            loop {
                tokio::select! {
                    _ = sd.cancelled() => return,
                    _ = tick.tick() => {}
                }
                b.metrics.set(&count(&b.volumes.list(), &b.claims.list()));
                b.claims
                    .list()
                    .iter()
                    .filter_map(|c| claim_key_of(c))
                    .for_each(|k| b.claim_queue.add(k));
                b.volumes
                    .list()
                    .iter()
                    .filter_map(|v| v.metadata.name.clone())
                    .for_each(|n| vq.add(n));
            }
        }
    };
    let b = binder.clone();
    let claim_worker = claim_queue.run(
        "persistentvolume-binder",
        1,
        sd.clone(),
        move |(ns, name)| {
            let b = b.clone();
            async move { b.sync_claim(&ns, &name).await }
        },
    );
    let b = binder.clone();
    let volume_worker = volume_queue.run("persistentvolume-binder", 1, sd.clone(), move |name| {
        let b = b.clone();
        async move { b.sync_volume(&name).await }
    });
    tokio::join!(resync, claim_worker, volume_worker);
    Ok(())
}

fn to_spec<K: Resource<DynamicType = ()>>(obj: &K, action: &str, e: &Event) -> EventSpec {
    let mut regarding = obj.object_ref(&());
    regarding.field_path = None;
    EventSpec {
        regarding,
        related: None,
        type_: EventType::warning_if(e.warning),
        reason: e.reason.to_string(),
        action: action.to_string(),
        note: e.message.clone(),
    }
}

impl Binder {
    fn claims_api(&self, ns: &str) -> Api<PersistentVolumeClaim> {
        Api::namespaced(self.client.clone(), ns)
    }

    fn volumes_api(&self) -> Api<PersistentVolume> {
        Api::all(self.client.clone())
    }

    async fn event<K: Resource<DynamicType = ()>>(&self, obj: &K, action: &str, e: &Event) {
        self.recorder.record(to_spec(obj, action, e)).await;
    }

    fn observed_for(&self, claim: &PersistentVolumeClaim) -> Observed {
        let key = format!(
            "{}/{}",
            claim.metadata.namespace.as_deref().unwrap_or_default(),
            claim.metadata.name.as_deref().unwrap_or_default()
        );
        Observed {
            volumes: self.volumes.list(),
            classes: self.classes.list(),
            pods: self.pods.by_index(POD_PVC_INDEX, &key),
        }
    }

    async fn sync_claim(&self, ns: &str, name: &str) -> anyhow::Result<()> {
        let Some(claim) = self.claims.get(ns, name) else {
            return Ok(());
        };
        let step = decide_claim(&claim, &self.observed_for(&claim));
        tracing::debug!(claim = %format!("{ns}/{name}"), ?step, "Synchronizing PersistentVolumeClaim");
        match step {
            ClaimStep::Bind(pv) => self.bind(&pv, &claim).await,
            ClaimStep::Pending(event) => {
                if let Some(e) = &event {
                    self.event(claim.as_ref(), "Binding", e).await;
                }
                self.set_claim_status(&claim, "Pending", None).await?;
                Ok(())
            }
            ClaimStep::Lost(event) => {
                if claim_phase(&claim) != "Lost" {
                    let updated = self.set_claim_status(&claim, "Lost", None).await?;
                    self.event(&updated, "Binding", &event).await;
                }
                Ok(())
            }
            ClaimStep::AssignDefaultClass(class) => {
                let mut updated = (*claim).clone();
                updated
                    .spec
                    .get_or_insert_with(Default::default)
                    .storage_class_name = Some(class.clone());
                let written = errors::ignore_not_found(
                    self.claims_api(ns)
                        .replace(name, &PostParams::default(), &updated)
                        .await,
                );
                if written.is_err() {
                    self.metrics.retroactive_errors.inc();
                }
                written.with_context(|| {
                    format!("can't update PersistentVolumeClaim[\"{ns}/{name}\"]")
                })?;
                self.metrics.retroactive.inc();
                tracing::info!(claim = %format!("{ns}/{name}"), storage_class = %class, "Assigned the default StorageClass to PersistentVolumeClaim");
                Ok(())
            }
            ClaimStep::ExternalProvisioning { provisioner } => {
                let mut current = (*claim).clone();
                if !has_provisioner(&claim, &provisioner) {
                    let annotations = current
                        .metadata
                        .annotations
                        .get_or_insert_with(Default::default);
                    annotations.insert(ANN_BETA_STORAGE_PROVISIONER.into(), provisioner.clone());
                    annotations.insert(ANN_STORAGE_PROVISIONER.into(), provisioner.clone());
                    match self
                        .claims_api(ns)
                        .replace(name, &PostParams::default(), &current)
                        .await
                    {
                        Ok(c) => current = c,
                        Err(e) => {
                            let failed = Event {
                                warning: true,
                                reason: "ProvisioningFailed",
                                message: format!("Error saving claim: {e}"),
                            };
                            self.event(claim.as_ref(), "Provisioning", &failed).await;
                            return Err(e.into());
                        }
                    }
                }
                self.event(
                    &current,
                    "Provisioning",
                    &external_provisioning_event(&provisioner),
                )
                .await;
                Ok(())
            }
            ClaimStep::EventOnly(e) => {
                self.event(claim.as_ref(), "Provisioning", &e).await;
                Ok(())
            }
            ClaimStep::Fail(msg, event) => {
                if let Some(e) = &event {
                    self.event(claim.as_ref(), "Binding", e).await;
                }
                anyhow::bail!(msg)
            }
        }
    }

    /// Writes the claim's status when it changes; returns the claim as now stored.
    async fn set_claim_status(
        &self,
        claim: &PersistentVolumeClaim,
        phase: &str,
        volume: Option<&PersistentVolume>,
    ) -> anyhow::Result<PersistentVolumeClaim> {
        let Some(updated) = claim_with_status(claim, phase, volume).map_err(anyhow::Error::msg)?
        else {
            return Ok(claim.clone());
        };
        let ns = claim.metadata.namespace.as_deref().unwrap_or_default();
        let name = claim.metadata.name.as_deref().unwrap_or_default();
        let stored = self
            .claims_api(ns)
            .replace_status(name, &PostParams::default(), &updated)
            .await?;
        tracing::info!(claim = %format!("{ns}/{name}"), phase, "Claim entered phase");
        Ok(stored)
    }

    /// Writes the volume's phase when it changes; returns the volume as now stored.
    async fn set_volume_phase(
        &self,
        pv: &PersistentVolume,
        phase: &str,
        message: &str,
    ) -> anyhow::Result<PersistentVolume> {
        let Some(updated) = volume_with_phase(pv, phase, message) else {
            return Ok(pv.clone());
        };
        let name = pv.metadata.name.as_deref().unwrap_or_default();
        let stored = self
            .volumes_api()
            .replace_status(name, &PostParams::default(), &updated)
            .await?;
        tracing::info!(volume = name, phase, "Volume entered phase");
        Ok(stored)
    }

    /// Upstream's `bind`: volume `claimRef`, volume phase, claim `volumeName`, claim
    /// status, each written only when it differs; stops at the first error (the next sync
    /// completes the rest).
    async fn bind(
        &self,
        pv: &PersistentVolume,
        claim: &PersistentVolumeClaim,
    ) -> anyhow::Result<()> {
        let name = pv.metadata.name.clone().unwrap_or_default();
        let mut pv = pv.clone();
        if let Some(updated) = bind_volume_to_claim(&pv, claim) {
            pv = self
                .volumes_api()
                .replace(&name, &PostParams::default(), &updated)
                .await
                .with_context(|| format!("binding volume {name:?}"))?;
        }
        let pv = self.set_volume_phase(&pv, "Bound", "").await?;
        let ns = claim.metadata.namespace.clone().unwrap_or_default();
        let claim_name = claim.metadata.name.clone().unwrap_or_default();
        let mut claim = claim.clone();
        if let Some(updated) = bind_claim_to_volume(&claim, &pv) {
            claim = self
                .claims_api(&ns)
                .replace(&claim_name, &PostParams::default(), &updated)
                .await
                .with_context(|| format!("binding claim \"{ns}/{claim_name}\""))?;
            tracing::info!(claim = %format!("{ns}/{claim_name}"), volume = %name, "Volume bound to claim");
        }
        self.set_claim_status(&claim, "Bound", Some(&pv)).await?;
        Ok(())
    }

    /// The claim a bound volume names, as upstream finds it: the cache, then the apiserver
    /// when the cache has none (for volumes not yet Released or Failed) or has one with
    /// another UID; `None` when that claim is gone.
    async fn claim_of(
        &self,
        pv: &PersistentVolume,
    ) -> anyhow::Result<Option<PersistentVolumeClaim>> {
        let Some(r) = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
            return Ok(None);
        };
        let (Some(ns), Some(name)) = (r.namespace.as_deref(), r.name.as_deref()) else {
            return Ok(None);
        };
        let cached = self.claims.get(ns, name).map(|c| (*c).clone());
        let live = || async { self.claims_api(ns).get_opt(name).await };
        let claim = match cached {
            None if !is_released_or_failed(pv) => live().await?,
            None => None,
            Some(c) if c.metadata.uid != r.uid => live().await?,
            Some(c) => Some(c),
        };
        Ok(claim.filter(|c| c.metadata.uid == r.uid))
    }

    async fn sync_volume(&self, name: &str) -> anyhow::Result<()> {
        let Some(pv) = self.volumes.get("", name) else {
            return Ok(());
        };
        let claim = self.claim_of(&pv).await?;
        let step = decide_volume(&pv, claim.as_ref());
        tracing::debug!(volume = name, ?step, "Synchronizing PersistentVolume");
        match step {
            VolumeStep::Phase(phase) => {
                self.set_volume_phase(&pv, phase, "").await?;
            }
            VolumeStep::Release => {
                let pv = if is_released_or_failed(&pv) {
                    (*pv).clone()
                } else {
                    tracing::info!(
                        volume = name,
                        "Volume is released and reclaim policy will be executed"
                    );
                    self.set_volume_phase(&pv, "Released", "").await?
                };
                self.reclaim(&pv).await?;
            }
            VolumeStep::SyncClaim(ns, claim) => self.claim_queue.add((ns, claim)),
            VolumeStep::VolumeModeMismatch {
                volume_event,
                claim_event,
            } => {
                self.event(pv.as_ref(), "Binding", &volume_event).await;
                if let Some(c) = &claim {
                    self.event(c, "Binding", &claim_event).await;
                }
            }
            VolumeStep::Unbind => {
                let updated = self
                    .volumes_api()
                    .replace(name, &PostParams::default(), &unbind_volume(&pv))
                    .await?;
                self.set_volume_phase(&updated, "Available", "").await?;
            }
        }
        Ok(())
    }

    /// Carries out the reclaim policy of a released volume.
    async fn reclaim(&self, pv: &PersistentVolume) -> anyhow::Result<()> {
        let name = pv.metadata.name.clone().unwrap_or_default();
        let r = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
        let claim_key = r.map(|r| {
            format!(
                "{}/{}",
                r.namespace.as_deref().unwrap_or_default(),
                r.name.as_deref().unwrap_or_default()
            )
        });
        // Pods count only while no claim of that name exists (a new claim of the same name
        // uses another volume).
        let pods_using: Vec<String> = match (&claim_key, r) {
            (Some(k), Some(r))
                if self
                    .claims
                    .get(
                        r.namespace.as_deref().unwrap_or_default(),
                        r.name.as_deref().unwrap_or_default(),
                    )
                    .is_none() =>
            {
                let mut names: Vec<String> = self
                    .pods
                    .by_index(POD_PVC_INDEX, k)
                    .iter()
                    .filter(|p| !pod_is_terminated(p))
                    .map(|p| {
                        format!(
                            "{}/{}",
                            p.metadata.namespace.as_deref().unwrap_or_default(),
                            p.metadata.name.as_deref().unwrap_or_default()
                        )
                    })
                    .collect();
                names.sort();
                names
            }
            _ => Vec::new(),
        };
        match decide_reclaim(pv, &pods_using) {
            Reclaim::Nothing | Reclaim::External => Ok(()),
            Reclaim::InUse(e) => {
                self.event(pv, "Reclaim", &e).await;
                Ok(())
            }
            Reclaim::Failed(e) => self.fail_volume(pv, &e).await,
            Reclaim::DeleteHostPath(path) => {
                // Re-read: a previous delete may have finished meanwhile.
                let Some(live) = self.volumes_api().get_opt(&name).await? else {
                    return Ok(());
                };
                let claim = self.claim_of(&live).await?;
                if !is_volume_released(&live, claim.as_ref()) {
                    return Ok(());
                }
                if let Err(e) = remove_path(&path) {
                    let e = Event {
                        warning: true,
                        reason: "VolumeFailedDelete",
                        message: e,
                    };
                    return self.fail_volume(&live, &e).await;
                }
                errors::ignore_not_found(
                    self.volumes_api()
                        .delete(&name, &Default::default())
                        .await
                        .map(|_| ()),
                )?;
                tracing::info!(volume = %name, "Deleted released volume");
                Ok(())
            }
        }
    }

    /// Marks the volume Failed with the event's message, recording the event when the
    /// phase changes.
    async fn fail_volume(&self, pv: &PersistentVolume, e: &Event) -> anyhow::Result<()> {
        if pv.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Failed") {
            let updated = self.set_volume_phase(pv, "Failed", &e.message).await?;
            self.event(&updated, "Reclaim", e).await;
        }
        Ok(())
    }
}

fn remove_path(path: &str) -> Result<(), String> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("unlinkat {path}: {e}")),
    }
}
