//! Builds a [`Framework`] from a profile: upstream's default multiPoint plugins, then the
//! profile's enable/disable lists per extension point, weights and plugin args.

use std::collections::HashMap;
use std::sync::Arc;

use super::types::{PluginSet, Plugins, Profile};
use crate::framework::{Framework, Plugin, WeightedPlugin};
use crate::plugins::{self, PluginContext, DEFAULT_PLUGINS};

/// Builds the framework of one profile. Unknown plugin names and bad args are errors;
/// known-but-unimplemented upstream plugins are skipped with a warning.
pub fn build_framework(profile: &Profile, ctx: &PluginContext) -> anyhow::Result<Framework> {
    let name = &profile.scheduler_name;
    let args: HashMap<&str, &serde_json::Value> = profile
        .plugin_config
        .iter()
        .filter_map(|c| c.args.as_ref().map(|a| (c.name.as_str(), a)))
        .collect();
    let plugins = profile.plugins.clone().unwrap_or_default();

    // multiPoint: defaults minus disabled plus enabled (enabled entries override weights).
    let mut multi: Vec<(String, i64)> = Vec::new();
    if !disables_all(&plugins.multi_point) {
        for (n, w) in DEFAULT_PLUGINS {
            if !plugins.multi_point.disabled.iter().any(|d| d.name == *n) {
                multi.push((n.to_string(), *w));
            }
        }
    }
    for e in &plugins.multi_point.enabled {
        let w = e.weight.map(i64::from).unwrap_or(1);
        match multi.iter_mut().find(|(n, _)| n == &e.name) {
            Some(entry) => entry.1 = e.weight.map(i64::from).unwrap_or(entry.1),
            None => multi.push((e.name.clone(), w)),
        }
    }

    let mut instances: HashMap<String, Option<Arc<dyn Plugin>>> = HashMap::new();
    let mut get = |n: &str| -> anyhow::Result<Option<Arc<dyn Plugin>>> {
        if let Some(p) = instances.get(n) {
            return Ok(p.clone());
        }
        let built = plugins::build(n, args.get(n).copied(), ctx)
            .map_err(|e| anyhow::anyhow!("profile {name:?}: {e}"))?;
        if built.is_none() {
            tracing::warn!(profile = %name, plugin = n, "Plugin is not implemented by ferrokube; the profile runs without it");
        }
        instances.insert(n.to_string(), built.clone());
        Ok(built)
    };

    // For each extension point: multiPoint plugins implementing it, adjusted by the
    // point's own set.
    type Has = fn(&dyn Plugin) -> bool;
    let points: [(&PluginSet, Has); 12] = [
        (&plugins.pre_enqueue, |p| p.as_pre_enqueue().is_some()),
        (&plugins.queue_sort, |p| p.as_queue_sort().is_some()),
        (&plugins.pre_filter, |p| p.as_pre_filter().is_some()),
        (&plugins.filter, |p| p.as_filter().is_some()),
        (&plugins.post_filter, |p| p.as_post_filter().is_some()),
        (&plugins.pre_score, |p| p.as_pre_score().is_some()),
        (&plugins.score, |p| p.as_score().is_some()),
        (&plugins.reserve, |p| p.as_reserve().is_some()),
        (&plugins.permit, |p| p.as_permit().is_some()),
        (&plugins.pre_bind, |p| p.as_pre_bind().is_some()),
        (&plugins.bind, |p| p.as_bind().is_some()),
        (&plugins.post_bind, |p| p.as_post_bind().is_some()),
    ];
    let mut lists: Vec<Vec<(Arc<dyn Plugin>, i64)>> = Vec::new();
    for (set, has) in points {
        let mut list: Vec<(Arc<dyn Plugin>, i64)> = Vec::new();
        if !disables_all(set) {
            for (n, w) in &multi {
                if set.disabled.iter().any(|d| &d.name == n) {
                    continue;
                }
                if let Some(p) = get(n)? {
                    if has(p.as_ref()) {
                        list.push((p, *w));
                    }
                }
            }
        }
        for e in &set.enabled {
            let Some(p) = get(&e.name)? else { continue };
            anyhow::ensure!(
                has(p.as_ref()),
                "profile {name:?}: plugin {:?} does not extend this extension point",
                e.name
            );
            let w = e.weight.map(i64::from).unwrap_or(1);
            match list.iter_mut().find(|(q, _)| q.name() == e.name) {
                Some(entry) => entry.1 = e.weight.map(i64::from).unwrap_or(entry.1),
                None => list.push((p, w)),
            }
        }
        lists.push(list);
    }
    let strip =
        |l: &Vec<(Arc<dyn Plugin>, i64)>| l.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>();
    anyhow::ensure!(
        lists[1].len() == 1,
        "profile {name:?}: exactly one queueSort plugin must be enabled, found {}",
        lists[1].len()
    );
    anyhow::ensure!(
        !lists[10].is_empty(),
        "profile {name:?}: at least one bind plugin is needed"
    );
    for (p, w) in &lists[6] {
        anyhow::ensure!(*w > 0 && *w <= 100, "profile {name:?}: plugins.score.enabled[{}].weight: Invalid value: {w}: must be in the range [1, 100]", p.name());
    }
    Ok(Framework {
        profile_name: name.clone(),
        percentage_of_nodes_to_score: profile.percentage_of_nodes_to_score,
        pre_enqueue: strip(&lists[0]),
        queue_sort: lists[1].first().map(|(p, _)| p.clone()),
        pre_filter: strip(&lists[2]),
        filter: strip(&lists[3]),
        post_filter: strip(&lists[4]),
        pre_score: strip(&lists[5]),
        score: lists[6]
            .iter()
            .map(|(p, w)| WeightedPlugin {
                plugin: p.clone(),
                weight: *w,
            })
            .collect(),
        reserve: strip(&lists[7]),
        permit: strip(&lists[8]),
        pre_bind: strip(&lists[9]),
        bind: strip(&lists[10]),
        post_bind: strip(&lists[11]),
    })
}

fn disables_all(set: &PluginSet) -> bool {
    set.disabled.iter().any(|d| d.name == "*")
}

/// The default profile's framework (tests and benchmarks).
pub fn default_framework(ctx: &PluginContext) -> Framework {
    let profile = Profile {
        scheduler_name: super::types::DEFAULT_SCHEDULER_NAME.into(),
        plugins: Some(Plugins::default()),
        ..Default::default()
    };
    build_framework(&profile, ctx).expect("the default profile is valid")
}
