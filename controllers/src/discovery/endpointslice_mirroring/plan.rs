//! From the mirrored slices that exist to the ones [`super::desired`] asks for: one slice per
//! address type and port set, updated in place when its content, labels, annotations or
//! owner differ, extras deleted, and a slice about to be created reusing the name of one
//! about to be deleted (upstream's `recycleSlices`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Endpoints;
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::ObjectMeta;

use super::desired::{Desired, SliceKey};
use super::MANAGED_BY;
use crate::discovery::endpoints::slices::{Plan, MANAGED_BY_LABEL, SERVICE_NAME_LABEL};

/// Annotation the endpoints controller stamps with the last pod change (not mirrored).
pub const LAST_CHANGE_TRIGGER_TIME: &str = "endpoints.kubernetes.io/last-change-trigger-time";
/// kubectl's last-applied configuration (not mirrored).
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The longest name `generateName` may produce from (a DNS subdomain).
const MAX_NAME: usize = 253;

/// The labels of a mirrored slice: the Endpoints' own plus the service name and manager.
pub fn labels(endpoints: &Endpoints) -> BTreeMap<String, String> {
    let mut labels = endpoints.metadata.labels.clone().unwrap_or_default();
    labels.insert(
        SERVICE_NAME_LABEL.into(),
        endpoints.metadata.name.clone().unwrap_or_default(),
    );
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
    labels
}

/// The annotations of a mirrored slice: the Endpoints' own except the trigger time and
/// kubectl's last-applied configuration.
pub fn annotations(endpoints: &Endpoints) -> BTreeMap<String, String> {
    let mut a = endpoints.metadata.annotations.clone().unwrap_or_default();
    a.remove(LAST_CHANGE_TRIGGER_TIME);
    a.remove(LAST_APPLIED);
    a
}

