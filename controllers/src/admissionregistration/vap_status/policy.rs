//! What a ValidatingAdmissionPolicy's type check covers and how its result reads (upstream's
//! `TypeChecker` in `k8s.io/apiserver/pkg/admission/plugin/policy/validating`): the kinds its
//! `matchConstraints.resourceRules` name without wildcards, each of its validations'
//! `expression` and `messageExpression`, one warning per expression with issues.

use std::fmt;

use k8s_openapi::api::admissionregistration::v1::{ExpressionWarning, ValidatingAdmissionPolicy};

use super::check::{self, Variables};
use super::types::{CelType, ObjectType};

/// At most this many kinds are checked per policy, as upstream.
pub const MAX_TYPES_TO_CHECK: usize = 10;

/// A group/version/resource a rule names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Gvr {
    /// API group (`""` for core).
    pub group: String,
    /// Version.
    pub version: String,
    /// Plural resource name.
    pub resource: String,
}

/// A group/version/kind, printed as apimachinery's `GroupVersionKind.String()`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Gvk {
    /// API group (`""` for core).
    pub group: String,
    /// Version.
    pub version: String,
    /// Kind.
    pub kind: String,
}

impl fmt::Display for Gvk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}, Kind={}", self.group, self.version, self.kind)
    }
}

/// The resources of each resource rule of the policy's match constraints, sorted, with
/// rules naming a wildcard group or version skipped and wildcard or subresource entries
/// dropped (upstream's `extractGroups/Versions/Resources`).
pub fn rules_to_check(policy: &ValidatingAdmissionPolicy) -> Vec<Vec<Gvr>> {
    let rules = policy
        .spec
        .as_ref()
        .and_then(|s| s.match_constraints.as_ref())
        .and_then(|m| m.resource_rules.as_ref());
    let mut out = Vec::new();
    for rule in rules.into_iter().flatten() {
        let sorted = |v: &Option<Vec<String>>| {
            let mut v = v.clone().unwrap_or_default();
            v.sort();
            v
        };
        let (groups, versions) = (sorted(&rule.api_groups), sorted(&rule.api_versions));
        if groups.iter().chain(&versions).any(|s| s.contains('*')) {
            continue;
        }
        let resources: Vec<String> = sorted(&rule.resources)
            .into_iter()
            .filter(|r| !r.contains(['*', '/']))
            .collect();
        let mut gvrs = Vec::new();
        for group in &groups {
            for version in &versions {
                for resource in &resources {
                    gvrs.push(Gvr {
                        group: group.clone(),
                        version: version.clone(),
                        resource: resource.clone(),
                    });
                }
            }
        }
        if !gvrs.is_empty() {
            out.push(gvrs);
        }
    }
    out
}

/// The kinds to check, in upstream's order (sorted), given how each resource maps to kinds
/// (`kinds_for`): collection stops once one rule has yielded [`MAX_TYPES_TO_CHECK`].
pub fn kinds_to_check(rules: &[Vec<Gvr>], mut kinds_for: impl FnMut(&Gvr) -> Vec<Gvk>) -> Vec<Gvk> {
    let mut set = std::collections::BTreeSet::new();
    'rules: for rule in rules {
        let mut count = 0;
        for gvr in rule {
            for gvk in kinds_for(gvr) {
                set.insert(gvk);
                count += 1;
                if count == MAX_TYPES_TO_CHECK {
                    break 'rules;
                }
            }
        }
    }
    set.into_iter().collect()
}

/// One expression's warning text over the checked kinds: per kind with issues,
/// `<gvk>: compilation failed: <cel-go issues>` and a newline, joined by newlines; `None`
/// when no kind has issues.
fn check_expression(source: &str, kinds: &[(Gvk, ObjectType)]) -> Option<String> {
    let results: Vec<String> = kinds
        .iter()
        .filter_map(|(gvk, object)| {
            let mut vars = Variables::new();
            vars.insert("object".into(), CelType::Object(object.clone()));
            vars.insert("oldObject".into(), CelType::Object(object.clone()));
            let issues = check::check(source, &vars);
            (!issues.is_empty()).then(|| {
                format!(
                    "{gvk}: compilation failed: {}\n",
                    check::display(source, &issues)
                )
            })
        })
        .collect();
    (!results.is_empty()).then(|| results.join("\n"))
}

