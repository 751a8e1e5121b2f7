//! ServiceCIDRs (`networking.k8s.io/v1`): the ranges ClusterIPs are allocated from. The
//! nftables proxier drops new connections to addresses in them that no Service holds,
//! as upstream's `OnServiceCIDRsChanged` feeds its `cluster-ips-check` chain.

use super::{Cidr, IpFamily};
use k8s_openapi::api::networking::v1::ServiceCIDR;
use std::collections::BTreeSet;

/// The distinct CIDRs of `family` in `objects`' `spec.cidrs`, sorted (objects being
/// deleted still count, as upstream's informer keeps them until they are gone).
/// Unparsable entries are skipped with a warning rather than breaking the transaction.
pub fn service_cidrs<'a>(
    objects: impl IntoIterator<Item = &'a ServiceCIDR>,
    family: IpFamily,
) -> Vec<Cidr> {
    let mut out = BTreeSet::new();
    for obj in objects {
        for text in obj.spec.iter().flat_map(|s| s.cidrs.iter().flatten()) {
            match text.parse::<Cidr>() {
                Ok(c) if IpFamily::of(&c.addr) == family => {
                    out.insert(c);
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(
                    servicecidr = obj.metadata.name.as_deref().unwrap_or_default(),
                    error = %e,
                    "Ignoring an invalid spec.cidrs entry"
                ),
            }
        }
    }
    out.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(name: &str, cidrs: &[&str]) -> ServiceCIDR {
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"cidrs": cidrs}}))
            .unwrap()
    }

    #[test]
    fn merges_dedupes_and_splits_by_family() {
        let objs = [
            obj("kubernetes", &["10.96.0.0/16", "fd00:10:96::/112"]),
            obj("extra", &["10.97.0.0/24", "10.96.0.0/16", "not-a-cidr"]),
            obj("empty", &[]),
        ];
        let v4: Vec<String> = service_cidrs(&objs, IpFamily::V4)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(v4, ["10.96.0.0/16", "10.97.0.0/24"]);
        let v6: Vec<String> = service_cidrs(&objs, IpFamily::V6)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(v6, ["fd00:10:96::/112"]);
        assert!(service_cidrs(&[], IpFamily::V4).is_empty());
    }
}
