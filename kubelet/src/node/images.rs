//! The node's `status.images`, as upstream's Images setter: the runtime's images, largest
//! first (ties by ID, descending), at most `nodeStatusMaxImages` of them (-1: all), each
//! named by its repo digests then its repo tags, at most five names.

use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::ContainerImage;

/// Upstream's `MaxNamesPerImageInNodeStatus`.
pub const MAX_NAMES_PER_IMAGE: usize = 5;

/// The images to report, from the runtime's list.
pub fn status_images(mut images: Vec<cri::Image>, max_images: i32) -> Vec<ContainerImage> {
    images.sort_by(|a, b| b.size.cmp(&a.size).then_with(|| b.id.cmp(&a.id)));
    if let Ok(max) = usize::try_from(max_images) {
        images.truncate(max);
    }
    images
        .into_iter()
        .map(|i| {
            let mut names: Vec<String> = i.repo_digests.into_iter().chain(i.repo_tags).collect();
            names.truncate(MAX_NAMES_PER_IMAGE);
            ContainerImage {
                names: Some(names),
                size_bytes: Some(i.size as i64),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(id: &str, size: u64, tags: &[&str], digests: &[&str]) -> cri::Image {
        cri::Image {
            id: id.into(),
            size,
            repo_tags: tags.iter().map(|s| s.to_string()).collect(),
            repo_digests: digests.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn largest_first_digests_then_tags_capped() {
        let images = vec![
            image("sha256:a", 10, &["busybox:1.35"], &["busybox@sha256:d1"]),
            image("sha256:b", 30, &["pause:3.10"], &[]),
            image("sha256:c", 10, &[], &["x@sha256:d2"]),
        ];
        let got = status_images(
            images.clone(),
            crate::config::defaults::NODE_STATUS_MAX_IMAGES,
        );
        let names: Vec<Vec<String>> = got.iter().map(|i| i.names.clone().unwrap()).collect();
        assert_eq!(
            names,
            vec![
                vec!["pause:3.10".to_string()],
                vec!["x@sha256:d2".to_string()],
                vec!["busybox@sha256:d1".to_string(), "busybox:1.35".to_string()],
            ]
        );
        assert_eq!(got[0].size_bytes, Some(30));
        assert_eq!(status_images(images.clone(), 1).len(), 1);
        assert_eq!(status_images(images.clone(), 0).len(), 0);
        assert_eq!(status_images(images, -1).len(), 3);
    }

    #[test]
    fn at_most_five_names() {
        let tags: Vec<String> = (0..7).map(|i| format!("t:{i}")).collect();
        let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
        let got = status_images(vec![image("sha256:a", 1, &tags, &["a@sha256:1"])], 50);
        let names = got[0].names.clone().unwrap();
        assert_eq!(names.len(), MAX_NAMES_PER_IMAGE);
        assert_eq!(names[0], "a@sha256:1");
    }
}
