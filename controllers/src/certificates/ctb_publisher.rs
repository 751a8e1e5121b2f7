//! kube-apiserver-serving-clustertrustbundle-publisher-controller (upstream's
//! `pkg/controller/certificates/clustertrustbundlepublisher`, gate ClusterTrustBundle):
//! publishes the CA that verifies the kube-apiserver's serving certificate (`--root-ca-file`,
//! else the kubeconfig's CA, as the root-ca publisher reads it) as the ClusterTrustBundle of
//! signer `kubernetes.io/kube-apiserver-serving`, named after the signer and a hash of the
//! bundle, keeps its `trustBundle` equal to the CA, and deletes the signer's other bundles.
//!
//! As upstream, the CA is read once at start (a static CA content provider: a new CA file
//! takes a restart, which then publishes a bundle of the new name and deletes the old one),
//! the API version is the first of certificates.k8s.io/v1beta1, v1alpha1 that discovery
//! lists with `clustertrustbundles` (neither: the controller does not start), and every sync
//! is counted in `clustertrustbundle_publisher_sync_total{code}` and timed in
//! `clustertrustbundle_publisher_sync_duration_seconds{code}`.

use std::fmt::Debug;
use std::time::Instant;

use anyhow::Context as _;
use component_base::metrics::Metrics;
use futures::future::FutureExt;
use k8s_openapi::api::certificates::{v1alpha1, v1beta1};
use kube::api::{DeleteParams, PostParams};
use kube::Api;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::machinery::context::ControllerContext;
use crate::machinery::informers::handlers as informer;
use crate::machinery::queue::WorkQueue;
use crate::machinery::ControllerDescriptor;
use api_helpers::errors;

/// The signer whose bundle is published.
pub const SIGNER_NAME: &str = "kubernetes.io/kube-apiserver-serving";
/// The identity it acts as with `--use-service-account-credentials`.
pub const SERVICE_ACCOUNT: &str = "kube-apiserver-serving-clustertrustbundle-publisher";
/// Upstream's work queue name (its `workqueue_*` label).
pub const QUEUE: &str = "ca_cert_publisher_cluster_trust_bundles";

/// Registry entry.
pub fn descriptor() -> ControllerDescriptor {
    ControllerDescriptor {
        name: "kube-apiserver-serving-clustertrustbundle-publisher-controller",
        enabled_by_default: true,
        start: |ctx| start(ctx).boxed(),
    }
}

/// The bundle's name: the signer with `/` turned into `:`, a `:`, and the hex of the first
/// 12 bytes of the bundle's SHA-256.
pub fn bundle_name(signer: &str, bundle: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, bundle.as_bytes());
    let hex: String = digest.as_ref()[..12]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{}:{hex}", signer.replace('/', ":"))
}

/// The write that makes the wanted bundle exist with the CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// It does not exist: create it.
    Create,
    /// It exists with another `trustBundle`: update it.
    Update,
    /// It is right.
    None,
}

/// One sync's decisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The wanted bundle's name.
    pub name: String,
    /// What to do with it.
    pub write: Write,
    /// The signer's other bundles, deleted once the write succeeded.
    pub delete: Vec<String>,
}

/// What to do given the signer's bundles as `(name, trustBundle)` and the CA to publish.
pub fn plan<'a>(
    signer: &str,
    ca: &str,
    bundles: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Plan {
    let name = bundle_name(signer, ca);
    let mut write = Write::Create;
    let mut delete = Vec::new();
    for (n, bundle) in bundles {
        if n == name {
            write = if bundle == ca {
                Write::None
            } else {
                Write::Update
            };
        } else {
            delete.push(n.to_string());
        }
    }
    delete.sort();
    Plan {
        name,
        write,
        delete,
    }
}

/// A ClusterTrustBundle of one served version (v1alpha1 and v1beta1 have the same shape).
pub trait Bundle:
    kube::Resource<DynamicType = (), Scope = k8s_openapi::ClusterResourceScope>
    + Clone
    + Debug
    + DeserializeOwned
    + Serialize
    + Send
    + Sync
    + 'static
{
    /// The certificates.k8s.io version, e.g. `v1beta1`.
    const VERSION: &'static str;
    /// A new bundle.
    fn build(name: &str, signer: &str, trust_bundle: &str) -> Self;
    /// `spec.signerName`.
    fn signer(&self) -> Option<&str>;
    /// `spec.trustBundle`.
    fn trust_bundle(&self) -> &str;
    /// Sets `spec.trustBundle`.
    fn set_trust_bundle(&mut self, trust_bundle: &str);
}

macro_rules! bundle {
    ($v:ident) => {
        impl Bundle for $v::ClusterTrustBundle {
            const VERSION: &'static str = stringify!($v);
            fn build(name: &str, signer: &str, trust_bundle: &str) -> Self {
                $v::ClusterTrustBundle {
                    metadata: kube::api::ObjectMeta {
                        name: Some(name.into()),
                        ..Default::default()
                    },
                    spec: $v::ClusterTrustBundleSpec {
                        signer_name: Some(signer.into()),
                        trust_bundle: trust_bundle.into(),
                    },
                }
            }
            fn signer(&self) -> Option<&str> {
                self.spec.signer_name.as_deref()
            }
            fn trust_bundle(&self) -> &str {
                &self.spec.trust_bundle
            }
            fn set_trust_bundle(&mut self, trust_bundle: &str) {
                self.spec.trust_bundle = trust_bundle.into();
            }
        }
    };
}
bundle!(v1beta1);
bundle!(v1alpha1);

