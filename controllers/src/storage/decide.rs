//! What a sync of one claim or one volume does, decided from observed state (upstream's
//! `syncUnboundClaim`, `syncBoundClaim`, `syncVolume` and `reclaimVolume`); the shell in
//! [`super::controller`] carries the steps out.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;

use super::classes::{claim_class, claim_has_class, default_class, is_delay_binding};
use super::matching::{
    check_volume_satisfies_claim, find_best_match, is_bound_to_claim, volume_mode_mismatch,
    volume_phase,
};
use super::{
    ANN_BIND_COMPLETED, ANN_BOUND_BY_CONTROLLER, ANN_DYNAMICALLY_PROVISIONED, ANN_MIGRATED_TO,
    ANN_SELECTED_NODE, ANN_STORAGE_PROVISIONER,
};

/// An event to record on the claim or volume being synced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// `Warning` rather than `Normal`.
    pub warning: bool,
    /// Upstream's reason, e.g. `FailedBinding`.
    pub reason: &'static str,
    /// The message.
    pub message: String,
}

impl Event {
    fn normal(reason: &'static str, message: impl Into<String>) -> Self {
        Event {
            warning: false,
            reason,
            message: message.into(),
        }
    }

    fn warning(reason: &'static str, message: impl Into<String>) -> Self {
        Event {
            warning: true,
            reason,
            message: message.into(),
        }
    }
}

/// What the binder knows besides the object being synced.
#[derive(Default)]
pub struct Observed {
    /// Every PersistentVolume.
    pub volumes: Vec<Arc<PersistentVolume>>,
    /// Every StorageClass.
    pub classes: Vec<Arc<StorageClass>>,
    /// The pods that reference the claim being synced (any state).
    pub pods: Vec<Arc<Pod>>,
}

impl Observed {
    fn volume(&self, name: &str) -> Option<&Arc<PersistentVolume>> {
        self.volumes
            .iter()
            .find(|v| v.metadata.name.as_deref() == Some(name))
    }

    fn class(&self, name: &str) -> Option<&Arc<StorageClass>> {
        self.classes
            .iter()
            .find(|c| c.metadata.name.as_deref() == Some(name))
    }
}

/// The outcome of a claim sync.
#[derive(Debug, Clone, PartialEq)]
pub enum ClaimStep {
    /// Bind claim and volume (volume first), completing whatever part is missing.
    Bind(Arc<PersistentVolume>),
    /// Record `event` (if any), then set the claim Pending with its status cleared.
    Pending(Option<Event>),
    /// Set the claim Lost; `event` is recorded only when the phase changes.
    Lost(Event),
    /// Write the default class into `spec.storageClassName` (then the claim is synced again).
    AssignDefaultClass(String),
    /// Hand the claim to an external provisioner: set both storage-provisioner annotations
    /// to `provisioner`, then record `ExternalProvisioning`.
    ExternalProvisioning {
        /// The class's provisioner.
        provisioner: String,
    },
    /// Record the event and leave the claim as it is.
    EventOnly(Event),
    /// An error to retry with backoff, after recording `event` if any.
    Fail(String, Option<Event>),
}

fn annotation<'a>(
    meta: &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    key: &str,
) -> Option<&'a str> {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

fn claim_key(claim: &PersistentVolumeClaim) -> String {
    format!(
        "{}/{}",
        claim.metadata.namespace.as_deref().unwrap_or_default(),
        claim.metadata.name.as_deref().unwrap_or_default()
    )
}

fn volume_name_of(claim: &PersistentVolumeClaim) -> &str {
    claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .unwrap_or("")
}

/// Decides what a claim sync does.
pub fn decide_claim(claim: &PersistentVolumeClaim, observed: &Observed) -> ClaimStep {
    if annotation(&claim.metadata, ANN_BIND_COMPLETED).is_some() {
        decide_bound_claim(claim, observed)
    } else if volume_name_of(claim).is_empty() {
        decide_unbound_claim(claim, observed)
    } else {
        decide_prebound_claim(claim, observed)
    }
}

