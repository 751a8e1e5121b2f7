//! bootstrap-signer: keeps `jws-kubeconfig-<token-id>` entries of the `kube-public/cluster-info`
//! ConfigMap equal to detached HS256 JWS signatures of its `kubeconfig`, one per bootstrap
//! token allowed to sign, so joining nodes can trust the CA they discover.

use std::collections::BTreeMap;

use base64::Engine as _;
use futures::future::{BoxFuture, FutureExt};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::PostParams;
use kube::Api;
use serde_json::json;

use super::token;
use crate::machinery::context::ControllerContext;
use crate::machinery::informers;
use crate::machinery::ControllerDescriptor;
use crate::machinery::{informers::handlers as informer, queue::WorkQueue};
use api_helpers::errors;

/// The identity it acts as with `--use-service-account-credentials`.
pub const SERVICE_ACCOUNT: &str = "bootstrap-signer";
/// The signed ConfigMap's namespace.
pub const CONFIG_MAP_NAMESPACE: &str = "kube-public";
/// The signed ConfigMap's name.
pub const CONFIG_MAP_NAME: &str = "cluster-info";
/// The signed data key.
pub const KUBECONFIG_KEY: &str = "kubeconfig";
/// Prefix of the signature keys.
pub const SIGNATURE_PREFIX: &str = "jws-kubeconfig-";

/// Registry entry (off unless named in `--controllers`).
pub fn descriptor() -> ControllerDescriptor {
    ControllerDescriptor {
        name: "bootstrapsigner",
        enabled_by_default: false,
        start,
    }
}

/// Upstream's `ComputeDetachedSignature`: the compact HS256 JWS of `content` keyed by the
/// token secret, with `kid` = token ID, and the payload left out (`header..signature`).
pub fn detached_signature(content: &str, token_id: &str, token_secret: &str) -> String {
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let header = b64(json!({"alg": "HS256", "kid": token_id})
        .to_string()
        .as_bytes());
    let input = format!("{header}.{}", b64(content.as_bytes()));
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, token_secret.as_bytes());
    let tag = ring::hmac::sign(&key, input.as_bytes());
    format!("{header}..{}", b64(tag.as_ref()))
}

/// The ConfigMap with its signatures recomputed for `tokens` (ID → secret), or `None` when
/// it needs no update (or has no `kubeconfig` to sign).
pub fn resigned(cm: &ConfigMap, tokens: &BTreeMap<String, String>) -> Option<ConfigMap> {
    let data = cm.data.as_ref()?;
    let content = data.get(KUBECONFIG_KEY)?;
    let mut new_data: BTreeMap<String, String> = data
        .iter()
        .filter(|(k, _)| !k.starts_with(SIGNATURE_PREFIX))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (id, secret) in tokens {
        new_data.insert(
            format!("{SIGNATURE_PREFIX}{id}"),
            detached_signature(content, id, secret),
        );
    }
    if &new_data == data {
        return None;
    }
    let mut out = cm.clone();
    out.data = Some(new_data);
    Some(out)
}

/// Whether `cm` is the signed `kube-public/cluster-info` ConfigMap.
pub fn is_cluster_info(cm: &ConfigMap) -> bool {
    cm.metadata.namespace.as_deref() == Some(CONFIG_MAP_NAMESPACE)
        && cm.metadata.name.as_deref() == Some(CONFIG_MAP_NAME)
}

/// The signing tokens among `secrets` (the first Secret of a duplicated ID wins).
pub fn signing_tokens<'a>(
    secrets: impl IntoIterator<Item = &'a Secret>,
    now: jiff::Timestamp,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for s in secrets {
        if let Some((id, secret)) = token::for_signing(s, now) {
            out.entry(id).or_insert(secret);
        }
    }
    out
}

fn start(ctx: ControllerContext) -> BoxFuture<'static, anyhow::Result<()>> {
    run(ctx).boxed()
}

