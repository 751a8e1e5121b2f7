//! [`VolumeSource`]s: the apiserver (ConfigMaps, Secrets, TokenRequest bound to the pod),
//! and fixed maps for component tests.

use super::{DataFuture, VolumeSource};
use futures::future::BoxFuture;
use futures::FutureExt;
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolume, PersistentVolumeClaim, Pod, Secret, ServiceAccount,
};
use kube::api::{Api, PostParams};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Reads volume contents from the apiserver.
#[derive(Clone)]
pub struct ApiVolumeSource {
    client: kube::Client,
    /// Issued tokens by (pod UID, audience): (token, issued, TTL).
    tokens: Arc<Mutex<HashMap<(String, String), CachedToken>>>,
}

/// A token with when it was issued and for how long.
type CachedToken = (String, Instant, Duration);

impl ApiVolumeSource {
    /// A source using `client` (the node's credentials).
    pub fn new(client: kube::Client) -> Self {
        ApiVolumeSource {
            client,
            tokens: Arc::default(),
        }
    }
}

/// Whether a cached token must be renewed: after 80% of its lifetime, as upstream's token
/// manager does.
pub fn needs_refresh(issued: Instant, ttl: Duration, now: Instant) -> bool {
    now.duration_since(issued) >= ttl.mul_f64(0.8)
}

/// A ConfigMap's `data` and `binaryData` as bytes.
pub fn config_map_bytes(cm: &ConfigMap) -> BTreeMap<String, Vec<u8>> {
    let mut out: BTreeMap<String, Vec<u8>> = cm
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
        .collect();
    out.extend(
        cm.binary_data
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.0.clone())),
    );
    out
}

/// A Secret's `data` (and `stringData`, if the server echoed it) as bytes.
pub fn secret_bytes(s: &Secret) -> BTreeMap<String, Vec<u8>> {
    let mut out: BTreeMap<String, Vec<u8>> = s
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    out.extend(
        s.string_data
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone().into_bytes())),
    );
    out
}

impl VolumeSource for ApiVolumeSource {
    fn config_map<'a>(&'a self, ns: &'a str, name: &'a str) -> DataFuture<'a> {
        async move {
            let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), ns);
            Ok(api.get_opt(name).await?.as_ref().map(config_map_bytes))
        }
        .boxed()
    }

    fn secret<'a>(&'a self, ns: &'a str, name: &'a str) -> DataFuture<'a> {
        async move {
            let api: Api<Secret> = Api::namespaced(self.client.clone(), ns);
            Ok(api.get_opt(name).await?.as_ref().map(secret_bytes))
        }
        .boxed()
    }

    fn token<'a>(
        &'a self,
        pod: &'a Pod,
        audience: Option<&'a str>,
        expiration_seconds: i64,
    ) -> BoxFuture<'a, anyhow::Result<String>> {
        async move {
            let key = (
                pod.metadata.uid.clone().unwrap_or_default(),
                audience.unwrap_or_default().to_string(),
            );
            if let Some((token, issued, ttl)) =
                self.tokens.lock().expect("token cache").get(&key).cloned()
            {
                if !needs_refresh(issued, ttl, Instant::now()) {
                    return Ok(token);
                }
            }
            let ns = pod.metadata.namespace.clone().unwrap_or_default();
            let sa = pod
                .spec
                .as_ref()
                .and_then(|s| s.service_account_name.clone())
                .unwrap_or_else(|| "default".into());
            let request = TokenRequest {
                spec: TokenRequestSpec {
                    audiences: audience.map(|a| vec![a.to_string()]).unwrap_or_default(),
                    expiration_seconds: Some(expiration_seconds),
                    bound_object_ref: Some(BoundObjectReference {
                        api_version: Some("v1".into()),
                        kind: Some("Pod".into()),
                        name: pod.metadata.name.clone(),
                        uid: pod.metadata.uid.clone(),
                    }),
                },
                ..Default::default()
            };
            let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), &ns);
            let body = request;
            let issued: TokenRequest = api
                .create_subresource("token", &sa, &PostParams::default(), &body)
                .await?;
            let token = issued.status.map(|s| s.token).unwrap_or_default();
            let ttl = Duration::from_secs(expiration_seconds.max(600) as u64);
            let mut cache = self.tokens.lock().expect("token cache");
            // Expired entries belong to pods that are gone (live pods refresh at 80%).
            cache.retain(|_, (_, issued, ttl)| issued.elapsed() < *ttl);
            cache.insert(key, (token.clone(), Instant::now(), ttl));
            Ok(token)
        }
        .boxed()
    }

    fn claim<'a>(
        &'a self,
        ns: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<Option<PersistentVolumeClaim>>> {
        async move {
            let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), ns);
            Ok(api.get_opt(name).await?)
        }
        .boxed()
    }

    fn persistent_volume<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<Option<PersistentVolume>>> {
        async move {
            let api: Api<PersistentVolume> = Api::all(self.client.clone());
            Ok(api.get_opt(name).await?)
        }
        .boxed()
    }
}

/// Fixed contents, for tests without an apiserver.
#[derive(Debug, Clone, Default)]
pub struct StaticVolumeSource {
    /// ConfigMaps by `ns/name`.
    pub config_maps: HashMap<String, BTreeMap<String, Vec<u8>>>,
    /// Secrets by `ns/name`.
    pub secrets: HashMap<String, BTreeMap<String, Vec<u8>>>,
    /// The token every request gets.
    pub token: String,
    /// PersistentVolumeClaims by `ns/name`.
    pub claims: HashMap<String, PersistentVolumeClaim>,
    /// PersistentVolumes by name.
    pub persistent_volumes: HashMap<String, PersistentVolume>,
}

impl VolumeSource for StaticVolumeSource {
    fn config_map<'a>(&'a self, ns: &'a str, name: &'a str) -> DataFuture<'a> {
        let found = self.config_maps.get(&format!("{ns}/{name}")).cloned();
        async move { Ok(found) }.boxed()
    }

    fn secret<'a>(&'a self, ns: &'a str, name: &'a str) -> DataFuture<'a> {
        let found = self.secrets.get(&format!("{ns}/{name}")).cloned();
        async move { Ok(found) }.boxed()
    }

    fn token<'a>(
        &'a self,
        _pod: &'a Pod,
        _audience: Option<&'a str>,
        _exp: i64,
    ) -> BoxFuture<'a, anyhow::Result<String>> {
        let t = self.token.clone();
        async move { Ok(t) }.boxed()
    }

    fn claim<'a>(
        &'a self,
        ns: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<Option<PersistentVolumeClaim>>> {
        let found = self.claims.get(&format!("{ns}/{name}")).cloned();
        async move { Ok(found) }.boxed()
    }

    fn persistent_volume<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<Option<PersistentVolume>>> {
        let found = self.persistent_volumes.get(name).cloned();
        async move { Ok(found) }.boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_refresh_after_eighty_percent_of_their_lifetime() {
        let t0 = Instant::now();
        let ttl = Duration::from_secs(3600);
        assert!(!needs_refresh(t0, ttl, t0 + Duration::from_secs(2879)));
        assert!(needs_refresh(t0, ttl, t0 + Duration::from_secs(2880)));
    }
}
