//! legacy-serviceaccount-token-cleaner: once a day, labels auto-generated legacy token
//! Secrets unused for `--legacy-service-account-token-clean-up-period` (one year) with
//! `kubernetes.io/legacy-token-invalid-since`, and deletes them when that label is as old,
//! as upstream's LegacySATokenCleaner. (It lives here, beside the controller that fills the
//! same Secrets.)

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::future::{BoxFuture, FutureExt};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, ServiceAccount};
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::Api;
use serde_json::json;

use super::{NAME_ANNOTATION, SECRET_TYPE, UID_ANNOTATION};
use crate::machinery::context::ControllerContext;
use crate::machinery::informers::{self, Informer};
use crate::machinery::ControllerDescriptor;
use api_helpers::errors;

/// The identity it acts as with `--use-service-account-credentials`.
pub const SERVICE_ACCOUNT: &str = "legacy-service-account-token-cleaner";
/// Label the apiserver sets to the day a legacy token was last used.
pub const LAST_USED_LABEL: &str = "kubernetes.io/legacy-token-last-used";
/// Label this controller sets to the day it found a token unused.
pub const INVALID_SINCE_LABEL: &str = "kubernetes.io/legacy-token-invalid-since";
/// Upstream's default `--legacy-service-account-token-clean-up-period` (one year).
pub const CLEAN_UP_PERIOD: Duration = Duration::from_secs(365 * 24 * 3600);
/// How often every token is evaluated.
pub const SYNC_INTERVAL: Duration = Duration::from_secs(24 * 3600);
/// The apiserver's record of when it started tracking legacy token use.
pub const TRACKING_CONFIG_MAP: &str = "kube-apiserver-legacy-service-account-token-tracking";

/// Registry entry.
pub fn descriptor() -> ControllerDescriptor {
    ControllerDescriptor {
        name: "legacy-service-account-token-cleaner",
        enabled_by_default: true,
        start,
    }
}

/// What to do with one Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Leave it.
    Keep,
    /// Label it invalid since this day (`YYYY-MM-DD`).
    MarkInvalid(String),
    /// Delete it.
    Delete,
}

/// Upstream's decision for `secret` at `now` (`referenced`: its ServiceAccount lists it,
/// i.e. it was auto-generated; `mounted`: a pod in its namespace uses it).
pub fn decide(
    secret: &Secret,
    referenced: bool,
    mounted: bool,
    now: jiff::Timestamp,
    period: Duration,
) -> Action {
    if secret.type_.as_deref() != Some(SECRET_TYPE) || secret.metadata.deletion_timestamp.is_some()
    {
        return Action::Keep;
    }
    let Ok(period) = jiff::SignedDuration::try_from(period) else {
        return Action::Keep;
    };
    let preserve_after = now - period;
    let created = secret.metadata.creation_timestamp.as_ref().map(|t| t.0);
    if created.is_none_or(|c| c >= preserve_after) {
        return Action::Keep;
    }
    let cutoff = day(preserve_after);
    let labels = secret.metadata.labels.as_ref();
    if let Some(last_used) = labels.and_then(|l| l.get(LAST_USED_LABEL)) {
        if !is_day(last_used) || last_used.as_str() >= cutoff.as_str() {
            return Action::Keep;
        }
    }
    if !referenced || mounted {
        return Action::Keep;
    }
    match labels
        .and_then(|l| l.get(INVALID_SINCE_LABEL))
        .filter(|d| is_day(d))
    {
        None => Action::MarkInvalid(day(now)),
        Some(since) if since.as_str() >= cutoff.as_str() => Action::Keep,
        Some(_) => Action::Delete,
    }
}

/// Whether tracking started long enough ago (the day after `since` plus the period).
pub fn tracked_long_enough(since: &str, now: jiff::Timestamp, period: Duration) -> bool {
    let Ok(date) = since.parse::<jiff::civil::Date>() else {
        return false;
    };
    let Ok(start) = date
        .tomorrow()
        .and_then(|d| d.to_zoned(jiff::tz::TimeZone::UTC))
        .map(|z| z.timestamp())
    else {
        return false;
    };
    jiff::SignedDuration::try_from(period).is_ok_and(|p| now >= start + p)
}

