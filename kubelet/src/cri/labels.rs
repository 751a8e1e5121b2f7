//! The labels and annotations the kubelet puts on CRI sandboxes and containers, with
//! upstream's keys, so that the state of every pod can be recovered from the runtime alone
//! after a kubelet restart (re-adoption).

use std::collections::HashMap;

/// Pod name label (sandboxes and containers).
pub const POD_NAME: &str = "io.kubernetes.pod.name";
/// Pod namespace label.
pub const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
/// Pod UID label.
pub const POD_UID: &str = "io.kubernetes.pod.uid";
/// Container name label (containers only).
pub const CONTAINER_NAME: &str = "io.kubernetes.container.name";
/// Hash of the container spec the container was created from (annotation).
pub const CONTAINER_HASH: &str = "io.kubernetes.container.hash";
/// How many times the container had been restarted when it was created (annotation).
pub const CONTAINER_RESTART_COUNT: &str = "io.kubernetes.container.restartCount";
/// The container's terminationMessagePath (annotation).
pub const TERMINATION_MESSAGE_PATH: &str = "io.kubernetes.container.terminationMessagePath";
/// The container's terminationMessagePolicy (annotation).
pub const TERMINATION_MESSAGE_POLICY: &str = "io.kubernetes.container.terminationMessagePolicy";
/// The pod's terminationGracePeriodSeconds (annotation).
pub const POD_TERMINATION_GRACE_PERIOD: &str = "io.kubernetes.pod.terminationGracePeriod";
/// The container's preStop handler as JSON (annotation), when it has one.
pub const PRE_STOP_HANDLER: &str = "io.kubernetes.container.preStopHandler";

/// Which pod a sandbox or container belongs to, read back from its labels.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PodRef {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID.
    pub uid: String,
}

impl PodRef {
    /// Reads the pod reference from CRI labels; `None` when the object is not a kubelet's.
    pub fn from_labels(labels: &HashMap<String, String>) -> Option<Self> {
        Some(PodRef {
            namespace: labels.get(POD_NAMESPACE)?.clone(),
            name: labels.get(POD_NAME)?.clone(),
            uid: labels.get(POD_UID)?.clone(),
        })
    }

    /// The labels that identify the pod.
    pub fn labels(&self) -> HashMap<String, String> {
        HashMap::from([
            (POD_NAMESPACE.to_string(), self.namespace.clone()),
            (POD_NAME.to_string(), self.name.clone()),
            (POD_UID.to_string(), self.uid.clone()),
        ])
    }
}

/// The restart count recorded on a container, 0 when absent or malformed.
pub fn restart_count(annotations: &HashMap<String, String>) -> i32 {
    annotations
        .get(CONTAINER_RESTART_COUNT)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_ref_round_trips_through_labels() {
        let r = PodRef {
            namespace: "ns".into(),
            name: "p".into(),
            uid: "u".into(),
        };
        assert_eq!(PodRef::from_labels(&r.labels()), Some(r));
        assert_eq!(PodRef::from_labels(&HashMap::new()), None);
    }

    #[test]
    fn restart_count_defaults_to_zero() {
        let mut a = HashMap::new();
        assert_eq!(restart_count(&a), 0);
        a.insert(CONTAINER_RESTART_COUNT.to_string(), "3".to_string());
        assert_eq!(restart_count(&a), 3);
        a.insert(CONTAINER_RESTART_COUNT.to_string(), "x".to_string());
        assert_eq!(restart_count(&a), 0);
    }
}
