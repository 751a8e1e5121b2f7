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

/// Parses the string form of a label selector (`app=web,tier in (a,b),!canary`, as a scale
/// subresource's `status.selector` carries it; apimachinery's `labels.Parse`) into a
/// `LabelSelector`. `=`/`==` become `In`, `!=` `NotIn`, a bare key `Exists`, `!key`
/// `DoesNotExist`. The numeric `>`/`<` operators have no `LabelSelector` form and are an
/// error, as is anything malformed; the error quotes the offending part.
pub fn parse(s: &str) -> Result<LabelSelector, String> {
    use LabelSelectorRequirement as Req;
    let req = |key: &str, op: &str, values: Option<Vec<String>>| -> Result<Req, String> {
        let key = key.trim();
        if key.is_empty()
            || key.contains(char::is_whitespace)
            || key.contains(['(', ')', '=', '!', ','])
        {
            return Err(format!("invalid label key {key:?} in selector {s:?}"));
        }
        Ok(Req {
            key: key.to_string(),
            operator: op.to_string(),
            values,
        })
    };
    let mut terms = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                terms.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        if depth < 0 {
            return Err(format!("unbalanced parentheses in selector {s:?}"));
        }
    }
    if depth != 0 {
        return Err(format!("unbalanced parentheses in selector {s:?}"));
    }
    terms.push(&s[start..]);
    let mut requirements = Vec::new();
    for term in terms.into_iter().map(str::trim) {
        if term.is_empty() {
            if s.trim().is_empty() {
                continue;
            }
            return Err(format!("empty requirement in selector {s:?}"));
        }
        let one = |v: &str| Some(vec![v.trim().to_string()]);
        let r = if let Some(key) = term.strip_prefix('!') {
            req(key, "DoesNotExist", None)?
        } else if let Some((k, v)) = term.split_once("!=") {
            req(k, "NotIn", one(v))?
        } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
            req(k, "In", one(v))?
        } else if let Some(open) = term.find('(') {
            let (head, set) = (&term[..open], &term[open..]);
            let inner = set
                .strip_prefix('(')
                .and_then(|x| x.strip_suffix(')'))
                .ok_or_else(|| format!("malformed set {set:?} in selector {s:?}"))?;
            let values: Vec<String> = inner
                .split(',')
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .collect();
            let head = head.trim_end();
            let (key, op) = if let Some(k) = head.strip_suffix(" notin") {
                (k, "NotIn")
            } else if let Some(k) = head.strip_suffix(" in") {
                (k, "In")
            } else {
                return Err(format!(
                    "expected 'in' or 'notin' in {term:?} of selector {s:?}"
                ));
            };
            req(key, op, Some(values))?
        } else if term.contains(['<', '>']) {
            return Err(format!(
                "numeric comparison {term:?} in selector {s:?} is not supported"
            ));
        } else {
            req(term, "Exists", None)?
        };
        requirements.push(r);
    }
    Ok(LabelSelector {
        match_labels: None,
        match_expressions: Some(requirements),
    })
}

/// The string form of `selector` (apimachinery's `LabelSelectorAsSelector(s).String()`):
/// requirements sorted by key, `matchLabels` as `k=v`, expressions as `k in (a,b)`,
/// `k notin (a,b)`, `k`, `!k` (values sorted). An empty selector is `""`.
pub fn to_query(selector: &LabelSelector) -> String {
    let mut reqs: Vec<(String, String)> = selector
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), format!("{k}={v}")))
        .collect();
    for e in selector.match_expressions.iter().flatten() {
        let mut values = e.values.clone().unwrap_or_default();
        values.sort();
        let k = &e.key;
        let text = match e.operator.as_str() {
            "In" => format!("{k} in ({})", values.join(",")),
            "NotIn" => format!("{k} notin ({})", values.join(",")),
            "Exists" => k.clone(),
            "DoesNotExist" => format!("!{k}"),
            other => format!("{k} {other} ({})", values.join(",")),
        };
        reqs.push((k.clone(), text));
    }
    reqs.sort();
    reqs.into_iter()
        .map(|(_, t)| t)
        .collect::<Vec<_>>()
        .join(",")
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
    #[test]
    fn parses_the_string_form() {
        let sel =
            parse("app=web, tier in (a, b),env!=prod,!canary,track,x==y,z notin (q)").unwrap();
        assert!(matches(
            &sel,
            Some(&l(&[
                ("app", "web"),
                ("tier", "b"),
                ("track", "s"),
                ("x", "y")
            ]))
        ));
        assert!(!matches(
            &sel,
            Some(&l(&[
                ("app", "web"),
                ("tier", "c"),
                ("track", "s"),
                ("x", "y")
            ]))
        ));
        assert!(!matches(
            &sel,
            Some(&l(&[
                ("app", "web"),
                ("tier", "a"),
                ("track", "s"),
                ("x", "y"),
                ("canary", "1")
            ]))
        ));
        assert!(!matches(
            &sel,
            Some(&l(&[
                ("app", "web"),
                ("tier", "a"),
                ("track", "s"),
                ("x", "y"),
                ("env", "prod")
            ]))
        ));
        assert!(!matches(
            &sel,
            Some(&l(&[
                ("app", "web"),
                ("tier", "a"),
                ("track", "s"),
                ("x", "y"),
                ("z", "q")
            ]))
        ));
        let all = parse("").unwrap();
        assert!(matches(&all, Some(&l(&[("a", "b")]))));
        for bad in ["a in (b", "a>3", "a b=c", "a,,b", "=x", "a foo (b)"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn renders_the_string_form_that_parses_back() {
        let sel = LabelSelector {
            match_labels: Some(l(&[("b", "2"), ("a", "1")])),
            match_expressions: Some(vec![
                LabelSelectorRequirement {
                    key: "c".into(),
                    operator: "In".into(),
                    values: Some(vec!["y".into(), "x".into()]),
                },
                LabelSelectorRequirement {
                    key: "d".into(),
                    operator: "DoesNotExist".into(),
                    values: None,
                },
            ]),
        };
        let q = to_query(&sel);
        assert_eq!(q, "a=1,b=2,c in (x,y),!d");
        let back = parse(&q).unwrap();
        let labels = l(&[("a", "1"), ("b", "2"), ("c", "x")]);
        assert!(matches(&back, Some(&labels)) && matches(&sel, Some(&labels)));
        assert_eq!(to_query(&LabelSelector::default()), "");
    }
}