fn day(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%d").to_string()
}

fn is_day(s: &str) -> bool {
    s.len() == 10 && s.parse::<jiff::civil::Date>().is_ok()
}

/// Every Secret name a pod refers to (upstream's `VisitPodSecretNames`).
pub fn pod_secret_names(pod: &Pod, out: &mut BTreeSet<String>) {
    let Some(spec) = &pod.spec else { return };
    let mut add = |n: Option<&String>| {
        if let Some(n) = n.filter(|n| !n.is_empty()) {
            out.insert(n.clone());
        }
    };
    for s in spec.image_pull_secrets.iter().flatten() {
        add(Some(&s.name));
    }
    let containers = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    let envs = containers
        .map(|c| (c.env.as_ref(), c.env_from.as_ref()))
        .chain(
            spec.ephemeral_containers
                .iter()
                .flatten()
                .map(|c| (c.env.as_ref(), c.env_from.as_ref())),
        );
    for (env, env_from) in envs {
        for e in env_from.into_iter().flatten() {
            add(e.secret_ref.as_ref().map(|s| &s.name));
        }
        for e in env.into_iter().flatten() {
            let key_ref = e
                .value_from
                .as_ref()
                .and_then(|v| v.secret_key_ref.as_ref());
            add(key_ref.map(|s| &s.name));
        }
    }
    for v in spec.volumes.iter().flatten() {
        add(v.secret.as_ref().and_then(|s| s.secret_name.as_ref()));
        add(v.azure_file.as_ref().map(|a| &a.secret_name));
        add(v
            .cephfs
            .as_ref()
            .and_then(|c| c.secret_ref.as_ref())
            .map(|r| &r.name));
        add(v
            .cinder
            .as_ref()
            .and_then(|c| c.secret_ref.as_ref())
            .map(|r| &r.name));
        add(v
            .flex_volume
            .as_ref()
            .and_then(|c| c.secret_ref.as_ref())
            .map(|r| &r.name));
        add(v
            .rbd
            .as_ref()
            .and_then(|c| c.secret_ref.as_ref())
            .map(|r| &r.name));
        add(v
            .iscsi
            .as_ref()
            .and_then(|c| c.secret_ref.as_ref())
            .map(|r| &r.name));
        add(v
            .storageos
            .as_ref()
            .and_then(|c| c.secret_ref.as_ref())
            .map(|r| &r.name));
        add(v.scale_io.as_ref().map(|c| &c.secret_ref.name));
        add(v
            .csi
            .as_ref()
            .and_then(|c| c.node_publish_secret_ref.as_ref())
            .map(|r| &r.name));
        for p in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            add(p.secret.as_ref().map(|s| &s.name));
        }
    }
}

fn start(ctx: ControllerContext) -> BoxFuture<'static, anyhow::Result<()>> {
    run(ctx).boxed()
}

async fn run(ctx: ControllerContext) -> anyhow::Result<()> {
    // The shared informers, as upstream's cleaner: every Secret (legacy tokens are picked
    // by type below), ServiceAccount and Pod.
    let secrets = ctx.informers().informer::<Secret>();
    let accounts = ctx.informers().informer::<ServiceAccount>();
    let pods = ctx.informers().informer::<Pod>();
    informers::wait_synced(&ctx.shutdown, async {
        secrets.wait_synced().await;
        accounts.wait_synced().await;
        pods.wait_synced().await;
    })
    .await?;
    let client = ctx.client_for(SERVICE_ACCOUNT).await?;
    let period = ctx.options.legacy_service_account_token_clean_up_period;
    loop {
        if let Err(e) = evaluate(&client, &secrets, &accounts, &pods, period).await {
            tracing::error!(error = %format!("{e:#}"), "evaluating legacy service account tokens");
        }
        tokio::select! {
            _ = ctx.shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(SYNC_INTERVAL) => {}
        }
    }
}

