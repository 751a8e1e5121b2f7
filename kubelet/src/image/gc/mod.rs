//! Image garbage collection, as upstream's image GC manager: the kubelet remembers when it
//! first saw each image and when a container last used it; every 5 minutes, when the image
//! filesystem is at or above `imageGCHighThresholdPercent`, it removes unused images (least
//! recently used first, none younger than `imageMinimumGCAge`) down to
//! `imageGCLowThresholdPercent`, and removes images unused for `imageMaximumGCAge`. The
//! eviction manager asks it to delete every unused image under disk pressure. Images used
//! by any container (running or not), pinned images and the runtime's sandbox (pause)
//! image are never removed.

pub mod metrics;
pub mod policy;

use crate::cri::CriHandle;
use crate::events::{EventType, Recorder};
use anyhow::{bail, Context, Result};
use k8s_cri::v1 as cri;
use policy::{FsUsage, ImageRecord, Plan, Policy, Reason};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Upstream's `ImageGCPeriod`.
pub const PERIOD: Duration = Duration::from_secs(300);

/// Event reasons, as upstream's kubelet records them on the node.
pub mod reason {
    /// Usage stayed above the high threshold after removing every image it could.
    pub const FREE_DISK_SPACE_FAILED: &str = "FreeDiskSpaceFailed";
    /// Collection failed twice in a row.
    pub const IMAGE_GC_FAILED: &str = "ImageGCFailed";
    /// The image filesystem reports no capacity.
    pub const INVALID_DISK_CAPACITY: &str = "InvalidDiskCapacity";
}

#[derive(Debug, Clone)]
struct Record {
    first_detected: Instant,
    last_used: Option<Instant>,
    size: i64,
    pinned: bool,
}

/// The image garbage collector of one kubelet.
pub struct ImageGc {
    cri: CriHandle,
    policy: Policy,
    records: Mutex<HashMap<String, Record>>,
    began: Instant,
    recorder: Recorder,
    node_name: String,
    /// Where the runtime keeps images, for statfs when CRI's ImageFsInfo gives no mount.
    fallback_root: PathBuf,
}

/// What one removal pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Removed {
    /// Image IDs removed.
    pub images: Vec<String>,
    /// Bytes freed (their sizes).
    pub freed: i64,
}

