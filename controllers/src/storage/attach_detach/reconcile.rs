//! The reconciler's decisions (upstream's `reconciler.reconcile` and the node status
//! updater), as one pure function over the observed state and the little the controller
//! remembers between passes (when a detach was first wanted, which attach it waits for,
//! which failures it already reported).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use super::actual::{Attachment, NodeView};
use super::desired::{DesiredState, PodRef, VolumeToAttach};

/// Upstream's `ReconcilerMaxWaitForUnmountDuration`: how long a volume no pod wants may stay
/// mounted on an unhealthy node before it is detached anyway.
pub const MAX_WAIT_FOR_UNMOUNT: Duration = Duration::from_secs(6 * 60);

/// How long an attach waits for the external-attacher before it is reported as failed
/// (upstream's `csiTimeout`); it then keeps waiting.
pub const ATTACH_TIMEOUT: Duration = Duration::from_secs(2 * 60);

/// `FailedAttachVolume`: an attach failed or cannot start.
pub const FAILED_ATTACH: &str = "FailedAttachVolume";
/// `SuccessfulAttachVolume`: the volume is attached.
pub const SUCCESSFUL_ATTACH: &str = "SuccessfulAttachVolume";

/// Tunables of the decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// [`MAX_WAIT_FOR_UNMOUNT`] in production.
    pub max_wait_for_unmount: Duration,
    /// [`ATTACH_TIMEOUT`] in production.
    pub attach_timeout: Duration,
    /// `--disable-force-detach-on-timeout`.
    pub disable_force_detach_on_timeout: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_wait_for_unmount: MAX_WAIT_FOR_UNMOUNT,
            attach_timeout: ATTACH_TIMEOUT,
            disable_force_detach_on_timeout: false,
        }
    }
}

/// What the cluster looks like to one pass.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// The desired state.
    pub desired: DesiredState,
    /// Every VolumeAttachment of a PersistentVolume.
    pub attachments: Vec<Attachment>,
    /// Every Node, by name.
    pub nodes: BTreeMap<String, NodeView>,
}

/// What the controller carries from one pass to the next, keyed by VolumeAttachment name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Memory {
    /// When a volume was first found attached but no longer wanted.
    pub detach_requested: HashMap<String, Instant>,
    /// Attaches waiting for the external-attacher, since when.
    pub attaching: HashMap<String, Instant>,
    /// The last attach failure reported for an attachment (reported once).
    pub reported_error: HashMap<String, String>,
    /// (node, volume) whose Multi-Attach error was reported.
    pub multi_attach_reported: BTreeSet<(String, String)>,
}

/// Why a detach does not wait for the node to stop using the volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForceReason {
    /// The maximum wait for unmount expired.
    Timeout,
    /// The node has the out-of-service taint.
    OutOfService,
}

/// A VolumeAttachment to delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detach {
    /// The VolumeAttachment.
    pub attachment: String,
    /// Its node.
    pub node: String,
    /// Set when the detach does not wait for unmount.
    pub force: Option<ForceReason>,
}

/// An event about a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodEvent {
    /// The pod.
    pub pod: PodRef,
    /// `Warning` when true, else `Normal`.
    pub warning: bool,
    /// The reason.
    pub reason: &'static str,
    /// The message.
    pub message: String,
}

/// What one pass does, in this order: node statuses, detaches (each only once its node's
/// status no longer lists the volume), attaches; then events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Nodes whose `status.volumesAttached` must become these unique volume names.
    pub node_status: BTreeMap<String, Vec<String>>,
    /// VolumeAttachments to delete.
    pub detach: Vec<Detach>,
    /// VolumeAttachments to create.
    pub attach: Vec<VolumeToAttach>,
    /// Events to record.
    pub events: Vec<PodEvent>,
    /// When a timer (unmount wait, attach timeout) needs another pass.
    pub recheck_after: Option<Duration>,
    /// The memory for the next pass.
    pub memory: Memory,
}

