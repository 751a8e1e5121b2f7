//! serviceaccount-token-controller: legacy token Secrets (`kubernetes.io/service-account-token`
//! annotated with `kubernetes.io/service-account.name`) get `token` (a JWT signed with
//! `--service-account-private-key-file`, issuer `kubernetes/serviceaccount`), `ca.crt`
//! (`--root-ca-file`) and `namespace`; a token whose ServiceAccount is gone is deleted, and a
//! deleted token is dropped from its ServiceAccount's `secrets`, as upstream's TokensController.

pub mod jwt;
pub mod legacy_cleaner;

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context as _;
use futures::future::{BoxFuture, FutureExt};
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::ByteString;
use kube::api::{DeleteParams, PostParams, Preconditions};
use kube::Api;
use serde_json::json;

pub use jwt::TokenSigner;

use crate::machinery::context::ControllerContext;
use crate::machinery::informers::{self, Informer};
use crate::machinery::ControllerDescriptor;
use crate::machinery::{informers::handlers as informer, queue::WorkQueue};
use api_helpers::errors;

/// The Secret type of legacy tokens.
pub const SECRET_TYPE: &str = "kubernetes.io/service-account-token";
/// Annotation naming the token's ServiceAccount.
pub const NAME_ANNOTATION: &str = "kubernetes.io/service-account.name";
/// Annotation holding the token's ServiceAccount UID.
pub const UID_ANNOTATION: &str = "kubernetes.io/service-account.uid";
/// The issuer of legacy tokens.
pub const LEGACY_ISSUER: &str = "kubernetes/serviceaccount";
/// Data keys.
pub const TOKEN_KEY: &str = "token";
/// Data key of the root CA bundle.
pub const CA_KEY: &str = "ca.crt";
/// Data key of the namespace.
pub const NAMESPACE_KEY: &str = "namespace";

/// Registry entry.
pub fn descriptor() -> ControllerDescriptor {
    ControllerDescriptor {
        name: "serviceaccount-token",
        enabled_by_default: true,
        start,
    }
}

/// Upstream's legacy claims for `secret` of `sa` (no expiry, no audience).
pub fn legacy_claims(sa: &ServiceAccount, secret: &Secret) -> serde_json::Value {
    let ns = sa.metadata.namespace.as_deref().unwrap_or_default();
    let name = sa.metadata.name.as_deref().unwrap_or_default();
    json!({
        "iss": LEGACY_ISSUER,
        "kubernetes.io/serviceaccount/namespace": ns,
        "kubernetes.io/serviceaccount/secret.name": secret.metadata.name.as_deref().unwrap_or_default(),
        "kubernetes.io/serviceaccount/service-account.name": name,
        "kubernetes.io/serviceaccount/service-account.uid": sa.metadata.uid.as_deref().unwrap_or_default(),
        "sub": format!("system:serviceaccount:{ns}:{name}"),
    })
}

/// What a token Secret lacks: (CA, namespace, token).
pub fn needs(secret: &Secret, root_ca: &[u8]) -> (bool, bool, bool) {
    let data = secret.data.as_ref();
    let get = |k: &str| {
        data.and_then(|d| d.get(k))
            .map(|b| b.0.as_slice())
            .unwrap_or_default()
    };
    (
        !root_ca.is_empty() && get(CA_KEY) != root_ca,
        get(NAMESPACE_KEY).is_empty(),
        get(TOKEN_KEY).is_empty(),
    )
}

/// `secret` completed for `sa`, or `None` when nothing is missing. `token` is called only
/// when a token must be minted.
pub fn completed(
    secret: &Secret,
    sa: &ServiceAccount,
    root_ca: &[u8],
    token: impl FnOnce(&serde_json::Value) -> anyhow::Result<String>,
) -> anyhow::Result<Option<Secret>> {
    let (ca, ns, tok) = needs(secret, root_ca);
    if !ca && !ns && !tok {
        return Ok(None);
    }
    let mut out = secret.clone();
    let data = out.data.get_or_insert_with(BTreeMap::new);
    if ca {
        data.insert(CA_KEY.into(), ByteString(root_ca.to_vec()));
    }
    if ns {
        let namespace = secret.metadata.namespace.clone().unwrap_or_default();
        data.insert(NAMESPACE_KEY.into(), ByteString(namespace.into_bytes()));
    }
    if tok {
        let jwt = token(&legacy_claims(sa, secret))?;
        data.insert(TOKEN_KEY.into(), ByteString(jwt.into_bytes()));
    }
    let annotations = out.metadata.annotations.get_or_insert_with(BTreeMap::new);
    annotations.insert(
        NAME_ANNOTATION.into(),
        sa.metadata.name.clone().unwrap_or_default(),
    );
    annotations.insert(
        UID_ANNOTATION.into(),
        sa.metadata.uid.clone().unwrap_or_default(),
    );
    Ok(Some(out))
}

