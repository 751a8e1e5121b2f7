//! Component test: images built locally load into a real containerd and CRI sees them.

use k8s_cri::v1::{ImageSpec, ImageStatusRequest, ListImagesRequest};
use kubelet::cri::CriService;
use kubelet::image::busybox::{BUSYBOX_IMAGE, PAUSE_IMAGE};
use kubelet::testing::{containerd::unavailable_reason, TestContainerd};

#[tokio::test]
async fn loaded_images_are_visible_through_cri() {
    if let Some(reason) = unavailable_reason() {
        e2e::skip::record_skip("loaded_images_are_visible_through_cri", &reason);
        return;
    }
    let containerd = TestContainerd::start().await.expect("start containerd");
    let cri = kubelet::cri::Cri::connect(&containerd.endpoint())
        .await
        .unwrap();
    assert!(cri
        .runtime_version()
        .await
        .unwrap()
        .starts_with("containerd://"));
    let listed = cri
        .list_images(ListImagesRequest { filter: None })
        .await
        .unwrap();
    let tags: Vec<String> = listed
        .images
        .iter()
        .flat_map(|i| i.repo_tags.clone())
        .collect();
    for want in [BUSYBOX_IMAGE, PAUSE_IMAGE] {
        assert!(
            tags.contains(&want.to_string()),
            "{want} not in {tags:?}: {}",
            containerd.log_tail()
        );
        let status = cri
            .image_status(ImageStatusRequest {
                image: Some(ImageSpec {
                    image: want.into(),
                    ..Default::default()
                }),
                verbose: false,
            })
            .await
            .unwrap();
        let image = status.image.expect("image status");
        assert!(image.id.starts_with("sha256:"), "{image:?}");
        assert!(
            image.size > 500_000,
            "busybox layer is in the image: {image:?}"
        );
    }
}
