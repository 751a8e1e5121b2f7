//! Writing pods for a controller: creation from a template in slow-start batches, deletion,
//! adoption and release, with expectations lowered for every write that fails.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::join_all;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::Api;

use crate::machinery::expectations::Expectations;
use component_base::events::{EventRecorder, EventSpec, EventType};
use k8s_openapi::api::core::v1::ObjectReference;

/// Upstream's SlowStartInitialBatchSize.
pub const SLOW_START_INITIAL_BATCH: usize = 1;

/// Sizes of slow-start batches for `count` creations: 1, 2, 4, … until `count` is reached.
pub fn slow_start_batches(count: usize, initial: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let (mut left, mut size) = (count, initial.max(1));
    while left > 0 {
        let n = size.min(left);
        out.push(n);
        left -= n;
        size *= 2;
    }
    out
}

/// Runs `make(i)` for `i in 0..count` in slow-start batches: a batch starts only when every
/// call of the previous one succeeded. Returns how many succeeded and the first error.
pub async fn slow_start<F, Fut>(count: usize, make: F) -> (usize, Option<kube::Error>)
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<(), kube::Error>>,
{
    let mut done = 0;
    for batch in slow_start_batches(count, SLOW_START_INITIAL_BATCH) {
        let results = join_all((done..done + batch).map(&make)).await;
        let ok = results.iter().filter(|r| r.is_ok()).count();
        let first_err = results.into_iter().find_map(Result::err);
        done += ok;
        if let Some(e) = first_err {
            return (done, Some(e));
        }
    }
    (done, None)
}

