//! The image manager: `imagePullPolicy` decides whether to pull; failures surface as
//! upstream's `ErrImagePull` / `ErrImageNeverPull`, and attempts inside the per-pod-and-image
//! back-off window after a failure as `ImagePullBackOff`, without calling PullImage. Events
//! (Pulling, Pulled, Failed, BackOff, ErrImageNeverPull) follow upstream's image manager.

mod backoff;

pub use backoff::Backoff;

use crate::cri::{grpc_error, CriService};
use crate::events::{reason, EventType, Recorder};
use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::{Container, Pod};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Why an image is not available; `reason()` is the container's waiting reason and
/// `message()` its waiting message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    /// Pulling failed.
    #[error("{message}")]
    Pull {
        /// The image.
        image: String,
        /// The runtime's error (`rpc error: code = … desc = …`).
        message: String,
    },
    /// A pull of this image for this pod failed recently and its back-off is not over.
    #[error("{message}")]
    BackOff {
        /// The image.
        image: String,
        /// `Back-off pulling image "x": ErrImagePull: <the last pull error>`.
        message: String,
    },
    /// `imagePullPolicy: Never` and the image is not present.
    #[error("Container image {0:?} is not present with pull policy of Never")]
    NeverPull(String),
    /// The image is no valid reference: `Failed to apply default image tag "x": couldn't
    /// parse image name "x": …`.
    #[error("{0}")]
    InvalidName(String),
}

impl ImageError {
    /// The waiting reason upstream reports.
    pub fn reason(&self) -> &'static str {
        match self {
            ImageError::Pull { .. } => "ErrImagePull",
            ImageError::BackOff { .. } => "ImagePullBackOff",
            ImageError::NeverPull(_) => "ErrImageNeverPull",
            ImageError::InvalidName(_) => "InvalidImageName",
        }
    }

    /// The waiting message upstream reports.
    pub fn message(&self) -> String {
        self.to_string()
    }
}

/// The key upstream's image back-off uses: `<podUID>_<image>`.
pub fn backoff_key(pod_uid: &str, image: &str) -> String {
    format!("{pod_uid}_{image}")
}

/// Pull back-off plus the last pull error of each key, which back-off messages repeat.
#[derive(Debug, Default)]
pub struct PullBackoff {
    backoff: Backoff,
    last_error: HashMap<String, String>,
}

impl PullBackoff {
    /// With upstream's delays (10 s doubling to 300 s).
    pub fn new(backoff: Backoff) -> Self {
        PullBackoff {
            backoff,
            last_error: HashMap::new(),
        }
    }

    /// Before pulling `image` for `key` at `now`: the `ImagePullBackOff` error while the
    /// back-off lasts, else `None` (and the remembered error is dropped, as upstream).
    pub fn check(&mut self, key: &str, image: &str, now: Instant) -> Option<ImageError> {
        if self.backoff.in_backoff_since_update(key, now) {
            let mut message = format!("Back-off pulling image {image:?}");
            if let Some(last) = self.last_error.get(key) {
                message.push_str(": ");
                message.push_str(last);
            }
            return Some(ImageError::BackOff {
                image: image.to_string(),
                message,
            });
        }
        self.last_error.remove(key);
        None
    }

    /// A pull for `key` failed with `err` at `now`: the back-off grows.
    pub fn failed(&mut self, key: &str, err: &ImageError, now: Instant) {
        self.backoff.next(key, now);
        self.last_error.insert(
            key.to_string(),
            format!("{}: {}", err.reason(), err.message()),
        );
    }

    /// A pull succeeded at `now`: expired entries are dropped.
    pub fn succeeded(&mut self, now: Instant) {
        self.backoff.gc(now);
        let backoff = &self.backoff;
        self.last_error
            .retain(|k, _| backoff.get(k) > std::time::Duration::ZERO);
    }

    /// How long `key` still backs off.
    pub fn remaining(&self, key: &str, now: Instant) -> std::time::Duration {
        self.backoff.remaining(key, now)
    }
}

/// The kubelet's image manager: its pull back-off (one per kubelet, as upstream's image
/// manager keeps one), shared by every clone.
#[derive(Debug, Clone, Default)]
pub struct ImageManager {
    backoff: Arc<Mutex<PullBackoff>>,
}

