//! The image manager: `imagePullPolicy` decides whether to pull; failures surface as
//! upstream's `ErrImagePull` / `ErrImageNeverPull`, repeated failures as `ImagePullBackOff`.

use crate::cri::Cri;
use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::Container;

/// Why an image is not available; `reason()` is the container's waiting reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    /// Pulling failed.
    #[error("Failed to pull image {image:?}: {message}")]
    Pull {
        /// The image.
        image: String,
        /// The runtime's error.
        message: String,
    },
    /// `imagePullPolicy: Never` and the image is not present.
    #[error("Container image {0:?} is not present with pull policy of Never")]
    NeverPull(String),
}

impl ImageError {
    /// The waiting reason upstream reports.
    pub fn reason(&self) -> &'static str {
        match self {
            ImageError::Pull { .. } => "ErrImagePull",
            ImageError::NeverPull(_) => "ErrImageNeverPull",
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

/// Makes sure the image is present per policy; returns the image ID (`sha256:…`).
pub async fn ensure_image(cri: &Cri, image: &str, policy: &str) -> Result<String, ImageError> {
    let spec = cri::ImageSpec {
        image: image.to_string(),
        ..Default::default()
    };
    let present = cri
        .images
        .clone()
        .image_status(cri::ImageStatusRequest {
            image: Some(spec.clone()),
            verbose: false,
        })
        .await
        .ok()
        .and_then(|r| r.into_inner().image)
        .map(|i| i.id);
    match (present, policy) {
        (Some(id), "IfNotPresent" | "Never") => return Ok(id),
        (None, "Never") => return Err(ImageError::NeverPull(image.to_string())),
        _ => {}
    }
    let pulled = cri
        .images
        .clone()
        .pull_image(cri::PullImageRequest {
            image: Some(spec),
            auth: None,
            sandbox_config: None,
        })
        .await;
    match pulled {
        Ok(r) => Ok(r.into_inner().image_ref),
        Err(s) => Err(ImageError::Pull {
            image: image.to_string(),
            message: s.message().to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