impl ImageGc {
    /// A collector with `policy`; events go to the node `node_name`.
    pub fn new(
        cri: CriHandle,
        policy: Policy,
        recorder: Recorder,
        node_name: &str,
        fallback_root: PathBuf,
    ) -> Self {
        ImageGc {
            cri,
            policy,
            records: Mutex::default(),
            began: Instant::now(),
            recorder,
            node_name: node_name.to_string(),
            fallback_root,
        }
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Lists images and containers, updates first-detected / last-used times at `now`,
    /// and returns what the decision needs.
    pub async fn detect(&self, now: Instant) -> Result<Vec<ImageRecord>> {
        let images = self
            .cri
            .list_images(cri::ListImagesRequest { filter: None })
            .await
            .context("ListImages")?
            .images;
        let containers = self
            .cri
            .list_containers(cri::ListContainersRequest { filter: None })
            .await
            .context("ListContainers")?
            .containers;
        let mut in_use: HashSet<String> = HashSet::new();
        for c in &containers {
            in_use.insert(c.image_ref.clone());
            if let Some(spec) = &c.image {
                in_use.insert(spec.image.clone());
            }
        }
        let sandbox = self.cri.sandbox_image().await;
        let names = |i: &cri::Image| -> Vec<String> {
            std::iter::once(i.id.clone())
                .chain(i.repo_tags.iter().cloned())
                .chain(i.repo_digests.iter().cloned())
                .collect()
        };
        let mut records = self.records.lock().expect("image records lock");
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        for image in &images {
            let n = names(image);
            let used = n.iter().any(|x| in_use.contains(x));
            let pinned = image.pinned
                || sandbox
                    .as_ref()
                    .is_some_and(|s| n.iter().any(|x| x == s || normalize(x) == normalize(s)));
            let r = records.entry(image.id.clone()).or_insert(Record {
                first_detected: now,
                last_used: None,
                size: 0,
                pinned: false,
            });
            if used {
                r.last_used = Some(now);
            }
            r.size = image.size as i64;
            r.pinned = pinned;
            seen.insert(image.id.clone());
            out.push(ImageRecord {
                id: image.id.clone(),
                size: r.size,
                pinned,
                in_use: used,
                first_detected: r.first_detected,
                last_used: r.last_used,
            });
        }
        records.retain(|id, _| seen.contains(id));
        Ok(out)
    }

    /// Removes one image by ID and forgets it.
    async fn remove(&self, id: &str, why: Reason) -> Result<()> {
        tracing::info!(image_id = id, "Removing image to free bytes");
        self.cri
            .remove_image(cri::RemoveImageRequest {
                image: Some(cri::ImageSpec {
                    image: id.to_string(),
                    ..Default::default()
                }),
            })
            .await
            .map_err(|s| anyhow::anyhow!("{}", crate::cri::grpc_error(&s)))
            .with_context(|| format!("RemoveImage {id}"))?;
        self.records.lock().expect("image records lock").remove(id);
        metrics::count(why);
        Ok(())
    }

    /// Removes `candidates` in order until `bytes` are freed; failures are collected and
    /// the next candidate is tried, as upstream's freeSpace.
    async fn free(&self, candidates: &[(String, i64)], bytes: i64) -> (Removed, Vec<String>) {
        let mut done = Removed::default();
        let mut errors = Vec::new();
        for (id, size) in candidates {
            if done.freed >= bytes {
                break;
            }
            match self.remove(id, Reason::Space).await {
                Ok(()) => {
                    done.freed += size;
                    done.images.push(id.clone());
                }
                Err(e) => errors.push(format!("{e:#}")),
            }
        }
        (done, errors)
    }

    /// The image filesystem's usage: CRI's ImageFsInfo mount point, statfs'd.
    pub async fn usage(&self) -> Option<FsUsage> {
        let (bytes, _) =
            crate::eviction::signals::imagefs(self.cri.as_ref(), &self.fallback_root).await?;
        Some(FsUsage {
            available: bytes.available,
            capacity: bytes.capacity,
        })
    }

    /// One periodic collection (upstream's GarbageCollect).
    pub async fn garbage_collect(&self) -> Result<Removed> {
        let now = Instant::now();
        let records = self.detect(now).await?;
        let Some(usage) = self.usage().await else {
            bail!("failed to get the image filesystem's usage");
        };
        if usage.capacity == 0 {
            let msg = "invalid capacity 0 on image filesystem";
            self.recorder.node_event(
                &self.node_name,
                EventType::Warning,
                reason::INVALID_DISK_CAPACITY,
                msg,
            );
            bail!(msg);
        }
        let plan = policy::plan(&records, usage, &self.policy, now, self.began);
        self.execute(&plan, usage).await
    }

    async fn execute(&self, plan: &Plan, usage: FsUsage) -> Result<Removed> {
        let mut done = Removed::default();
        let mut age_errors = Vec::new();
        for id in &plan.by_age {
            match self.remove(id, Reason::Age).await {
                Ok(()) => done.images.push(id.clone()),
                Err(e) => age_errors.push(format!("{e:#}")),
            }
        }
        if !age_errors.is_empty() {
            bail!(
                "wanted to free images older than {:?}, encountered errors in image deletion: [{}]",
                self.policy.max_age,
                age_errors.join(", ")
            );
        }
        if plan.bytes_to_free <= 0 && plan.by_space.is_empty() {
            return Ok(done);
        }
        tracing::info!(
            usage = plan.used_percent,
            high_threshold = self.policy.high_threshold_percent,
            amount_to_free = plan.bytes_to_free,
            low_threshold = self.policy.low_threshold_percent,
            "Disk usage on image filesystem is over the high threshold, trying to free bytes down to the low threshold"
        );
        let (freed, errors) = self.free(&plan.by_space, plan.bytes_to_free).await;
        done.images.extend(freed.images);
        done.freed += freed.freed;
        if !errors.is_empty() {
            bail!(
                "wanted to free {} bytes, but freed {} bytes space with errors in image deletion: [{}]",
                plan.bytes_to_free,
                done.freed,
                errors.join(", ")
            );
        }
        if done.freed < plan.bytes_to_free {
            let msg = format!(
                "Insufficient free disk space on the node's image filesystem ({}% of {} used). \
Failed to free sufficient space by deleting unused images (freed {} bytes). \
Investigate disk usage, as it could be used by active images, logs, volumes, or other data.",
                plan.used_percent,
                policy::format_size(usage.capacity),
                done.freed
            );
            self.recorder.node_event(
                &self.node_name,
                EventType::Warning,
                reason::FREE_DISK_SPACE_FAILED,
                &msg,
            );
            bail!(msg);
        }
        Ok(done)
    }

    /// Removes every unused image old enough (upstream's DeleteUnusedImages, the eviction
    /// manager's node-level reclaim).
    pub async fn delete_unused(&self) -> Result<Removed> {
        tracing::info!("Attempting to delete unused images");
        let now = Instant::now();
        let records = self.detect(now).await?;
        let candidates = policy::space_candidates(&records, &self.policy, now);
        let (done, errors) = self.free(&candidates, i64::MAX).await;
        if !errors.is_empty() {
            bail!(
                "wanted to free {} bytes, but freed {} bytes space with errors in image deletion: [{}]",
                i64::MAX,
                done.freed,
                errors.join(", ")
            );
        }
        Ok(done)
    }

    /// Collects every [`PERIOD`] until `stop`; a failure twice in a row is an
    /// `ImageGCFailed` warning on the node, as upstream.
    pub async fn run(self: std::sync::Arc<Self>, stop: CancellationToken) {
        if self.policy.disabled() {
            tracing::info!(
                "ImageGCHighThresholdPercent is set 100 and ImageMaximumGCAge is 0, Disable image GC"
            );
            return;
        }
        let mut tick = tokio::time::interval(PERIOD);
        let mut failed_before = false;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            match self.garbage_collect().await {
                Ok(done) => {
                    if !done.images.is_empty() {
                        tracing::info!(images = ?done.images, freed = done.freed, "Image garbage collection succeeded");
                    }
                    failed_before = false;
                }
                Err(e) => {
                    let msg = format!("{e:#}");
                    if failed_before {
                        tracing::error!(error = %msg, "Image garbage collection failed multiple times in a row");
                        self.recorder.node_event(
                            &self.node_name,
                            EventType::Warning,
                            reason::IMAGE_GC_FAILED,
                            &msg,
                        );
                    } else {
                        tracing::warn!(error = %msg, "Image garbage collection failed once. Stats initialization may not have completed yet");
                    }
                    failed_before = true;
                }
            }
        }
    }
}

/// `pause:3.10` and `registry.k8s.io/pause:3.10` name the same image only when fully
/// qualified; docker.io short names are expanded as containerd does.
fn normalize(name: &str) -> String {
    let first = name.split('/').next().unwrap_or_default();
    let qualified =
        name.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    match (qualified, name.contains('/')) {
        (true, _) => name.to_string(),
        (false, true) => format!("docker.io/{name}"),
        (false, false) => format!("docker.io/library/{name}"),
    }
}

/// The eviction manager's `DeleteUnusedImages`.
impl crate::eviction::types::ImageGc for ImageGc {
    fn delete_unused_images(&self) -> futures::future::BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let r = self.delete_unused().await?;
            tracing::info!(images = ?r.images, freed = r.freed, "Eviction manager: deleted unused images");
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn image_names_normalize_as_containerd() {
        assert_eq!(normalize("busybox:1.35"), "docker.io/library/busybox:1.35");
        assert_eq!(normalize("me/app:1"), "docker.io/me/app:1");
        assert_eq!(
            normalize("registry.k8s.io/pause:3.10"),
            "registry.k8s.io/pause:3.10"
        );
    }
}
