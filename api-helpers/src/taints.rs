//! Taints and tolerations as component-helpers' `scheduling/corev1` and `Toleration.
//! ToleratesTaint` define them: the scheduler's TaintToleration filter, the DaemonSet
//! controller's placement, the taint-eviction controller and the kubelet's admission all
//! ask here.

use k8s_openapi::api::core::v1::{Taint, Toleration};

/// The taint effect that keeps new pods off a node.
pub const NO_SCHEDULE: &str = "NoSchedule";
/// The taint effect that the scheduler avoids where it can.
pub const PREFER_NO_SCHEDULE: &str = "PreferNoSchedule";
/// The taint effect that also evicts running pods.
pub const NO_EXECUTE: &str = "NoExecute";

/// Whether `toleration` tolerates `taint`: an empty effect or key matches any; `Exists`
/// matches any value; `Equal` (or empty) needs the same value; any other operator nothing.
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = toleration.effect.as_deref().filter(|e| !e.is_empty()) {
        if effect != taint.effect {
            return false;
        }
    }
    let key = toleration.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("") {
        "Exists" => true,
        "" | "Equal" => {
            toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
        _ => false,
    }
}

/// Whether any of `tolerations` tolerates `taint`.
pub fn tolerated_by(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| tolerates(t, taint))
}

/// The first taint among those `filter` keeps that no toleration tolerates
/// (`FindMatchingUntoleratedTaint`).
pub fn first_untolerated<'a>(
    taints: &'a [Taint],
    tolerations: &[Toleration],
    filter: impl Fn(&Taint) -> bool,
) -> Option<&'a Taint> {
    taints
        .iter()
        .filter(|t| filter(t))
        .find(|t| !tolerated_by(tolerations, t))
}

/// Whether some taint with one of `effects` is tolerated by none of `tolerations`.
pub fn has_untolerated(taints: &[Taint], tolerations: &[Toleration], effects: &[&str]) -> bool {
    first_untolerated(taints, tolerations, |t| {
        effects.contains(&t.effect.as_str())
    })
    .is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn taint(key: &str, value: &str, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            value: Some(value.into()),
            effect: effect.into(),
            time_added: None,
        }
    }

    fn tol(key: &str, op: &str, value: &str, effect: &str) -> Toleration {
        let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
        Toleration {
            key: opt(key),
            operator: opt(op),
            value: opt(value),
            effect: opt(effect),
            toleration_seconds: None,
        }
    }

    #[test]
    fn upstream_cases() {
        let t = taint("k", "v", NO_SCHEDULE);
        assert!(tolerates(&tol("k", "Exists", "", ""), &t));
        assert!(tolerates(&tol("k", "Equal", "v", NO_SCHEDULE), &t));
        assert!(tolerates(&tol("k", "", "v", ""), &t));
        assert!(!tolerates(&tol("k", "", "w", ""), &t));
        assert!(!tolerates(&tol("", "Exists", "", NO_EXECUTE), &t));
        assert!(tolerates(&tol("", "Exists", "", ""), &t));
        assert!(!tolerates(&tol("k", "Gt", "v", ""), &t));
        // An empty key with Equal is invalid in the API, but ToleratesTaint only compares
        // values: it tolerates a taint of any key with that value.
        assert!(tolerates(&tol("", "Equal", "v", ""), &t));
    }

    #[test]
    fn untolerated_by_effect() {
        let taints = [taint("a", "", NO_SCHEDULE), taint("b", "", NO_EXECUTE)];
        let tols = [tol("a", "Exists", "", "")];
        assert!(has_untolerated(&taints, &tols, &[NO_EXECUTE]));
        assert!(!has_untolerated(&taints, &tols, &[NO_SCHEDULE]));
        assert_eq!(
            first_untolerated(&taints, &tols, |_| true).map(|t| t.key.as_str()),
            Some("b")
        );
    }

    #[test]
    fn node_lifecycle_taints() {
        let unreachable = "node.kubernetes.io/unreachable";
        let t = taint(unreachable, "", NO_EXECUTE);
        assert!(tolerates(&tol(unreachable, "Exists", "", NO_EXECUTE), &t));
        assert!(tolerates(&tol("", "Exists", "", ""), &t));
        assert!(!tolerates(
            &tol("node.kubernetes.io/not-ready", "Exists", "", ""),
            &t
        ));
        assert!(!tolerates(&tol(unreachable, "Exists", "", NO_SCHEDULE), &t));
        assert!(tolerates(&tol(unreachable, "", "", ""), &t));
    }

    proptest! {
        /// A toleration with operator Exists, no key and no effect tolerates every taint;
        /// one with a different effect tolerates none.
        #[test]
        fn wildcard_and_effect(key in "[a-c]{1,2}", value in "[xy]{0,2}", e in 0usize..3) {
            let effects = [NO_SCHEDULE, PREFER_NO_SCHEDULE, NO_EXECUTE];
            let t = taint(&key, &value, effects[e]);
            prop_assert!(tolerates(&tol("", "Exists", "", ""), &t));
            prop_assert!(!tolerates(&tol("", "Exists", "", effects[(e + 1) % 3]), &t));
            prop_assert!(tolerates(&tol(&key, "Equal", &value, effects[e]), &t));
        }
    }
}