/// The `status.typeChecking.expressionWarnings` of `policy` checked against `kinds` (the
/// kinds whose schemas resolved).
pub fn warnings(
    policy: &ValidatingAdmissionPolicy,
    kinds: &[(Gvk, ObjectType)],
) -> Vec<ExpressionWarning> {
    let validations = policy.spec.as_ref().and_then(|s| s.validations.as_ref());
    let mut out = Vec::new();
    for (i, v) in validations.into_iter().flatten().enumerate() {
        let exprs = [
            ("expression", Some(v.expression.as_str())),
            ("messageExpression", v.message_expression.as_deref()),
        ];
        for (field, source) in exprs {
            let Some(source) = source.filter(|s| !s.is_empty()) else {
                continue;
            };
            if let Some(warning) = check_expression(source, kinds) {
                out.push(ExpressionWarning {
                    field_ref: format!("spec.validations[{i}].{field}"),
                    warning,
                });
            }
        }
    }
    out
}

/// Whether the policy's current generation still needs a type check.
pub fn needs_check(policy: &ValidatingAdmissionPolicy) -> bool {
    let generation = policy.metadata.generation.unwrap_or(0);
    let observed = policy
        .status
        .as_ref()
        .and_then(|s| s.observed_generation)
        .unwrap_or(0);
    generation > observed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admissionregistration::vap_status::types::tests::deployment;
    use serde_json::json;

    fn policy(
        rules: serde_json::Value,
        validations: serde_json::Value,
    ) -> ValidatingAdmissionPolicy {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "generation": 2},
            "spec": {"matchConstraints": {"resourceRules": rules}, "validations": validations}
        }))
        .unwrap()
    }

    fn gvk(g: &str, v: &str, k: &str) -> Gvk {
        Gvk {
            group: g.into(),
            version: v.into(),
            kind: k.into(),
        }
    }

    #[test]
    fn rules_skip_wildcards_and_subresources() {
        let p = policy(
            json!([
                {"apiGroups": ["apps"], "apiVersions": ["v1"], "resources": ["deployments", "deployments/scale", "*"], "operations": ["*"]},
                {"apiGroups": ["*"], "apiVersions": ["v1"], "resources": ["pods"], "operations": ["*"]},
                {"apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods", "configmaps"], "operations": ["*"]}
            ]),
            json!([]),
        );
        let rules = rules_to_check(&p);
        let names: Vec<Vec<String>> = rules
            .iter()
            .map(|r| {
                r.iter()
                    .map(|g| format!("{}/{}/{}", g.group, g.version, g.resource))
                    .collect()
            })
            .collect();
        assert_eq!(
            names,
            [
                vec!["apps/v1/deployments".to_string()],
                vec!["/v1/configmaps".into(), "/v1/pods".into()]
            ]
        );
    }

    #[test]
    fn at_most_ten_kinds_sorted() {
        let rule: Vec<Gvr> = (0..15)
            .map(|i| Gvr {
                group: "g".into(),
                version: "v1".into(),
                resource: format!("r{i:02}"),
            })
            .collect();
        let kinds = kinds_to_check(&[rule], |gvr| {
            vec![gvk("g", "v1", &gvr.resource.to_uppercase())]
        });
        assert_eq!(kinds.len(), MAX_TYPES_TO_CHECK);
        assert_eq!(kinds[0], gvk("g", "v1", "R00"));
        assert_eq!(gvk("", "v1", "Pod").to_string(), "/v1, Kind=Pod");
    }

    #[test]
    fn warnings_name_the_field_and_the_kind_as_upstream() {
        let p = policy(
            json!([]),
            json!([
                {"expression": "object.spec.replicas > 1"},
                {"expression": "object.spec.replicas > '1'",
                 "messageExpression": "'wants replicas > 1, got ' + object.spec.replicas"}
            ]),
        );
        let kinds = [(gvk("apps", "v1", "Deployment"), deployment())];
        let w = warnings(&p, &kinds);
        assert_eq!(w.len(), 2);
        assert_eq!(w[0].field_ref, "spec.validations[1].expression");
        assert_eq!(
            w[0].warning,
            "apps/v1, Kind=Deployment: compilation failed: ERROR: <input>:1:22: found no matching overload for '_>_' applied to '(int, string)'\n | object.spec.replicas > '1'\n | .....................^\n"
        );
        assert_eq!(w[1].field_ref, "spec.validations[1].messageExpression");
        assert!(w[1]
            .warning
            .contains("found no matching overload for '_+_' applied to '(string, int)'"));
        // No resolved kinds: nothing to check against, no warnings.
        assert!(warnings(&p, &[]).is_empty());
    }

    #[test]
    fn only_new_generations_are_checked() {
        let mut p = policy(json!([]), json!([]));
        assert!(needs_check(&p));
        p.status = Some(serde_json::from_value(json!({"observedGeneration": 2})).unwrap());
        assert!(!needs_check(&p));
    }
}
