//! Which PersistentVolumeClaims a pod's volumes name, as component-helpers'
//! `storage/ephemeral.VolumeClaimName`: a `persistentVolumeClaim` volume its `claimName`, a
//! generic ephemeral volume the claim `<pod>-<volume>` the ephemeral-volume controller
//! creates for it.

use k8s_openapi::api::core::v1::{Pod, Volume};

/// The claim a generic ephemeral volume `volume` of `pod` gets: `<pod>-<volume>`.
pub fn ephemeral_claim_name(pod: &Pod, volume: &str) -> String {
    format!(
        "{}-{volume}",
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

/// The claim volume `v` of `pod` uses, if any.
pub fn claim_of_volume(pod: &Pod, v: &Volume) -> Option<String> {
    match (&v.persistent_volume_claim, &v.ephemeral) {
        (Some(c), _) => Some(c.claim_name.clone()),
        (None, Some(_)) => Some(ephemeral_claim_name(pod, &v.name)),
        _ => None,
    }
}

/// The claims (names in the pod's namespace) `pod`'s volumes use, in volume order.
pub fn pod_claims(pod: &Pod) -> Vec<String> {
    let volumes = pod.spec.as_ref().and_then(|s| s.volumes.as_ref());
    volumes
        .into_iter()
        .flatten()
        .filter_map(|v| claim_of_volume(pod, v))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_and_generic_ephemeral_names() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-0"},
            "spec": {"containers": [], "volumes": [
                {"name": "data", "persistentVolumeClaim": {"claimName": "c1"}},
                {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}},
                {"name": "cfg", "configMap": {"name": "x"}}]}
        }))
        .unwrap();
        assert_eq!(pod_claims(&pod), ["c1", "web-0-scratch"]);
        assert_eq!(ephemeral_claim_name(&pod, "v"), "web-0-v");
    }
}
