//! root-ca-certificate-publisher-controller: every namespace has a `kube-root-ca.crt`
//! ConfigMap holding the CA bundle that verifies the apiserver.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::{BoxFuture, FutureExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{ObjectMeta, PostParams};
use kube::Api;

pub use crate::machinery::ca_bundle::load_ca;
use crate::machinery::context::ControllerContext;
use crate::machinery::informers::Informer;
use crate::machinery::ControllerDescriptor;
use crate::machinery::{informers::handlers as informer, queue::WorkQueue};
use api_helpers::errors;

/// The ConfigMap's name.
pub const CONFIGMAP_NAME: &str = "kube-root-ca.crt";
/// Its data key.
pub const DATA_KEY: &str = "ca.crt";
/// Upstream's description annotation.
pub const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";
const DESCRIPTION_KEY: &str = "kubernetes.io/description";

/// The identity it acts as with `--use-service-account-credentials`.
pub const SERVICE_ACCOUNT: &str = "root-ca-cert-publisher";

/// Registry entry.
pub fn descriptor() -> ControllerDescriptor {
    ControllerDescriptor {
        name: "root-ca-certificate-publisher",
        enabled_by_default: true,
        start,
    }
}

/// What the namespace's ConfigMap should become: `None` if `current` is already right,
/// else the object to create (when `current` is `None`) or update.
pub fn desired(namespace: &str, ca: &str, current: Option<&ConfigMap>) -> Option<ConfigMap> {
    let want_data = BTreeMap::from([(DATA_KEY.to_string(), ca.to_string())]);
    match current {
        None => Some(ConfigMap {
            metadata: ObjectMeta {
                name: Some(CONFIGMAP_NAME.into()),
                namespace: Some(namespace.into()),
                annotations: Some(BTreeMap::from([(
                    DESCRIPTION_KEY.into(),
                    DESCRIPTION.into(),
                )])),
                ..Default::default()
            },
            data: Some(want_data),
            ..Default::default()
        }),
        Some(cm) => {
            let annotated = cm
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(DESCRIPTION_KEY))
                .map(String::as_str)
                == Some(DESCRIPTION);
            if cm.data.as_ref() == Some(&want_data) && cm.binary_data.is_none() && annotated {
                return None;
            }
            let mut cm = cm.clone();
            cm.data = Some(want_data);
            cm.binary_data = None;
            cm.metadata
                .annotations
                .get_or_insert_with(Default::default)
                .insert(DESCRIPTION_KEY.into(), DESCRIPTION.into());
            Some(cm)
        }
    }
}

fn start(ctx: ControllerContext) -> BoxFuture<'static, anyhow::Result<()>> {
    run(ctx).boxed()
}

async fn run(ctx: ControllerContext) -> anyhow::Result<()> {
    let ca: Arc<str> = load_ca(&ctx.options)?.into();
    let queue: WorkQueue<String> =
        WorkQueue::new().with_metrics(&ctx.metrics, "root_ca_cert_publisher");
    let q = queue.clone();
    let namespaces = {
        let shared = ctx.informers().informer::<Namespace>();
        informer::on(&shared, move |ns: &Namespace, change| {
            if let (Some(n), informer::Change::Applied) = (&ns.metadata.name, change) {
                q.add(n.clone());
            }
        });
        shared
    };
    let q = queue.clone();
    // The shared ConfigMap informer holds every ConfigMap; only ours matter here.
    let configmaps = ctx.informers().informer::<ConfigMap>();
    informer::on(&configmaps, move |cm: &ConfigMap, _| {
        if cm.metadata.name.as_deref() != Some(CONFIGMAP_NAME) {
            return;
        }
        if let Some(ns) = &cm.metadata.namespace {
            q.add(ns.clone());
        }
    });
    informer::wait_synced(&ctx.shutdown, async {
        namespaces.wait_synced().await;
        configmaps.wait_synced().await;
    })
    .await?;
    let client = ctx.client_for(SERVICE_ACCOUNT).await?;
    let state = Arc::new((namespaces, configmaps, ca));
    queue
        .run(
            "root-ca-certificate-publisher",
            1,
            ctx.shutdown.clone(),
            move |ns| sync(client.clone(), state.clone(), ns),
        )
        .await;
    Ok(())
}

type State = (Informer<Namespace>, Informer<ConfigMap>, Arc<str>);

async fn sync(client: kube::Client, state: Arc<State>, ns: String) -> anyhow::Result<()> {
    let (namespaces, configmaps, ca) = &*state;
    if namespaces.get("", &ns).is_none() {
        return Ok(());
    }
    let current = configmaps.get(&ns, CONFIGMAP_NAME);
    let Some(want) = desired(&ns, ca, current.as_deref()) else {
        return Ok(());
    };
    let api: Api<ConfigMap> = Api::namespaced(client, &ns);
    let result = match current {
        None => api.create(&PostParams::default(), &want).await,
        Some(_) => {
            api.replace(CONFIGMAP_NAME, &PostParams::default(), &want)
                .await
        }
    };
    match result {
        Ok(_) => Ok(()),
        Err(e) if errors::is_namespace_terminating(&e) || errors::is_not_found(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machinery::options::KcmOptions;
    use base64::Engine as _;

    const CA: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    #[test]
    fn creates_when_missing() {
        let cm = desired("ns1", CA, None).unwrap();
        assert_eq!(cm.metadata.name.as_deref(), Some(CONFIGMAP_NAME));
        assert_eq!(cm.metadata.namespace.as_deref(), Some("ns1"));
        assert_eq!(cm.data.unwrap()[DATA_KEY], CA);
        assert_eq!(
            cm.metadata.annotations.unwrap()[DESCRIPTION_KEY],
            DESCRIPTION
        );
    }

    #[test]
    fn leaves_correct_configmap_alone() {
        let cm = desired("ns1", CA, None).unwrap();
        assert!(desired("ns1", CA, Some(&cm)).is_none());
    }

    #[test]
    fn repairs_tampered_data_keeping_metadata() {
        let mut cm = desired("ns1", CA, None).unwrap();
        cm.metadata.resource_version = Some("7".into());
        cm.data = Some(BTreeMap::from([
            ("ca.crt".into(), "junk".into()),
            ("extra".into(), "x".into()),
        ]));
        let fixed = desired("ns1", CA, Some(&cm)).unwrap();
        assert_eq!(
            fixed.data.unwrap(),
            BTreeMap::from([(DATA_KEY.to_string(), CA.to_string())])
        );
        assert_eq!(fixed.metadata.resource_version.as_deref(), Some("7"));
    }

    #[test]
    fn reads_ca_from_kubeconfig_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kc");
        let data = base64::engine::general_purpose::STANDARD.encode(CA);
        std::fs::write(
            &path,
            format!("apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:6443\n    certificate-authority-data: {data}\ncontexts:\n- name: x\n  context:\n    cluster: c\n    user: u\ncurrent-context: x\nusers:\n- name: u\n  user: {{}}\n"),
        )
        .unwrap();
        let opts = KcmOptions {
            kubeconfig: Some(path),
            ..Default::default()
        };
        assert_eq!(load_ca(&opts).unwrap(), CA);
    }

    #[test]
    fn root_ca_file_wins_and_missing_file_is_named() {
        let opts = KcmOptions {
            root_ca_file: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        };
        let err = format!("{:#}", load_ca(&opts).unwrap_err());
        assert!(err.contains("--root-ca-file /nonexistent/ca.pem"), "{err}");
    }
}
