//! KubeSchedulerConfiguration (kubescheduler.config.k8s.io/v1), read strictly.

use component_base::leader_election::LeaderElectionConfiguration;
use serde::Deserialize;

/// The only accepted (apiVersion, kind).
pub const ACCEPTED: &[(&str, &str)] = &[(
    "kubescheduler.config.k8s.io/v1",
    "KubeSchedulerConfiguration",
)];
/// Upstream's default scheduler name.
pub const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";

/// KubeSchedulerConfiguration.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KubeSchedulerConfiguration {
    /// Always kubescheduler.config.k8s.io/v1.
    pub api_version: String,
    /// Always KubeSchedulerConfiguration.
    pub kind: String,
    /// Goroutine parallelism upstream; sizes our rayon pool.
    #[serde(default = "sixteen")]
    pub parallelism: i32,
    /// Leader election settings.
    #[serde(default)]
    pub leader_election: Option<LeaderElectionConfiguration>,
    /// How to reach the apiserver.
    #[serde(default)]
    pub client_connection: ClientConnection,
    /// Profiling endpoints (accepted, not served).
    #[serde(default)]
    pub enable_profiling: Option<bool>,
    /// Contention profiling (accepted, not served).
    #[serde(default)]
    pub enable_contention_profiling: Option<bool>,
    /// Scheduler-wide percentageOfNodesToScore (0: adaptive).
    #[serde(default)]
    pub percentage_of_nodes_to_score: Option<i32>,
    /// Initial backoff (default 1).
    #[serde(default)]
    pub pod_initial_backoff_seconds: Option<i64>,
    /// Maximum backoff (default 10).
    #[serde(default)]
    pub pod_max_backoff_seconds: Option<i64>,
    /// Scheduling profiles.
    #[serde(default)]
    pub profiles: Vec<Profile>,
    /// Scheduler extenders (not supported: must be empty).
    #[serde(default)]
    pub extenders: Vec<serde_json::Value>,
    /// Delay cache population until leader (accepted).
    #[serde(default)]
    pub delay_cache_until_active: bool,
}

fn sixteen() -> i32 {
    16
}

/// clientConnection.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClientConnection {
    /// kubeconfig path.
    #[serde(default)]
    pub kubeconfig: String,
    /// Accept header.
    #[serde(default)]
    pub accept_content_types: String,
    /// Content type.
    #[serde(default)]
    pub content_type: String,
    /// QPS (default 50).
    #[serde(default)]
    pub qps: Option<f32>,
    /// Burst (default 100).
    #[serde(default)]
    pub burst: Option<i32>,
}

/// One scheduling profile.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Profile {
    /// spec.schedulerName this profile serves.
    #[serde(default)]
    pub scheduler_name: String,
    /// Per-profile percentageOfNodesToScore.
    #[serde(default)]
    pub percentage_of_nodes_to_score: Option<i32>,
    /// Plugin enable/disable per extension point.
    #[serde(default)]
    pub plugins: Option<Plugins>,
    /// Plugin args.
    #[serde(default)]
    pub plugin_config: Vec<PluginConfig>,
}

/// plugins: one PluginSet per extension point.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct Plugins {
    #[serde(default)]
    pub pre_enqueue: PluginSet,
    #[serde(default)]
    pub queue_sort: PluginSet,
    #[serde(default)]
    pub pre_filter: PluginSet,
    #[serde(default)]
    pub filter: PluginSet,
    #[serde(default)]
    pub post_filter: PluginSet,
    #[serde(default)]
    pub pre_score: PluginSet,
    #[serde(default)]
    pub score: PluginSet,
    #[serde(default)]
    pub reserve: PluginSet,
    #[serde(default)]
    pub permit: PluginSet,
    #[serde(default)]
    pub pre_bind: PluginSet,
    #[serde(default)]
    pub bind: PluginSet,
    #[serde(default)]
    pub post_bind: PluginSet,
    #[serde(default)]
    pub multi_point: PluginSet,
}

/// Enabled and disabled plugins of one extension point.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct PluginSet {
    /// Plugins to enable (appended after the defaults).
    #[serde(default)]
    pub enabled: Vec<PluginRef>,
    /// Default plugins to disable; `*` disables all.
    #[serde(default)]
    pub disabled: Vec<PluginRef>,
}

/// A plugin by name, with an optional score weight.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct PluginRef {
    /// Registry name.
    pub name: String,
    /// Score weight.
    #[serde(default)]
    pub weight: Option<i32>,
}

/// pluginConfig entry.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// Plugin name.
    pub name: String,
    /// Args object (typed per plugin, checked when the plugin is built).
    #[serde(default)]
    pub args: Option<serde_json::Value>,
}

impl KubeSchedulerConfiguration {
    /// The configuration upstream uses without --config.
    pub fn defaults() -> Self {
        KubeSchedulerConfiguration {
            api_version: ACCEPTED[0].0.into(),
            kind: ACCEPTED[0].1.into(),
            parallelism: 16,
            leader_election: None,
            client_connection: ClientConnection::default(),
            enable_profiling: None,
            enable_contention_profiling: None,
            percentage_of_nodes_to_score: None,
            pod_initial_backoff_seconds: None,
            pod_max_backoff_seconds: None,
            profiles: vec![],
            extenders: vec![],
            delay_cache_until_active: false,
        }
    }

    /// Profiles with upstream's default: one `default-scheduler` profile.
    pub fn effective_profiles(&self) -> Vec<Profile> {
        if self.profiles.is_empty() {
            return vec![Profile {
                scheduler_name: DEFAULT_SCHEDULER_NAME.into(),
                ..Default::default()
            }];
        }
        self.profiles
            .iter()
            .cloned()
            .map(|mut p| {
                if p.scheduler_name.is_empty() {
                    p.scheduler_name = DEFAULT_SCHEDULER_NAME.into();
                }
                p
            })
            .collect()
    }

    /// Validation as upstream's: unique profile names, percentages in range, no extenders.
    pub fn validate(&self) -> Result<(), String> {
        let mut names = std::collections::HashSet::new();
        for (i, p) in self.effective_profiles().iter().enumerate() {
            if !names.insert(p.scheduler_name.clone()) {
                return Err(format!(
                    "profiles[{i}].schedulerName: Duplicate value: {:?}",
                    p.scheduler_name
                ));
            }
            if let Some(pct) = p.percentage_of_nodes_to_score {
                if !(0..=100).contains(&pct) {
                    return Err(format!("profiles[{i}].percentageOfNodesToScore: Invalid value: {pct}: not in valid range [0-100]"));
                }
            }
        }
        if let Some(pct) = self.percentage_of_nodes_to_score {
            if !(0..=100).contains(&pct) {
                return Err(format!(
                    "percentageOfNodesToScore: Invalid value: {pct}: not in valid range [0-100]"
                ));
            }
        }
        if !self.extenders.is_empty() {
            return Err(
                "extenders: Forbidden: scheduler extenders are not supported by ferrokube".into(),
            );
        }
        if self.parallelism <= 0 {
            return Err(format!(
                "parallelism: Invalid value: {}: should be an integer greater than 0",
                self.parallelism
            ));
        }
        Ok(())
    }
}
