//! `authentication` and `authorization` of KubeletConfiguration: who may call the kubelet
//! API on 10250 (their defaults are filled in by [`super::defaults`]).

use component_base::duration::GoDuration;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// `authentication` as written in the file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KubeletAuthentication {
    /// `x509`: client certificates.
    pub x509: Option<X509Authentication>,
    /// `webhook`: bearer tokens checked with TokenReview.
    pub webhook: Option<WebhookAuthentication>,
    /// `anonymous`: requests without credentials.
    pub anonymous: Option<AnonymousAuthentication>,
}

/// `authentication.x509`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct X509Authentication {
    /// `clientCAFile`: CA bundle client certificates must chain to.
    #[serde(rename = "clientCAFile")]
    pub client_ca_file: Option<String>,
}

/// `authentication.webhook`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WebhookAuthentication {
    /// `enabled`.
    pub enabled: Option<bool>,
    /// `cacheTTL`.
    #[serde(rename = "cacheTTL")]
    pub cache_ttl: Option<GoDuration>,
}

/// `authentication.anonymous`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AnonymousAuthentication {
    /// `enabled`.
    pub enabled: Option<bool>,
}

/// `authorization` as written in the file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KubeletAuthorization {
    /// `mode`: `AlwaysAllow` or `Webhook`.
    pub mode: Option<String>,
    /// `webhook`: SubjectAccessReview cache settings.
    pub webhook: Option<WebhookAuthorization>,
}

/// `authorization.webhook`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WebhookAuthorization {
    /// `cacheAuthorizedTTL`.
    #[serde(rename = "cacheAuthorizedTTL")]
    pub cache_authorized_ttl: Option<GoDuration>,
    /// `cacheUnauthorizedTTL`.
    #[serde(rename = "cacheUnauthorizedTTL")]
    pub cache_unauthorized_ttl: Option<GoDuration>,
}

/// The resolved settings of the kubelet API's authentication and authorization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerAuth {
    /// Requests without credentials are `system:anonymous`.
    pub anonymous: bool,
    /// Bearer tokens are checked with TokenReview.
    pub webhook_authn: bool,
    /// How long a TokenReview answer is reused.
    pub authn_cache_ttl: Duration,
    /// Client certificates signed by this CA authenticate (CN user, O groups).
    pub client_ca_file: Option<PathBuf>,
    /// `Webhook` (SubjectAccessReview) rather than `AlwaysAllow`.
    pub webhook_authz: bool,
    /// How long an allowed SubjectAccessReview answer is reused.
    pub authorized_ttl: Duration,
    /// How long a denied SubjectAccessReview answer is reused.
    pub unauthorized_ttl: Duration,
}

impl ServerAuth {
    /// Resolves the file's sections (already filled in by [`super::defaults`]: v1beta1's
    /// defaults with a config file, upstream's legacy open ones without) with the explicit
    /// flags winning.
    pub fn resolve(
        authn: Option<&KubeletAuthentication>,
        authz: Option<&KubeletAuthorization>,
        flags: AuthFlags,
    ) -> anyhow::Result<ServerAuth> {
        let authn = authn.cloned().unwrap_or_default();
        let authz = authz.cloned().unwrap_or_default();
        let webhook = authn.webhook.unwrap_or_default();
        let mode = flags.authorization_mode.or(authz.mode).unwrap_or_default();
        let webhook_authz = match mode.as_str() {
            "Webhook" => true,
            "AlwaysAllow" => false,
            other => anyhow::bail!(
                "authorization.mode: unsupported value {other:?} (want \"AlwaysAllow\" or \"Webhook\")"
            ),
        };
        let webhook_authz_cfg = authz.webhook.unwrap_or_default();
        let ttl = |v: Option<GoDuration>| v.unwrap_or_default().0;
        Ok(ServerAuth {
            anonymous: flags
                .anonymous
                .or(authn.anonymous.and_then(|a| a.enabled))
                .unwrap_or_default(),
            webhook_authn: flags.webhook.or(webhook.enabled).unwrap_or_default(),
            authn_cache_ttl: ttl(webhook.cache_ttl),
            client_ca_file: flags
                .client_ca_file
                .or(authn.x509.and_then(|x| x.client_ca_file).map(PathBuf::from))
                .filter(|p| !p.as_os_str().is_empty()),
            webhook_authz,
            authorized_ttl: ttl(webhook_authz_cfg.cache_authorized_ttl),
            unauthorized_ttl: ttl(webhook_authz_cfg.cache_unauthorized_ttl),
        })
    }
}

