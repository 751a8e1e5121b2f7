//! clusterrole-aggregation-controller: a ClusterRole with an `aggregationRule` gets as rules
//! the union of the rules of every other ClusterRole its selectors match (in name order,
//! duplicates dropped), written by server-side apply as upstream.

use std::sync::Arc;

use futures::future::{BoxFuture, FutureExt};
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};
use kube::api::{Patch, PatchParams};
use kube::Api;
use serde_json::json;

use crate::machinery::context::ControllerContext;
use crate::machinery::informers::Informer;
use crate::machinery::ControllerDescriptor;
use crate::machinery::{informers::handlers as informer, queue::WorkQueue};
use api_helpers::errors;
use api_helpers::labels;

/// The identity it acts as with `--use-service-account-credentials`, and its field manager.
pub const SERVICE_ACCOUNT: &str = "clusterrole-aggregation-controller";
/// Upstream's worker count.
const WORKERS: usize = 5;

/// Registry entry.
pub fn descriptor() -> ControllerDescriptor {
    ControllerDescriptor {
        name: "clusterrole-aggregation",
        enabled_by_default: true,
        start,
    }
}

/// The rules `role` should have, or `None` when it has no aggregation rule.
pub fn aggregated_rules(role: &ClusterRole, all: &[Arc<ClusterRole>]) -> Option<Vec<PolicyRule>> {
    let rule = role.aggregation_rule.as_ref()?;
    let mut sorted: Vec<&ClusterRole> = all.iter().map(|r| r.as_ref()).collect();
    sorted.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut rules: Vec<PolicyRule> = Vec::new();
    for sel in rule.cluster_role_selectors.iter().flatten() {
        for other in &sorted {
            if other.metadata.name == role.metadata.name
                || !labels::matches(sel, other.metadata.labels.as_ref())
            {
                continue;
            }
            for r in other.rules.iter().flatten() {
                if !rules.iter().any(|have| same_rule(have, r)) {
                    rules.push(r.clone());
                }
            }
        }
    }
    Some(rules)
}

/// Whether the role's current rules already are `want` (nil and empty lists are equal, as
/// upstream's semantic equality).
pub fn up_to_date(role: &ClusterRole, want: &[PolicyRule]) -> bool {
    let have = role.rules.as_deref().unwrap_or_default();
    have.len() == want.len() && have.iter().zip(want).all(|(a, b)| same_rule(a, b))
}

fn same_rule(a: &PolicyRule, b: &PolicyRule) -> bool {
    fn list(v: &Option<Vec<String>>) -> &[String] {
        v.as_deref().unwrap_or_default()
    }
    a.verbs == b.verbs
        && list(&a.api_groups) == list(&b.api_groups)
        && list(&a.resources) == list(&b.resources)
        && list(&a.resource_names) == list(&b.resource_names)
        && list(&a.non_resource_urls) == list(&b.non_resource_urls)
}

fn start(ctx: ControllerContext) -> BoxFuture<'static, anyhow::Result<()>> {
    run(ctx).boxed()
}

async fn run(ctx: ControllerContext) -> anyhow::Result<()> {
    let queue: WorkQueue<String> =
        WorkQueue::new().with_metrics(&ctx.metrics, "ClusterRoleAggregator");
    let q = queue.clone();
    let store = ctx.informers().informer::<ClusterRole>();
    informer::on(&store, move |_: &ClusterRole, _| q.add(String::new()));
    let s = store.clone();
    informer::wait_synced(&ctx.shutdown, async move {
        s.wait_synced().await;
    })
    .await?;
    // Any change may affect any aggregated role: the empty key fans out to all of them.
    let fan_out = queue.clone();
    let api: Api<ClusterRole> = Api::all(ctx.client_for(SERVICE_ACCOUNT).await?);
    queue
        .run(
            "clusterrole-aggregation",
            WORKERS,
            ctx.shutdown.clone(),
            move |key: String| {
                let store = store.clone();
                let api = api.clone();
                let fan_out = fan_out.clone();
                async move {
                    if key.is_empty() {
                        for role in store.list() {
                            if role.aggregation_rule.is_some() {
                                fan_out.add(role.metadata.name.clone().unwrap_or_default());
                            }
                        }
                        return Ok(());
                    }
                    sync(&api, &store, &key).await
                }
            },
        )
        .await;
    Ok(())
}

