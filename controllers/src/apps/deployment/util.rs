//! Deployment helpers as upstream's deploymentutil: annotations, the pod-template hash,
//! maxSurge/maxUnavailable resolution, template equality and revisions.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// Label (and selector key) that ties a ReplicaSet's pods to one template.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";
/// The revision of a ReplicaSet (and of its Deployment's newest one).
pub const REVISION: &str = "deployment.kubernetes.io/revision";
/// Earlier revisions a ReplicaSet was rolled back to.
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
/// The Deployment's replicas when the ReplicaSet was last scaled.
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
/// replicas + maxSurge when the ReplicaSet was last scaled (for proportional scaling).
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
/// Deprecated extensions/v1beta1 rollback request, dropped on sight.
pub const ROLLBACK_TO: &str = "deprecated.deployment.rollback.to";
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Annotations a Deployment never copies onto its ReplicaSets.
pub fn skip_copy(key: &str) -> bool {
    matches!(
        key,
        LAST_APPLIED | REVISION | REVISION_HISTORY | DESIRED_REPLICAS | MAX_REPLICAS | ROLLBACK_TO
    )
}

/// `spec.replicas` (default 1).
pub fn replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// Whether the strategy is RollingUpdate (the default).
pub fn is_rolling(d: &Deployment) -> bool {
    d.spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        .unwrap_or("RollingUpdate")
        == "RollingUpdate"
}

fn resolve(v: Option<&IntOrString>, default: &str, total: i32, round_up: bool) -> i32 {
    let v = v
        .cloned()
        .unwrap_or_else(|| IntOrString::String(default.into()));
    match v {
        IntOrString::Int(i) => i,
        IntOrString::String(s) => {
            let pct: f64 = s.trim_end_matches('%').parse().unwrap_or(0.0);
            let raw = pct * f64::from(total) / 100.0;
            (if round_up { raw.ceil() } else { raw.floor() }) as i32
        }
    }
}

/// `(maxSurge, maxUnavailable)` resolved against `replicas`, as upstream's
/// `ResolveFenceposts`: both zero becomes an unavailability of one. Recreate has none.
pub fn fenceposts(d: &Deployment) -> (i32, i32) {
    if !is_rolling(d) {
        return (0, 0);
    }
    let ru = d
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    let total = replicas(d);
    let surge = resolve(ru.and_then(|r| r.max_surge.as_ref()), "25%", total, true);
    let unavailable = resolve(
        ru.and_then(|r| r.max_unavailable.as_ref()),
        "25%",
        total,
        false,
    );
    if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable)
    }
}

/// maxUnavailable capped at replicas (upstream's `MaxUnavailable`).
pub fn max_unavailable(d: &Deployment) -> i32 {
    let (_, u) = fenceposts(d);
    u.min(replicas(d)).max(0)
}

/// `spec.replicas` of a ReplicaSet (default 1).
pub fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// `status.availableReplicas` of a ReplicaSet.
pub fn rs_available(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0)
}

/// The numeric revision of a ReplicaSet (0 when missing or malformed).
pub fn revision(rs: &ReplicaSet) -> i64 {
    annotation(&rs.metadata.annotations, REVISION)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// One annotation's value.
pub fn annotation<'a>(a: &'a Option<BTreeMap<String, String>>, key: &str) -> Option<&'a str> {
    a.as_ref()?.get(key).map(String::as_str)
}

/// A template with the pod-template-hash label removed, as JSON, for comparisons.
fn without_hash(t: &PodTemplateSpec) -> serde_json::Value {
    let mut t = t.clone();
    if let Some(l) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        l.remove(POD_TEMPLATE_HASH);
        if l.is_empty() {
            if let Some(m) = t.metadata.as_mut() {
                m.labels = None;
            }
        }
    }
    serde_json::to_value(t).unwrap_or_default()
}

/// Whether two templates are equal but for the pod-template-hash label
/// (upstream's `EqualIgnoreHash`).
pub fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    without_hash(a) == without_hash(b)
}

/// The pod-template hash: 32-bit FNV-1a over the template (and the collision count), spelled
/// with upstream's alphabet. Values differ from upstream's (which hashes Go's printed form);
/// existing ReplicaSets are found by template equality, never by hash.
pub fn template_hash(t: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut h: u32 = 0x811c_9dc5;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            h ^= u32::from(*b);
            h = h.wrapping_mul(0x0100_0193);
        }
    };
    feed(&serde_json::to_vec(&without_hash(t)).unwrap_or_default());
    if let Some(c) = collision_count {
        feed(&(c as u32).to_le_bytes());
    }
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    h.to_string()
        .bytes()
        .map(|c| ALPHABET[usize::from(c) % ALPHABET.len()] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment};
    use kube::api::ObjectMeta;

    fn deploy(replicas: i32, surge: IntOrString, unavail: IntOrString) -> Deployment {
        Deployment {
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                strategy: Some(DeploymentStrategy {
                    type_: Some("RollingUpdate".into()),
                    rolling_update: Some(RollingUpdateDeployment {
                        max_surge: Some(surge),
                        max_unavailable: Some(unavail),
                    }),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn fenceposts_round_as_upstream() {
        let s = |x: &str| IntOrString::String(x.into());
        assert_eq!(fenceposts(&deploy(10, s("25%"), s("25%"))), (3, 2));
        assert_eq!(fenceposts(&deploy(1, s("25%"), s("25%"))), (1, 0));
        assert_eq!(
            fenceposts(&deploy(3, IntOrString::Int(0), IntOrString::Int(0))),
            (0, 1)
        );
        assert_eq!(
            max_unavailable(&deploy(2, IntOrString::Int(1), IntOrString::Int(5))),
            2
        );
    }

    #[test]
    fn hash_ignores_own_label_and_depends_on_collisions() {
        let mut a = PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some([("app".to_string(), "x".to_string())].into()),
                ..Default::default()
            }),
            spec: None,
        };
        let h = template_hash(&a, None);
        assert!(h.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)));
        let mut b = a.clone();
        b.metadata
            .as_mut()
            .unwrap()
            .labels
            .as_mut()
            .unwrap()
            .insert(POD_TEMPLATE_HASH.into(), h.clone());
        assert!(equal_ignore_hash(&a, &b));
        assert_eq!(template_hash(&b, None), h);
        assert_ne!(template_hash(&a, Some(1)), h);
        a.metadata
            .as_mut()
            .unwrap()
            .labels
            .as_mut()
            .unwrap()
            .insert("v".into(), "2".into());
        assert!(!equal_ignore_hash(&a, &b));
    }
}
