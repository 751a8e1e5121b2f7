//! ImageLocality: prefer nodes that already have the pod's images, scaled by how widely
//! each image is spread (to avoid piling pods onto the few nodes holding an image).

use std::collections::HashMap;
use std::sync::Arc;

use crate::framework::*;
use crate::snapshot::{normalize_image, NodeInfo, PodInfo, Snapshot};

/// Registry name.
pub const NAME: &str = "ImageLocality";
const MB: i64 = 1024 * 1024;
const MIN_THRESHOLD: i64 = 23 * MB;
const MAX_CONTAINER_THRESHOLD: i64 = 1000 * MB;

/// The ImageLocality plugin (PreScore, Score; default weight 1).
#[derive(Debug, Default)]
pub struct ImageLocality;

/// Per cycle: the pod's images with their spread (nodes having it / all nodes).
#[derive(Clone)]
struct State {
    images: Vec<(String, f64)>,
    containers: usize,
}

impl Plugin for ImageLocality {
    fn name(&self) -> &'static str {
        NAME
    }
    extension_points!(PreScore, Score);
}

impl PreScorePlugin for ImageLocality {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _: &[Arc<NodeInfo>],
        snap: &Snapshot,
    ) -> Status {
        if pod.pod.spec.is_none() {
            return Status::skip();
        }
        let total = snap.nodes.len().max(1) as f64;
        let mut spread: HashMap<String, f64> = HashMap::new();
        let mut images = Vec::new();
        for image in &pod.images {
            let name = normalize_image(image);
            let s = *spread
                .entry(name.clone())
                .or_insert_with(|| *snap.image_nodes.get(&name).unwrap_or(&0) as f64 / total);
            images.push((name, s));
        }
        let containers = images.len();
        state.write(NAME, State { images, containers });
        Status::success()
    }
}

/// Maps the summed image score into [0, 100] between upstream's thresholds.
pub fn calculate_priority(sum: i64, containers: usize) -> i64 {
    let max = MAX_CONTAINER_THRESHOLD * containers.max(1) as i64;
    let clamped = sum.clamp(MIN_THRESHOLD, max.max(MIN_THRESHOLD));
    if max <= MIN_THRESHOLD {
        return 0;
    }
    MAX_NODE_SCORE * (clamped - MIN_THRESHOLD) / (max - MIN_THRESHOLD)
}

impl ScorePlugin for ImageLocality {
    fn score(&self, state: &CycleState, _: &PodInfo, node: &NodeInfo) -> (i64, Status) {
        let Some(st) = state.read::<State>(NAME) else {
            return (0, Status::success());
        };
        let sum: i64 = st
            .images
            .iter()
            .filter_map(|(img, spread)| {
                node.images
                    .get(img)
                    .map(|size| (*size as f64 * spread) as i64)
            })
            .sum();
        (calculate_priority(sum, st.containers), Status::success())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testutil::*;
    use serde_json::json;

    #[test]
    fn node_with_image_scores_higher() {
        let mut with = node("a", "1", "1Gi", json!({}));
        with.status.as_mut().unwrap().images = Some(vec![serde_json::from_value(json!(
            {"names": ["registry/app:v1"], "sizeBytes": 500 * MB}))
        .unwrap()]);
        let snap = snapshot(vec![
            node_info(with, &[]),
            node_info(node("b", "1", "1Gi", json!({})), &[]),
        ]);
        let p = pod(
            "p",
            json!({"containers": [{"name": "c", "image": "registry/app:v1"}]}),
        );
        let mut st = state();
        ImageLocality.pre_score(&mut st, &p, &[], &snap);
        let a = ImageLocality.score(&st, &p, &snap.nodes[0]).0;
        let b = ImageLocality.score(&st, &p, &snap.nodes[1]).0;
        // 500MB × spread 1/2 = 250MB → 100 × (250-23)/(1000-23) = 23.
        assert_eq!((a, b), (23, 0));
    }

    #[test]
    fn image_names_default_to_latest() {
        assert_eq!(normalize_image("nginx"), "nginx:latest");
        assert_eq!(normalize_image("host:5000/nginx"), "host:5000/nginx:latest");
        assert_eq!(normalize_image("nginx:1.2"), "nginx:1.2");
    }
}
