//! Label selector and node selector matching (metav1.LabelSelector, v1.NodeSelector).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

/// Labels of an object, as stored in its metadata.
pub type Labels = BTreeMap<String, String>;

/// An empty label map, for objects without labels.
pub fn empty() -> &'static Labels {
    static EMPTY: std::sync::OnceLock<Labels> = std::sync::OnceLock::new();
    EMPTY.get_or_init(BTreeMap::new)
}

/// Whether `labels` satisfy a metav1.LabelSelector. An empty selector matches everything;
/// an unknown operator matches nothing (as upstream's conversion error).
pub fn selector_matches(sel: &LabelSelector, labels: &Labels) -> bool {
    if let Some(ml) = &sel.match_labels {
        if ml.iter().any(|(k, v)| labels.get(k) != Some(v)) {
            return false;
        }
    }
    sel.match_expressions
        .iter()
        .flatten()
        .all(|r| requirement_matches(r, labels))
}

fn requirement_matches(r: &LabelSelectorRequirement, labels: &Labels) -> bool {
    let values = r.values.as_deref().unwrap_or(&[]);
    let got = labels.get(&r.key);
    match r.operator.as_str() {
        "In" => got.is_some_and(|v| values.contains(v)),
        "NotIn" => got.is_none_or(|v| !values.contains(v)),
        "Exists" => got.is_some(),
        "DoesNotExist" => got.is_none(),
        _ => false,
    }
}

/// Whether a node matches a v1.NodeSelector: the terms are ORed; a term with no
/// requirements matches nothing.
pub fn node_selector_matches(sel: &NodeSelector, node: &Node) -> bool {
    sel.node_selector_terms
        .iter()
        .any(|t| node_selector_term_matches(t, node))
}

/// Whether a node matches one NodeSelectorTerm (matchExpressions and matchFields ANDed).
pub fn node_selector_term_matches(term: &NodeSelectorTerm, node: &Node) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or(&[]);
    let fields = term.match_fields.as_deref().unwrap_or(&[]);
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    let labels = node.metadata.labels.as_ref().unwrap_or(empty());
    let name = node.metadata.name.as_deref().unwrap_or("");
    exprs
        .iter()
        .all(|r| node_requirement_matches(r, labels.get(&r.key).map(String::as_str)))
        && fields.iter().all(|r| {
            // Only metadata.name is a supported field.
            r.key == "metadata.name" && node_requirement_matches(r, Some(name))
        })
}

fn node_requirement_matches(r: &NodeSelectorRequirement, got: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or(&[]);
    match r.operator.as_str() {
        "In" => got.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => got.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => got.is_some(),
        "DoesNotExist" => got.is_none(),
        "Gt" | "Lt" => {
            let (Some(got), Some(want)) = (got, values.first()) else {
                return false;
            };
            let (Ok(got), Ok(want)) = (got.parse::<i64>(), want.parse::<i64>()) else {
                return false;
            };
            if r.operator == "Gt" {
                got > want
            } else {
                got < want
            }
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(kv: &[(&str, &str)]) -> Labels {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn label_selector_operators() {
        let sel: LabelSelector = serde_json::from_value(serde_json::json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]},
                                 {"key": "x", "operator": "DoesNotExist"}]
        }))
        .unwrap();
        assert!(selector_matches(
            &sel,
            &labels(&[("app", "web"), ("tier", "a")])
        ));
        assert!(!selector_matches(
            &sel,
            &labels(&[("app", "web"), ("tier", "c")])
        ));
        assert!(!selector_matches(
            &sel,
            &labels(&[("app", "web"), ("tier", "a"), ("x", "1")])
        ));
        assert!(selector_matches(&LabelSelector::default(), &labels(&[])));
    }

    #[test]
    fn node_selector_gt_and_fields() {
        let mut node = Node::default();
        node.metadata.name = Some("n1".into());
        node.metadata.labels = Some(labels(&[("cores", "8")]));
        let sel: NodeSelector = serde_json::from_value(serde_json::json!({"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["4"]}],
             "matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}]}))
        .unwrap();
        assert!(node_selector_matches(&sel, &node));
        node.metadata.name = Some("n2".into());
        assert!(!node_selector_matches(&sel, &node));
        let empty_term: NodeSelector =
            serde_json::from_value(serde_json::json!({"nodeSelectorTerms": [{}]})).unwrap();
        assert!(!node_selector_matches(&empty_term, &node));
    }
}
