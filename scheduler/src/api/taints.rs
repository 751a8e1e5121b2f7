//! Toleration matching (v1.Toleration.ToleratesTaint).

use k8s_openapi::api::core::v1::{Taint, Toleration};

/// Whether one toleration tolerates a taint, as upstream's `Toleration.ToleratesTaint`.
pub fn tolerates(tol: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = tol.effect.as_deref().filter(|e| !e.is_empty()) {
        if effect != taint.effect {
            return false;
        }
    }
    let key = tol.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    let value = tol.value.as_deref().unwrap_or("");
    match tol.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "" | "Equal" => value == taint.value.as_deref().unwrap_or(""),
        _ => false,
    }
}

/// Whether any toleration in the list tolerates the taint.
pub fn tolerated_by(tols: &[Toleration], taint: &Taint) -> bool {
    tols.iter().any(|t| tolerates(t, taint))
}

/// The first taint, among those whose effect passes `filter`, that no toleration tolerates.
pub fn first_untolerated<'a>(
    taints: &'a [Taint],
    tols: &[Toleration],
    filter: impl Fn(&Taint) -> bool,
) -> Option<&'a Taint> {
    taints
        .iter()
        .filter(|t| filter(t))
        .find(|t| !tolerated_by(tols, t))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taint(key: &str, value: &str, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            value: Some(value.into()),
            effect: effect.into(),
            time_added: None,
        }
    }

    #[test]
    fn exists_and_equal() {
        let t = taint("k", "v", "NoSchedule");
        let exists = Toleration {
            key: Some("k".into()),
            operator: Some("Exists".into()),
            ..Default::default()
        };
        assert!(tolerates(&exists, &t));
        let eq_wrong = Toleration {
            key: Some("k".into()),
            value: Some("w".into()),
            ..Default::default()
        };
        assert!(!tolerates(&eq_wrong, &t));
        let wrong_effect = Toleration {
            operator: Some("Exists".into()),
            effect: Some("NoExecute".into()),
            ..Default::default()
        };
        assert!(!tolerates(&wrong_effect, &t));
        let everything = Toleration {
            operator: Some("Exists".into()),
            ..Default::default()
        };
        assert!(tolerates(&everything, &t));
    }
}
