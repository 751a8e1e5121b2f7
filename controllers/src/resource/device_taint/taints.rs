//! The device-taint-eviction rules as pure functions: a device's taints (its ResourceSlice's,
//! from the newest generation of its pool, plus matching DeviceTaintRules), whether a
//! toleration tolerates a taint, and when a claim's allocation, and so a pod, is to be
//! evicted.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::resource::v1::{
    DeviceRequestAllocationResult, DeviceTaint, DeviceToleration, ResourceClaim, ResourceSlice,
};

use super::rule::{self, DeviceTaintRule};
use crate::resource::claim::names::{
    claim_name, is_allocated, is_for_pod, is_reserved_for_pod, pod_claims, ClaimName,
};

/// The effect that evicts.
pub const NO_EXECUTE: &str = "NoExecute";

/// Upstream's `ToleratesTaint`: effect and key match when set; `Equal` (the default)
/// compares values, `Exists` matches any value.
pub fn tolerates(t: &DeviceToleration, taint: &DeviceTaint) -> bool {
    fn set(s: &Option<String>) -> Option<&str> {
        s.as_deref().filter(|s| !s.is_empty())
    }
    if set(&t.effect).is_some_and(|e| e != taint.effect) {
        return false;
    }
    if set(&t.key).is_some_and(|k| k != taint.key) {
        return false;
    }
    match t.operator.as_deref().unwrap_or_default() {
        "" | "Equal" => {
            t.value.as_deref().unwrap_or_default() == taint.value.as_deref().unwrap_or_default()
        }
        "Exists" => true,
        _ => false,
    }
}

/// The taints of device `driver/pool/device`: those in the slices of the pool's newest
/// generation that list it, plus those of the `rules` that select it. `None` when no
/// slice of the newest generation has the device. Rules this controller cannot evaluate are
/// reported to `skipped` (rule name, reason) and not applied.
pub fn device_taints<'a>(
    slices: impl IntoIterator<Item = &'a ResourceSlice>,
    rules: impl IntoIterator<Item = &'a DeviceTaintRule>,
    (driver, pool, device): (&str, &str, &str),
    mut skipped: impl FnMut(&str, String),
) -> Option<Vec<DeviceTaint>> {
    let in_pool: Vec<&ResourceSlice> = slices
        .into_iter()
        .filter(|s| s.spec.driver == driver && s.spec.pool.name == pool)
        .collect();
    let newest = in_pool.iter().map(|s| s.spec.pool.generation).max()?;
    let found = in_pool
        .iter()
        .filter(|s| s.spec.pool.generation == newest)
        .flat_map(|s| s.spec.devices.iter().flatten())
        .find(|d| d.name == device)?;
    let mut taints: Vec<DeviceTaint> = found.taints.clone().unwrap_or_default();
    for r in rules {
        match rule::selects(r, driver, pool, device) {
            Ok(true) => taints.push(r.spec.taint.clone()),
            Ok(false) => {}
            Err(why) => skipped(r.metadata.name.as_deref().unwrap_or_default(), why),
        }
    }
    Some(taints)
}

/// Upstream's `evictionTime` of an allocation: for each allocated device and each of its
/// NoExecute taints (`taints(result)`), the taint's `timeAdded`, delayed by the smallest
/// `tolerationSeconds` of the NoExecute tolerations that match it; a matching toleration
/// without seconds tolerates the taint for good. The earliest over all, `None` when no
/// taint evicts.
pub fn eviction_time(
    results: &[DeviceRequestAllocationResult],
    taints: impl Fn(&DeviceRequestAllocationResult) -> Vec<DeviceTaint>,
) -> Option<Timestamp> {
    let mut earliest: Option<Timestamp> = None;
    for result in results {
        let tolerations: Vec<&DeviceToleration> = result
            .tolerations
            .iter()
            .flatten()
            .filter(|t| t.effect.as_deref() == Some(NO_EXECUTE))
            .collect();
        for taint in taints(result).iter().filter(|t| t.effect == NO_EXECUTE) {
            // Apiservers set timeAdded; without it there is no time to count from.
            let Some(added) = taint.time_added.as_ref().map(|t| t.0) else {
                continue;
            };
            let matching: Vec<&&DeviceToleration> =
                tolerations.iter().filter(|t| tolerates(t, taint)).collect();
            if matching.iter().any(|t| t.toleration_seconds.is_none()) {
                continue;
            }
            let at = match matching.iter().filter_map(|t| t.toleration_seconds).min() {
                Some(secs) => added
                    .checked_add(SignedDuration::from_secs(secs.max(0)))
                    .unwrap_or(Timestamp::MAX),
                None => added,
            };
            earliest = Some(earliest.map_or(at, |e| e.min(at)));
        }
    }
    earliest
}

