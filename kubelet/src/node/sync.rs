//! Registering the node and keeping it fresh: status computed every
//! `nodeStatusUpdateFrequency` (10s) and posted when it differs from the API server's or when
//! `nodeStatusReportFrequency` (5m) passed; the Lease renewed every 10s.

use super::host::{self, HostFacts};
use super::lease;
use super::status::{initial_node, node_status, node_status_changed, RuntimeHealth};
use crate::config::Options;
use crate::cri::{CriHandle, CriService};
use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, GetParams, Patch, PatchParams, PostParams};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Asks CRI whether the runtime and its network are ready.
pub async fn runtime_health(cri: &dyn CriService) -> RuntimeHealth {
    let version = cri.runtime_version().await.unwrap_or_default();
    let status = cri
        .status(k8s_cri::v1::StatusRequest { verbose: false })
        .await;
    let not_ready = match status {
        Err(e) => Some(format!(
            "container runtime status check may not have completed yet: {}",
            e.message()
        )),
        Ok(r) => {
            let conditions = r.status.map(|s| s.conditions).unwrap_or_default();
            let bad: Vec<String> = conditions
                .iter()
                .filter(|c| !c.status)
                .map(|c| {
                    format!(
                        "{}={} reason:{} message:{}",
                        c.r#type, c.status, c.reason, c.message
                    )
                })
                .collect();
            if bad.is_empty() {
                None
            } else if bad.iter().any(|b| b.starts_with("NetworkReady")) {
                Some(format!(
                    "container runtime network not ready: {}",
                    bad.join(", ")
                ))
            } else {
                Some(format!("container runtime is down: {}", bad.join(", ")))
            }
        }
    };
    RuntimeHealth {
        version,
        not_ready,
        ..Default::default()
    }
}

/// Keeps the node registered, its status and its lease fresh.
pub struct NodeSync {
    /// API client.
    pub client: kube::Client,
    /// CRI client.
    pub cri: CriHandle,
    /// Resolved options.
    pub opts: Options,
    /// `kubeReserved` and `systemReserved`.
    pub reserved: (BTreeMap<String, String>, BTreeMap<String, String>),
    /// The eviction manager's pressure conditions.
    pub pressure: Option<tokio::sync::watch::Receiver<std::collections::BTreeSet<String>>>,
    /// The pods bound to this node, for `status.volumesInUse` (not reported without).
    pub pods: Option<PodsView>,
}

/// Reads the pods the kubelet knows on this node.
pub type PodsView = std::sync::Arc<dyn Fn() -> Vec<k8s_openapi::api::core::v1::Pod> + Send + Sync>;

/// The wait before registration attempt `attempt` (0-based), as upstream's
/// `registerWithAPIServer`: 100 ms, doubling, at most 7 s — and no limit on attempts, so a
/// kubelet that starts before its API server (kubeadm's static-pod control plane) registers
/// once the API server is up.
pub fn registration_backoff(attempt: u32) -> Duration {
    let ms = 100u64.saturating_mul(1u64 << attempt.min(16));
    Duration::from_millis(ms.min(7_000))
}

impl NodeSync {
    fn facts(&self) -> HostFacts {
        host::gather(&self.opts.root_dir)
    }

    /// Registers the node (or adopts an existing one, updating labels and status).
    pub async fn register(&self) -> Result<Node> {
        let api: Api<Node> = Api::all(self.client.clone());
        let health = runtime_health(&self.cri).await;
        let now = Timestamp::now();
        let status = node_status(
            &self.opts,
            &self.facts(),
            &health,
            None,
            &now,
            (&self.reserved.0, &self.reserved.1),
        );
        let node = initial_node(&self.opts, status.clone());
        match api.create(&PostParams::default(), &node).await {
            Ok(created) => {
                tracing::info!(node = %self.opts.node_name, "Successfully registered node");
                let patched = self.post_status(&status).await?;
                Ok(Node {
                    metadata: created.metadata,
                    ..patched
                })
            }
            Err(e) if api_helpers::errors::is_conflict(&e) => {
                tracing::info!(node = %self.opts.node_name, "Node was previously registered");
                let labels = serde_json::json!({"metadata": {"labels": node.metadata.labels}});
                api.patch(
                    &self.opts.node_name,
                    &PatchParams::default(),
                    &Patch::Merge(&labels),
                )
                .await?;
                let existing = api.get(&self.opts.node_name).await?;
                let status = node_status(
                    &self.opts,
                    &self.facts(),
                    &health,
                    existing.status.as_ref(),
                    &now,
                    (&self.reserved.0, &self.reserved.1),
                );
                self.post_status(&status).await
            }
            Err(e) => Err(e).context("register node"),
        }
    }

    async fn post_status(&self, status: &k8s_openapi::api::core::v1::NodeStatus) -> Result<Node> {
        let api: Api<Node> = Api::all(self.client.clone());
        let patch = serde_json::json!({"status": status});
        api.patch_status(
            &self.opts.node_name,
            &PatchParams::default(),
            &Patch::Strategic(&patch),
        )
        .await
        .context("update node status")
    }

    /// The runtime's images as the status reports them (`None` when CRI cannot list them).
    async fn images(&self) -> Option<Vec<k8s_openapi::api::core::v1::ContainerImage>> {
        let list = self
            .cri
            .list_images(k8s_cri::v1::ListImagesRequest { filter: None })
            .await;
        match list {
            Ok(r) => Some(super::images::status_images(
                r.images,
                self.opts.node_status_max_images,
            )),
            Err(e) => {
                tracing::warn!(error = %e.message(), "Error getting image list");
                None
            }
        }
    }

