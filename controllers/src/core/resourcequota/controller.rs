//! The resourcequota controller's informers, queue and status writes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, Pod, ReplicationController, ResourceQuota, Secret, Service,
};
use kube::api::{DynamicObject, ListParams, PostParams};
use kube::{Api, Resource, ResourceExt};

use super::triggers;
use super::usage::{self, Observed};
use crate::machinery::context::ControllerContext;
use crate::machinery::discovery::{self, Served};
use crate::machinery::informers::handlers::{self as informer, Change};
use crate::machinery::informers::Informer;
use crate::machinery::queue::WorkQueue;

type Key = (String, String);

/// How long a discovery answer serves generic `count/<resource>.<group>` lookups.
const DISCOVERY_TTL: Duration = Duration::from_secs(30);

struct State {
    client: kube::Client,
    quotas: Informer<ResourceQuota>,
    pods: Informer<Pod>,
    services: Informer<Service>,
    claims: Informer<PersistentVolumeClaim>,
    configmaps: Informer<ConfigMap>,
    secrets: Informer<Secret>,
    controllers: Informer<ReplicationController>,
    discovered: Mutex<Option<(Instant, Arc<Vec<Served>>)>>,
}

/// Queues every quota of `namespace` (replenishment).
fn enqueue_namespace(queue: &WorkQueue<Key>, quotas: &Informer<ResourceQuota>, namespace: &str) {
    for q in quotas.list_namespace(namespace) {
        queue.add((namespace.to_string(), q.name_any()));
    }
}

/// Runs the controller until shutdown.
pub async fn run(ctx: ControllerContext) -> anyhow::Result<()> {
    let queue: WorkQueue<Key> =
        WorkQueue::new().with_metrics(&ctx.metrics, "resourcequota_primary");
    let sd = ctx.shutdown.clone();
    // A quota is synced on first sight, on a spec.hard change, or when its status is
    // incomplete — not on the apiserver's admission charges (see `triggers`).
    let q = queue.clone();
    let hard_seen = triggers::LastSeen::default();
    let quotas = {
        let shared = ctx.informers().informer::<ResourceQuota>();
        informer::on(&shared, move |rq: &ResourceQuota, change| {
            let Some(ns) = &rq.metadata.namespace else {
                return;
            };
            let key = (ns.clone(), rq.name_any());
            if change == Change::Deleted {
                hard_seen.forget(&key);
                return;
            }
            let previous = hard_seen.record(key.clone(), triggers::spec_hard(rq));
            if triggers::quota_needs_sync(previous.as_ref(), rq) {
                q.add(key);
            }
        });
        shared
    };
    // Replenishment: a delete, or an update that can release or move usage, re-syncs the
    // namespace's quotas (upstream's update filter). Creates are charged by admission.
    fn replenisher<K: Resource + 'static, V: PartialEq + Clone + Send + 'static>(
        queue: &WorkQueue<Key>,
        quotas: &Informer<ResourceQuota>,
        charge: fn(&K) -> V,
    ) -> impl Fn(&K, Change) + Send + Sync + 'static {
        let (q, quotas) = (queue.clone(), quotas.clone());
        let seen = triggers::LastSeen::default();
        move |obj: &K, change: Change| {
            let meta = obj.meta();
            let Some(ns) = meta.namespace.clone() else {
                return;
            };
            let key = (ns.clone(), meta.name.clone().unwrap_or_default());
            let replenish = match change {
                Change::Deleted => {
                    seen.forget(&key);
                    true
                }
                Change::Applied => seen.changed(key, charge(obj)),
            };
            if replenish {
                enqueue_namespace(&q, &quotas, &ns);
            }
        }
    }
    let pods = {
        let shared = ctx.informers().informer::<Pod>();
        informer::on(&shared, replenisher(&queue, &quotas, triggers::pod_charge));
        shared
    };
    let services = {
        let shared = ctx.informers().informer::<Service>();
        informer::on(
            &shared,
            replenisher(&queue, &quotas, triggers::service_charge_class),
        );
        shared
    };
    let claims = {
        let shared = ctx.informers().informer::<PersistentVolumeClaim>();
        informer::on(
            &shared,
            replenisher(&queue, &quotas, triggers::claim_charge),
        );
        shared
    };
    let configmaps = {
        let shared = ctx.informers().informer::<ConfigMap>();
        informer::on(&shared, replenisher(&queue, &quotas, |_: &ConfigMap| ()));
        shared
    };
    let secrets = {
        let shared = ctx.informers().informer::<Secret>();
        informer::on(&shared, replenisher(&queue, &quotas, |_: &Secret| ()));
        shared
    };
    let controllers = {
        let shared = ctx.informers().informer::<ReplicationController>();
        informer::on(
            &shared,
            replenisher(&queue, &quotas, |_: &ReplicationController| ()),
        );
        shared
    };
    informer::wait_synced(&sd, async {
        quotas.wait_synced().await;
        pods.wait_synced().await;
        services.wait_synced().await;
        claims.wait_synced().await;
        configmaps.wait_synced().await;
        secrets.wait_synced().await;
        controllers.wait_synced().await;
    })
    .await?;
    let state = Arc::new(State {
        client: ctx.client_for(super::SERVICE_ACCOUNT).await?,
        quotas,
        pods,
        services,
        claims,
        configmaps,
        secrets,
        controllers,
        discovered: Mutex::new(None),
    });
    // Full resync of every quota each --resource-quota-sync-period.
    let period = ctx
        .options
        .resource_quota_sync_period
        .max(Duration::from_secs(1));
    let (q, st, rsd) = (queue.clone(), state.clone(), sd.clone());
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = rsd.cancelled() => return,
                _ = tokio::time::sleep(period) => {}
            }
            for rq in st.quotas.list() {
                if let Some(ns) = &rq.metadata.namespace {
                    q.add((ns.clone(), rq.name_any()));
                }
            }
        }
    });
    let workers = ctx.options.concurrency.resource_quota;
    queue
        .run("resourcequota", workers, sd, move |key| {
            let state = state.clone();
            async move { sync(&state, &key).await }
        })
        .await;
    Ok(())
}