/// The allocation results of `claim` (empty when not allocated).
pub fn allocated_devices(claim: &ResourceClaim) -> &[DeviceRequestAllocationResult] {
    claim
        .status
        .as_ref()
        .and_then(|s| s.allocation.as_ref())
        .and_then(|a| a.devices.as_ref())
        .and_then(|d| d.results.as_deref())
        .unwrap_or_default()
}

/// When `pod` is to be evicted: the earliest eviction time (`claim_eviction`) of the
/// allocated claims it uses and that are reserved for it (generated ones only when the pod
/// owns them). `None` for pods not scheduled or with nothing to evict for.
pub fn pod_eviction_time(
    pod: &Pod,
    claim: impl Fn(&str) -> Option<ResourceClaim>,
    claim_eviction: impl Fn(&ResourceClaim) -> Option<Timestamp>,
) -> Option<Timestamp> {
    let scheduled = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_some_and(|n| !n.is_empty());
    if !scheduled {
        return None;
    }
    pod_claims(pod)
        .iter()
        .filter_map(|pc| match claim_name(pod, pc) {
            ClaimName::Named { name, check_owner } => Some((name, check_owner)),
            _ => None,
        })
        .filter_map(|(name, check_owner)| {
            let c = claim(&name)?;
            let usable = is_allocated(&c)
                && (!check_owner || is_for_pod(pod, &c))
                && is_reserved_for_pod(pod, &c);
            usable.then(|| claim_eviction(&c)).flatten()
        })
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn taint(key: &str, effect: &str, added: &str) -> DeviceTaint {
        serde_json::from_value(
            json!({"key": key, "value": "v", "effect": effect, "timeAdded": added}),
        )
        .unwrap()
    }

    fn toleration(v: serde_json::Value) -> DeviceToleration {
        serde_json::from_value(v).unwrap()
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn tolerations_match_like_upstreams() {
        let t = taint("k", NO_EXECUTE, "2026-01-01T00:00:00Z");
        assert!(tolerates(
            &toleration(json!({"key": "k", "value": "v"})),
            &t
        ));
        assert!(tolerates(
            &toleration(json!({"key": "k", "operator": "Equal", "value": "v"})),
            &t
        ));
        assert!(!tolerates(
            &toleration(json!({"key": "k", "value": "w"})),
            &t
        ));
        assert!(tolerates(
            &toleration(json!({"key": "k", "operator": "Exists"})),
            &t
        ));
        assert!(tolerates(&toleration(json!({"operator": "Exists"})), &t));
        assert!(!tolerates(
            &toleration(json!({"key": "other", "operator": "Exists"})),
            &t
        ));
        assert!(!tolerates(
            &toleration(json!({"operator": "Exists", "effect": "NoSchedule"})),
            &t
        ));
        assert!(!tolerates(&toleration(json!({"operator": "Bogus"})), &t));
    }

    fn result(tolerations: serde_json::Value) -> DeviceRequestAllocationResult {
        serde_json::from_value(json!({"request": "gpu", "driver": "d", "pool": "p",
            "device": "gpu-0", "tolerations": tolerations}))
        .unwrap()
    }

    #[test]
    fn untolerated_no_execute_taints_evict_from_their_time_added() {
        let taints = vec![
            taint("soft", "NoSchedule", "2026-01-01T00:00:00Z"),
            taint("late", NO_EXECUTE, "2026-01-01T00:10:00Z"),
            taint("early", NO_EXECUTE, "2026-01-01T00:05:00Z"),
        ];
        let at = eviction_time(&[result(json!([]))], |_| taints.clone());
        assert_eq!(at, Some(ts("2026-01-01T00:05:00Z")));
        // NoSchedule alone never evicts.
        assert_eq!(
            eviction_time(&[result(json!([]))], |_| taints[..1].to_vec()),
            None
        );
    }

    #[test]
    fn toleration_seconds_delay_and_unbounded_tolerations_keep() {
        let taints = vec![taint("k", NO_EXECUTE, "2026-01-01T00:00:00Z")];
        let delayed = result(json!([
            {"key": "k", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            {"key": "k", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60}
        ]));
        assert_eq!(
            eviction_time(&[delayed], |_| taints.clone()),
            Some(ts("2026-01-01T00:01:00Z"))
        );
        let negative =
            result(json!([{"operator": "Exists", "effect": "NoExecute", "tolerationSeconds": -5}]));
        assert_eq!(
            eviction_time(&[negative], |_| taints.clone()),
            Some(ts("2026-01-01T00:00:00Z"))
        );
        let forever = result(json!([{"operator": "Exists", "effect": "NoExecute"}]));
        assert_eq!(eviction_time(&[forever], |_| taints.clone()), None);
        // Upstream counts only tolerations with effect NoExecute.
        let any_effect = result(json!([{"operator": "Exists"}]));
        assert_eq!(
            eviction_time(&[any_effect], |_| taints.clone()),
            Some(ts("2026-01-01T00:00:00Z"))
        );
    }

    fn slice(name: &str, generation: i64, devices: serde_json::Value) -> ResourceSlice {
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": {
            "driver": "d", "nodeName": "n1",
            "pool": {"name": "p", "generation": generation, "resourceSliceCount": 1},
            "devices": devices}}))
        .unwrap()
    }

    #[test]
    fn only_the_newest_pool_generation_and_selecting_rules_count() {
        let old = slice(
            "old",
            1,
            json!([{"name": "gpu-0", "taints": [
            {"key": "stale", "effect": "NoExecute", "timeAdded": "2026-01-01T00:00:00Z"}]}]),
        );
        let new = slice(
            "new",
            2,
            json!([{"name": "gpu-0"}, {"name": "gpu-1", "taints": [
            {"key": "broken", "effect": "NoExecute", "timeAdded": "2026-01-01T00:00:00Z"}]}]),
        );
        let rules: Vec<DeviceTaintRule> = vec![
            serde_json::from_value(json!({"metadata": {"name": "all-gpu-1"}, "spec": {
                "deviceSelector": {"driver": "d", "device": "gpu-1"},
                "taint": {"key": "maintenance", "effect": "NoExecute", "timeAdded": "2026-01-01T00:00:00Z"}}})).unwrap(),
            serde_json::from_value(json!({"metadata": {"name": "cel"}, "spec": {
                "deviceSelector": {"deviceClassName": "gpu"},
                "taint": {"key": "x", "effect": "NoExecute"}}})).unwrap(),
        ];
        let mut skipped = Vec::new();
        let t0 = device_taints([&old, &new], &rules, ("d", "p", "gpu-0"), |n, _| {
            skipped.push(n.to_string())
        });
        assert_eq!(t0, Some(vec![]));
        assert_eq!(skipped, ["cel"]);
        let t1 = device_taints([&old, &new], &rules, ("d", "p", "gpu-1"), |_, _| {}).unwrap();
        let keys: Vec<&str> = t1.iter().map(|t| t.key.as_str()).collect();
        assert_eq!(keys, ["broken", "maintenance"]);
        assert_eq!(
            device_taints([&old, &new], &rules, ("d", "p", "gpu-9"), |_, _| {}),
            None
        );
        assert_eq!(
            device_taints([&old, &new], &rules, ("d", "other", "gpu-0"), |_, _| {}),
            None
        );
    }

    fn pod(node: Option<&str>) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "uid-web"},
            "spec": {"containers": [], "nodeName": node, "resourceClaims": [
                {"name": "gpu", "resourceClaimTemplateName": "t"},
                {"name": "shared", "resourceClaimName": "shared"}]},
            "status": {"resourceClaimStatuses": [{"name": "gpu", "resourceClaimName": "web-gpu-x"}]}
        }))
        .unwrap()
    }

    fn claim(name: &str, owned: bool, reserved: bool) -> ResourceClaim {
        let owners = if owned {
            json!([{"apiVersion": "v1", "kind": "Pod", "name": "web", "uid": "uid-web", "controller": true}])
        } else {
            json!([])
        };
        let reserved_for = if reserved {
            json!([{"resource": "pods", "name": "web", "uid": "uid-web"}])
        } else {
            json!([])
        };
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": "ns", "ownerReferences": owners},
            "spec": {}, "status": {"allocation": {"devices": {"results": []}}, "reservedFor": reserved_for}}))
        .unwrap()
    }

    #[test]
    fn a_pod_is_evicted_at_the_earliest_time_of_its_reserved_claims() {
        let times = |c: &ResourceClaim| match c.metadata.name.as_deref() {
            Some("web-gpu-x") => Some(ts("2026-01-01T00:10:00Z")),
            Some("shared") => Some(ts("2026-01-01T00:05:00Z")),
            _ => None,
        };
        let both = |n: &str| Some(claim(n, n == "web-gpu-x", true));
        assert_eq!(
            pod_eviction_time(&pod(Some("n1")), both, times),
            Some(ts("2026-01-01T00:05:00Z"))
        );
        // Not scheduled: nothing to evict.
        assert_eq!(pod_eviction_time(&pod(None), both, times), None);
        // Claims not reserved for the pod, or a generated one it does not own, do not count.
        let unreserved = |n: &str| Some(claim(n, n == "web-gpu-x", n != "shared"));
        assert_eq!(
            pod_eviction_time(&pod(Some("n1")), unreserved, times),
            Some(ts("2026-01-01T00:10:00Z"))
        );
        let foreign = |n: &str| (n == "web-gpu-x").then(|| claim(n, false, true));
        assert_eq!(pod_eviction_time(&pod(Some("n1")), foreign, times), None);
    }
}
