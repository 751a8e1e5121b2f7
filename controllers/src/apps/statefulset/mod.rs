//! statefulset-controller: pods with stable names `<set>-<ordinal>`, stable storage from
//! `volumeClaimTemplates`, ordered (`OrderedReady`) or `Parallel` management, rolling
//! updates with partition and maxUnavailable or `OnDelete`, ControllerRevisions and status.

pub mod claims;
pub mod controller;
pub mod identity;
pub mod plan;
pub mod status;

use futures::future::FutureExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};

use crate::machinery::runner;
use crate::machinery::ControllerDescriptor;
use controller::{StatefulSetController, NAME};

/// Registry entry.
pub fn descriptor() -> ControllerDescriptor {
    ControllerDescriptor {
        name: "statefulset",
        enabled_by_default: true,
        start: |ctx| {
            async move {
                let client = ctx.client_for(NAME).await?;
                let factory = ctx.informers();
                let (s, p, r, c) = (
                    factory.informer::<StatefulSet>(),
                    factory.informer::<Pod>(),
                    factory.informer::<ControllerRevision>(),
                    factory.informer::<PersistentVolumeClaim>(),
                );
                let synced = async {
                    s.wait_synced().await;
                    p.wait_synced().await;
                    r.wait_synced().await;
                    c.wait_synced().await;
                };
                let set =
                    StatefulSetController::new(client, s.clone(), p.clone(), r.clone(), c.clone());
                runner::run(&ctx, NAME, ctx.options.concurrency.statefulset, synced, set).await
            }
            .boxed()
        },
    }
}