impl Plan {
    fn recheck(&mut self, after: Duration) {
        self.recheck_after = Some(self.recheck_after.map_or(after, |d| d.min(after)));
    }
}

/// Upstream's message shape: `<prefix> for volume "<pv>" <suffix>`.
fn volume_message(prefix: &str, pv: &str, suffix: &str) -> String {
    format!("{prefix} for volume {pv:?} {suffix}")
}

/// `AttachVolume.Attach failed for volume "<pv>" : <error>`.
pub fn attach_failed_message(pv: &str, error: &str) -> String {
    volume_message("AttachVolume.Attach failed", pv, &format!(": {error}"))
}

fn events_for(v: &VolumeToAttach, warning: bool, reason: &'static str, msg: &str) -> Vec<PodEvent> {
    v.pods
        .iter()
        .map(|p| PodEvent {
            pod: p.clone(),
            warning,
            reason,
            message: msg.to_string(),
        })
        .collect()
}

/// Upstream's Multi-Attach error events: each pod waiting for `v` is told which pods of its
/// own namespace hold the volume elsewhere, and how many of other namespaces.
fn multi_attach_events(v: &VolumeToAttach, holders: &[&PodRef]) -> Vec<PodEvent> {
    v.pods
        .iter()
        .map(|p| {
            let suffix = if holders.is_empty() {
                "Volume is already exclusively attached to one node and can't be attached to another".to_string()
            } else {
                let local: Vec<&str> = holders
                    .iter()
                    .filter(|h| h.namespace == p.namespace)
                    .map(|h| h.name.as_str())
                    .collect();
                let others = holders.len() - local.len();
                match (local.is_empty(), others) {
                    (false, 0) => format!("Volume is already used by pod(s) {}", local.join(", ")),
                    (false, n) => format!(
                        "Volume is already used by pod(s) {} and {n} pod(s) in different namespaces",
                        local.join(", ")
                    ),
                    (true, n) => {
                        format!("Volume is already used by {n} pod(s) in different namespaces")
                    }
                }
            };
            PodEvent {
                pod: p.clone(),
                warning: true,
                reason: FAILED_ATTACH,
                message: volume_message("Multi-Attach error", &v.pv, &suffix),
            }
        })
        .collect()
}

