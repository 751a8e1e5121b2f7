//! A StatefulSet pod's stable identity: its name `<set>-<ordinal>`, the identity labels,
//! hostname and subdomain, and the PersistentVolumeClaims `<template>-<set>-<ordinal>` it
//! mounts (upstream's `stateful_set_utils.go`).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::ResourceExt;

use crate::apps::history::POD_REVISION_LABEL;
use crate::machinery::pod_control::pod_from_template;

/// Label naming the pod itself (`apps.StatefulSetPodNameLabel`).
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// Label carrying the ordinal (`apps.PodIndexLabel`).
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

/// `(parent, ordinal)` of a pod name `<parent>-<digits>`.
pub fn parent_and_ordinal(name: &str) -> Option<(&str, i32)> {
    let (parent, digits) = name.rsplit_once('-')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((parent, digits.parse().ok()?))
}

/// The pod's ordinal, if its name has one.
pub fn ordinal(pod: &Pod) -> Option<i32> {
    parent_and_ordinal(pod.metadata.name.as_deref()?).map(|(_, o)| o)
}

/// `spec.ordinals.start` (0 when unset).
pub fn start_ordinal(set: &StatefulSet) -> i32 {
    set.spec
        .as_ref()
        .and_then(|s| s.ordinals.as_ref())
        .and_then(|o| o.start)
        .unwrap_or(0)
}

/// `spec.replicas` (1 when unset, as defaulted).
pub fn replicas(set: &StatefulSet) -> i32 {
    set.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// `<set>-<ordinal>`.
pub fn pod_name(set: &str, ordinal: i32) -> String {
    format!("{set}-{ordinal}")
}

/// `<template>-<set>-<ordinal>`.
pub fn claim_name(template: &str, set: &str, ordinal: i32) -> String {
    format!("{template}-{set}-{ordinal}")
}

/// The revision a pod was made from (its `controller-revision-hash` label).
pub fn revision(pod: &Pod) -> &str {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(POD_REVISION_LABEL))
        .map(String::as_str)
        .unwrap_or("")
}

/// The claim templates of the set.
pub fn claim_templates(set: &StatefulSet) -> &[PersistentVolumeClaim] {
    set.spec
        .as_ref()
        .and_then(|s| s.volume_claim_templates.as_deref())
        .unwrap_or(&[])
}

/// The claims pod `ordinal` of `set` uses, keyed by template name: named
/// `<template>-<set>-<ordinal>`, labelled with the template's labels and the set's
/// `matchLabels`.
pub fn claims_for(set: &StatefulSet, ordinal: i32) -> Vec<(String, PersistentVolumeClaim)> {
    let set_name = set.name_any();
    let match_labels = set
        .spec
        .as_ref()
        .and_then(|s| s.selector.match_labels.clone())
        .unwrap_or_default();
    claim_templates(set)
        .iter()
        .map(|t| {
            let tname = t.metadata.name.clone().unwrap_or_default();
            let mut c = PersistentVolumeClaim {
                metadata: t.metadata.clone(),
                spec: t.spec.clone(),
                status: None,
            };
            c.metadata.name = Some(claim_name(&tname, &set_name, ordinal));
            c.metadata.namespace = set.metadata.namespace.clone();
            c.metadata
                .labels
                .get_or_insert_with(BTreeMap::new)
                .extend(match_labels.clone());
            (tname, c)
        })
        .collect()
}

/// Whether the pod's name, namespace and identity labels are those of its ordinal in `set`.
pub fn identity_matches(set: &StatefulSet, pod: &Pod) -> bool {
    let Some((parent, ord)) = pod.metadata.name.as_deref().and_then(parent_and_ordinal) else {
        return false;
    };
    let labels = pod.metadata.labels.as_ref();
    let name = pod_name(&set.name_any(), ord);
    parent == set.name_any()
        && pod.metadata.name.as_deref() == Some(name.as_str())
        && pod.metadata.namespace == set.metadata.namespace
        && labels.and_then(|l| l.get(POD_NAME_LABEL)) == Some(&name)
        && labels.and_then(|l| l.get(POD_INDEX_LABEL)) == Some(&ord.to_string())
}

/// Whether the pod mounts every claim of its ordinal.
pub fn storage_matches(set: &StatefulSet, pod: &Pod) -> bool {
    let Some(ord) = ordinal(pod) else {
        return false;
    };
    let volumes = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_deref())
        .unwrap_or(&[]);
    claims_for(set, ord).iter().all(|(tname, claim)| {
        volumes.iter().any(|v| {
            &v.name == tname
                && v.persistent_volume_claim.as_ref().map(|p| &p.claim_name)
                    == claim.metadata.name.as_ref()
        })
    })
}

/// The identity labels of ordinal `ord`.
pub fn identity_labels(set_name: &str, ord: i32) -> BTreeMap<String, String> {
    [
        (POD_NAME_LABEL.to_string(), pod_name(set_name, ord)),
        (POD_INDEX_LABEL.to_string(), ord.to_string()),
    ]
    .into()
}

