//! Upstream's `resourceclaim_controller_*` metrics: claim creations by outcome and the
//! number of claims by allocation state, both split by admin access.

use std::collections::HashMap;

use component_base::metrics::Metrics;
use k8s_openapi::api::resource::v1::ResourceClaim;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use super::names::{is_allocated, needs_admin_access};

type Labels = Vec<(&'static str, &'static str)>;

/// The registered metrics. Cheap to clone.
#[derive(Clone)]
pub struct ClaimMetrics {
    creates: Family<Labels, Counter>,
    claims: Family<Labels, Gauge>,
}

fn flag(b: bool) -> &'static str {
    if b {
        "true"
    } else {
        "false"
    }
}

impl ClaimMetrics {
    /// Registers the families in `registry`.
    pub fn register(registry: &Metrics) -> Self {
        let m = ClaimMetrics {
            creates: Family::default(),
            claims: Family::default(),
        };
        registry.register(
            "resourceclaim_controller_creates",
            "[ALPHA] Number of ResourceClaims creation requests, categorized by creation status and admin access",
            m.creates.clone(),
        );
        registry.register(
            "resourceclaim_controller_resource_claims",
            "[ALPHA] Number of ResourceClaims, categorized by allocation status and admin access",
            m.claims.clone(),
        );
        m
    }

    /// Counts one create request of `claim`.
    pub fn created(&self, claim: &ResourceClaim, success: bool) {
        let status = if success { "success" } else { "failure" };
        self.creates
            .get_or_create(&vec![
                ("status", status),
                ("admin_access", flag(needs_admin_access(&claim.spec))),
            ])
            .inc();
    }

    /// Sets the claim counts to those of `claims` (every cached claim).
    pub fn count<'a>(&self, claims: impl IntoIterator<Item = &'a ResourceClaim>) {
        let counts = count_claims(claims);
        self.claims.clear();
        for ((allocated, admin), n) in counts {
            self.claims
                .get_or_create(&vec![
                    ("allocated", flag(allocated)),
                    ("admin_access", flag(admin)),
                ])
                .set(n);
        }
    }
}

/// Claims per (allocated, admin access).
pub fn count_claims<'a>(
    claims: impl IntoIterator<Item = &'a ResourceClaim>,
) -> HashMap<(bool, bool), i64> {
    let mut counts = HashMap::new();
    for c in claims {
        *counts
            .entry((is_allocated(c), needs_admin_access(&c.spec)))
            .or_insert(0) += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn claims_are_counted_by_allocation_and_admin_access() {
        let c = |v: serde_json::Value| -> ResourceClaim { serde_json::from_value(v).unwrap() };
        let plain = c(json!({"metadata": {}, "spec": {}}));
        let allocated = c(json!({"metadata": {}, "spec": {}, "status": {"allocation": {}}}));
        let admin = c(json!({"metadata": {}, "spec": {"devices": {"requests": [
            {"name": "r", "exactly": {"deviceClassName": "x", "adminAccess": true}}]}}}));
        let counts = count_claims([&plain, &allocated, &allocated, &admin]);
        assert_eq!(counts[&(false, false)], 1);
        assert_eq!(counts[&(true, false)], 2);
        assert_eq!(counts[&(false, true)], 1);
        assert_eq!(counts.len(), 3);
        let registry = Metrics::new();
        let m = ClaimMetrics::register(&registry);
        m.count([&plain, &allocated]);
        m.created(&plain, true);
        let text = registry.render();
        assert!(text.contains(
            "resourceclaim_controller_resource_claims{allocated=\"true\",admin_access=\"false\"} 1"
        ), "{text}");
        assert!(text.contains(
            "resourceclaim_controller_creates_total{status=\"success\",admin_access=\"false\"} 1"
        ), "{text}");
    }
}
