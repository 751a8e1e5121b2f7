//! The node's `status.volumesInUse`: the attachable volumes this kubelet's pods need, which
//! the attach-detach controller must not detach (upstream's volume manager reports those of
//! its desired state). The only attachable volumes here are CSI PersistentVolumes; the
//! kubelet has no CSI driver to mount them, so a pod using one waits (FailedMount) and the
//! volume counts as in use while the pod has not finished.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use api_helpers::volumes::pod_claims;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use kube::Api;

/// The unique name upstream's CSI plugin gives a PersistentVolume's volume
/// (`kubernetes.io/csi/<driver>^<volumeHandle>`), `None` for other volume types.
pub fn csi_unique_name(pv: &PersistentVolume) -> Option<String> {
    let csi = pv.spec.as_ref()?.csi.as_ref()?;
    Some(format!(
        "kubernetes.io/csi/{}^{}",
        csi.driver, csi.volume_handle
    ))
}

/// Whether the pod still needs its volumes: it has not Succeeded or Failed.
fn needs_volumes(pod: &Pod) -> bool {
    !matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// `status.volumesInUse` for `pods`: the unique names `csi(namespace, claim)` gives the
/// claims of the pods that still need them, sorted and deduplicated.
pub fn volumes_in_use(pods: &[Pod], csi: impl Fn(&str, &str) -> Option<String>) -> Vec<String> {
    let set: BTreeSet<String> = pods
        .iter()
        .filter(|p| needs_volumes(p))
        .flat_map(|p| {
            let ns = p.metadata.namespace.as_deref().unwrap_or("default");
            pod_claims(p)
                .into_iter()
                .filter_map(|c| csi(ns, &c))
                .collect::<Vec<_>>()
        })
        .collect();
    set.into_iter().collect()
}

/// Resolves claims to CSI unique volume names through the API (claim, then its bound
/// volume), remembering what it found: a bound claim's volume does not change.
#[derive(Default)]
pub struct ClaimResolver {
    found: Mutex<HashMap<(String, String), Option<String>>>,
}

impl ClaimResolver {
    /// `status.volumesInUse` for `pods` (the pods bound to this node).
    pub async fn volumes_in_use(&self, client: &kube::Client, pods: &[Pod]) -> Vec<String> {
        let wanted: BTreeSet<(String, String)> = pods
            .iter()
            .filter(|p| needs_volumes(p))
            .flat_map(|p| {
                let ns = p
                    .metadata
                    .namespace
                    .clone()
                    .unwrap_or_else(|| "default".into());
                pod_claims(p).into_iter().map(move |c| (ns.clone(), c))
            })
            .collect();
        let mut found = self.found.lock().unwrap_or_else(|e| e.into_inner()).clone();
        found.retain(|k, _| wanted.contains(k));
        for key in wanted {
            if found.contains_key(&key) {
                continue;
            }
            if let Some(resolved) = resolve(client, &key.0, &key.1).await {
                found.insert(key, resolved);
            }
        }
        let names = volumes_in_use(pods, |ns, c| {
            found
                .get(&(ns.to_string(), c.to_string()))
                .cloned()
                .flatten()
        });
        *self.found.lock().unwrap_or_else(|e| e.into_inner()) = found;
        names
    }
}

/// The CSI unique name of the volume `claim` is bound to: `Some(None)` when it is bound to
/// another kind of volume, `None` when not known yet (unbound, or the API did not answer).
async fn resolve(client: &kube::Client, ns: &str, claim: &str) -> Option<Option<String>> {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let c = claims.get_opt(claim).await.ok()??;
    let volume = c
        .spec
        .as_ref()?
        .volume_name
        .clone()
        .filter(|v| !v.is_empty())?;
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let pv = pvs.get_opt(&volume).await.ok()??;
    Some(csi_unique_name(&pv))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, phase: &str, volumes: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {"containers": [], "volumes": volumes},
            "status": {"phase": phase}
        }))
        .unwrap()
    }

    #[test]
    fn csi_claims_of_unfinished_pods_are_in_use() {
        let pods = [
            pod(
                "a",
                "Pending",
                json!([{"name": "d", "persistentVolumeClaim": {"claimName": "c1"}},
                                       {"name": "e", "emptyDir": {}}]),
            ),
            pod(
                "b",
                "Running",
                json!([{"name": "d", "persistentVolumeClaim": {"claimName": "c1"}},
                                       {"name": "s", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}}]),
            ),
            pod(
                "done",
                "Succeeded",
                json!([{"name": "d", "persistentVolumeClaim": {"claimName": "c3"}}]),
            ),
            pod(
                "hostpath",
                "Running",
                json!([{"name": "d", "persistentVolumeClaim": {"claimName": "local"}}]),
            ),
        ];
        assert_eq!(pod_claims(&pods[1]), ["c1", "b-s"]);
        let csi = |ns: &str, c: &str| -> Option<String> {
            assert_eq!(ns, "ns");
            match c {
                "c1" => Some("kubernetes.io/csi/d^h1".into()),
                "b-s" => Some("kubernetes.io/csi/d^h0".into()),
                "c3" => Some("kubernetes.io/csi/d^h3".into()),
                _ => None,
            }
        };
        assert_eq!(
            volumes_in_use(&pods, csi),
            ["kubernetes.io/csi/d^h0", "kubernetes.io/csi/d^h1"]
        );
    }

    #[test]
    fn only_csi_volumes_have_unique_names() {
        let pv: PersistentVolume = serde_json::from_value(json!({"metadata": {"name": "p"},
            "spec": {"csi": {"driver": "disk.example.com", "volumeHandle": "vol-1"}}}))
        .unwrap();
        assert_eq!(
            csi_unique_name(&pv).as_deref(),
            Some("kubernetes.io/csi/disk.example.com^vol-1")
        );
        let local: PersistentVolume = serde_json::from_value(json!({"metadata": {"name": "p"},
            "spec": {"hostPath": {"path": "/x"}}}))
        .unwrap();
        assert_eq!(csi_unique_name(&local), None);
    }
}