fn pod_is_terminated(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// The WaitForFirstConsumer / WaitForPodScheduled event of a delayed claim.
fn wait_event(observed: &Observed) -> Event {
    let unscheduled: Vec<&str> = observed
        .pods
        .iter()
        .filter(|p| !pod_is_terminated(p))
        .filter(|p| {
            p.spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .unwrap_or("")
                .is_empty()
        })
        .filter_map(|p| p.metadata.name.as_deref())
        .collect();
    match unscheduled.as_slice() {
        [] => Event::normal(
            "WaitForFirstConsumer",
            "waiting for first consumer to be created before binding",
        ),
        [one] => Event::normal(
            "WaitForPodScheduled",
            format!("waiting for pod {one} to be scheduled"),
        ),
        many => Event::normal(
            "WaitForPodScheduled",
            format!("waiting for pods {} to be scheduled", many.join(",")),
        ),
    }
}

fn decide_unbound_claim(claim: &PersistentVolumeClaim, observed: &Observed) -> ClaimStep {
    let delay = match is_delay_binding(claim, &observed.classes) {
        Ok(d) => d,
        Err(e) => return ClaimStep::Fail(e, None),
    };
    if let Some(volume) = find_best_match(claim, &observed.volumes, delay) {
        return ClaimStep::Bind(volume);
    }
    if !claim_has_class(claim) {
        if let Some(name) = default_class(&observed.classes).and_then(|c| c.metadata.name.clone()) {
            return ClaimStep::AssignDefaultClass(name);
        }
    }
    let class = claim_class(claim);
    if delay && annotation(&claim.metadata, ANN_SELECTED_NODE).is_none() {
        return ClaimStep::Pending(Some(wait_event(observed)));
    }
    if !class.is_empty() {
        return provision(claim, class, observed);
    }
    ClaimStep::Pending(Some(Event::normal(
        "FailedBinding",
        "no persistent volumes available for this claim and no storage class is set",
    )))
}

/// Provisioning for a claim of class `class`: an external provisioner is handed the claim;
/// this controller has no in-tree provisioner (upstream's last one, hostPath, is for
/// single-node testing behind `--enable-hostpath-provisioner`), so a `kubernetes.io/`
/// provisioner fails as upstream's plugin lookup does.
fn provision(claim: &PersistentVolumeClaim, class: &str, observed: &Observed) -> ClaimStep {
    let Some(sc) = observed.class(class) else {
        return ClaimStep::EventOnly(Event::warning(
            "ProvisioningFailed",
            format!("storageclass.storage.k8s.io {class:?} not found"),
        ));
    };
    let provisioner = sc.provisioner.clone();
    if provisioner.starts_with("kubernetes.io/") {
        return ClaimStep::EventOnly(Event::warning(
            "ProvisioningFailed",
            format!("no volume plugin matched name: {provisioner}"),
        ));
    }
    let _ = claim;
    ClaimStep::ExternalProvisioning { provisioner }
}

/// The `ExternalProvisioning` event upstream records while a claim waits for `provisioner`.
pub fn external_provisioning_event(provisioner: &str) -> Event {
    Event::normal(
        "ExternalProvisioning",
        format!(
            "Waiting for a volume to be created either by the external provisioner '{provisioner}' \
             or manually by the system administrator. If volume creation is delayed, please \
             verify that the provisioner is running and correctly registered."
        ),
    )
}

/// Whether the claim already carries `provisioner` in the GA storage-provisioner annotation.
pub fn has_provisioner(claim: &PersistentVolumeClaim, provisioner: &str) -> bool {
    annotation(&claim.metadata, ANN_STORAGE_PROVISIONER) == Some(provisioner)
}

fn decide_prebound_claim(claim: &PersistentVolumeClaim, observed: &Observed) -> ClaimStep {
    let name = volume_name_of(claim);
    let Some(volume) = observed.volume(name) else {
        // The requested volume does not exist (yet): wait.
        return ClaimStep::Pending(None);
    };
    let claim_ref = volume.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
    if claim_ref.is_none() {
        return match check_volume_satisfies_claim(volume, claim) {
            Err(why) => ClaimStep::Pending(Some(Event::warning(
                "VolumeMismatch",
                format!("Cannot bind to requested volume {name:?}: {why}"),
            ))),
            Ok(()) => ClaimStep::Bind(volume.clone()),
        };
    }
    if is_bound_to_claim(volume, claim) {
        return ClaimStep::Bind(volume.clone());
    }
    let event = Event::warning(
        "FailedBinding",
        format!("volume {name:?} already bound to a different claim."),
    );
    if annotation(&claim.metadata, ANN_BOUND_BY_CONTROLLER).is_none() {
        ClaimStep::Pending(Some(event))
    } else {
        let other = claim_ref
            .map(|r| {
                format!(
                    "{}/{}",
                    r.namespace.as_deref().unwrap_or_default(),
                    r.name.as_deref().unwrap_or_default()
                )
            })
            .unwrap_or_default();
        ClaimStep::Fail(
            format!(
                "invalid binding of claim {:?} to volume {name:?}: volume already claimed by {other:?}",
                claim_key(claim)
            ),
            Some(event),
        )
    }
}

fn decide_bound_claim(claim: &PersistentVolumeClaim, observed: &Observed) -> ClaimStep {
    let name = volume_name_of(claim);
    if name.is_empty() {
        return ClaimStep::Lost(Event::warning(
            "ClaimLost",
            "Bound claim has lost reference to PersistentVolume. Data on the volume is lost!",
        ));
    }
    let Some(volume) = observed.volume(name) else {
        return ClaimStep::Lost(Event::warning(
            "ClaimLost",
            "Bound claim has lost its PersistentVolume. Data on the volume is lost!",
        ));
    };
    match volume.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) {
        // Unbound volume or a correct binding: (re)bind, which writes only what is missing.
        None => ClaimStep::Bind(volume.clone()),
        Some(r) if r.uid == claim.metadata.uid => ClaimStep::Bind(volume.clone()),
        Some(_) => ClaimStep::Lost(Event::warning(
            "ClaimMisbound",
            "Two claims are bound to the same volume, this one is bound incorrectly",
        )),
    }
}