async fn sync(
    api: &Api<ClusterRole>,
    store: &Informer<ClusterRole>,
    name: &str,
) -> anyhow::Result<()> {
    let Some(role) = store.get("", name) else {
        return Ok(());
    };
    let Some(rules) = aggregated_rules(&role, &store.list()) else {
        return Ok(());
    };
    if up_to_date(&role, &rules) {
        return Ok(());
    }
    let body = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": name},
        "rules": rules,
    });
    let params = PatchParams::apply(SERVICE_ACCOUNT).force();
    match api.patch(name, &params, &Patch::Apply(body)).await {
        Ok(_) => {
            tracing::info!(clusterrole = %name, rules = rules.len(), "aggregated ClusterRole rules");
            Ok(())
        }
        Err(e) if errors::is_not_found(&e) => Ok(()),
        Err(e) => Err(anyhow::Error::new(e).context(format!("applying ClusterRole {name}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::rbac::v1::AggregationRule;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
    use std::collections::BTreeMap;

    fn rule(verb: &str, resource: &str) -> PolicyRule {
        PolicyRule {
            verbs: vec![verb.into()],
            api_groups: Some(vec!["".into()]),
            resources: Some(vec![resource.into()]),
            ..Default::default()
        }
    }

    fn role(name: &str, label: Option<(&str, &str)>, rules: Vec<PolicyRule>) -> Arc<ClusterRole> {
        let mut r = ClusterRole::default();
        r.metadata.name = Some(name.into());
        r.metadata.labels = label.map(|(k, v)| BTreeMap::from([(k.into(), v.into())]));
        r.rules = Some(rules);
        Arc::new(r)
    }

    fn aggregating(name: &str, selectors: &[(&str, &str)]) -> ClusterRole {
        let mut r = ClusterRole::default();
        r.metadata.name = Some(name.into());
        r.aggregation_rule = Some(AggregationRule {
            cluster_role_selectors: Some(
                selectors
                    .iter()
                    .map(|(k, v)| LabelSelector {
                        match_labels: Some(BTreeMap::from([(k.to_string(), v.to_string())])),
                        ..Default::default()
                    })
                    .collect(),
            ),
        });
        r
    }

    #[test]
    fn union_in_selector_then_name_order_without_duplicates() {
        let all = vec![
            role(
                "z-pods",
                Some(("agg", "a")),
                vec![rule("get", "pods"), rule("list", "pods")],
            ),
            role(
                "a-svc",
                Some(("agg", "a")),
                vec![rule("get", "services"), rule("get", "pods")],
            ),
            role("cm", Some(("agg", "b")), vec![rule("get", "configmaps")]),
            role("other", Some(("agg", "c")), vec![rule("delete", "nodes")]),
        ];
        let target = aggregating("view", &[("agg", "b"), ("agg", "a")]);
        let got = aggregated_rules(&target, &all).unwrap();
        assert_eq!(
            got,
            vec![
                rule("get", "configmaps"),
                rule("get", "services"),
                rule("get", "pods"),
                rule("list", "pods"),
            ]
        );
    }

    #[test]
    fn itself_is_skipped_and_plain_roles_are_not_aggregated() {
        let mut target = aggregating("self", &[("agg", "a")]);
        target.metadata.labels = Some(BTreeMap::from([("agg".into(), "a".into())]));
        target.rules = Some(vec![rule("get", "secrets")]);
        let all = vec![Arc::new(target.clone())];
        assert_eq!(aggregated_rules(&target, &all), Some(vec![]));
        assert_eq!(aggregated_rules(&role("plain", None, vec![]), &all), None);
    }

    #[test]
    fn nil_and_empty_lists_are_the_same_rule() {
        let mut a = rule("get", "pods");
        let mut b = a.clone();
        a.resource_names = None;
        b.resource_names = Some(vec![]);
        assert!(same_rule(&a, &b));
        let mut r = ClusterRole::default();
        assert!(up_to_date(&r, &[]));
        r.rules = Some(vec![a]);
        assert!(up_to_date(&r, &[b.clone()]));
        assert!(!up_to_date(&r, &[b.clone(), rule("list", "pods")]));
    }
}
