//! validatingadmissionpolicy-status-controller against a real apiserver, as upstream's
//! conformance specs "should type check validation expressions" and "should type check a
//! CRD" assert: a well-typed policy gets `typeChecking` without warnings, a type-confused one
//! gets cel-go's warnings on the right fields, an undefined field of a CRD's schema is named,
//! and `observedGeneration` follows the policy.

#[path = "lifecycle_support.rs"]
mod support;

use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicy;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::json;

fn policy(
    name: &str,
    group: &str,
    resource: &str,
    validations: serde_json::Value,
) -> ValidatingAdmissionPolicy {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{"apiGroups": [group], "apiVersions": ["v1"],
                "resources": [resource], "operations": ["CREATE", "UPDATE"]}]},
            "validations": validations
        }
    }))
    .unwrap()
}

/// Waits until the policy's status has `typeChecking` for its current generation and
/// returns its warnings as (fieldRef, warning).
async fn type_checked(
    api: &Api<ValidatingAdmissionPolicy>,
    name: &str,
    kcm: &mut e2e::ManagedProcess,
) -> Vec<(String, String)> {
    support::eventually(
        &format!("typeChecking of policy {name}"),
        Duration::from_secs(30),
        kcm,
        || async {
            let p = api.get(name).await?;
            let Some(status) = p.status else {
                return Ok(None);
            };
            if status.observed_generation != p.metadata.generation {
                return Ok(None);
            }
            Ok(status.type_checking.map(|tc| {
                tc.expression_warnings
                    .unwrap_or_default()
                    .into_iter()
                    .map(|w| (w.field_ref, w.warning))
                    .collect()
            }))
        },
    )
    .await
}

#[tokio::test]
async fn policies_are_type_checked_against_built_in_and_crd_schemas() {
    let cluster = e2e::cluster_or_skip!();
    let client = cluster.client();
    let policies: Api<ValidatingAdmissionPolicy> = Api::all(client.clone());
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "metadata": {"name": "crontabs.stable.example.com"},
        "spec": {"group": "stable.example.com", "scope": "Namespaced",
            "names": {"plural": "crontabs", "singular": "crontab", "kind": "CronTab"},
            "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {
                "type": "object", "properties": {"spec": {"type": "object", "properties": {
                    "cronSpec": {"type": "string"}, "image": {"type": "string"},
                    "replicas": {"type": "integer"}}}}}}}]}
    }))
    .unwrap();
    crds.create(&PostParams::default(), &crd).await.unwrap();

    let mut kcm = support::start_kcm(&cluster, "validatingadmissionpolicy-status-controller", &[]);

    // Built-in kind, well typed.
    let correct = policy(
        "correct",
        "apps",
        "deployments",
        json!([{"expression": "object.spec.replicas > 1"}]),
    );
    policies
        .create(&PostParams::default(), &correct)
        .await
        .unwrap();
    assert_eq!(type_checked(&policies, "correct", &mut kcm).await, []);

    // Built-in kind, type confusion in the expression and the message expression.
    let confused = policy(
        "confused",
        "apps",
        "deployments",
        json!([{
        "expression": "object.spec.replicas > '1'",
        "messageExpression": "'wants replicas > 1, got ' + object.spec.replicas"}]),
    );
    policies
        .create(&PostParams::default(), &confused)
        .await
        .unwrap();
    let warnings = type_checked(&policies, "confused", &mut kcm).await;
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert_eq!(warnings[0].0, "spec.validations[0].expression");
    assert_eq!(
        warnings[0].1,
        "apps/v1, Kind=Deployment: compilation failed: ERROR: <input>:1:22: found no matching overload for '_>_' applied to '(int, string)'\n | object.spec.replicas > '1'\n | .....................^\n"
    );
    assert_eq!(warnings[1].0, "spec.validations[0].messageExpression");
    assert!(
        warnings[1]
            .1
            .contains("found no matching overload for '_+_' applied to '(string, int)'"),
        "{}",
        warnings[1].1
    );

    // A new generation is checked again: fixed, the warnings go.
    let fix = json!({"spec": {"validations": [{"expression": "object.spec.replicas > 1",
        "messageExpression": "'wants replicas > 1, got ' + string(object.spec.replicas)"}]}});
    policies
        .patch("confused", &PatchParams::default(), &Patch::Merge(&fix))
        .await
        .unwrap();
    assert_eq!(type_checked(&policies, "confused", &mut kcm).await, []);

    // A CRD's schema, once published: an undefined field is named.
    support::eventually(
        "the CRD's OpenAPI v3 document",
        Duration::from_secs(30),
        &mut kcm,
        || async {
            let req = http::Request::get("/openapi/v3").body(Vec::new())?;
            let index: serde_json::Value = client.request(req).await?;
            Ok(index
                .pointer("/paths/apis~1stable.example.com~1v1")
                .map(|_| ()))
        },
    )
    .await;
    let crd_policy = policy(
        "crontabs",
        "stable.example.com",
        "crontabs",
        json!([
        {"expression": "object.spec.replicas > '1'"},
        {"expression": "object.spec.maxRetries < 10"}]),
    );
    policies
        .create(&PostParams::default(), &crd_policy)
        .await
        .unwrap();
    let warnings = type_checked(&policies, "crontabs", &mut kcm).await;
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert_eq!(warnings[0].0, "spec.validations[0].expression");
    assert!(
        warnings[0]
            .1
            .starts_with("stable.example.com/v1, Kind=CronTab: compilation failed: "),
        "{}",
        warnings[0].1
    );
    assert!(warnings[0]
        .1
        .contains("found no matching overload for '_>_' applied to '(int, string)'"));
    assert_eq!(warnings[1].0, "spec.validations[1].expression");
    assert!(
        warnings[1].1.contains("undefined field 'maxRetries'"),
        "{}",
        warnings[1].1
    );
}
