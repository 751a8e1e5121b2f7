//! Token controllers against a real apiserver: a legacy service-account token Secret is
//! filled (token, ca.crt, namespace) and the token authenticates; tokens of missing or
//! deleted accounts are deleted; bootstrap-signer signs cluster-info with a signing
//! bootstrap token and token-cleaner deletes expired ones (and the signature goes with them).

#[path = "lifecycle_support.rs"]
mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, ServiceAccount};
use kube::api::{DeleteParams, PostParams};
use kube::Api;
use serde_json::json;

fn token_secret(name: &str, account: &str) -> Secret {
    serde_json::from_value(json!({
        "metadata": {"name": name, "annotations": {"kubernetes.io/service-account.name": account}},
        "type": "kubernetes.io/service-account-token",
    }))
    .unwrap()
}

fn bootstrap_token(id: &str, secret: &str, expiration: Option<String>) -> Secret {
    let mut data = BTreeMap::from([
        ("token-id".to_string(), id.to_string()),
        ("token-secret".to_string(), secret.to_string()),
        ("usage-bootstrap-signing".to_string(), "true".to_string()),
        (
            "usage-bootstrap-authentication".to_string(),
            "true".to_string(),
        ),
    ]);
    if let Some(e) = expiration {
        data.insert("expiration".into(), e);
    }
    serde_json::from_value(json!({
        "metadata": {"name": format!("bootstrap-token-{id}"), "namespace": "kube-system"},
        "type": "bootstrap.kubernetes.io/token",
        "stringData": data,
    }))
    .unwrap()
}