/// Whether `sa` is the account the secret names (by name, and by UID when it records one).
pub fn owns(sa: &ServiceAccount, secret: &Secret) -> bool {
    let a = secret.metadata.annotations.as_ref();
    let name = a.and_then(|a| a.get(NAME_ANNOTATION)).map(String::as_str);
    let uid = a
        .and_then(|a| a.get(UID_ANNOTATION))
        .filter(|u| !u.is_empty());
    sa.metadata.namespace == secret.metadata.namespace
        && sa.metadata.name.as_deref() == name
        && uid.is_none_or(|u| sa.metadata.uid.as_ref() == Some(u))
}

/// The work items: a token Secret, or a deleted ServiceAccount whose tokens must go.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Secret {
        namespace: String,
        name: String,
        uid: String,
        sa_name: String,
        sa_uid: String,
    },
    DeletedAccount {
        namespace: String,
        name: String,
        uid: String,
    },
}

fn secret_key(s: &Secret) -> Key {
    let a = s.metadata.annotations.as_ref();
    let ann = |k: &str| a.and_then(|a| a.get(k)).cloned().unwrap_or_default();
    Key::Secret {
        namespace: s.metadata.namespace.clone().unwrap_or_default(),
        name: s.metadata.name.clone().unwrap_or_default(),
        uid: s.metadata.uid.clone().unwrap_or_default(),
        sa_name: ann(NAME_ANNOTATION),
        sa_uid: ann(UID_ANNOTATION),
    }
}

/// Whether `s` is a legacy service-account token Secret (of type [`SECRET_TYPE`]).
pub fn is_token(s: &Secret) -> bool {
    s.type_.as_deref() == Some(SECRET_TYPE)
}

struct Controller {
    secrets: Informer<Secret>,
    accounts: Informer<ServiceAccount>,
    client: kube::Client,
    signer: TokenSigner,
    root_ca: Vec<u8>,
}

fn start(ctx: ControllerContext) -> BoxFuture<'static, anyhow::Result<()>> {
    run(ctx).boxed()
}

async fn run(ctx: ControllerContext) -> anyhow::Result<()> {
    let Some(key_file) = ctx.options.service_account_private_key_file.clone() else {
        tracing::info!(
            "serviceaccount-token controller is disabled because there is no private key"
        );
        return Ok(());
    };
    let signer = TokenSigner::load(&key_file)?;
    let root_ca = crate::machinery::ca_bundle::load_ca(&ctx.options)?.into_bytes();
    let queue: WorkQueue<Key> =
        WorkQueue::new().with_metrics(&ctx.metrics, "serviceaccount_tokens_service");
    let q = queue.clone();
    // Secrets and ServiceAccounts from the shared informers; only token Secrets are acted
    // on (upstream's FilterFunc on the shared Secrets informer).
    let secrets = ctx.informers().informer::<Secret>();
    informer::on(&secrets, move |s: &Secret, _| {
        if is_token(s) {
            q.add(secret_key(s));
        }
    });
    let q = queue.clone();
    let accounts = ctx.informers().informer::<ServiceAccount>();
    informer::on(&accounts, move |sa: &ServiceAccount, change| {
        if change == informer::Change::Deleted {
            q.add(Key::DeletedAccount {
                namespace: sa.metadata.namespace.clone().unwrap_or_default(),
                name: sa.metadata.name.clone().unwrap_or_default(),
                uid: sa.metadata.uid.clone().unwrap_or_default(),
            });
        }
    });
    informers::wait_synced(&ctx.shutdown, async {
        secrets.wait_synced().await;
        accounts.wait_synced().await;
    })
    .await?;
    tracing::info!(
        alg = signer.algorithm(),
        kid = signer.key_id(),
        "starting serviceaccount-token controller"
    );
    // Upstream runs this controller with the manager's own credentials: it mints tokens.
    let controller = Arc::new(Controller {
        secrets,
        accounts,
        client: ctx.client.clone(),
        signer,
        root_ca,
    });
    queue
        .run(
            "serviceaccount-token",
            ctx.options.concurrency.serviceaccount_token,
            ctx.shutdown.clone(),
            move |key: Key| {
                let c = controller.clone();
                async move { c.sync(key).await }
            },
        )
        .await;
    Ok(())
}

