//! Labels, taints and selectors: the kubelet's `--node-labels`, `--register-with-taints`
//! and map flags, `--feature-gates`, and the shared matching of label and node selectors
//! from pod specs (JSON, as the apiserver sends them).

use api_helpers::labels::{matches, Labels};
use api_helpers::node_affinity::term_matches;
use k8s_openapi::api::core::v1::{Node, NodeSelectorTerm};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// The flag parsers on the text; the selector matchers on the bytes as JSON.
pub fn fuzz(data: &[u8]) {
    let s = crate::text(data);
    let _ = kubelet::config::options::parse_labels(&s);
    let _ = kubelet::config::options::parse_taints(&s);
    let _ = kubelet::config::options::parse_map(&s, '=', "--fuzz");
    let _ = component_base::feature_gates::FeatureGates::parse(&s, &[("Alpha", false)]);
    let labels: Labels = [("app", "web"), ("tier", "7"), ("zone", "a")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    if let Ok(sel) = serde_json::from_slice::<LabelSelector>(data) {
        let _ = matches(&sel, Some(&labels));
    }
    if let Ok(term) = serde_json::from_slice::<NodeSelectorTerm>(data) {
        let mut node = Node::default();
        node.metadata.name = Some("node-1".into());
        node.metadata.labels = Some(labels);
        let _ = term_matches(&term, &node);
    }
}
