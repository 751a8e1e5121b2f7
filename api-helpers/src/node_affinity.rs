//! Node selectors and a pod's required node placement as component-helpers'
//! `scheduling/corev1/nodeaffinity` reads them: terms ORed, requirements within a term
//! ANDed, an empty term matching nothing, `matchFields` only on `metadata.name`, `Gt`/`Lt`
//! comparing integers. The pod's `nodeSelector` and its required node affinity must both
//! hold (`GetRequiredNodeAffinity(pod).Match(node)`).

use k8s_openapi::api::core::v1::{
    Node, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, PodSpec,
};

use crate::labels::{empty, set_matches};

/// The only field a `matchFields` requirement may name.
pub const OBJECT_NAME_FIELD: &str = "metadata.name";

/// Whether any term of `selector` matches `node`.
pub fn selector_matches(selector: &NodeSelector, node: &Node) -> bool {
    selector
        .node_selector_terms
        .iter()
        .any(|t| term_matches(t, node))
}

/// Whether every requirement of `term` holds for `node` (an empty term matches nothing).
pub fn term_matches(term: &NodeSelectorTerm, node: &Node) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or(&[]);
    let fields = term.match_fields.as_deref().unwrap_or(&[]);
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    let labels = node.metadata.labels.as_ref().unwrap_or(empty());
    exprs
        .iter()
        .all(|r| requirement_matches(r, labels.get(&r.key).map(String::as_str)))
        && fields.iter().all(|r| {
            r.key == OBJECT_NAME_FIELD
                && matches!(r.operator.as_str(), "In" | "NotIn")
                && requirement_matches(r, node.metadata.name.as_deref())
        })
}

/// Whether one requirement holds for the value `got` of its key (`None`: absent).
pub fn requirement_matches(r: &NodeSelectorRequirement, got: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or(&[]);
    match r.operator.as_str() {
        "In" => got.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => got.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => got.is_some(),
        "DoesNotExist" => got.is_none(),
        "Gt" | "Lt" => {
            let (Some(got), Some(bound)) = (
                got.and_then(|v| v.parse::<i64>().ok()),
                values.first().and_then(|b| b.parse::<i64>().ok()),
            ) else {
                return false;
            };
            if r.operator == "Gt" {
                got > bound
            } else {
                got < bound
            }
        }
        _ => false,
    }
}

/// The pod's required node affinity, if it has one.
pub fn required(spec: &PodSpec) -> Option<&NodeSelector> {
    spec.affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()
}

/// Whether the pod's `nodeSelector` and required node affinity both accept `node`.
pub fn pod_matches_node(spec: &PodSpec, node: &Node) -> bool {
    spec.node_selector
        .as_ref()
        .is_none_or(|s| set_matches(s, node.metadata.labels.as_ref()))
        && required(spec).is_none_or(|r| selector_matches(r, node))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn node(name: &str, labels: serde_json::Value) -> Node {
        serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap()
    }

    fn selector(v: serde_json::Value) -> NodeSelector {
        serde_json::from_value(json!({ "nodeSelectorTerms": v })).unwrap()
    }

    #[test]
    fn terms_or_requirements_and_fields() {
        let n = node("n1", json!({"cores": "8", "zone": "a"}));
        let sel = selector(json!([
            {"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["4"]}],
             "matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}]));
        assert!(selector_matches(&sel, &n));
        assert!(!selector_matches(&sel, &node("n2", json!({"cores": "8"}))));
        assert!(!selector_matches(&selector(json!([{}])), &n));
        let either = selector(json!([
            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]},
            {"matchExpressions": [{"key": "cores", "operator": "Lt", "values": ["9"]}]}]));
        assert!(selector_matches(&either, &n));
        let bad_field = selector(json!([
            {"matchFields": [{"key": "metadata.uid", "operator": "In", "values": ["n1"]}]}]));
        assert!(!selector_matches(&bad_field, &n));
    }

    #[test]
    fn pod_needs_node_selector_and_required_affinity() {
        let n = node("n1", json!({"disk": "ssd", "zone": "a"}));
        let spec = |v| serde_json::from_value::<PodSpec>(v).unwrap();
        assert!(pod_matches_node(&spec(json!({"containers": []})), &n));
        assert!(pod_matches_node(
            &spec(json!({"containers": [], "nodeSelector": {"disk": "ssd"}})),
            &n
        ));
        assert!(!pod_matches_node(
            &spec(json!({"containers": [], "nodeSelector": {"disk": "hdd"}})),
            &n
        ));
        let affinity = json!({"containers": [], "nodeSelector": {"disk": "ssd"},
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
                {"nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]}]}}}});
        assert!(!pod_matches_node(&spec(affinity), &n));
    }

    proptest! {
        /// `Gt`/`Lt` compare as integers and never match a non-integer or absent value.
        #[test]
        fn gt_lt_are_integer_comparisons(got in -100i64..100, bound in -100i64..100) {
            let r = |op: &str| NodeSelectorRequirement {
                key: "k".into(), operator: op.into(), values: Some(vec![bound.to_string()]),
            };
            prop_assert_eq!(requirement_matches(&r("Gt"), Some(&got.to_string())), got > bound);
            prop_assert_eq!(requirement_matches(&r("Lt"), Some(&got.to_string())), got < bound);
            prop_assert!(!requirement_matches(&r("Gt"), Some("x")));
            prop_assert!(!requirement_matches(&r("Lt"), None));
        }
    }
}