impl Controller {
    async fn sync(&self, key: Key) -> anyhow::Result<()> {
        match key {
            Key::DeletedAccount {
                namespace,
                name,
                uid,
            } => {
                if self
                    .account(&namespace, &name, &uid, false)
                    .await?
                    .is_some()
                {
                    return Ok(());
                }
                let tokens = self.secrets.list_namespace(&namespace);
                let gone = ServiceAccount {
                    metadata: kube::api::ObjectMeta {
                        namespace: Some(namespace),
                        name: Some(name),
                        uid: Some(uid).filter(|u| !u.is_empty()),
                        ..Default::default()
                    },
                    ..Default::default()
                };
                for s in tokens {
                    if is_token(&s) && owns(&gone, &s) {
                        self.delete_token(&s).await?;
                    }
                }
                Ok(())
            }
            Key::Secret {
                namespace,
                name,
                sa_name,
                sa_uid,
                ..
            } => {
                let cached = self.secrets.get(&namespace, &name).filter(|s| is_token(s));
                let Some(secret) = cached else {
                    // Deleted: drop it from its account's `secrets`.
                    return self
                        .remove_reference(&namespace, &sa_name, &sa_uid, &name)
                        .await;
                };
                match self.account(&namespace, &sa_name, &sa_uid, true).await? {
                    None => {
                        tracing::info!(secret = %format!("{namespace}/{name}"), serviceaccount = %sa_name, "service account does not exist, deleting token");
                        self.delete_token(&secret).await
                    }
                    Some(sa) => self.populate(&secret, &sa).await,
                }
            }
        }
    }