/// The outcome of a volume sync, given the claim its `claimRef` names as found (cache, then
/// the apiserver, with the UID checked: `None` when that claim is gone).
#[derive(Debug, Clone, PartialEq)]
pub enum VolumeStep {
    /// Set the phase (no-op when set).
    Phase(&'static str),
    /// The claim is gone, or bound elsewhere and the volume was provisioned for it: set
    /// Released (unless Released or Failed already), then reclaim.
    Release,
    /// The binding is half done: sync the claim `namespace/name` soon.
    SyncClaim(String, String),
    /// Claim and volume disagree on the volume mode: warn on both, nothing else.
    VolumeModeMismatch {
        /// On the volume.
        volume_event: Event,
        /// On the claim.
        claim_event: Event,
    },
    /// The claim went to another volume: undo this volume's binding.
    Unbind,
}

/// Decides what a volume sync does.
pub fn decide_volume(pv: &PersistentVolume, claim: Option<&PersistentVolumeClaim>) -> VolumeStep {
    let Some(claim_ref) = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
        return VolumeStep::Phase("Available");
    };
    if claim_ref.uid.as_deref().unwrap_or("").is_empty() {
        // Pre-bound to a claim name; the claim's sync binds it.
        return VolumeStep::Phase("Available");
    }
    let Some(claim) = claim else {
        return VolumeStep::Release;
    };
    let pv_name = pv.metadata.name.as_deref().unwrap_or_default();
    let claim_volume = volume_name_of(claim);
    if claim_volume.is_empty() {
        if volume_mode_mismatch(claim, pv) {
            let claim_name = claim.metadata.name.as_deref().unwrap_or_default();
            return VolumeStep::VolumeModeMismatch {
                volume_event: Event::warning(
                    "VolumeMismatch",
                    format!(
                        "Cannot bind PersistentVolume to requested PersistentVolumeClaim {claim_name:?} due to incompatible volumeMode."
                    ),
                ),
                claim_event: Event::warning(
                    "VolumeMismatch",
                    format!(
                        "Cannot bind PersistentVolume {pv_name:?} to requested PersistentVolumeClaim due to incompatible volumeMode."
                    ),
                ),
            };
        }
        return VolumeStep::SyncClaim(
            claim.metadata.namespace.clone().unwrap_or_default(),
            claim.metadata.name.clone().unwrap_or_default(),
        );
    }
    if claim_volume == pv_name {
        return VolumeStep::Phase("Bound");
    }
    let provisioned = annotation(&pv.metadata, ANN_DYNAMICALLY_PROVISIONED).is_some();
    if provisioned && reclaim_policy(pv) == "Delete" {
        VolumeStep::Release
    } else {
        VolumeStep::Unbind
    }
}

/// `spec.persistentVolumeReclaimPolicy` (the apiserver defaults it to Retain).
pub fn reclaim_policy(pv: &PersistentVolume) -> &str {
    pv.spec
        .as_ref()
        .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
        .unwrap_or("Retain")
}