type CodeLabel = [(&'static str, String); 1];

/// Upstream's `clustertrustbundle_publisher_*` metrics. Cheap to clone.
#[derive(Clone)]
pub struct PublisherMetrics {
    syncs: Family<CodeLabel, Counter>,
    latency: Family<CodeLabel, Histogram, fn() -> Histogram>,
}

fn histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

impl PublisherMetrics {
    /// Registers the metrics in `registry`.
    pub fn register(registry: &Metrics) -> Self {
        let m = PublisherMetrics {
            syncs: Family::default(),
            latency: Family::new_with_constructor(histogram),
        };
        registry.register(
            "clustertrustbundle_publisher_sync",
            "[ALPHA] Number of syncs that occurred in cluster trust bundle publisher.",
            m.syncs.clone(),
        );
        registry.register(
            "clustertrustbundle_publisher_sync_duration_seconds",
            "[ALPHA] The time it took to sync a cluster trust bundle.",
            m.latency.clone(),
        );
        m
    }

    /// Records one sync that started at `start` and ended with `result`.
    pub fn record(&self, start: Instant, result: &anyhow::Result<()>) {
        let code = [("code", sync_code(result).to_string())];
        self.syncs.get_or_create(&code).inc();
        self.latency
            .get_or_create(&code)
            .observe(start.elapsed().as_secs_f64());
    }
}

/// The `code` label of a sync: 200 on success, the API status code of an apiserver error,
/// else 500 (as upstream).
pub fn sync_code(result: &anyhow::Result<()>) -> u16 {
    match result {
        Ok(()) => 200,
        Err(e) => e
            .chain()
            .find_map(|c| c.downcast_ref::<kube::Error>())
            .and_then(errors::code)
            .filter(|c| *c != 0)
            .unwrap_or(500),
    }
}

async fn start(ctx: ControllerContext) -> anyhow::Result<()> {
    let ca = match crate::machinery::ca_bundle::load_ca(&ctx.options) {
        Ok(ca) if !ca.trim().is_empty() => ca,
        Ok(_) => {
            tracing::info!("no kube-apiserver CA, not starting the kube-apiserver-serving ClusterTrustBundle publisher");
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let client = ctx.client_for(SERVICE_ACCOUNT).await?;
    for version in [
        v1beta1::ClusterTrustBundle::VERSION,
        v1alpha1::ClusterTrustBundle::VERSION,
    ] {
        if !served(&client, version).await? {
            continue;
        }
        return if version == v1beta1::ClusterTrustBundle::VERSION {
            run::<v1beta1::ClusterTrustBundle>(ctx, client, ca).await
        } else {
            run::<v1alpha1::ClusterTrustBundle>(ctx, client, ca).await
        };
    }
    tracing::info!("no known scheme version was found for clustertrustbundles, cannot start kube-apiserver-serving-clustertrustbundle-publisher-controller");
    Ok(())
}

/// Whether discovery lists `clustertrustbundles` in certificates.k8s.io/`version`.
async fn served(client: &kube::Client, version: &str) -> anyhow::Result<bool> {
    match client
        .list_api_group_resources(&format!("certificates.k8s.io/{version}"))
        .await
    {
        Ok(list) => Ok(list
            .resources
            .iter()
            .any(|r| r.name == "clustertrustbundles")),
        Err(e) if errors::is_not_found(&e) => Ok(false),
        Err(e) => Err(e).context("discovery failed for ClusterTrustBundle"),
    }
}

async fn run<K: Bundle>(
    ctx: ControllerContext,
    client: kube::Client,
    ca: String,
) -> anyhow::Result<()> {
    let metrics = ctx.metrics.families(PublisherMetrics::register);
    let queue: WorkQueue<String> = WorkQueue::new().with_metrics(&ctx.metrics, QUEUE);
    let bundles = ctx.informers().informer::<K>();
    let q = queue.clone();
    informer::on(&bundles, move |b: &K, _| {
        if b.signer() == Some(SIGNER_NAME) {
            q.add(String::new());
        }
    });
    let b = bundles.clone();
    informer::wait_synced(&ctx.shutdown, async move { b.wait_synced().await }).await?;
    tracing::info!(
        version = K::VERSION,
        "Starting ClusterTrustBundle CA cert publisher controller"
    );
    queue.add(String::new());
    let api: Api<K> = Api::all(client);
    queue
        .run(
            "kube-apiserver-serving-clustertrustbundle-publisher",
            1,
            ctx.shutdown.clone(),
            move |_| {
                let (api, bundles, ca, metrics) =
                    (api.clone(), bundles.clone(), ca.clone(), metrics.clone());
                async move {
                    let start = Instant::now();
                    let result = sync(&api, &bundles.list(), &ca).await;
                    metrics.record(start, &result);
                    result
                }
            },
        )
        .await;
    tracing::info!("Shutting down ClusterTrustBundle CA cert publisher controller");
    Ok(())
}

async fn sync<K: Bundle>(
    api: &Api<K>,
    cached: &[std::sync::Arc<K>],
    ca: &str,
) -> anyhow::Result<()> {
    let ours: Vec<&K> = cached
        .iter()
        .map(|b| &**b)
        .filter(|b| b.signer() == Some(SIGNER_NAME))
        .collect();
    let plan = plan(
        SIGNER_NAME,
        ca,
        ours.iter().map(|b| {
            (
                b.meta().name.as_deref().unwrap_or_default(),
                b.trust_bundle(),
            )
        }),
    );
    match plan.write {
        Write::Create => {
            api.create(
                &PostParams::default(),
                &K::build(&plan.name, SIGNER_NAME, ca),
            )
            .await?;
            tracing::info!(bundle = %plan.name, "Published the kube-apiserver-serving ClusterTrustBundle");
        }
        Write::Update => {
            let Some(mut current) = ours
                .iter()
                .find(|b| b.meta().name.as_deref() == Some(&plan.name))
                .map(|b| (*b).clone())
            else {
                return Ok(());
            };
            current.set_trust_bundle(ca);
            api.replace(&plan.name, &PostParams::default(), &current)
                .await?;
            tracing::info!(bundle = %plan.name, "Updated the kube-apiserver-serving ClusterTrustBundle");
        }
        Write::None => {}
    }
    let mut failed = None;
    for name in &plan.delete {
        match errors::ignore_not_found(api.delete(name, &DeleteParams::default()).await) {
            Ok(()) => {
                tracing::info!(bundle = %name, "Deleted a stale kube-apiserver-serving ClusterTrustBundle")
            }
            Err(e) => {
                tracing::error!(bundle = %name, error = %e, "failed to remove a cluster trust bundle");
                failed = Some(e);
            }
        }
    }
    match failed {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CA: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    #[test]
    fn names_are_the_signer_and_a_hash_of_the_bundle() {
        let n = bundle_name(SIGNER_NAME, CA);
        let prefix = "kubernetes.io:kube-apiserver-serving:";
        assert!(n.starts_with(prefix), "{n}");
        let hex = &n[prefix.len()..];
        assert_eq!(hex.len(), 24, "{n}");
        assert!(hex
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(n, bundle_name(SIGNER_NAME, "other"));
        // sha256("") starts e3b0c44298fc1c149afbf4c8996fb924...
        assert_eq!(bundle_name("a/b", ""), "a:b:e3b0c44298fc1c149afbf4c8");
    }

    #[test]
    fn create_update_or_keep_and_delete_the_others() {
        let name = bundle_name(SIGNER_NAME, CA);
        let p = plan(SIGNER_NAME, CA, []);
        assert_eq!(p.write, Write::Create);
        assert!(p.delete.is_empty());
        let p = plan(SIGNER_NAME, CA, [(name.as_str(), CA)]);
        assert_eq!(p.write, Write::None);
        let p = plan(
            SIGNER_NAME,
            CA,
            [(name.as_str(), "tampered"), ("old-b", "x"), ("old-a", "y")],
        );
        assert_eq!(p.write, Write::Update);
        assert_eq!(p.delete, ["old-a", "old-b"]);
        let p = plan(SIGNER_NAME, CA, [("stale", CA)]);
        assert_eq!(
            (p.write, p.delete),
            (Write::Create, vec!["stale".to_string()])
        );
    }

    #[test]
    fn sync_codes_as_upstream() {
        assert_eq!(sync_code(&Ok(())), 200);
        assert_eq!(sync_code(&Err(anyhow::anyhow!("io"))), 500);
        let api = kube::Error::Api(
            kube::core::Status::failure("conflict", "Conflict")
                .with_code(409)
                .boxed(),
        );
        assert_eq!(
            sync_code(&Err(anyhow::Error::from(api).context("update"))),
            409
        );
    }

    #[test]
    fn metrics_carry_upstreams_names() {
        let registry = Metrics::new();
        let m = PublisherMetrics::register(&registry);
        m.record(Instant::now(), &Ok(()));
        let text = registry.render();
        assert!(
            text.contains("clustertrustbundle_publisher_sync_total{code=\"200\"} 1"),
            "{text}"
        );
        assert!(
            text.contains(
                "clustertrustbundle_publisher_sync_duration_seconds_count{code=\"200\"} 1"
            ),
            "{text}"
        );
    }

    #[test]
    fn both_versions_build_the_same_bundle() {
        let b = v1beta1::ClusterTrustBundle::build("n", SIGNER_NAME, CA);
        let a = v1alpha1::ClusterTrustBundle::build("n", SIGNER_NAME, CA);
        assert_eq!(b.signer(), a.signer());
        assert_eq!(b.trust_bundle(), a.trust_bundle());
        let mut b = b;
        b.set_trust_bundle("x");
        assert_eq!(b.trust_bundle(), "x");
    }
}