fn in_namespace<K: Resource + Clone + Send + Sync + 'static>(
    store: &Informer<K>,
    ns: &str,
) -> Vec<Arc<K>> {
    store.list_namespace(ns)
}

fn count_in<K: Resource + Clone + Send + Sync + 'static>(store: &Informer<K>, ns: &str) -> i64 {
    store.list_namespace(ns).len() as i64
}

impl State {
    async fn served(&self) -> anyhow::Result<Arc<Vec<Served>>> {
        if let Some((at, s)) = &*self.discovered.lock().unwrap_or_else(|e| e.into_inner()) {
            if at.elapsed() < DISCOVERY_TTL {
                return Ok(s.clone());
            }
        }
        let s = Arc::new(discovery::served(&self.client).await?);
        *self.discovered.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((Instant::now(), s.clone()));
        Ok(s)
    }

    /// Object counts for `count/<resource>[.<group>]` names in `hard` that no informer
    /// covers, listed (metadata only) from the apiserver.
    async fn generic_counts(
        &self,
        ns: &str,
        hard: &[String],
        counts: &mut BTreeMap<String, i64>,
    ) -> anyhow::Result<()> {
        let wanted: Vec<&String> = hard
            .iter()
            .filter(|n| n.starts_with("count/") && !counts.contains_key(*n))
            .filter(|n| {
                !matches!(
                    n.as_str(),
                    "count/pods" | "count/services" | "count/persistentvolumeclaims"
                )
            })
            .collect();
        if wanted.is_empty() {
            return Ok(());
        }
        let served = self.served().await?;
        for name in wanted {
            let rest = &name["count/".len()..];
            let (plural, group) = rest.split_once('.').unwrap_or((rest, ""));
            let Some(s) = served.iter().find(|s| {
                s.namespaced()
                    && s.resource.plural == plural
                    && s.resource.group == group
                    && s.supports("list")
            }) else {
                continue;
            };
            let api: Api<DynamicObject> =
                Api::namespaced_with(self.client.clone(), ns, &s.resource);
            let n = api.list_metadata(&ListParams::default()).await?.items.len();
            counts.insert(name.clone(), n as i64);
        }
        Ok(())
    }
}

async fn sync(state: &State, (ns, name): &Key) -> anyhow::Result<()> {
    let Some(quota) = state.quotas.get(ns, name) else {
        return Ok(());
    };
    let hard: Vec<String> = quota
        .spec
        .as_ref()
        .and_then(|s| s.hard.as_ref())
        .map(|h| h.keys().cloned().collect())
        .unwrap_or_default();
    let mut counts = BTreeMap::from([
        (
            "count/configmaps".to_string(),
            count_in(&state.configmaps, ns),
        ),
        ("count/secrets".to_string(), count_in(&state.secrets, ns)),
        (
            "count/replicationcontrollers".to_string(),
            count_in(&state.controllers, ns),
        ),
        (
            "count/resourcequotas".to_string(),
            count_in(&state.quotas, ns),
        ),
    ]);
    // A failed generic count leaves those resources at their last observation.
    if let Err(e) = state.generic_counts(ns, &hard, &mut counts).await {
        tracing::warn!(namespace = %ns, quota = %name, error = %e, "counting objects for quota failed");
    }
    let pods = in_namespace(&state.pods, ns);
    let services = in_namespace(&state.services, ns);
    let claims = in_namespace(&state.claims, ns);
    let observed = Observed {
        pods: pods.iter().map(|p| p.as_ref()).collect(),
        services: services.iter().map(|s| s.as_ref()).collect(),
        claims: claims.iter().map(|c| c.as_ref()).collect(),
        counts,
        now: jiff::Timestamp::now(),
    };
    let computed = usage::calculate(&quota, &observed);
    let Some(status) = usage::desired_status(&quota, &computed) else {
        return Ok(());
    };
    let mut updated = (*quota).clone();
    updated.status = Some(status);
    let api: Api<ResourceQuota> = Api::namespaced(state.client.clone(), ns);
    // A stale resourceVersion (admission charged meanwhile) conflicts and is retried.
    api.replace_status(name, &PostParams::default(), &updated)
        .await?;
    tracing::debug!(namespace = %ns, quota = %name, "updated quota status");
    Ok(())
}