/// The controller reference to `endpoints` every mirrored slice carries.
pub fn owner(endpoints: &Endpoints) -> OwnerReference {
    OwnerReference {
        api_version: "v1".into(),
        kind: "Endpoints".into(),
        name: endpoints.metadata.name.clone().unwrap_or_default(),
        uid: endpoints.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// A new mirrored slice (`name` empty: created with `generateName`).
pub fn new_slice(
    endpoints: &Endpoints,
    ports: Vec<EndpointPort>,
    address_type: &str,
    endpoint_list: Vec<Endpoint>,
    name: Option<String>,
) -> EndpointSlice {
    let base = endpoints.metadata.name.clone().unwrap_or_default();
    let generate_name = name.is_none().then(|| {
        if base.len() < MAX_NAME {
            format!("{base}-")
        } else {
            base.clone()
        }
    });
    EndpointSlice {
        metadata: ObjectMeta {
            name,
            generate_name,
            namespace: endpoints.metadata.namespace.clone(),
            labels: Some(labels(endpoints)),
            annotations: Some(annotations(endpoints)),
            owner_references: Some(vec![owner(endpoints)]),
            ..Default::default()
        },
        address_type: address_type.into(),
        endpoints: endpoint_list,
        ports: Some(ports),
    }
}

fn sorted(eps: &[Endpoint]) -> Vec<Endpoint> {
    let mut v = eps.to_vec();
    v.sort_by(|a, b| {
        let uid = |e: &Endpoint| e.target_ref.as_ref().and_then(|r| r.uid.clone());
        (&a.addresses, uid(a)).cmp(&(&b.addresses, uid(b)))
    });
    v
}

/// Whether `slice` already mirrors `endpoints` with `want` as its endpoints.
fn up_to_date(slice: &EndpointSlice, endpoints: &Endpoints, want: &[Endpoint]) -> bool {
    let mut have_labels = slice.metadata.labels.clone().unwrap_or_default();
    have_labels.remove(MANAGED_BY_LABEL);
    have_labels.remove(SERVICE_NAME_LABEL);
    let want_labels = endpoints.metadata.labels.clone().unwrap_or_default();
    let have_annotations = slice.metadata.annotations.clone().unwrap_or_default();
    // An owner reference to an earlier Endpoints of the same name means it was recreated.
    let stale_owner = slice.metadata.owner_references.iter().flatten().any(|o| {
        o.kind == "Endpoints"
            && Some(&o.name) == endpoints.metadata.name.as_ref()
            && Some(&o.uid) != endpoints.metadata.uid.as_ref()
    });
    sorted(&slice.endpoints) == sorted(want)
        && have_labels == want_labels
        && have_annotations == annotations(endpoints)
        && !stale_owner
}

/// What to write so that `existing` (this controller's slices for `endpoints`) mirrors
/// `desired`; slices keep at most `max_per_slice` endpoints.
pub fn plan(
    endpoints: &Endpoints,
    desired: &Desired,
    existing: &[EndpointSlice],
    max_per_slice: usize,
) -> Plan {
    let mut by_key: BTreeMap<SliceKey, Vec<&EndpointSlice>> = BTreeMap::new();
    for s in existing {
        let key = SliceKey::new(s.ports.as_deref().unwrap_or_default(), &s.address_type);
        by_key.entry(key).or_default().push(s);
    }
    for slices in by_key.values_mut() {
        slices.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    }
    let mut plan = Plan::default();
    let mut deleted: Vec<&EndpointSlice> = Vec::new();
    for (key, group) in &desired.groups {
        let have = by_key.remove(key).unwrap_or_default();
        if group.endpoints.is_empty() {
            deleted.extend(have);
            continue;
        }
        let mut want = group.endpoints.clone();
        want.truncate(max_per_slice.max(1));
        let Some((first, extra)) = have.split_first() else {
            plan.create.push(new_slice(
                endpoints,
                group.ports.clone(),
                &key.address_type,
                want,
                None,
            ));
            continue;
        };
        deleted.extend(extra.iter().copied());
        if up_to_date(first, endpoints, &want) {
            continue;
        }
        let mut s = new_slice(
            endpoints,
            group.ports.clone(),
            &key.address_type,
            want,
            first.metadata.name.clone(),
        );
        s.metadata.resource_version = first.metadata.resource_version.clone();
        plan.update.push(s);
    }
    // Slices whose address type and port set no longer occur.
    deleted.extend(by_key.into_values().flatten());
    // A slice to create takes over the name of one to delete of the same address type.
    let mut creates = std::mem::take(&mut plan.create);
    let mut i = 0;
    while i < creates.len() {
        let reuse = deleted
            .iter()
            .position(|d| d.address_type == creates[i].address_type);
        match reuse {
            Some(j) => {
                let old = deleted.remove(j);
                let mut s = creates.remove(i);
                s.metadata.generate_name = None;
                s.metadata.name = old.metadata.name.clone();
                s.metadata.resource_version = old.metadata.resource_version.clone();
                plan.update.push(s);
            }
            None => i += 1,
        }
    }
    plan.create = creates;
    plan.delete = deleted
        .into_iter()
        .filter_map(|s| s.metadata.name.clone())
        .collect();
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::endpointslice_mirroring::desired::desired;
    use serde_json::json;

    fn endpoints(ips: &[&str], port: i32) -> Endpoints {
        let addrs: Vec<_> = ips.iter().map(|ip| json!({"ip": ip})).collect();
        serde_json::from_value(json!({
            "metadata": {"name": "ext", "namespace": "ns", "uid": "ep-uid",
                "labels": {"team": "a"},
                "annotations": {"note": "x", LAST_CHANGE_TRIGGER_TIME: "2026-01-01T00:00:00Z", LAST_APPLIED: "{}"}},
            "subsets": [{"addresses": addrs, "ports": [{"name": "http", "port": port, "protocol": "TCP"}]}]
        }))
        .unwrap()
    }

    /// What the apiserver would return for a created slice.
    fn stored(mut s: EndpointSlice, name: &str) -> EndpointSlice {
        s.metadata.name = Some(name.into());
        s.metadata.generate_name = None;
        s.metadata.resource_version = Some("1".into());
        s
    }

    #[test]
    fn new_endpoints_get_one_labelled_owned_slice() {
        let e = endpoints(&["10.0.0.1", "10.0.0.2"], 80);
        let p = plan(&e, &desired(&e, 1000), &[], 1000);
        assert!(p.update.is_empty() && p.delete.is_empty());
        assert_eq!(p.create.len(), 1);
        let s = &p.create[0];
        assert_eq!(s.metadata.generate_name.as_deref(), Some("ext-"));
        assert_eq!(s.address_type, "IPv4");
        let l = s.metadata.labels.as_ref().unwrap();
        assert_eq!(l[SERVICE_NAME_LABEL], "ext");
        assert_eq!(
            l[MANAGED_BY_LABEL],
            "endpointslicemirroring-controller.k8s.io"
        );
        assert_eq!(l["team"], "a");
        let a = s.metadata.annotations.as_ref().unwrap();
        assert_eq!(a.keys().collect::<Vec<_>>(), vec!["note"]);
        let o = &s.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (
                o.kind.as_str(),
                o.name.as_str(),
                o.uid.as_str(),
                o.controller
            ),
            ("Endpoints", "ext", "ep-uid", Some(true))
        );
        assert_eq!(s.endpoints.len(), 2);
        assert_eq!(s.ports.as_ref().unwrap()[0].port, Some(80));
    }

    #[test]
    fn unchanged_slices_are_left_alone_and_duplicates_deleted() {
        let e = endpoints(&["10.0.0.1"], 80);
        let created = plan(&e, &desired(&e, 1000), &[], 1000).create.remove(0);
        let a = stored(created.clone(), "ext-a");
        let b = stored(created, "ext-b");
        let p = plan(&e, &desired(&e, 1000), &[b, a], 1000);
        assert!(p.create.is_empty() && p.update.is_empty(), "{p:?}");
        assert_eq!(p.delete, vec!["ext-b"]);
    }

    #[test]
    fn changes_update_in_place() {
        let e = endpoints(&["10.0.0.1"], 80);
        let a = stored(
            plan(&e, &desired(&e, 1000), &[], 1000).create.remove(0),
            "ext-a",
        );
        // A new address.
        let e2 = endpoints(&["10.0.0.1", "10.0.0.3"], 80);
        let p = plan(&e2, &desired(&e2, 1000), std::slice::from_ref(&a), 1000);
        assert_eq!(p.update.len(), 1);
        assert_eq!(p.update[0].metadata.name.as_deref(), Some("ext-a"));
        assert_eq!(p.update[0].metadata.resource_version.as_deref(), Some("1"));
        assert_eq!(p.update[0].endpoints.len(), 2);
        // A new label only.
        let mut e3 = e.clone();
        e3.metadata
            .labels
            .as_mut()
            .unwrap()
            .insert("x".into(), "y".into());
        assert_eq!(
            plan(&e3, &desired(&e3, 1000), std::slice::from_ref(&a), 1000)
                .update
                .len(),
            1
        );
        // A recreated Endpoints (new UID) rebuilds the slice to fix its owner.
        let mut e4 = e.clone();
        e4.metadata.uid = Some("other".into());
        let p = plan(&e4, &desired(&e4, 1000), std::slice::from_ref(&a), 1000);
        assert_eq!(
            p.update[0].metadata.owner_references.as_ref().unwrap()[0].uid,
            "other"
        );
        // Only the trigger-time annotation changed: nothing to do.
        let mut e5 = e.clone();
        e5.metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert(LAST_CHANGE_TRIGGER_TIME.into(), "later".into());
        assert!(plan(&e5, &desired(&e5, 1000), &[a], 1000).is_empty());
    }

    #[test]
    fn a_port_change_recycles_the_old_slice() {
        let e = endpoints(&["10.0.0.1"], 80);
        let a = stored(
            plan(&e, &desired(&e, 1000), &[], 1000).create.remove(0),
            "ext-a",
        );
        let e2 = endpoints(&["10.0.0.1"], 8080);
        let p = plan(&e2, &desired(&e2, 1000), &[a], 1000);
        assert!(p.create.is_empty() && p.delete.is_empty(), "{p:?}");
        assert_eq!(p.update[0].metadata.name.as_deref(), Some("ext-a"));
        assert_eq!(p.update[0].ports.as_ref().unwrap()[0].port, Some(8080));
    }

    #[test]
    fn empty_endpoints_delete_every_slice() {
        let e = endpoints(&["10.0.0.1"], 80);
        let a = stored(
            plan(&e, &desired(&e, 1000), &[], 1000).create.remove(0),
            "ext-a",
        );
        let mut empty = e.clone();
        empty.subsets = None;
        let p = plan(&empty, &desired(&empty, 1000), &[a], 1000);
        assert!(p.create.is_empty() && p.update.is_empty());
        assert_eq!(p.delete, vec!["ext-a"]);
    }
}
