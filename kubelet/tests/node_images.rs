//! e2e: the node reports its images in `status.images` as upstream — the runtime's images,
//! largest first, named by digests then tags, capped by `nodeStatusMaxImages`.

#[macro_use]
mod common;

use common::process::{wait, KubeletProcess};
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use kubelet::cri::CriService;
use std::time::Duration;

#[tokio::test]
async fn node_status_reports_images_largest_first_capped() {
    let (cluster, containerd) = cluster_and_containerd_or_skip!();
    let kubelet = KubeletProcess::builder(&cluster, &containerd, "images")
        .config(serde_json::json!({"nodeStatusMaxImages": 1}))
        .start();
    let nodes: Api<Node> = Api::all(cluster.client());
    let images = wait("status.images", Duration::from_secs(60), || async {
        let n = nodes.get_opt(&kubelet.node_name).await.ok().flatten()?;
        n.status?.images.filter(|i| !i.is_empty())
    })
    .await;
    let cri = kubelet::cri::Cri::connect(&containerd.endpoint())
        .await
        .unwrap();
    let mut all = cri
        .list_images(k8s_cri::v1::ListImagesRequest { filter: None })
        .await
        .unwrap()
        .images;
    assert!(all.len() > 1, "the runtime has busybox and pause: {all:?}");
    all.sort_by(|a, b| b.size.cmp(&a.size).then_with(|| b.id.cmp(&a.id)));
    let largest = &all[0];
    assert_eq!(images.len(), 1, "capped by nodeStatusMaxImages: {images:?}");
    assert_eq!(images[0].size_bytes, Some(largest.size as i64));
    let expected: Vec<String> = largest
        .repo_digests
        .iter()
        .chain(&largest.repo_tags)
        .take(5)
        .cloned()
        .collect();
    assert_eq!(images[0].names.clone().unwrap_or_default(), expected);
    kubelet.stop();
}