async fn run(ctx: ControllerContext) -> anyhow::Result<()> {
    let queue: WorkQueue<()> =
        WorkQueue::new().with_metrics(&ctx.metrics, "bootstrap_signer_queue");
    // The shared ConfigMaps and Secrets informers, filtered in the handlers as upstream's.
    let q = queue.clone();
    let config_maps = ctx.informers().informer::<ConfigMap>();
    informer::on(&config_maps, move |cm: &ConfigMap, _| {
        if is_cluster_info(cm) {
            q.add(());
        }
    });
    let q = queue.clone();
    let secrets = ctx.informers().informer::<Secret>();
    informer::on(&secrets, move |s: &Secret, _| {
        if token::is_bootstrap_token(s) {
            q.add(());
        }
    });
    informers::wait_synced(&ctx.shutdown, async {
        config_maps.wait_synced().await;
        secrets.wait_synced().await;
    })
    .await?;
    let api: Api<ConfigMap> =
        Api::namespaced(ctx.client_for(SERVICE_ACCOUNT).await?, CONFIG_MAP_NAMESPACE);
    queue.add(());
    queue
        .run("bootstrapsigner", 1, ctx.shutdown.clone(), move |()| {
            let cm = config_maps.get(CONFIG_MAP_NAMESPACE, CONFIG_MAP_NAME);
            let tokens = signing_tokens(
                secrets
                    .list_namespace(token::NAMESPACE)
                    .iter()
                    .map(|s| s.as_ref()),
                jiff::Timestamp::now(),
            );
            let api = api.clone();
            async move {
                let Some(update) = cm.and_then(|cm| resigned(&cm, &tokens)) else {
                    return Ok(());
                };
                match api
                    .replace(CONFIG_MAP_NAME, &PostParams::default(), &update)
                    .await
                {
                    Ok(_) => {
                        tracing::info!(tokens = tokens.len(), "signed cluster-info");
                        Ok(())
                    }
                    // A newer ConfigMap is on its way through the informer.
                    Err(e) if errors::is_conflict(&e) || errors::is_not_found(&e) => Ok(()),
                    Err(e) => Err(anyhow::Error::new(e).context("updating cluster-info")),
                }
            }
        })
        .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::bootstrap::token::tests::secret;
    use crate::core::bootstrap::token::{ID_KEY, SECRET_KEY, USAGE_SIGNING_KEY};

    fn cm(data: &[(&str, &str)]) -> ConfigMap {
        ConfigMap {
            data: Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn detached_hs256_signature_verifies_with_the_token_secret() {
        let sig = detached_signature("apiVersion: v1\n", "abcdef", "0123456789abcdef");
        let parts: Vec<&str> = sig.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[1], "", "payload is detached");
        let dec = |s: &str| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(s)
                .unwrap()
        };
        assert_eq!(dec(parts[0]), br#"{"alg":"HS256","kid":"abcdef"}"#);
        // Reattach the payload and verify as kubeadm's discovery does.
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("apiVersion: v1\n");
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"0123456789abcdef");
        ring::hmac::verify(
            &key,
            format!("{}.{payload}", parts[0]).as_bytes(),
            &dec(parts[2]),
        )
        .unwrap();
    }

    #[test]
    fn signatures_are_added_replaced_and_removed() {
        let tokens = BTreeMap::from([("abcdef".to_string(), "0123456789abcdef".to_string())]);
        let c = cm(&[(KUBECONFIG_KEY, "kc"), ("jws-kubeconfig-gone00", "old")]);
        let out = resigned(&c, &tokens).unwrap();
        let data = out.data.unwrap();
        assert_eq!(data.len(), 2);
        assert_eq!(
            data["jws-kubeconfig-abcdef"],
            detached_signature("kc", "abcdef", "0123456789abcdef")
        );
        // Already signed: no update.
        let c = cm(&[
            (KUBECONFIG_KEY, "kc"),
            (
                "jws-kubeconfig-abcdef",
                &detached_signature("kc", "abcdef", "0123456789abcdef"),
            ),
        ]);
        assert!(resigned(&c, &tokens).is_none());
        // Nothing to sign.
        assert!(resigned(&cm(&[("other", "x")]), &tokens).is_none());
    }

    #[test]
    fn only_signing_tokens_count() {
        let now = jiff::Timestamp::now();
        let a = secret(
            "abcdef",
            &[
                (ID_KEY, "abcdef"),
                (SECRET_KEY, "0123456789abcdef"),
                (USAGE_SIGNING_KEY, "true"),
            ],
        );
        let b = secret(
            "bbbbbb",
            &[(ID_KEY, "bbbbbb"), (SECRET_KEY, "0123456789abcdef")],
        );
        let t = signing_tokens([&a, &b], now);
        assert_eq!(t.keys().collect::<Vec<_>>(), ["abcdef"]);
    }
}
