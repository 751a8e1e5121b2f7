//! A new namespace gets its `default` ServiceAccount and `kube-root-ca.crt`, so a pod is
//! admitted; deleting the namespace removes its content (core, apps, a CRD's objects) and
//! the namespace itself, pods first (OrderedNamespaceDeletion).

#[path = "lifecycle_support.rs"]
mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret, ServiceAccount};
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use kube::Api;
use serde_json::json;

fn namespace(name: &str) -> Namespace {
    Namespace {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        ..Default::default()
    }
}

#[tokio::test]
async fn new_namespace_gets_service_account_and_ca_then_admits_pods() {
    let cluster = e2e::cluster_or_skip!();
    let mut kcm = support::start_kcm(
        &cluster,
        "serviceaccount,root-ca-certificate-publisher",
        &[],
    );
    let client = cluster.client();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace("team-a"))
        .await
        .unwrap();

    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "team-a");
    support::eventually(
        "default ServiceAccount in team-a",
        Duration::from_secs(30),
        &mut kcm,
        || async { Ok(sas.get_opt("default").await?) },
    )
    .await;

    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "team-a");
    let cm = support::eventually(
        "kube-root-ca.crt in team-a",
        Duration::from_secs(30),
        &mut kcm,
        || async { Ok(cms.get_opt("kube-root-ca.crt").await?) },
    )
    .await;
    let ca = std::fs::read_to_string(cluster.pki().ca_cert()).unwrap();
    assert_eq!(cm.data.unwrap()["ca.crt"], ca);

    // Tampering is repaired.
    let mut tampered = cms.get("kube-root-ca.crt").await.unwrap();
    tampered.data = Some([("ca.crt".to_string(), "junk".to_string())].into());
    cms.replace("kube-root-ca.crt", &PostParams::default(), &tampered)
        .await
        .unwrap();
    support::eventually(
        "kube-root-ca.crt repaired",
        Duration::from_secs(30),
        &mut kcm,
        || async {
            Ok(cms
                .get("kube-root-ca.crt")
                .await?
                .data
                .filter(|d| d["ca.crt"] == ca))
        },
    )
    .await;

    // The ServiceAccount admission plugin now admits a pod (it refuses one without the SA).
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}
    }))
    .unwrap();
    let created = Api::<Pod>::namespaced(client.clone(), "team-a")
        .create(&PostParams::default(), &pod)
        .await
        .unwrap();
    assert_eq!(
        created.spec.unwrap().service_account_name.as_deref(),
        Some("default")
    );

    // A deleted default ServiceAccount comes back.
    sas.delete("default", &DeleteParams::default())
        .await
        .unwrap();
    support::eventually(
        "default ServiceAccount recreated",
        Duration::from_secs(30),
        &mut kcm,
        || async {
            Ok(sas
                .get_opt("default")
                .await?
                .filter(|sa| sa.metadata.deletion_timestamp.is_none()))
        },
    )
    .await;
    kcm.terminate(Duration::from_secs(10)).unwrap();
}