/// The command-line flags that override the file's auth sections.
#[derive(Debug, Clone, Default)]
pub struct AuthFlags {
    /// `--anonymous-auth`.
    pub anonymous: Option<bool>,
    /// `--authentication-token-webhook`.
    pub webhook: Option<bool>,
    /// `--client-ca-file`.
    pub client_ca_file: Option<PathBuf>,
    /// `--authorization-mode`.
    pub authorization_mode: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{defaults, KubeletConfiguration};

    fn resolve(c: &KubeletConfiguration, flags: AuthFlags) -> anyhow::Result<ServerAuth> {
        ServerAuth::resolve(c.authentication.as_ref(), c.authorization.as_ref(), flags)
    }

    #[test]
    fn defaults_depend_on_whether_a_file_was_given() {
        let legacy = resolve(&defaults::without_file(), AuthFlags::default()).unwrap();
        assert!(legacy.anonymous && !legacy.webhook_authn && !legacy.webhook_authz);
        let mut file = KubeletConfiguration::default();
        defaults::apply(&mut file);
        let v1beta1 = resolve(&file, AuthFlags::default()).unwrap();
        assert!(!v1beta1.anonymous && v1beta1.webhook_authn && v1beta1.webhook_authz);
        assert_eq!(v1beta1.authn_cache_ttl, Duration::from_secs(120));
        assert_eq!(v1beta1.authorized_ttl, Duration::from_secs(300));
        assert_eq!(v1beta1.unauthorized_ttl, Duration::from_secs(30));
    }

    #[test]
    fn kubeadm_sections_parse_and_flags_win() {
        let mut c = KubeletConfiguration {
            authentication: Some(serde_yaml::from_str(
                "anonymous: {enabled: false}\nwebhook: {enabled: true, cacheTTL: 0s}\nx509: {clientCAFile: /etc/kubernetes/pki/ca.crt}\n",
            )
            .unwrap()),
            authorization: Some(serde_yaml::from_str(
                "mode: Webhook\nwebhook: {cacheAuthorizedTTL: 0s, cacheUnauthorizedTTL: 0s}\n",
            )
            .unwrap()),
            ..Default::default()
        };
        defaults::apply(&mut c);
        let a = resolve(&c, AuthFlags::default()).unwrap();
        assert_eq!(
            a.client_ca_file.as_deref(),
            Some(std::path::Path::new("/etc/kubernetes/pki/ca.crt"))
        );
        assert_eq!(a.authorized_ttl, Duration::from_secs(300), "0s is unset");
        assert_eq!(a.authn_cache_ttl, Duration::from_secs(120), "0s is unset");
        let flags = AuthFlags {
            anonymous: Some(true),
            authorization_mode: Some("AlwaysAllow".into()),
            ..Default::default()
        };
        let a = resolve(&c, flags).unwrap();
        assert!(a.anonymous && !a.webhook_authz);
    }

    #[test]
    fn bad_mode_and_unknown_fields_are_errors_naming_them() {
        let authz = KubeletAuthorization {
            mode: Some("RBAC".into()),
            webhook: None,
        };
        let e = ServerAuth::resolve(None, Some(&authz), AuthFlags::default()).unwrap_err();
        assert!(e.to_string().contains("authorization.mode"), "{e}");
        let e = serde_yaml::from_str::<KubeletAuthentication>("anonymous: {enabeld: true}")
            .unwrap_err()
            .to_string();
        assert!(e.contains("enabeld"), "{e}");
    }
}
