//! The specs of a pod the kubelet no longer has, as far as its containers' CRI annotations
//! record them (upstream's restoreSpecsFromContainerLabels): the pod's identity and
//! terminationGracePeriodSeconds, each container's name and preStop handler. Enough to stop
//! a pod deleted while the kubelet was down as upstream does: preStop hooks first, within
//! the orphan's one-second grace.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Container, Lifecycle, LifecycleHandler, Pod, PodSpec};
use kube::api::ObjectMeta;

use crate::cri::labels::{self, PodRef};

/// The grace period upstream gives a running pod it finds with no pod object
/// (HandlePodCleanups' override for orphaned pods).
pub const ORPHAN_GRACE_SECONDS: i64 = 1;

/// A pod rebuilt from `r` and its containers' `(name, annotations)`. A preStop annotation
/// that does not parse is dropped with a warning: the container is still stopped.
pub fn restored_pod(r: &PodRef, containers: &[(String, HashMap<String, String>)]) -> Pod {
    let grace = containers.iter().find_map(|(_, a)| {
        a.get(labels::POD_TERMINATION_GRACE_PERIOD)?
            .parse::<i64>()
            .ok()
    });
    let containers = containers
        .iter()
        .map(|(name, annotations)| Container {
            name: name.clone(),
            lifecycle: pre_stop(name, annotations).map(|h| Lifecycle {
                pre_stop: Some(h),
                ..Default::default()
            }),
            ..Default::default()
        })
        .collect();
    Pod {
        metadata: ObjectMeta {
            name: Some(r.name.clone()),
            namespace: Some(r.namespace.clone()),
            uid: Some(r.uid.clone()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers,
            termination_grace_period_seconds: grace,
            ..Default::default()
        }),
        status: None,
    }
}

fn pre_stop(container: &str, annotations: &HashMap<String, String>) -> Option<LifecycleHandler> {
    let json = annotations.get(labels::PRE_STOP_HANDLER)?;
    match serde_json::from_str(json) {
        Ok(h) => Some(h),
        Err(e) => {
            tracing::warn!(container, error = %e, "Unreadable preStop annotation; stopping without the hook");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r() -> PodRef {
        PodRef {
            namespace: "ns".into(),
            name: "web".into(),
            uid: "u1".into(),
        }
    }

    #[test]
    fn identity_grace_and_hooks_come_back_from_annotations() {
        let hook = r#"{"exec":{"command":["sh","-c","echo bye"]}}"#;
        let pod = restored_pod(
            &r(),
            &[
                (
                    "app".into(),
                    HashMap::from([
                        (labels::PRE_STOP_HANDLER.into(), hook.into()),
                        (labels::POD_TERMINATION_GRACE_PERIOD.into(), "45".into()),
                    ]),
                ),
                ("sidecar".into(), HashMap::new()),
            ],
        );
        assert_eq!(pod.metadata.name.as_deref(), Some("web"));
        assert_eq!(pod.metadata.namespace.as_deref(), Some("ns"));
        assert_eq!(pod.metadata.uid.as_deref(), Some("u1"));
        let spec = pod.spec.unwrap();
        assert_eq!(spec.termination_grace_period_seconds, Some(45));
        let exec = spec.containers[0]
            .lifecycle
            .as_ref()
            .and_then(|l| l.pre_stop.as_ref())
            .and_then(|h| h.exec.as_ref())
            .and_then(|e| e.command.clone());
        assert_eq!(
            exec,
            Some(vec!["sh".into(), "-c".into(), "echo bye".into()])
        );
        assert_eq!(spec.containers[1].name, "sidecar");
        assert!(spec.containers[1].lifecycle.is_none());
    }

    #[test]
    fn a_broken_hook_annotation_is_dropped_not_fatal() {
        let pod = restored_pod(
            &r(),
            &[(
                "app".into(),
                HashMap::from([(labels::PRE_STOP_HANDLER.into(), "{not json".into())]),
            )],
        );
        let spec = pod.spec.unwrap();
        assert!(spec.containers[0].lifecycle.is_none());
        assert_eq!(spec.termination_grace_period_seconds, None);
    }
}
