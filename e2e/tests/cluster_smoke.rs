//! The harness itself against the real control plane: the apiserver answers, the generated
//! kubeconfigs work for kubectl and kube-rs, and each component identity is what the
//! apiserver's authenticators and authorizers see.

use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams, PostParams};

use e2e::Identity;

#[tokio::test]
async fn apiserver_answers_and_kubectl_works() {
    let cluster = e2e::cluster_or_skip!();

    let version = cluster.client().apiserver_version().await.unwrap();
    assert_eq!(version.major, "1", "{version:?}");

    let namespaces: Api<Namespace> = Api::all(cluster.client());
    let names: Vec<String> = namespaces
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|ns| ns.metadata.name)
        .collect();
    for expected in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }

    if cluster.assets().kubectl.is_none() {
        e2e::skip_test!("no kubectl (set KUBEBUILDER_ASSETS)");
    }
    let out = cluster.kubectl(&["get", "ns", "-o", "name"]).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.lines().any(|l| l == "namespace/kube-system"),
        "{stdout}"
    );
}

/// Who the apiserver says we are, via SelfSubjectReview.
async fn whoami(client: kube::Client) -> (String, Vec<String>) {
    let reviews: Api<SelfSubjectReview> = Api::all(client);
    let review = reviews
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .unwrap();
    let user = review.status.unwrap().user_info.unwrap();
    (user.username.unwrap(), user.groups.unwrap_or_default())
}

async fn can(client: kube::Client, verb: &str, group: &str, resource: &str, ns: &str) -> bool {
    let reviews: Api<SelfSubjectAccessReview> = Api::all(client);
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                verb: Some(verb.into()),
                group: Some(group.into()),
                resource: Some(resource.into()),
                namespace: Some(ns.into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let answer = reviews
        .create(&PostParams::default(), &review)
        .await
        .unwrap();
    answer.status.unwrap().allowed
}

#[tokio::test]
async fn component_identities_are_authenticated_and_authorized_as_upstream() {
    let cluster = e2e::cluster_or_skip!();

    let cases = [
        (Identity::Admin, "kubernetes-admin", Some("system:masters")),
        (Identity::Scheduler, "system:kube-scheduler", None),
        (
            Identity::ControllerManager,
            "system:kube-controller-manager",
            None,
        ),
        (Identity::KubeProxy, "system:kube-proxy", None),
        (
            Identity::Node("node-a".into()),
            "system:node:node-a",
            Some("system:nodes"),
        ),
    ];
    for (identity, user, group) in cases {
        let (name, groups) = whoami(cluster.client_for(&identity).await.unwrap()).await;
        assert_eq!(name, user);
        assert!(
            groups.iter().any(|g| g == "system:authenticated"),
            "{groups:?}"
        );
        if let Some(group) = group {
            assert!(groups.iter().any(|g| g == group), "{user}: {groups:?}");
        }
    }

    // Bootstrap RBAC: the scheduler may bind pods and hold its Lease; kube-proxy may not
    // create pods.
    let scheduler = cluster.client_for(&Identity::Scheduler).await.unwrap();
    assert!(can(scheduler.clone(), "create", "", "pods/binding", "default").await);
    assert!(
        can(
            scheduler,
            "update",
            "coordination.k8s.io",
            "leases",
            "kube-system"
        )
        .await
    );
    let proxy = cluster.client_for(&Identity::KubeProxy).await.unwrap();
    assert!(
        can(
            proxy.clone(),
            "list",
            "discovery.k8s.io",
            "endpointslices",
            "default"
        )
        .await
    );
    assert!(!can(proxy, "create", "", "pods", "default").await);
}
