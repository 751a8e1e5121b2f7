//! clusterrole-aggregation against a real apiserver: the built-in `admin`/`edit`/`view`
//! roles get their rules from the `aggregate-to-*` roles, and a custom aggregated role
//! follows its sources as they are labelled, changed and deleted.

#[path = "lifecycle_support.rs"]
mod support;

use std::time::Duration;

use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};
use kube::api::{DeleteParams, PostParams};
use kube::Api;
use serde_json::json;

fn has_rule(role: &ClusterRole, verb: &str, resource: &str) -> bool {
    role.rules.iter().flatten().any(|r: &PolicyRule| {
        r.verbs.iter().any(|v| v == verb) && r.resources.iter().flatten().any(|x| x == resource)
    })
}

fn source(name: &str, label: &str, verb: &str, resource: &str) -> ClusterRole {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"example.com/aggregate-to-monitoring": label}},
        "rules": [{"apiGroups": [""], "resources": [resource], "verbs": [verb]}],
    }))
    .unwrap()
}

#[tokio::test]
async fn aggregated_cluster_roles_follow_their_sources() {
    let cluster = e2e::cluster_or_skip!();
    let roles: Api<ClusterRole> = Api::all(cluster.client());
    let mut kcm = support::start_kcm(&cluster, "clusterrole-aggregation", &[]);

    // The apiserver's bootstrap `view` role has only an aggregationRule.
    let view = support::eventually(
        "view aggregated",
        Duration::from_secs(60),
        &mut kcm,
        || async {
            let v = roles.get("view").await?;
            Ok(has_rule(&v, "get", "pods").then_some(v))
        },
    )
    .await;
    assert!(has_rule(&view, "list", "configmaps"));
    assert!(
        !has_rule(&view, "get", "secrets"),
        "view must not read secrets"
    );
    let fields = view.metadata.managed_fields.unwrap_or_default();
    assert!(
        fields.iter().any(
            |f| f.manager.as_deref() == Some("clusterrole-aggregation-controller")
                && f.operation.as_deref() == Some("Apply")
        ),
        "rules are server-side applied by clusterrole-aggregation-controller"
    );

    // A custom aggregated role.
    let target: ClusterRole = serde_json::from_value(json!({
        "metadata": {"name": "monitoring"},
        "aggregationRule": {"clusterRoleSelectors": [
            {"matchLabels": {"example.com/aggregate-to-monitoring": "true"}}
        ]},
    }))
    .unwrap();
    let pp = PostParams::default();
    roles.create(&pp, &target).await.unwrap();
    roles
        .create(&pp, &source("mon-pods", "true", "get", "pods"))
        .await
        .unwrap();
    roles
        .create(&pp, &source("mon-nodes", "true", "list", "nodes"))
        .await
        .unwrap();
    roles
        .create(&pp, &source("mon-secrets", "false", "get", "secrets"))
        .await
        .unwrap();
    let m = support::eventually(
        "monitoring has both",
        Duration::from_secs(30),
        &mut kcm,
        || async {
            let m = roles.get("monitoring").await?;
            Ok((has_rule(&m, "get", "pods") && has_rule(&m, "list", "nodes")).then_some(m))
        },
    )
    .await;
    assert_eq!(m.rules.as_ref().map(Vec::len), Some(2), "{:?}", m.rules);
    assert!(!has_rule(&m, "get", "secrets"));

    // A source changes: the union follows; a source goes away: its rules go too.
    let mut pods = roles.get("mon-pods").await.unwrap();
    pods.rules.as_mut().unwrap()[0].verbs = vec!["watch".into()];
    roles.replace("mon-pods", &pp, &pods).await.unwrap();
    roles
        .delete("mon-nodes", &DeleteParams::default())
        .await
        .unwrap();
    let m = support::eventually(
        "monitoring follows",
        Duration::from_secs(30),
        &mut kcm,
        || async {
            let m = roles.get("monitoring").await?;
            Ok((has_rule(&m, "watch", "pods") && !has_rule(&m, "list", "nodes")).then_some(m))
        },
    )
    .await;
    assert_eq!(m.rules.as_ref().map(Vec::len), Some(1), "{:?}", m.rules);
}