impl ImageManager {
    fn backoff(&self) -> std::sync::MutexGuard<'_, PullBackoff> {
        self.backoff.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How long pulling `image` for the pod `pod_uid` still backs off (zero: not at all).
    pub fn backoff_remaining(&self, pod_uid: &str, image: &str) -> std::time::Duration {
        // Keyed, as the pull, by the image with its default tag.
        let image =
            crate::image::reference::with_default_tag(image).unwrap_or_else(|_| image.to_string());
        self.backoff()
            .remaining(&backoff_key(pod_uid, &image), Instant::now())
    }

    /// Makes sure `c`'s image is present per its pull policy, as upstream's
    /// `EnsureImageExists`: records the events about container `c` of `pod`, honours the
    /// pull back-off; returns the image reference.
    pub async fn ensure_image(
        &self,
        cri: &dyn CriService,
        pod: &Pod,
        c: &Container,
        recorder: &Recorder,
    ) -> Result<String, ImageError> {
        let requested = c.image.clone().unwrap_or_default();
        let policy = pull_policy(c);
        let event = |type_: EventType, why: &str, msg: &str| {
            recorder.pod_event(pod, Some(&c.name), type_, why, msg)
        };
        // As upstream: what the apiserver let through but is no reference fails here, and the
        // runtime is asked for `name:latest` where no tag was given.
        let image = match crate::image::reference::with_default_tag(&requested) {
            Ok(image) => image,
            Err(why) => {
                let e = ImageError::InvalidName(format!(
                    "Failed to apply default image tag {requested:?}: {why}"
                ));
                event(EventType::Warning, reason::INSPECT_FAILED, &e.message());
                return Err(e);
            }
        };
        let present = image_status(cri, &image).await;
        match (&present, policy.as_str()) {
            (Some(i), "IfNotPresent" | "Never") => {
                event(
                    EventType::Normal,
                    reason::PULLED,
                    &format!("Container image {image:?} already present on machine"),
                );
                return Ok(i.id.clone());
            }
            (None, "Never") => {
                let e = ImageError::NeverPull(image.clone());
                event(
                    EventType::Warning,
                    reason::ERR_IMAGE_NEVER_PULL,
                    &e.message(),
                );
                return Err(e);
            }
            _ => {}
        }
        let key = backoff_key(pod.metadata.uid.as_deref().unwrap_or_default(), &image);
        let backing_off = self.backoff().check(&key, &image, Instant::now());
        if let Some(e) = backing_off {
            event(
                EventType::Normal,
                reason::BACK_OFF,
                &format!("Back-off pulling image {image:?}"),
            );
            return Err(e);
        }
        event(
            EventType::Normal,
            reason::PULLING,
            &format!("Pulling image {image:?}"),
        );
        let started = Instant::now();
        let pulled = cri
            .pull_image(cri::PullImageRequest {
                image: Some(cri::ImageSpec {
                    image: image.clone(),
                    ..Default::default()
                }),
                auth: None,
                sandbox_config: None,
            })
            .await;
        match pulled {
            Ok(r) => {
                self.backoff().succeeded(Instant::now());
                let took = crate::events::go_duration(started.elapsed());
                let size = image_status(cri, &image).await.map_or(0, |i| i.size);
                event(
                    EventType::Normal,
                    reason::PULLED,
                    &format!(
                        "Successfully pulled image {image:?} in {took} ({took} including waiting). Image size: {size} bytes."
                    ),
                );
                Ok(r.image_ref)
            }
            Err(s) => {
                let message = grpc_error(&s);
                event(
                    EventType::Warning,
                    reason::FAILED,
                    &format!("Failed to pull image {image:?}: {message}"),
                );
                let e = ImageError::Pull { image, message };
                self.backoff().failed(&key, &e, Instant::now());
                Err(e)
            }
        }
    }
}

/// The effective pull policy, defaulted as the apiserver does (`Always` for `:latest` or
/// untagged images, else `IfNotPresent`).
pub fn pull_policy(c: &Container) -> String {
    if let Some(p) = c.image_pull_policy.as_deref().filter(|p| !p.is_empty()) {
        return p.to_string();
    }
    let image = c.image.as_deref().unwrap_or_default();
    let last = image.rsplit('/').next().unwrap_or(image);
    if image.contains('@') {
        "IfNotPresent".into()
    } else {
        match last.split_once(':') {
            Some((_, "latest")) | None => "Always".into(),
            _ => "IfNotPresent".into(),
        }
    }
}

