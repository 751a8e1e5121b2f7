//! Bootstrap-token Secrets (`bootstrap.kubernetes.io/token` in `kube-system`) as
//! `k8s.io/cluster-bootstrap` reads them.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;

/// The Secret type.
pub const SECRET_TYPE: &str = "bootstrap.kubernetes.io/token";
/// Where bootstrap tokens live.
pub const NAMESPACE: &str = "kube-system";
/// Secret name prefix; the rest is the token ID.
pub const NAME_PREFIX: &str = "bootstrap-token-";
/// Data key of the token ID.
pub const ID_KEY: &str = "token-id";
/// Data key of the token secret.
pub const SECRET_KEY: &str = "token-secret";
/// Data key of the RFC 3339 expiry.
pub const EXPIRATION_KEY: &str = "expiration";
/// Data key that allows the token to sign cluster-info.
pub const USAGE_SIGNING_KEY: &str = "usage-bootstrap-signing";

/// Whether `secret` is a bootstrap token these controllers act on: of type [`SECRET_TYPE`]
/// in [`NAMESPACE`] (upstream's handler filter over the shared Secrets informer).
pub fn is_bootstrap_token(secret: &Secret) -> bool {
    secret.metadata.namespace.as_deref() == Some(NAMESPACE)
        && secret.type_.as_deref() == Some(SECRET_TYPE)
}

/// The Secret's data value at `key` as text ("" when absent).
pub fn data(secret: &Secret, key: &str) -> String {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        .or_else(|| {
            secret
                .string_data
                .as_ref()
                .and_then(|d| d.get(key))
                .cloned()
        })
        .unwrap_or_default()
}

/// Upstream's `GetExpiration`: time left before expiry (`None` without an expiry), and
/// whether it has expired — an unparseable expiry counts as expired.
pub fn expiration(secret: &Secret, now: jiff::Timestamp) -> (Option<Duration>, bool) {
    let raw = data(secret, EXPIRATION_KEY);
    if raw.is_empty() {
        return (None, false);
    }
    let Ok(at) = raw.parse::<jiff::Timestamp>() else {
        return (None, true);
    };
    match at.duration_since(now).try_into() {
        Ok(left) if left > Duration::ZERO => (Some(left), false),
        _ => (None, true),
    }
}

/// The token ID in a Secret name `bootstrap-token-<id>` (six of `[a-z0-9]`).
pub fn id_from_name(name: &str) -> Option<&str> {
    let id = name.strip_prefix(NAME_PREFIX)?;
    (id.len() == 6
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
    .then_some(id)
}

/// Upstream's `validateSecretForSigning`: (token ID, token secret) when the Secret is a
/// well-formed, unexpired token allowed to sign.
pub fn for_signing(secret: &Secret, now: jiff::Timestamp) -> Option<(String, String)> {
    if secret.type_.as_deref() != Some(SECRET_TYPE) {
        return None;
    }
    let name_id = id_from_name(secret.metadata.name.as_deref()?)?;
    let id = data(secret, ID_KEY);
    if id.is_empty() || id != name_id {
        return None;
    }
    let token = data(secret, SECRET_KEY);
    if token.is_empty() || expiration(secret, now).1 {
        return None;
    }
    (data(secret, USAGE_SIGNING_KEY) == "true").then_some((id, token))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use std::collections::BTreeMap;

    /// A bootstrap-token Secret named after `id` with `data`.
    pub fn secret(id: &str, data: &[(&str, &str)]) -> Secret {
        let mut s = Secret::default();
        s.metadata.name = Some(format!("{NAME_PREFIX}{id}"));
        s.metadata.namespace = Some(NAMESPACE.into());
        s.type_ = Some(SECRET_TYPE.into());
        s.data = Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                .collect::<BTreeMap<_, _>>(),
        );
        s
    }

    #[test]
    fn only_kube_system_secrets_of_the_token_type_are_bootstrap_tokens() {
        let s = secret("abcdef", &[]);
        assert!(is_bootstrap_token(&s));
        let mut elsewhere = s.clone();
        elsewhere.metadata.namespace = Some("default".into());
        assert!(!is_bootstrap_token(&elsewhere));
        let mut opaque = s.clone();
        opaque.type_ = Some("Opaque".into());
        assert!(!is_bootstrap_token(&opaque));
        opaque.type_ = None;
        assert!(!is_bootstrap_token(&opaque));
    }

    #[test]
    fn expiry_as_cluster_bootstrap() {
        let now: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(expiration(&secret("abcdef", &[]), now), (None, false));
        let s = secret("abcdef", &[(EXPIRATION_KEY, "2026-01-01T01:00:00Z")]);
        assert_eq!(
            expiration(&s, now),
            (Some(Duration::from_secs(3600)), false)
        );
        let s = secret("abcdef", &[(EXPIRATION_KEY, "2025-12-31T23:59:59Z")]);
        assert_eq!(expiration(&s, now), (None, true));
        let s = secret("abcdef", &[(EXPIRATION_KEY, "tomorrow")]);
        assert_eq!(
            expiration(&s, now),
            (None, true),
            "unparseable counts as expired"
        );
        let s = secret("abcdef", &[(EXPIRATION_KEY, "2026-01-01T03:00:00+02:00")]);
        assert_eq!(
            expiration(&s, now),
            (Some(Duration::from_secs(3600)), false)
        );
    }

    #[test]
    fn signing_tokens_need_matching_id_secret_usage_and_no_expiry() {
        let now = jiff::Timestamp::now();
        let good = [
            (ID_KEY, "abcdef"),
            (SECRET_KEY, "0123456789abcdef"),
            (USAGE_SIGNING_KEY, "true"),
        ];
        assert_eq!(
            for_signing(&secret("abcdef", &good), now),
            Some(("abcdef".into(), "0123456789abcdef".into()))
        );
        assert!(
            for_signing(&secret("zzzzzz", &good), now).is_none(),
            "id differs from name"
        );
        assert!(for_signing(&secret("ABCDEF", &good), now).is_none());
        let no_usage = [(ID_KEY, "abcdef"), (SECRET_KEY, "0123456789abcdef")];
        assert!(for_signing(&secret("abcdef", &no_usage), now).is_none());
        let expired = [
            (ID_KEY, "abcdef"),
            (SECRET_KEY, "0123456789abcdef"),
            (USAGE_SIGNING_KEY, "true"),
            (EXPIRATION_KEY, "2000-01-01T00:00:00Z"),
        ];
        assert!(for_signing(&secret("abcdef", &expired), now).is_none());
    }
}