/// One pass of the reconciler over `observed` at `now`.
pub fn plan(observed: &Observed, memory: &Memory, now: Instant, cfg: &Config) -> Plan {
    let mut plan = Plan::default();
    let wanted: BTreeSet<String> = observed
        .desired
        .values()
        .map(VolumeToAttach::attachment_name)
        .collect();
    let by_name: HashMap<&str, &Attachment> = observed
        .attachments
        .iter()
        .map(|a| (a.name.as_str(), a))
        .collect();
    // Volumes each managed node should report attached: attached, not detaching.
    let mut report: BTreeMap<&str, BTreeSet<String>> = observed
        .nodes
        .iter()
        .filter(|(_, n)| n.managed)
        .map(|(name, _)| (name.as_str(), BTreeSet::new()))
        .collect();
    for a in &observed.attachments {
        if let (Some(set), Some(v)) = (report.get_mut(a.node.as_str()), &a.volume) {
            if a.attached && !a.deleting {
                set.insert(v.clone());
            }
        }
    }

    // Detach first, so that a volume whose pod moved is free for its new node.
    for a in &observed.attachments {
        if a.deleting || wanted.contains(&a.name) {
            continue;
        }
        let node = observed.nodes.get(&a.node);
        // Attachments to nodes that manage their own volumes are theirs.
        if node.is_some_and(|n| !n.managed) {
            continue;
        }
        let requested = *memory.detach_requested.get(&a.name).unwrap_or(&now);
        plan.memory
            .detach_requested
            .insert(a.name.clone(), requested);
        let elapsed = now.saturating_duration_since(requested);
        let healthy = node.is_some_and(|n| n.ready);
        let out_of_service = node.is_some_and(|n| n.out_of_service);
        // A deleted node's last word on the volume is unknown: treat it as still mounted.
        let mounted = match (node, &a.volume) {
            (None, _) => true,
            (Some(n), Some(v)) => n.in_use.contains(v),
            (Some(_), None) => false,
        };
        let timeout_expired =
            elapsed > cfg.max_wait_for_unmount && !cfg.disable_force_detach_on_timeout;
        let force = !healthy && timeout_expired;
        if mounted && !force && !out_of_service {
            if !healthy && !cfg.disable_force_detach_on_timeout {
                plan.recheck(
                    cfg.max_wait_for_unmount.saturating_sub(elapsed) + Duration::from_millis(100),
                );
            }
            continue;
        }
        if let (Some(set), Some(v)) = (report.get_mut(a.node.as_str()), &a.volume) {
            set.remove(v);
        }
        plan.detach.push(Detach {
            attachment: a.name.clone(),
            node: a.node.clone(),
            force: if timeout_expired {
                Some(ForceReason::Timeout)
            } else if out_of_service {
                Some(ForceReason::OutOfService)
            } else {
                None
            },
        });
    }

    // Attach what is wanted.
    for v in observed.desired.values() {
        let name = v.attachment_name();
        match by_name.get(name.as_str()) {
            Some(a) if a.attached && !a.deleting => {
                if memory.attaching.contains_key(&name) {
                    let msg = volume_message("AttachVolume.Attach succeeded", &v.pv, "");
                    plan.events
                        .extend(events_for(v, false, SUCCESSFUL_ATTACH, &msg));
                }
            }
            Some(a) => {
                let since = *memory.attaching.get(&name).unwrap_or(&now);
                let waited = now.saturating_duration_since(since);
                let error = if a.deleting {
                    Some("volume attachment is being deleted".to_string())
                } else if let Some(e) = &a.attach_error {
                    Some(e.clone())
                } else if waited >= cfg.attach_timeout {
                    Some(format!(
                        "timed out waiting for external-attacher of {} CSI driver to attach volume {}",
                        v.driver, v.handle
                    ))
                } else {
                    None
                };
                let mut since = since;
                match error {
                    Some(e)
                        if memory.reported_error.get(&name) != Some(&e)
                            || waited >= cfg.attach_timeout =>
                    {
                        let msg = attach_failed_message(&v.pv, &e);
                        plan.events.extend(events_for(v, true, FAILED_ATTACH, &msg));
                        plan.memory.reported_error.insert(name.clone(), e);
                        since = now;
                    }
                    Some(e) => {
                        plan.memory.reported_error.insert(name.clone(), e);
                    }
                    None => {}
                }
                let left = cfg
                    .attach_timeout
                    .saturating_sub(now.saturating_duration_since(since));
                plan.recheck(left.max(Duration::from_millis(100)));
                plan.memory.attaching.insert(name, since);
            }
            None => {
                if !v.multi_attach {
                    let elsewhere: Vec<&Attachment> = observed
                        .attachments
                        .iter()
                        .filter(|a| a.node != v.node && a.volume.as_ref() == Some(&v.volume))
                        .collect();
                    if !elsewhere.is_empty() {
                        let key = (v.node.clone(), v.volume.clone());
                        if !memory.multi_attach_reported.contains(&key) {
                            let holders: Vec<&PodRef> = observed
                                .desired
                                .values()
                                .filter(|o| {
                                    o.volume == v.volume
                                        && elsewhere.iter().any(|a| a.node == o.node)
                                })
                                .flat_map(|o| &o.pods)
                                .collect();
                            plan.events.extend(multi_attach_events(v, &holders));
                        }
                        plan.memory.multi_attach_reported.insert(key);
                        continue;
                    }
                }
                plan.memory.attaching.insert(name, now);
                plan.recheck(cfg.attach_timeout);
                plan.attach.push(v.clone());
            }
        }
    }

    for (node, set) in report {
        let current = &observed.nodes[node].reported;
        if *current != set {
            plan.node_status
                .insert(node.to_string(), set.into_iter().collect());
        }
    }
    plan
}