async fn evaluate(
    client: &kube::Client,
    secrets: &Informer<Secret>,
    accounts: &Informer<ServiceAccount>,
    pods: &Informer<Pod>,
    period: Duration,
) -> anyhow::Result<()> {
    let now = jiff::Timestamp::now();
    let tracking: Api<ConfigMap> = Api::namespaced(client.clone(), "kube-system");
    let since = tracking
        .get(TRACKING_CONFIG_MAP)
        .await?
        .data
        .and_then(|d| d.get("since").cloned())
        .ok_or_else(|| anyhow::anyhow!("configMap does not have since label"))?;
    if !tracked_long_enough(&since, now, period) {
        return Ok(());
    }
    let mut mounted: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for secret in secrets.list() {
        if secret.type_.as_deref() != Some(SECRET_TYPE) {
            continue;
        }
        let ns = secret.metadata.namespace.clone().unwrap_or_default();
        let name = secret.metadata.name.clone().unwrap_or_default();
        let a = secret.metadata.annotations.as_ref();
        let sa = a
            .and_then(|a| a.get(NAME_ANNOTATION))
            .and_then(|n| accounts.get(&ns, n))
            .filter(|sa| {
                a.and_then(|a| a.get(UID_ANNOTATION))
                    .filter(|u| !u.is_empty())
                    .is_none_or(|u| sa.metadata.uid.as_ref() == Some(u))
            });
        let referenced = sa.is_some_and(|sa| {
            sa.secrets
                .iter()
                .flatten()
                .any(|r| r.name.as_ref() == Some(&name))
        });
        let used = mounted.entry(ns.clone()).or_insert_with(|| {
            let mut names = BTreeSet::new();
            for p in pods.list_namespace(&ns) {
                pod_secret_names(&p, &mut names);
            }
            names
        });
        let api: Api<Secret> = Api::namespaced(client.clone(), &ns);
        match decide(&secret, referenced, used.contains(&name), now, period) {
            Action::Keep => {}
            Action::MarkInvalid(day) => {
                tracing::info!(secret = %format!("{ns}/{name}"), invalid_since = %day, "Mark the auto-generated service account token as invalid");
                let patch = json!({"metadata": {"uid": secret.metadata.uid, "labels": {INVALID_SINCE_LABEL: day}}});
                if let Err(e) = api
                    .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                    .await
                {
                    tracing::error!(secret = %format!("{ns}/{name}"), error = %e, "labelling legacy token");
                }
            }
            Action::Delete => {
                tracing::info!(secret = %format!("{ns}/{name}"), "Delete auto-generated service account token");
                let params = DeleteParams {
                    preconditions: Some(Preconditions {
                        uid: None,
                        resource_version: secret.metadata.resource_version.clone(),
                    }),
                    ..Default::default()
                };
                match api.delete(&name, &params).await {
                    Ok(_) => {}
                    Err(e) if errors::is_conflict(&e) || errors::is_not_found(&e) => {}
                    Err(e) => {
                        tracing::error!(secret = %format!("{ns}/{name}"), error = %e, "deleting legacy token")
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    const YEAR: Duration = CLEAN_UP_PERIOD;

    fn now() -> jiff::Timestamp {
        "2026-06-15T12:00:00Z".parse().unwrap()
    }

    fn secret(created: &str, labels: &[(&str, &str)]) -> Secret {
        let mut s = Secret {
            type_: Some(SECRET_TYPE.into()),
            ..Default::default()
        };
        s.metadata.creation_timestamp = Some(Time(created.parse().unwrap()));
        s.metadata.labels = Some(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        s
    }

    #[test]
    fn unused_auto_generated_tokens_are_marked_then_deleted() {
        let old = "2024-01-01T00:00:00Z";
        assert_eq!(
            decide(&secret(old, &[]), true, false, now(), YEAR),
            Action::MarkInvalid("2026-06-15".into())
        );
        let used_long_ago = secret(old, &[(LAST_USED_LABEL, "2025-01-01")]);
        assert_eq!(
            decide(&used_long_ago, true, false, now(), YEAR),
            Action::MarkInvalid("2026-06-15".into())
        );
        let marked_recently = secret(old, &[(INVALID_SINCE_LABEL, "2026-01-01")]);
        assert_eq!(
            decide(&marked_recently, true, false, now(), YEAR),
            Action::Keep
        );
        let marked_long_ago = secret(old, &[(INVALID_SINCE_LABEL, "2025-06-01")]);
        assert_eq!(
            decide(&marked_long_ago, true, false, now(), YEAR),
            Action::Delete
        );
        let bad_label = secret(old, &[(INVALID_SINCE_LABEL, "junk")]);
        assert_eq!(
            decide(&bad_label, true, false, now(), YEAR),
            Action::MarkInvalid("2026-06-15".into())
        );
    }

    #[test]
    fn recent_used_mounted_or_manual_tokens_are_kept() {
        let old = "2024-01-01T00:00:00Z";
        assert_eq!(
            decide(
                &secret("2026-01-01T00:00:00Z", &[]),
                true,
                false,
                now(),
                YEAR
            ),
            Action::Keep,
            "created within the period"
        );
        assert_eq!(
            decide(
                &secret(old, &[(LAST_USED_LABEL, "2026-01-01")]),
                true,
                false,
                now(),
                YEAR
            ),
            Action::Keep,
            "used within the period"
        );
        assert_eq!(
            decide(
                &secret(old, &[(LAST_USED_LABEL, "yesterday")]),
                true,
                false,
                now(),
                YEAR
            ),
            Action::Keep,
            "unreadable last-used"
        );
        assert_eq!(
            decide(&secret(old, &[]), false, false, now(), YEAR),
            Action::Keep,
            "not auto-generated"
        );
        assert_eq!(
            decide(&secret(old, &[]), true, true, now(), YEAR),
            Action::Keep,
            "mounted by a pod"
        );
    }

    #[test]
    fn the_flag_sets_the_period() {
        let defaults = crate::machinery::options::KcmOptions::default();
        assert_eq!(
            defaults.legacy_service_account_token_clean_up_period,
            CLEAN_UP_PERIOD
        );
        let argv = [
            "kube-controller-manager",
            "--legacy-service-account-token-clean-up-period=720h",
        ];
        let (o, _) = crate::app::flags::parse(argv.map(std::ffi::OsString::from))
            .unwrap()
            .unwrap();
        let month = o.legacy_service_account_token_clean_up_period;
        assert_eq!(month, Duration::from_secs(30 * 24 * 3600));
        // Unused for two months: kept under the one-year default, marked under 720h.
        let two_months_unused = secret("2024-01-01T00:00:00Z", &[(LAST_USED_LABEL, "2026-04-15")]);
        assert_eq!(
            decide(&two_months_unused, true, false, now(), YEAR),
            Action::Keep
        );
        assert_eq!(
            decide(&two_months_unused, true, false, now(), month),
            Action::MarkInvalid("2026-06-15".into())
        );
        assert!(tracked_long_enough("2026-05-01", now(), month));
        assert!(!tracked_long_enough("2026-05-01", now(), YEAR));
    }

    #[test]
    fn tracking_must_have_run_for_the_period() {
        assert!(!tracked_long_enough("2026-01-01", now(), YEAR));
        assert!(tracked_long_enough("2025-06-01", now(), YEAR));
        assert!(!tracked_long_enough("junk", now(), YEAR));
    }

    #[test]
    fn pod_secret_references() {
        let pod: Pod = serde_json::from_value(json!({
            "spec": {
                "imagePullSecrets": [{"name": "pull"}],
                "containers": [{"name": "c", "envFrom": [{"secretRef": {"name": "envfrom"}}],
                    "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "keyref", "key": "k"}}}]}],
                "volumes": [
                    {"name": "a", "secret": {"secretName": "vol"}},
                    {"name": "b", "projected": {"sources": [{"secret": {"name": "proj"}}]}},
                    {"name": "c", "csi": {"driver": "d", "nodePublishSecretRef": {"name": "csi"}}}
                ]
            }
        }))
        .unwrap();
        let mut names = BTreeSet::new();
        pod_secret_names(&pod, &mut names);
        assert_eq!(
            names.into_iter().collect::<Vec<_>>(),
            ["csi", "envfrom", "keyref", "proj", "pull", "vol"]
        );
    }
}