/// Pod `ord` of `set` from `template` (the template of revision `revision`): name, identity
/// labels, revision label, hostname and subdomain, and a volume per claim template (replacing
/// template volumes of the same name).
pub fn new_pod(
    set: &StatefulSet,
    template: &PodTemplateSpec,
    owner: OwnerReference,
    ord: i32,
    revision: &str,
) -> Pod {
    let set_name = set.name_any();
    let name = pod_name(&set_name, ord);
    let mut labels = identity_labels(&set_name, ord);
    labels.insert(POD_REVISION_LABEL.into(), revision.into());
    let ns = set.metadata.namespace.clone().unwrap_or_default();
    let mut pod = pod_from_template(template, &ns, owner, Some(name.clone()), &labels);
    let service = set
        .spec
        .as_ref()
        .map(|s| s.service_name.clone().unwrap_or_default())
        .unwrap_or_default();
    let spec = pod.spec.get_or_insert_with(Default::default);
    spec.hostname = Some(name);
    if !service.is_empty() {
        spec.subdomain = Some(service);
    }
    let claims = claims_for(set, ord);
    let mut volumes: Vec<Volume> = claims
        .iter()
        .map(|(tname, c)| Volume {
            name: tname.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: c.metadata.name.clone().unwrap_or_default(),
                read_only: None,
            }),
            ..Default::default()
        })
        .collect();
    for v in spec.volumes.take().unwrap_or_default() {
        if !claims.iter().any(|(t, _)| t == &v.name) {
            volumes.push(v);
        }
    }
    spec.volumes = (!volumes.is_empty()).then_some(volumes);
    pod
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{StatefulSetOrdinals, StatefulSetSpec};
    use kube::api::ObjectMeta;

    pub(crate) fn set(name: &str, replicas: i32) -> StatefulSet {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "ns", "uid": "set-uid"},
            "spec": {
                "replicas": replicas,
                "serviceName": "svc",
                "selector": {"matchLabels": {"app": name}},
                "template": {"metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{"name": "c", "image": "busybox"}],
                             "volumes": [{"name": "data", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}]}},
                "volumeClaimTemplates": [{"metadata": {"name": "data", "labels": {"t": "x"}},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]
            }
        }))
        .unwrap()
    }

    #[test]
    fn names_and_ordinals() {
        assert_eq!(parent_and_ordinal("web-12"), Some(("web", 12)));
        assert_eq!(parent_and_ordinal("my-web-0"), Some(("my-web", 0)));
        assert_eq!(parent_and_ordinal("web-x"), None);
        assert_eq!(parent_and_ordinal("web"), None);
        assert_eq!(parent_and_ordinal("web-"), None);
        assert_eq!(claim_name("data", "web", 3), "data-web-3");
        let mut s = set("web", 2);
        assert_eq!(start_ordinal(&s), 0);
        s.spec.as_mut().unwrap().ordinals = Some(StatefulSetOrdinals { start: Some(5) });
        assert_eq!(start_ordinal(&s), 5);
        let _ = StatefulSetSpec::default();
    }

    #[test]
    fn new_pod_has_identity_and_storage() {
        let s = set("web", 3);
        let t = s.spec.as_ref().unwrap().template.clone();
        let owner = crate::machinery::owner::controller_ref("apps/v1", "StatefulSet", &s.metadata);
        let p = new_pod(&s, &t, owner, 2, "web-abc");
        assert_eq!(p.metadata.name.as_deref(), Some("web-2"));
        let l = p.metadata.labels.as_ref().unwrap();
        assert_eq!(l[POD_NAME_LABEL], "web-2");
        assert_eq!(l[POD_INDEX_LABEL], "2");
        assert_eq!(l[POD_REVISION_LABEL], "web-abc");
        assert_eq!(l["app"], "web");
        let spec = p.spec.as_ref().unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("web-2"));
        assert_eq!(spec.subdomain.as_deref(), Some("svc"));
        let vols = spec.volumes.as_ref().unwrap();
        assert_eq!(vols.len(), 2, "claim volume replaces the template's `data`");
        assert_eq!(
            vols[0].persistent_volume_claim.as_ref().unwrap().claim_name,
            "data-web-2"
        );
        assert_eq!(vols[1].name, "tmp");
        assert!(identity_matches(&s, &p));
        assert!(storage_matches(&s, &p));
        let mut other = p.clone();
        other
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .remove(POD_NAME_LABEL);
        assert!(!identity_matches(&s, &other));
        let claims = claims_for(&s, 2);
        let c = &claims[0].1;
        assert_eq!(c.metadata.name.as_deref(), Some("data-web-2"));
        let cl = c.metadata.labels.as_ref().unwrap();
        assert_eq!((cl["t"].as_str(), cl["app"].as_str()), ("x", "web"));
        let _ = ObjectMeta::default();
    }
}