fn rfc3339_in(secs: i64) -> String {
    (jiff::Timestamp::now() + jiff::SignedDuration::from_secs(secs))
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

#[tokio::test]
async fn legacy_and_bootstrap_tokens() {
    let cluster = e2e::cluster_or_skip!();
    let admin = cluster.client();
    let mut kcm = support::start_kcm(
        &cluster,
        "serviceaccount-token,tokencleaner,bootstrapsigner",
        &[],
    );
    let pp = PostParams::default();
    Api::<Namespace>::all(admin.clone())
        .create(
            &pp,
            &serde_json::from_value(json!({"metadata": {"name": "tok"}})).unwrap(),
        )
        .await
        .unwrap();
    let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), "tok");
    let sa = accounts
        .create(
            &pp,
            &serde_json::from_value(json!({"metadata": {"name": "builder"}})).unwrap(),
        )
        .await
        .unwrap();
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), "tok");
    secrets
        .create(&pp, &token_secret("builder-token", "builder"))
        .await
        .unwrap();
    secrets
        .create(&pp, &token_secret("orphan-token", "nobody"))
        .await
        .unwrap();

    // 1. The legacy token Secret is completed.
    let filled = support::eventually(
        "token populated",
        Duration::from_secs(30),
        &mut kcm,
        || async {
            let s = secrets.get("builder-token").await?;
            Ok(s.data
                .as_ref()
                .is_some_and(|d| d.contains_key("token"))
                .then_some(s))
        },
    )
    .await;
    let data = filled.data.clone().unwrap();
    let ca = std::fs::read(cluster.pki().ca_cert()).unwrap();
    assert_eq!(data["ca.crt"].0, ca);
    assert_eq!(data["namespace"].0, b"tok");
    let annotations = filled.metadata.annotations.clone().unwrap();
    assert_eq!(
        annotations["kubernetes.io/service-account.uid"],
        sa.metadata.uid.clone().unwrap()
    );
    let jwt = String::from_utf8(data["token"].0.clone()).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(jwt.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["iss"], "kubernetes/serviceaccount");
    assert_eq!(claims["sub"], "system:serviceaccount:tok:builder");

    // The apiserver accepts the token (legacy issuer, key from --service-account-key-file).
    let mut config = kube::Config::new(cluster.url().parse().unwrap());
    let (_, ca_block) = x509_parser::pem::parse_x509_pem(&ca).unwrap();
    config.root_cert = Some(vec![ca_block.contents]);
    config.auth_info.token = Some(jwt.into());
    let as_sa = kube::Client::try_from(config).unwrap();
    let review: SelfSubjectReview = Api::all(as_sa)
        .create(&pp, &SelfSubjectReview::default())
        .await
        .expect("the legacy token authenticates");
    let user = review.status.and_then(|s| s.user_info).unwrap();
    assert_eq!(
        user.username.as_deref(),
        Some("system:serviceaccount:tok:builder")
    );

    // 2. A token for an account that does not exist is deleted; so are the tokens of a
    //    deleted account.
    support::eventually(
        "orphan deleted",
        Duration::from_secs(30),
        &mut kcm,
        || async {
            Ok(secrets
                .get_opt("orphan-token")
                .await?
                .is_none()
                .then_some(()))
        },
    )
    .await;
    accounts
        .delete("builder", &DeleteParams::default())
        .await
        .unwrap();
    support::eventually(
        "token of deleted account deleted",
        Duration::from_secs(30),
        &mut kcm,
        || async {
            Ok(secrets
                .get_opt("builder-token")
                .await?
                .is_none()
                .then_some(()))
        },
    )
    .await;

    // 3. bootstrap-signer signs cluster-info with signing tokens.
    let kubeconfig = "apiVersion: v1\nkind: Config\nclusters:\n- name: \"\"\n  cluster:\n    server: https://127.0.0.1:6443\n";
    let cms: Api<ConfigMap> = Api::namespaced(admin.clone(), "kube-public");
    cms.create(
        &pp,
        &serde_json::from_value(json!({
            "metadata": {"name": "cluster-info"},
            "data": {"kubeconfig": kubeconfig},
        }))
        .unwrap(),
    )
    .await
    .unwrap();
    let system: Api<Secret> = Api::namespaced(admin.clone(), "kube-system");
    system
        .create(&pp, &bootstrap_token("abcdef", "0123456789abcdef", None))
        .await
        .unwrap();
    system
        .create(
            &pp,
            &bootstrap_token("short0", "fedcba9876543210", Some(rfc3339_in(4))),
        )
        .await
        .unwrap();
    system
        .create(
            &pp,
            &bootstrap_token("old000", "aaaaaaaaaaaaaaaa", Some(rfc3339_in(-60))),
        )
        .await
        .unwrap();
    let signed = support::eventually(
        "cluster-info signed",
        Duration::from_secs(30),
        &mut kcm,
        || async {
            let cm = cms.get("cluster-info").await?;
            let d = cm.data.unwrap_or_default();
            Ok(d.contains_key("jws-kubeconfig-abcdef").then_some(d))
        },
    )
    .await;
    // Verify as a joining node does: reattach the payload, check HS256 with the token secret.
    let sig = &signed["jws-kubeconfig-abcdef"];
    let parts: Vec<&str> = sig.split('.').collect();
    assert_eq!(parts.len(), 3);
    assert!(parts[1].is_empty(), "detached payload");
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header: serde_json::Value = serde_json::from_slice(&b64.decode(parts[0]).unwrap()).unwrap();
    assert_eq!(header, json!({"alg": "HS256", "kid": "abcdef"}));
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"0123456789abcdef");
    let input = format!("{}.{}", parts[0], b64.encode(kubeconfig));
    ring::hmac::verify(&key, input.as_bytes(), &b64.decode(parts[2]).unwrap())
        .expect("signature verifies with the token secret");
    assert!(
        !signed.contains_key("jws-kubeconfig-old000"),
        "expired tokens do not sign"
    );

    // 4. token-cleaner deletes the expired token at once and the short one when it expires;
    //    its signature leaves cluster-info.
    support::eventually(
        "expired token deleted",
        Duration::from_secs(30),
        &mut kcm,
        || async {
            Ok(system
                .get_opt("bootstrap-token-old000")
                .await?
                .is_none()
                .then_some(()))
        },
    )
    .await;
    support::eventually(
        "short token deleted on expiry",
        Duration::from_secs(30),
        &mut kcm,
        || async {
            Ok(system
                .get_opt("bootstrap-token-short0")
                .await?
                .is_none()
                .then_some(()))
        },
    )
    .await;
    let d = support::eventually(
        "short token's signature removed",
        Duration::from_secs(30),
        &mut kcm,
        || async {
            let d = cms.get("cluster-info").await?.data.unwrap_or_default();
            Ok((!d.contains_key("jws-kubeconfig-short0")).then_some(d))
        },
    )
    .await;
    assert!(d.contains_key("jws-kubeconfig-abcdef"));
    assert!(
        system
            .get_opt("bootstrap-token-abcdef")
            .await
            .unwrap()
            .is_some(),
        "unexpiring token kept"
    );
}
