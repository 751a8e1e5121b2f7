//! Storage classes as the binder reads them: the class of a claim or volume (the beta
//! annotation before the field), the default class, and WaitForFirstConsumer.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;

/// The beta class annotation, read before `spec.storageClassName` on claims and volumes.
pub const BETA_STORAGE_CLASS: &str = "volume.beta.kubernetes.io/storage-class";
/// Marks the default StorageClass.
pub const IS_DEFAULT_CLASS: &str = "storageclass.kubernetes.io/is-default-class";
/// The beta form of [`IS_DEFAULT_CLASS`].
pub const BETA_IS_DEFAULT_CLASS: &str = "storageclass.beta.kubernetes.io/is-default-class";
/// `volumeBindingMode` that waits for the scheduler.
pub const WAIT_FOR_FIRST_CONSUMER: &str = "WaitForFirstConsumer";

fn annotation<'a>(
    meta: &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    key: &str,
) -> Option<&'a str> {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

/// The class a claim asks for ("" for none).
pub fn claim_class(claim: &PersistentVolumeClaim) -> &str {
    annotation(&claim.metadata, BETA_STORAGE_CLASS)
        .or_else(|| {
            claim
                .spec
                .as_ref()
                .and_then(|s| s.storage_class_name.as_deref())
        })
        .unwrap_or("")
}

/// Whether the claim names a class at all (an explicit `""` counts: it opts out of the
/// default class).
pub fn claim_has_class(claim: &PersistentVolumeClaim) -> bool {
    annotation(&claim.metadata, BETA_STORAGE_CLASS).is_some()
        || claim
            .spec
            .as_ref()
            .is_some_and(|s| s.storage_class_name.is_some())
}

/// The class of a volume ("" for none).
pub fn volume_class(pv: &PersistentVolume) -> &str {
    annotation(&pv.metadata, BETA_STORAGE_CLASS)
        .or_else(|| {
            pv.spec
                .as_ref()
                .and_then(|s| s.storage_class_name.as_deref())
        })
        .unwrap_or("")
}

/// Whether `class` is marked default (GA or beta annotation).
pub fn is_default(class: &StorageClass) -> bool {
    [IS_DEFAULT_CLASS, BETA_IS_DEFAULT_CLASS]
        .iter()
        .any(|k| annotation(&class.metadata, k) == Some("true"))
}

/// The default class: of several, the newest, then the first by name (as upstream).
pub fn default_class(classes: &[Arc<StorageClass>]) -> Option<&Arc<StorageClass>> {
    classes.iter().filter(|c| is_default(c)).min_by(|a, b| {
        let created = |c: &StorageClass| c.metadata.creation_timestamp.as_ref().map(|t| t.0);
        created(b)
            .cmp(&created(a))
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    })
}

/// Whether the claim's class delays binding until a pod is scheduled. A missing class
/// binds immediately; a class without `volumeBindingMode` is an error naming the field.
pub fn is_delay_binding(
    claim: &PersistentVolumeClaim,
    classes: &[Arc<StorageClass>],
) -> Result<bool, String> {
    let name = claim_class(claim);
    if name.is_empty() {
        return Ok(false);
    }
    let Some(class) = classes
        .iter()
        .find(|c| c.metadata.name.as_deref() == Some(name))
    else {
        return Ok(false);
    };
    match class.volume_binding_mode.as_deref() {
        Some(mode) => Ok(mode == WAIT_FOR_FIRST_CONSUMER),
        None => Err(format!(
            "VolumeBindingMode not set for StorageClass {name:?}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn class(name: &str, created: &str, default: bool) -> Arc<StorageClass> {
        let ann = if default {
            json!({IS_DEFAULT_CLASS: "true"})
        } else {
            json!({})
        };
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "creationTimestamp": created, "annotations": ann},
                "provisioner": "x", "volumeBindingMode": "Immediate"
            }))
            .unwrap(),
        )
    }

    #[test]
    fn beta_annotation_wins_and_empty_class_counts() {
        let c: PersistentVolumeClaim = serde_json::from_value(json!({
            "metadata": {"annotations": {BETA_STORAGE_CLASS: "beta"}},
            "spec": {"storageClassName": "ga"}
        }))
        .unwrap();
        assert_eq!(claim_class(&c), "beta");
        let c: PersistentVolumeClaim =
            serde_json::from_value(json!({"spec": {"storageClassName": ""}})).unwrap();
        assert!(claim_has_class(&c));
        assert_eq!(claim_class(&c), "");
        let c: PersistentVolumeClaim = serde_json::from_value(json!({"spec": {}})).unwrap();
        assert!(!claim_has_class(&c));
    }

    #[test]
    fn newest_default_class_then_name() {
        let classes = vec![
            class("old", "2020-01-01T00:00:00Z", true),
            class("b", "2024-01-01T00:00:00Z", true),
            class("a", "2024-01-01T00:00:00Z", true),
            class("newest-not-default", "2025-01-01T00:00:00Z", false),
        ];
        let d = default_class(&classes).unwrap();
        assert_eq!(d.metadata.name.as_deref(), Some("a"));
        assert!(default_class(&classes[3..]).is_none());
    }

    #[test]
    fn delay_binding_needs_the_mode() {
        let mut wffc = (*class("wffc", "2024-01-01T00:00:00Z", false)).clone();
        wffc.volume_binding_mode = Some(WAIT_FOR_FIRST_CONSUMER.into());
        let mut unset = wffc.clone();
        unset.metadata.name = Some("unset".into());
        unset.volume_binding_mode = None;
        let classes = vec![Arc::new(wffc), Arc::new(unset)];
        let claim = |c: &str| -> PersistentVolumeClaim {
            serde_json::from_value(json!({"spec": {"storageClassName": c}})).unwrap()
        };
        assert_eq!(is_delay_binding(&claim("wffc"), &classes), Ok(true));
        assert_eq!(is_delay_binding(&claim("missing"), &classes), Ok(false));
        assert_eq!(is_delay_binding(&claim(""), &classes), Ok(false));
        let err = is_delay_binding(&claim("unset"), &classes).unwrap_err();
        assert!(err.contains("VolumeBindingMode"), "{err}");
    }
}