    /// The ServiceAccount `ns/name` (with `uid` when not empty), from the cache or, when
    /// `live`, the apiserver on a cache miss.
    async fn account(
        &self,
        ns: &str,
        name: &str,
        uid: &str,
        live: bool,
    ) -> anyhow::Result<Option<Arc<ServiceAccount>>> {
        if name.is_empty() {
            return Ok(None);
        }
        let matches =
            |sa: &ServiceAccount| uid.is_empty() || sa.metadata.uid.as_deref() == Some(uid);
        if let Some(sa) = self.accounts.get(ns, name) {
            if matches(&sa) {
                return Ok(Some(sa));
            }
        }
        if !live {
            return Ok(None);
        }
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), ns);
        match api.get_opt(name).await.context("getting service account")? {
            Some(sa) if matches(&sa) => Ok(Some(Arc::new(sa))),
            _ => Ok(None),
        }
    }

    async fn delete_token(&self, secret: &Secret) -> anyhow::Result<()> {
        let ns = secret.metadata.namespace.as_deref().unwrap_or_default();
        let name = secret.metadata.name.as_deref().unwrap_or_default();
        let params = DeleteParams {
            preconditions: secret.metadata.uid.clone().map(|uid| Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
            ..Default::default()
        };
        match Api::<Secret>::namespaced(self.client.clone(), ns)
            .delete(name, &params)
            .await
        {
            Ok(_) => Ok(()),
            // Gone already, or replaced by another Secret of that name (UID precondition).
            Err(e) if errors::is_not_found(&e) || errors::is_conflict(&e) => Ok(()),
            Err(e) => Err(anyhow::Error::new(e).context(format!("deleting token {ns}/{name}"))),
        }
    }

    async fn populate(&self, cached: &Secret, sa: &ServiceAccount) -> anyhow::Result<()> {
        if needs(cached, &self.root_ca) == (false, false, false) {
            return Ok(());
        }
        let ns = cached.metadata.namespace.as_deref().unwrap_or_default();
        let name = cached.metadata.name.as_deref().unwrap_or_default();
        let api: Api<Secret> = Api::namespaced(self.client.clone(), ns);
        let Some(live) = api.get_opt(name).await.context("getting token secret")? else {
            return Ok(());
        };
        if live.metadata.resource_version != cached.metadata.resource_version {
            // The update event brings the newer copy.
            return Ok(());
        }
        let Some(update) = completed(&live, sa, &self.root_ca, |c| self.signer.sign(c))? else {
            return Ok(());
        };
        match api.replace(name, &PostParams::default(), &update).await {
            Ok(_) => {
                tracing::info!(secret = %format!("{ns}/{name}"), "populated service account token");
                Ok(())
            }
            Err(e) if errors::is_conflict(&e) || errors::is_not_found(&e) => Ok(()),
            Err(e) => Err(anyhow::Error::new(e).context(format!("updating token {ns}/{name}"))),
        }
    }

    async fn remove_reference(
        &self,
        ns: &str,
        sa_name: &str,
        sa_uid: &str,
        secret: &str,
    ) -> anyhow::Result<()> {
        if self.account(ns, sa_name, sa_uid, false).await?.is_none() {
            return Ok(());
        }
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), ns);
        for _ in 0..5 {
            let Some(mut sa) = api
                .get_opt(sa_name)
                .await
                .context("getting service account")?
            else {
                return Ok(());
            };
            if !sa_uid.is_empty() && sa.metadata.uid.as_deref() != Some(sa_uid) {
                return Ok(());
            }
            let refs = sa.secrets.take().unwrap_or_default();
            if !refs.iter().any(|r| r.name.as_deref() == Some(secret)) {
                return Ok(());
            }
            sa.secrets = Some(
                refs.into_iter()
                    .filter(|r| r.name.as_deref() != Some(secret))
                    .collect(),
            );
            match api.replace(sa_name, &PostParams::default(), &sa).await {
                Ok(_) => return Ok(()),
                Err(e) if errors::is_conflict(&e) => continue,
                Err(e) if errors::is_not_found(&e) => return Ok(()),
                Err(e) => return Err(anyhow::Error::new(e).context("removing secret reference")),
            }
        }
        anyhow::bail!("removing secret reference {secret} from {ns}/{sa_name}: conflicts")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa() -> ServiceAccount {
        let mut sa = ServiceAccount::default();
        sa.metadata.namespace = Some("team".into());
        sa.metadata.name = Some("builder".into());
        sa.metadata.uid = Some("uid-1".into());
        sa
    }

    fn token_secret(uid_annotation: Option<&str>) -> Secret {
        let mut s = Secret::default();
        s.metadata.namespace = Some("team".into());
        s.metadata.name = Some("builder-token".into());
        s.type_ = Some(SECRET_TYPE.into());
        let mut a = BTreeMap::from([(NAME_ANNOTATION.to_string(), "builder".to_string())]);
        if let Some(u) = uid_annotation {
            a.insert(UID_ANNOTATION.into(), u.into());
        }
        s.metadata.annotations = Some(a);
        s
    }

    #[test]
    fn only_token_typed_secrets_are_acted_on() {
        let s = token_secret(None);
        assert!(is_token(&s));
        // An Opaque Secret annotated with an account name is not a token of it.
        let mut opaque = s.clone();
        opaque.type_ = Some("Opaque".into());
        assert!(!is_token(&opaque));
        opaque.type_ = None;
        assert!(!is_token(&opaque));
    }

    #[test]
    fn fills_token_ca_namespace_and_annotations() {
        let s = token_secret(None);
        let out = completed(&s, &sa(), b"CA", |c| {
            Ok(format!("jwt-for-{}", c["sub"].as_str().unwrap()))
        })
        .unwrap()
        .unwrap();
        let data = out.data.unwrap();
        assert_eq!(
            data[TOKEN_KEY].0,
            b"jwt-for-system:serviceaccount:team:builder"
        );
        assert_eq!(data[CA_KEY].0, b"CA");
        assert_eq!(data[NAMESPACE_KEY].0, b"team");
        assert_eq!(out.metadata.annotations.unwrap()[UID_ANNOTATION], "uid-1");
    }

    #[test]
    fn only_missing_or_stale_fields_are_written() {
        let mut s = token_secret(Some("uid-1"));
        s.data = Some(BTreeMap::from([
            (TOKEN_KEY.to_string(), ByteString(b"old".to_vec())),
            (CA_KEY.to_string(), ByteString(b"CA".to_vec())),
            (NAMESPACE_KEY.to_string(), ByteString(b"team".to_vec())),
        ]));
        let never = |_: &serde_json::Value| -> anyhow::Result<String> { panic!("no token needed") };
        assert!(completed(&s, &sa(), b"CA", never).unwrap().is_none());
        // A rotated root CA is rewritten; the token is kept.
        let out = completed(&s, &sa(), b"NEW", never).unwrap().unwrap();
        let data = out.data.unwrap();
        assert_eq!(data[CA_KEY].0, b"NEW");
        assert_eq!(data[TOKEN_KEY].0, b"old");
        // Without a root CA, ca.crt is left alone.
        assert!(completed(&s, &sa(), b"", never).unwrap().is_none());
    }

    #[test]
    fn ownership_by_name_and_recorded_uid() {
        assert!(owns(&sa(), &token_secret(None)));
        assert!(owns(&sa(), &token_secret(Some("uid-1"))));
        assert!(
            !owns(&sa(), &token_secret(Some("uid-0"))),
            "a recreated account does not own old tokens"
        );
        let mut other = sa();
        other.metadata.namespace = Some("elsewhere".into());
        assert!(!owns(&other, &token_secret(None)));
    }

    #[test]
    fn legacy_claims_as_upstream() {
        let c = legacy_claims(&sa(), &token_secret(None));
        assert_eq!(c["iss"], "kubernetes/serviceaccount");
        assert_eq!(c["sub"], "system:serviceaccount:team:builder");
        assert_eq!(
            c["kubernetes.io/serviceaccount/secret.name"],
            "builder-token"
        );
        assert_eq!(
            c["kubernetes.io/serviceaccount/service-account.uid"],
            "uid-1"
        );
        assert!(c.get("exp").is_none());
    }
}
