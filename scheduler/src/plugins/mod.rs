//! The default (in-tree) plugins and the registry that builds them by name.

pub mod balanced_allocation;
pub mod default_binder;
pub mod default_preemption;
mod helper;
pub mod image_locality;
pub mod inter_pod_affinity;
pub mod node_affinity;
pub mod node_name;
pub mod node_ports;
pub mod node_resources_fit;
pub mod node_unschedulable;
pub mod pod_topology_spread;
pub mod priority_sort;
pub mod scheduling_gates;
pub mod taint_toleration;
pub mod volume_binding;
pub mod volume_restrictions;

#[cfg(test)]
pub mod testutil;

use std::sync::Arc;

use serde::de::DeserializeOwned;

use crate::framework::Plugin;

/// Upstream's default multiPoint plugins in order, with their default score weights.
pub const DEFAULT_PLUGINS: &[(&str, i64)] = &[
    ("SchedulingGates", 0),
    ("PrioritySort", 0),
    ("NodeUnschedulable", 0),
    ("NodeName", 0),
    ("TaintToleration", 3),
    ("NodeAffinity", 2),
    ("NodePorts", 0),
    ("NodeResourcesFit", 1),
    ("VolumeRestrictions", 0),
    ("NodeVolumeLimits", 0),
    ("VolumeBinding", 0),
    ("VolumeZone", 0),
    ("PodTopologySpread", 2),
    ("InterPodAffinity", 2),
    ("DefaultPreemption", 0),
    ("NodeResourcesBalancedAllocation", 1),
    ("ImageLocality", 1),
    ("DefaultBinder", 0),
];

/// Upstream in-tree plugins this scheduler knows by name but does not implement; a profile
/// that enables them runs without them (with a warning).
pub const UNIMPLEMENTED: &[&str] = &[
    "NodeVolumeLimits",
    "VolumeZone",
    "DynamicResources",
    "AzureDiskLimits",
    "EBSLimits",
    "GCEPDLimits",
    "CinderLimits",
];

/// What plugins may need from the outside world.
#[derive(Clone, Default)]
pub struct PluginContext {
    /// API client (binder, volume binding); None in unit tests and benchmarks.
    pub client: Option<kube::Client>,
}

fn args<T: DeserializeOwned + Default>(
    name: &str,
    v: Option<&serde_json::Value>,
) -> anyhow::Result<T> {
    match v {
        None => Ok(T::default()),
        Some(v) => {
            let mut v = v.clone();
            if let Some(o) = v.as_object_mut() {
                o.remove("apiVersion");
                o.remove("kind");
            }
            serde_path_to_error::deserialize(v).map_err(|e| {
                anyhow::anyhow!("pluginConfig[{name}].args.{}: {}", e.path(), e.inner())
            })
        }
    }
}

/// Builds a plugin by registry name. `Ok(None)` for known-but-unimplemented plugins;
/// an error for unknown names or invalid args.
pub fn build(
    name: &str,
    plugin_args: Option<&serde_json::Value>,
    ctx: &PluginContext,
) -> anyhow::Result<Option<Arc<dyn Plugin>>> {
    let p: Arc<dyn Plugin> = match name {
        priority_sort::NAME => Arc::new(priority_sort::PrioritySort),
        scheduling_gates::NAME => Arc::new(scheduling_gates::SchedulingGates),
        node_unschedulable::NAME => Arc::new(node_unschedulable::NodeUnschedulable),
        node_name::NAME => Arc::new(node_name::NodeName),
        taint_toleration::NAME => Arc::new(taint_toleration::TaintToleration),
        node_affinity::NAME => Arc::new(node_affinity::NodeAffinity),
        node_ports::NAME => Arc::new(node_ports::NodePorts),
        node_resources_fit::NAME => Arc::new(node_resources_fit::NodeResourcesFit::new(args(
            name,
            plugin_args,
        )?)?),
        balanced_allocation::NAME => Arc::new(balanced_allocation::BalancedAllocation::new(args(
            name,
            plugin_args,
        )?)),
        image_locality::NAME => Arc::new(image_locality::ImageLocality),
        inter_pod_affinity::NAME => Arc::new(inter_pod_affinity::InterPodAffinity::new(args(
            name,
            plugin_args,
        )?)),
        pod_topology_spread::NAME => Arc::new(pod_topology_spread::PodTopologySpread::new(args(
            name,
            plugin_args,
        )?)?),
        volume_restrictions::NAME => Arc::new(volume_restrictions::VolumeRestrictions),
        volume_binding::NAME => Arc::new(volume_binding::VolumeBinding::new(ctx.client.clone())),
        default_preemption::NAME => Arc::new(default_preemption::DefaultPreemption),
        default_binder::NAME => Arc::new(default_binder::DefaultBinder::new(ctx.client.clone())),
        other if UNIMPLEMENTED.contains(&other) => return Ok(None),
        other => anyhow::bail!("plugin {other:?} does not exist"),
    };
    Ok(Some(p))
}