/// A pod from `template` for `owner`: labels, annotations and finalizers copied,
/// `generateName` `<prefix>-` unless a name is given.
pub fn pod_from_template(
    template: &PodTemplateSpec,
    namespace: &str,
    owner: OwnerReference,
    name: Option<String>,
    extra_labels: &BTreeMap<String, String>,
) -> Pod {
    let tmeta = template.metadata.clone().unwrap_or_default();
    let mut labels = tmeta.labels.unwrap_or_default();
    labels.extend(extra_labels.clone());
    let generate_name = match &name {
        Some(_) => None,
        None => Some(format!("{}-", owner.name)),
    };
    Pod {
        metadata: ObjectMeta {
            name,
            generate_name,
            namespace: Some(namespace.to_string()),
            labels: Some(labels),
            annotations: tmeta.annotations,
            finalizers: tmeta.finalizers,
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

/// Creates and deletes pods for one controller key, keeping its expectations honest.
#[derive(Clone)]
pub struct PodControl {
    client: kube::Client,
    expectations: Arc<Expectations>,
    field_manager: &'static str,
    events: Option<EventRecorder>,
}

/// Upstream's pod-control events, recorded on the pod's controller (`reason`, `note`).
fn record_on_owner(
    events: &Option<EventRecorder>,
    pod: &Pod,
    warning: bool,
    reason: &str,
    note: String,
) {
    let Some(recorder) = events.clone() else {
        return;
    };
    let Some(owner) = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
    else {
        return;
    };
    let spec = EventSpec {
        regarding: ObjectReference {
            api_version: Some(owner.api_version.clone()),
            kind: Some(owner.kind.clone()),
            name: Some(owner.name.clone()),
            namespace: pod.metadata.namespace.clone(),
            uid: Some(owner.uid.clone()),
            ..Default::default()
        },
        related: None,
        type_: EventType::warning_if(warning),
        reason: reason.to_string(),
        action: if reason.contains("Create") {
            "Create"
        } else {
            "Delete"
        }
        .to_string(),
        note,
    };
    tokio::spawn(async move { recorder.record(spec).await });
}

impl PodControl {
    /// Pod writes as `field_manager`, tracked in `expectations`.
    pub fn new(
        client: kube::Client,
        expectations: Arc<Expectations>,
        field_manager: &'static str,
    ) -> Self {
        PodControl {
            client,
            expectations,
            field_manager,
            events: None,
        }
    }

    /// The same, also recording upstream's SuccessfulCreate / FailedCreate /
    /// SuccessfulDelete / FailedDelete events on each pod's controller.
    pub fn with_events(mut self, recorder: EventRecorder) -> Self {
        self.events = Some(recorder);
        self
    }

    /// Creates `pods` for `key` in slow-start batches after expecting them; creations never
    /// attempted or failed are taken off the expectations. Returns the first error.
    pub async fn create_all(&self, key: &str, pods: Vec<Pod>) -> Result<usize, kube::Error> {
        let count = pods.len();
        if count == 0 {
            return Ok(0);
        }
        self.expectations.expect_creations(key, count);
        let pp = PostParams {
            field_manager: Some(self.field_manager.to_string()),
            ..Default::default()
        };
        let (created, err) = slow_start(count, |i| {
            let pod = pods[i].clone();
            let api: Api<Pod> = Api::namespaced(
                self.client.clone(),
                pod.metadata.namespace.as_deref().unwrap_or("default"),
            );
            let pp = pp.clone();
            let events = &self.events;
            async move {
                match api.create(&pp, &pod).await {
                    Ok(created) => {
                        let name = created.metadata.name.clone().unwrap_or_default();
                        record_on_owner(
                            events,
                            &pod,
                            false,
                            "SuccessfulCreate",
                            format!("Created pod: {name}"),
                        );
                        Ok(())
                    }
                    // The namespace is going away: nothing to retry, upstream ignores it.
                    Err(e) if api_helpers::errors::is_namespace_terminating(&e) => Ok(()),
                    Err(e) => {
                        record_on_owner(
                            events,
                            &pod,
                            true,
                            "FailedCreate",
                            format!("Error creating: {e}"),
                        );
                        Err(e)
                    }
                }
            }
        })
        .await;
        // Failed and skipped creations will never be observed.
        for _ in created..count {
            self.expectations.creation_observed(key);
        }
        match err {
            Some(e) => Err(e),
            None => Ok(created),
        }
    }

    /// Deletes `victims` for `key`; a failed (non-404) delete is taken off the expectations.
    pub async fn delete_all(&self, key: &str, victims: &[&Pod]) -> Result<(), kube::Error> {
        if victims.is_empty() {
            return Ok(());
        }
        let uid = |p: &Pod| p.metadata.uid.clone().unwrap_or_default();
        self.expectations
            .expect_deletions(key, victims.iter().map(|p| uid(p)));
        let results = join_all(victims.iter().map(|p| {
            let api: Api<Pod> = Api::namespaced(
                self.client.clone(),
                p.metadata.namespace.as_deref().unwrap_or("default"),
            );
            let name = p.metadata.name.clone().unwrap_or_default();
            let uid = uid(p);
            async move {
                let r = api.delete(&name, &DeleteParams::default()).await;
                match r {
                    Ok(_) => {
                        record_on_owner(
                            &self.events,
                            p,
                            false,
                            "SuccessfulDelete",
                            format!("Deleted pod: {name}"),
                        );
                        Ok(())
                    }
                    Err(e) if api_helpers::errors::is_not_found(&e) => {
                        self.expectations.deletion_observed(key, &uid);
                        Ok(())
                    }
                    Err(e) => {
                        self.expectations.deletion_observed(key, &uid);
                        record_on_owner(
                            &self.events,
                            p,
                            true,
                            "FailedDelete",
                            format!("Error deleting: {e}"),
                        );
                        Err(e)
                    }
                }
            }
        }))
        .await;
        results.into_iter().collect()
    }

    /// Applies a strategic-merge `patch` to pod `namespace/name` (adoption and release).
    pub async fn patch(
        &self,
        namespace: &str,
        name: &str,
        patch: &serde_json::Value,
    ) -> Result<(), kube::Error> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        match api
            .patch(name, &PatchParams::default(), &Patch::Strategic(patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if api_helpers::errors::is_not_found(&e) || api_helpers::errors::is_invalid(&e) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn batches_double() {
        assert_eq!(slow_start_batches(10, 1), vec![1, 2, 4, 3]);
        assert!(slow_start_batches(0, 1).is_empty());
    }

    #[tokio::test]
    async fn slow_start_stops_after_a_failing_batch() {
        let calls = AtomicUsize::new(0);
        let (ok, err) = slow_start(20, |i| {
            calls.fetch_add(1, Ordering::SeqCst);
            async move {
                if i == 4 {
                    Err(kube::Error::LinesCodecMaxLineLengthExceeded)
                } else {
                    Ok(())
                }
            }
        })
        .await;
        // Batches 1, 2, 4: the third batch (indices 3..7) fails once, nothing after it runs.
        assert_eq!(calls.load(Ordering::SeqCst), 7);
        assert_eq!(ok, 6);
        assert!(err.is_some());
    }
}