    /// Registers the node, trying with [`registration_backoff`] until it succeeds; `None`
    /// when `stop` comes first.
    pub async fn register_until_registered(&self, stop: &CancellationToken) -> Option<Node> {
        for attempt in 0u32.. {
            tokio::select! {
                _ = stop.cancelled() => return None,
                _ = tokio::time::sleep(registration_backoff(attempt)) => {}
            }
            match self.register().await {
                Ok(node) => return Some(node),
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), node = %self.opts.node_name, "Unable to register node with API server")
                }
            }
        }
        None
    }

    /// Registers the node when `--register-node` (trying until it succeeds or `stop`), then
    /// keeps its status and Lease fresh until `stop`.
    pub async fn register_and_run(self, stop: CancellationToken) {
        let node = if self.opts.register_node {
            match self.register_until_registered(&stop).await {
                Some(node) => node,
                None => return,
            }
        } else {
            Node::default()
        };
        self.run(node, stop).await
    }

    /// Runs the status and lease loops of the registered `node` until `stop`.
    pub async fn run(self, mut node: Node, stop: CancellationToken) {
        let lease_every = lease::renew_interval(self.opts.node_lease_duration_seconds);
        let mut lease_tick = tokio::time::interval(lease_every);
        let mut status_tick = tokio::time::interval(self.opts.node_status_update_frequency);
        let mut last_report = Instant::now();
        let mut last_status = node.status.clone().unwrap_or_default();
        let claims = super::volumes_in_use::ClaimResolver::default();
        let api: Api<Node> = Api::all(self.client.clone());
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = lease_tick.tick() => {
                    if let Err(e) = lease::renew(&self.client, &node, self.opts.node_lease_duration_seconds).await {
                        tracing::warn!(error = %e, "Failed to renew the node lease");
                    }
                }
                _ = status_tick.tick() => {
                    // The status as the API server has it, as upstream's tryUpdateNodeStatus
                    // reads it (resourceVersion 0: from its cache): what the new status is
                    // built on and compared with, so a node the node lifecycle controller
                    // marked Unknown while this kubelet could not reach it is set right at the
                    // next tick, not at the next report minutes later.
                    let current = match api.get_with(&self.opts.node_name, &GetParams::any()).await {
                        Ok(n) => n.status.unwrap_or_default(),
                        Err(e) => {
                            tracing::warn!(error = %e, "Error getting the node, will retry");
                            continue;
                        }
                    };
                    let mut health = runtime_health(&self.cri).await;
                    if let Some(p) = &self.pressure {
                        health.pressure = p.borrow().clone();
                    }
                    let now = Timestamp::now();
                    let mut status = node_status(&self.opts, &self.facts(), &health, Some(&current), &now, (&self.reserved.0, &self.reserved.1));
                    status.images = self
                        .images()
                        .await
                        .or_else(|| last_status.images.clone())
                        .or_else(|| current.images.clone());
                    if let Some(pods) = &self.pods {
                        // Sent even when empty: a strategic merge leaves an absent field as it was.
                        status.volumes_in_use = Some(claims.volumes_in_use(&self.client, &pods()).await);
                    }
                    if should_post(&current, &status, last_report.elapsed(), self.opts.node_status_report_frequency) {
                        match self.post_status(&status).await {
                            Ok(n) => {
                                last_status = status;
                                last_report = Instant::now();
                                if n.metadata.uid.is_some() {
                                    node.metadata = n.metadata;
                                }
                                node.spec = n.spec;
                            }
                            Err(e) => tracing::warn!(error = %e, "Error updating node status, will retry"),
                        }
                    }
                }
            }
        }
    }
}

/// Whether to post `new`: it differs from the status the API server has (`current`, which
/// others may have changed: the node lifecycle controller sets Ready to Unknown when the
/// kubelet stops reporting), or `report_every` passed since the last post.
pub fn should_post(
    current: &k8s_openapi::api::core::v1::NodeStatus,
    new: &k8s_openapi::api::core::v1::NodeStatus,
    since_report: Duration,
    report_every: Duration,
) -> bool {
    since_report >= report_every || node_status_changed(current, new)
}

/// Waits (bounded) until the node has a podCIDR, from the API or `--pod-cidr`.
pub async fn pod_cidr(client: &kube::Client, opts: &Options, wait: Duration) -> Option<String> {
    if let Some(c) = &opts.pod_cidr {
        return Some(c.clone());
    }
    let api: Api<Node> = Api::all(client.clone());
    let deadline = Instant::now() + wait;
    loop {
        if let Ok(n) = api.get(&opts.node_name).await {
            if let Some(c) = n.spec.and_then(|s| s.pod_cidr) {
                return Some(c);
            }
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::registration_backoff;
    use std::time::Duration;

    #[test]
    fn registration_backs_off_from_100ms_to_7s_and_never_gives_up() {
        let waits: Vec<u64> = (0..8)
            .map(|a| registration_backoff(a).as_millis() as u64)
            .collect();
        assert_eq!(waits, [100, 200, 400, 800, 1600, 3200, 6400, 7000]);
        assert_eq!(registration_backoff(u32::MAX), Duration::from_secs(7));
    }
}