/// Whether a released volume still needs its reclaim policy carried out (upstream's
/// `isVolumeReleased`): it has a bound `claimRef` whose claim is gone, has another UID, or
/// is bound to another volume.
pub fn is_volume_released(pv: &PersistentVolume, claim: Option<&PersistentVolumeClaim>) -> bool {
    let Some(r) = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
        return false;
    };
    if r.uid.as_deref().unwrap_or("").is_empty() {
        return false;
    }
    match claim {
        Some(c) if c.metadata.uid == r.uid => {
            let v = volume_name_of(c);
            !v.is_empty() && Some(v) != pv.metadata.name.as_deref()
        }
        _ => true,
    }
}

/// How a released volume is reclaimed.
#[derive(Debug, Clone, PartialEq)]
pub enum Reclaim {
    /// Keep it (Retain, or a volume migrated to CSI, which the external provisioner owns).
    Nothing,
    /// An external provisioner deletes it (its name in `pv.kubernetes.io/provisioned-by`, or
    /// a CSI volume); the controller waits.
    External,
    /// Delete the hostPath directory (upstream's hostPath deleter, `/tmp/.+` paths only),
    /// then the PersistentVolume object.
    DeleteHostPath(String),
    /// Pods still use the claim: record a Normal event and try again later.
    InUse(Event),
    /// Set the volume Failed and record the Warning event (the policy is retried on
    /// every sync, as upstream).
    Failed(Event),
}

fn looks_like_tmp(path: &str) -> bool {
    // Upstream's deleter matches the unanchored regexp `/tmp/.+`.
    path.match_indices("/tmp/")
        .any(|(i, m)| path.len() > i + m.len())
}

/// Decides the reclaim of a released volume; `pods_using` are the non-terminated pods
/// (`namespace/name`) that reference its claim (only Recycle looks at them).
pub fn decide_reclaim(pv: &PersistentVolume, pods_using: &[String]) -> Reclaim {
    if annotation(&pv.metadata, ANN_MIGRATED_TO).is_some_and(|m| !m.is_empty()) {
        return Reclaim::Nothing;
    }
    let name = pv.metadata.name.as_deref().unwrap_or_default();
    match reclaim_policy(pv) {
        "Retain" => Reclaim::Nothing,
        "Recycle" => {
            if !pods_using.is_empty() {
                return Reclaim::InUse(Event::normal(
                    "VolumeFailedRecycle",
                    format!("Volume is used by pods: {}", pods_using.join(",")),
                ));
            }
            // Recycling is deprecated; this controller has no recycler pod.
            Reclaim::Failed(Event::warning(
                "VolumeFailedRecycle",
                "No recycler plugin found for the volume!",
            ))
        }
        "Delete" => {
            let spec = pv.spec.clone().unwrap_or_default();
            let deleter_err = |e: &str| {
                Reclaim::Failed(Event::warning(
                    "VolumeFailedDelete",
                    format!("error getting deleter volume plugin for volume {name:?}: {e}"),
                ))
            };
            if let Some(p) =
                annotation(&pv.metadata, ANN_DYNAMICALLY_PROVISIONED).filter(|p| !p.is_empty())
            {
                if p == "kubernetes.io/host-path" {
                    // fall through to the hostPath deleter below
                } else if !p.starts_with("kubernetes.io/") {
                    return Reclaim::External;
                } else {
                    return Reclaim::Failed(Event::warning(
                        "VolumeFailedDelete",
                        format!("no volume plugin matched name: {p}"),
                    ));
                }
            }
            if spec.csi.is_some() {
                return Reclaim::External;
            }
            if let Some(hp) = &spec.host_path {
                return if looks_like_tmp(&hp.path) {
                    Reclaim::DeleteHostPath(hp.path.clone())
                } else {
                    Reclaim::Failed(Event::warning(
                        "VolumeFailedDelete",
                        format!(
                            "host_path deleter only supports /tmp/.+ but received provided {}",
                            hp.path
                        ),
                    ))
                };
            }
            if spec.nfs.is_some() {
                return deleter_err("no deletable volume plugin matched");
            }
            deleter_err("no volume plugin matched")
        }
        _ => Reclaim::Failed(Event::warning(
            "VolumeUnknownReclaimPolicy",
            "Volume has unrecognized PersistentVolumeReclaimPolicy",
        )),
    }
}

/// The phase a volume is in now.
pub fn is_released_or_failed(pv: &PersistentVolume) -> bool {
    matches!(volume_phase(pv), "Released" | "Failed")
}

#[cfg(test)]
mod tests;