/// The image's ID and size when present (`ImageStatus`; an error counts as absent).
async fn image_status(cri: &dyn CriService, image: &str) -> Option<cri::Image> {
    cri.image_status(cri::ImageStatusRequest {
        image: Some(cri::ImageSpec {
            image: image.to_string(),
            ..Default::default()
        }),
        verbose: false,
    })
    .await
    .ok()
    .and_then(|r| r.image)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn c(image: &str, policy: Option<&str>) -> Container {
        Container {
            name: "c".into(),
            image: Some(image.into()),
            image_pull_policy: policy.map(str::to_string),
            ..Default::default()
        }
    }

    #[test]
    fn defaults_like_the_apiserver() {
        assert_eq!(pull_policy(&c("busybox", None)), "Always");
        assert_eq!(pull_policy(&c("busybox:latest", None)), "Always");
        assert_eq!(pull_policy(&c("busybox:1.35", None)), "IfNotPresent");
        assert_eq!(pull_policy(&c("localhost:5000/busybox", None)), "Always");
        assert_eq!(pull_policy(&c("busybox", Some("Never"))), "Never");
    }

    #[test]
    fn waiting_reasons_and_messages_are_upstreams() {
        let pull = ImageError::Pull {
            image: "x".into(),
            message: "rpc error: code = Unknown desc = no route".into(),
        };
        assert_eq!(pull.reason(), "ErrImagePull");
        assert_eq!(pull.message(), "rpc error: code = Unknown desc = no route");
        let never = ImageError::NeverPull("x".into());
        assert_eq!(never.reason(), "ErrImageNeverPull");
        assert_eq!(
            never.message(),
            "Container image \"x\" is not present with pull policy of Never"
        );
        let s = tonic::Status::not_found("image not found");
        assert_eq!(
            grpc_error(&s),
            "rpc error: code = NotFound desc = image not found"
        );
    }

    #[test]
    fn a_failed_pull_backs_off_with_the_last_error() {
        let mut b = PullBackoff::default();
        let t0 = Instant::now();
        let key = backoff_key("uid1", "localhost:1/none:latest");
        assert_eq!(key, "uid1_localhost:1/none:latest");
        assert!(b.check(&key, "localhost:1/none:latest", t0).is_none());
        let err = ImageError::Pull {
            image: "localhost:1/none:latest".into(),
            message: "rpc error: code = Unknown desc = refused".into(),
        };
        b.failed(&key, &err, t0);
        let e = b
            .check(&key, "localhost:1/none:latest", t0 + Duration::from_secs(5))
            .expect("inside the 10s window");
        assert_eq!(e.reason(), "ImagePullBackOff");
        assert_eq!(
            e.message(),
            "Back-off pulling image \"localhost:1/none:latest\": ErrImagePull: rpc error: code = Unknown desc = refused"
        );
        assert_eq!(
            b.remaining(&key, t0 + Duration::from_secs(5)),
            Duration::from_secs(5)
        );
        // Another pod's pull of the same image is not held back.
        assert!(b
            .check(
                "uid2_localhost:1/none:latest",
                "localhost:1/none:latest",
                t0
            )
            .is_none());
        // After the window the pull is tried again; a second failure waits 20s.
        let t1 = t0 + Duration::from_secs(10);
        assert!(b.check(&key, "localhost:1/none:latest", t1).is_none());
        b.failed(&key, &err, t1);
        assert!(b.check(&key, "x", t1 + Duration::from_secs(19)).is_some());
        assert!(b.check(&key, "x", t1 + Duration::from_secs(20)).is_none());
    }

    #[test]
    fn successes_drop_expired_entries() {
        let mut b = PullBackoff::default();
        let t0 = Instant::now();
        let err = ImageError::Pull {
            image: "a".into(),
            message: "m".into(),
        };
        b.failed("u_a", &err, t0);
        b.succeeded(t0 + Duration::from_secs(601));
        assert!(b.last_error.is_empty());
        assert!(b.backoff.is_empty());
    }
}