#[tokio::test]
async fn deleted_namespace_is_emptied_and_finalized() {
    let cluster = e2e::cluster_or_skip!();
    let client = cluster.client();
    // A CRD whose objects live in the namespace.
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}
    });
    let out = cluster.kubectl(&["apply", "-f", "-"]);
    drop(out);
    let dir = tempfile::tempdir().unwrap();
    let crd_file = dir.path().join("crd.json");
    std::fs::write(&crd_file, crd.to_string()).unwrap();
    let out = cluster
        .kubectl(&["apply", "-f", crd_file.to_str().unwrap()])
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut kcm = support::start_kcm(
        &cluster,
        "serviceaccount,root-ca-certificate-publisher,namespace",
        &[],
    );
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace("doomed"))
        .await
        .unwrap();
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "doomed");
    support::eventually(
        "default ServiceAccount in doomed",
        Duration::from_secs(30),
        &mut kcm,
        || async { Ok(sas.get_opt("default").await?) },
    )
    .await;

    let objects = dir.path().join("objects.json");
    let list = json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "namespace": "doomed"}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "doomed"}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "svc", "namespace": "doomed"}, "spec": {"ports": [{"port": 80}]}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "doomed"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": "doomed"},
            "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}},
        {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w", "namespace": "doomed"}},
        {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "held", "namespace": "doomed", "finalizers": ["example.com/hold"]}}
    ]});
    std::fs::write(&objects, list.to_string()).unwrap();
    let out = cluster
        .kubectl(&["create", "-f", objects.to_str().unwrap()])
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .delete("doomed", &DeleteParams::default())
        .await
        .unwrap();

    // While a finalizer holds one object, the namespace stays and says why.
    let ns = support::eventually(
        "NamespaceFinalizersRemaining=True",
        Duration::from_secs(60),
        &mut kcm,
        || async {
            let ns = namespaces.get("doomed").await?;
            let held = ns
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| {
                    c.iter()
                        .any(|c| c.type_ == "NamespaceFinalizersRemaining" && c.status == "True")
                });
            Ok(held.then_some(ns))
        },
    )
    .await;
    let conditions = ns.status.unwrap().conditions.unwrap();
    let remaining = conditions
        .iter()
        .find(|c| c.type_ == "NamespaceContentRemaining")
        .unwrap();
    assert_eq!(remaining.status, "True");
    assert!(
        remaining
            .message
            .as_deref()
            .unwrap()
            .contains("widgets.example.com has 1 resource instances"),
        "{remaining:?}"
    );
    assert!(Api::<Secret>::namespaced(client.clone(), "doomed")
        .get_opt("s")
        .await
        .unwrap()
        .is_none());
    assert!(Api::<ConfigMap>::namespaced(client.clone(), "doomed")
        .get_opt("cm")
        .await
        .unwrap()
        .is_none());

    // Release the finalizer: the namespace goes.
    let out = cluster
        .kubectl(&[
            "patch",
            "-n",
            "doomed",
            "widgets.example.com",
            "held",
            "--type=merge",
            "-p",
            r#"{"metadata":{"finalizers":null}}"#,
        ])
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    support::eventually(
        "namespace doomed deleted",
        Duration::from_secs(60),
        &mut kcm,
        || async { Ok(namespaces.get_opt("doomed").await?.is_none().then_some(())) },
    )
    .await;
    kcm.terminate(Duration::from_secs(10)).unwrap();
}

/// OrderedNamespaceDeletion (conformance: "namespace deletion should delete pod first"): a
/// pod held by a finalizer keeps the namespace's other content (a ConfigMap) in place, with
/// the deletion conditions reported, until the pod goes; then the rest goes and the
/// namespace with it.
#[tokio::test]
async fn pods_are_deleted_before_other_content() {
    let cluster = e2e::cluster_or_skip!();
    let client = cluster.client();
    let mut kcm = support::start_kcm(&cluster, "serviceaccount,namespace", &[]);
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(&PostParams::default(), &namespace("ordered"))
        .await
        .unwrap();
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "ordered");
    support::eventually(
        "default ServiceAccount in ordered",
        Duration::from_secs(30),
        &mut kcm,
        || async { Ok(sas.get_opt("default").await?) },
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "ordered");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "held", "finalizers": ["e2e.example.com/finalizer"]},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "ordered");
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "keep-until-pods-go"}})).unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap();

    namespaces
        .delete("ordered", &DeleteParams::default())
        .await
        .unwrap();
    let conditions = support::eventually(
        "the namespace's deletion conditions",
        Duration::from_secs(30),
        &mut kcm,
        || async {
            let ns = namespaces.get("ordered").await?;
            Ok(ns.status.and_then(|s| s.conditions).filter(|c| {
                c.iter()
                    .any(|c| c.type_ == "NamespaceDeletionContentFailure")
            }))
        },
    )
    .await;
    let remaining = conditions
        .iter()
        .find(|c| c.type_ == "NamespaceContentRemaining")
        .expect("NamespaceContentRemaining");
    assert_eq!(remaining.status, "True");
    assert!(
        remaining
            .message
            .as_deref()
            .unwrap_or("")
            .contains("pods has 1"),
        "{remaining:?}"
    );
    // Several passes later the ConfigMap is still there: nothing but pods goes while a pod is.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        cms.get_opt("keep-until-pods-go").await.unwrap().is_some(),
        "a ConfigMap was deleted while a pod remained"
    );

    pods.patch(
        "held",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    support::eventually(
        "namespace ordered gone once its pod went",
        Duration::from_secs(60),
        &mut kcm,
        || async { Ok(namespaces.get_opt("ordered").await?.is_none().then_some(())) },
    )
    .await;
    kcm.terminate(Duration::from_secs(10)).unwrap();
}
