//! DeviceTaintRule (resource.k8s.io/v1alpha3) as the 1.35 apiserver serves it. k8s-openapi's
//! type lacks `deviceSelector.deviceClassName` and `deviceSelector.selectors`; dropping them
//! would widen a rule to devices it does not select, so this type keeps them.

use k8s_openapi::api::resource::v1::DeviceTaint;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

/// A cluster-scoped rule that taints the devices its selector matches.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceTaintRule {
    /// Standard object metadata.
    pub metadata: ObjectMeta,
    /// Which devices, and the taint.
    pub spec: DeviceTaintRuleSpec,
}

/// `spec` of a DeviceTaintRule.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceTaintRuleSpec {
    /// The devices the taint applies to (all devices when unset, as upstream's tracker).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_selector: Option<DeviceTaintSelector>,
    /// The taint applied to the matching devices.
    pub taint: DeviceTaint,
}

/// `spec.deviceSelector`: every criterion set must hold.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceTaintSelector {
    /// Only devices of this DeviceClass (its CEL selectors).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_class_name: Option<String>,
    /// Only devices of this driver (`slice.spec.driver`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    /// Only devices in this pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// Only devices of this name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// CEL selectors the devices must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selectors: Option<Vec<serde_json::Value>>,
}

impl k8s_openapi::Resource for DeviceTaintRule {
    const API_VERSION: &'static str = "resource.k8s.io/v1alpha3";
    const GROUP: &'static str = "resource.k8s.io";
    const KIND: &'static str = "DeviceTaintRule";
    const VERSION: &'static str = "v1alpha3";
    const URL_PATH_SEGMENT: &'static str = "devicetaintrules";
    type Scope = k8s_openapi::ClusterResourceScope;
}

impl k8s_openapi::ListableResource for DeviceTaintRule {
    const LIST_KIND: &'static str = "DeviceTaintRuleList";
}

impl k8s_openapi::Metadata for DeviceTaintRule {
    type Ty = ObjectMeta;

    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// Whether a rule selects device `device` of `driver`'s pool `pool`: `Err` names the
/// selector field this controller cannot evaluate (CEL: `deviceClassName`, `selectors`);
/// such a rule is not applied, so that it never evicts from devices it may not select.
pub fn selects(
    rule: &DeviceTaintRule,
    driver: &str,
    pool: &str,
    device: &str,
) -> Result<bool, String> {
    let Some(sel) = &rule.spec.device_selector else {
        return Ok(true);
    };
    let differs = |want: &Option<String>, have: &str| want.as_deref().is_some_and(|w| w != have);
    if differs(&sel.driver, driver) || differs(&sel.pool, pool) || differs(&sel.device, device) {
        return Ok(false);
    }
    if sel.device_class_name.is_some() {
        return Err(
            "spec.deviceSelector.deviceClassName (CEL selectors of a DeviceClass) is not supported"
                .into(),
        );
    }
    if sel.selectors.as_ref().is_some_and(|s| !s.is_empty()) {
        return Err("spec.deviceSelector.selectors (CEL) is not supported".into());
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule(selector: serde_json::Value) -> DeviceTaintRule {
        serde_json::from_value(json!({
            "apiVersion": "resource.k8s.io/v1alpha3", "kind": "DeviceTaintRule",
            "metadata": {"name": "r"},
            "spec": {"deviceSelector": selector,
                     "taint": {"key": "k", "effect": "NoExecute", "timeAdded": "2026-01-01T00:00:00Z"}}
        }))
        .unwrap()
    }

    #[test]
    fn driver_pool_and_device_narrow_the_rule() {
        let r = rule(json!({"driver": "gpu.example.com", "pool": "node-1"}));
        assert_eq!(selects(&r, "gpu.example.com", "node-1", "gpu-0"), Ok(true));
        assert_eq!(selects(&r, "gpu.example.com", "node-2", "gpu-0"), Ok(false));
        assert_eq!(selects(&r, "other", "node-1", "gpu-0"), Ok(false));
        let d = rule(json!({"device": "gpu-1"}));
        assert_eq!(selects(&d, "any", "any", "gpu-1"), Ok(true));
        assert_eq!(selects(&d, "any", "any", "gpu-0"), Ok(false));
        let mut all = rule(json!({}));
        assert_eq!(selects(&all, "a", "b", "c"), Ok(true));
        all.spec.device_selector = None;
        assert_eq!(selects(&all, "a", "b", "c"), Ok(true));
        assert_eq!(all.spec.taint.effect, "NoExecute");
    }

    #[test]
    fn cel_selectors_are_refused_naming_the_field() {
        let r = rule(json!({"deviceClassName": "gpu"}));
        assert!(selects(&r, "a", "b", "c")
            .unwrap_err()
            .contains("spec.deviceSelector.deviceClassName"));
        let r = rule(json!({"selectors": [{"cel": {"expression": "true"}}]}));
        assert!(selects(&r, "a", "b", "c")
            .unwrap_err()
            .contains("spec.deviceSelector.selectors"));
        // A rule whose plain criteria already exclude the device needs no CEL.
        let r = rule(json!({"driver": "x", "deviceClassName": "gpu"}));
        assert_eq!(selects(&r, "a", "b", "c"), Ok(false));
    }
}
