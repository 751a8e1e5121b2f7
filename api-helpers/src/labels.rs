//! Label selectors (`metav1.LabelSelector`) as apimachinery's `LabelSelectorAsSelector` reads
//! them: `matchLabels` and `matchExpressions` ANDed; an empty selector matches everything
//! (a missing one matching nothing is the caller's to decide, as upstream); an unknown
//! operator matches nothing.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

/// An object's labels.
pub type Labels = BTreeMap<String, String>;

/// The empty label set (for objects without labels).
pub fn empty() -> &'static Labels {
    static EMPTY: std::sync::OnceLock<Labels> = std::sync::OnceLock::new();
    EMPTY.get_or_init(BTreeMap::new)
}

/// Whether `selector` selects an object with `labels` (`None`: no labels).
pub fn matches(selector: &LabelSelector, labels: Option<&Labels>) -> bool {
    let labels = labels.unwrap_or(empty());
    selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v))
        && selector
            .match_expressions
            .iter()
            .flatten()
            .all(|r| requirement_matches(r, labels))
}

/// Whether one `matchExpressions` entry holds for `labels`.
pub fn requirement_matches(r: &LabelSelectorRequirement, labels: &Labels) -> bool {
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

/// Whether the selector has no terms at all (selects everything).
pub fn is_empty(selector: &LabelSelector) -> bool {
    selector.match_labels.as_ref().is_none_or(|m| m.is_empty())
        && selector
            .match_expressions
            .as_ref()
            .is_none_or(|m| m.is_empty())
}

/// The selector that requires exactly `map` (`SelectorFromSet`).
pub fn from_map(map: &Labels) -> LabelSelector {
    LabelSelector {
        match_labels: Some(map.clone()),
        match_expressions: None,
    }
}

/// Whether every `key=value` of `set` is among `labels` (a map-shaped selector such as a
/// Service's or ReplicationController's `selector`, or a pod's `nodeSelector`).
pub fn set_matches(set: &Labels, labels: Option<&Labels>) -> bool {
    let labels = labels.unwrap_or(empty());
    set.iter().all(|(k, v)| labels.get(k) == Some(v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn l(kv: &[(&str, &str)]) -> Labels {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn req(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(values.iter().map(|v| v.to_string()).collect()),
        }
    }

    #[test]
    fn labels_and_expressions_are_anded() {
        let s = LabelSelector {
            match_labels: Some(l(&[("app", "web")])),
            match_expressions: Some(vec![
                req("tier", "In", &["a", "b"]),
                req("canary", "DoesNotExist", &[]),
            ]),
        };
        assert!(matches(&s, Some(&l(&[("app", "web"), ("tier", "a")]))));
        assert!(!matches(&s, Some(&l(&[("app", "web"), ("tier", "c")]))));
        assert!(!matches(
            &s,
            Some(&l(&[("app", "web"), ("tier", "a"), ("canary", "1")]))
        ));
        assert!(!matches(&s, None));
        assert!(matches(&LabelSelector::default(), None));
        assert!(is_empty(&LabelSelector::default()));
        assert!(!is_empty(&s));
    }

    #[test]
    fn not_in_matches_a_missing_key_and_unknown_operators_match_nothing() {
        let labels = l(&[("a", "1")]);
        assert!(requirement_matches(&req("b", "NotIn", &["1"]), &labels));
        assert!(!requirement_matches(&req("a", "NotIn", &["1"]), &labels));
        assert!(!requirement_matches(&req("a", "Gt", &["0"]), &labels));
    }

    proptest! {
        /// `SelectorFromSet(set)` selects exactly the label sets that contain `set`.
        #[test]
        fn from_map_selects_supersets(
            set in proptest::collection::btree_map("[a-c]", "[xy]", 0..3),
            labels in proptest::collection::btree_map("[a-d]", "[xy]", 0..4),
        ) {
            let contains = set.iter().all(|(k, v)| labels.get(k) == Some(v));
            prop_assert_eq!(matches(&from_map(&set), Some(&labels)), contains);
            prop_assert_eq!(set_matches(&set, Some(&labels)), contains);
        }

        /// `In` and `NotIn` with the same values are complements when the key is present;
        /// `Exists` and `DoesNotExist` always are.
        #[test]
        fn complementary_operators(
            labels in proptest::collection::btree_map("[a-c]", "[xyz]", 0..3),
            key in "[a-c]",
            values in proptest::collection::vec("[xyz]", 1..3),
        ) {
            let values: Vec<&str> = values.iter().map(String::as_str).collect();
            let in_ = requirement_matches(&req(&key, "In", &values), &labels);
            let not_in = requirement_matches(&req(&key, "NotIn", &values), &labels);
            if labels.contains_key(&key) {
                prop_assert_ne!(in_, not_in);
            } else {
                prop_assert!(!in_ && not_in);
            }
            prop_assert_ne!(
                requirement_matches(&req(&key, "Exists", &[]), &labels),
                requirement_matches(&req(&key, "DoesNotExist", &[]), &labels)
            );
        }
    }
}
