use super::*;
use crate::plugins::PluginContext;

fn parse(text: &str) -> anyhow::Result<KubeSchedulerConfiguration> {
    let dir = tempfile::tempdir()?;
    let p = dir.path().join("sched.yaml");
    std::fs::write(&p, text)?;
    load(&p)
}

#[test]
fn default_profile_has_upstream_weights() {
    let fw = default_framework(&PluginContext::default());
    let weights: Vec<(&str, i64)> = fw
        .score
        .iter()
        .map(|w| (w.plugin.name(), w.weight))
        .collect();
    assert_eq!(
        weights,
        vec![
            ("TaintToleration", 3),
            ("NodeAffinity", 2),
            ("NodeResourcesFit", 1),
            ("PodTopologySpread", 2),
            ("InterPodAffinity", 2),
            ("NodeResourcesBalancedAllocation", 1),
            ("ImageLocality", 1)
        ]
    );
    let filters: Vec<&str> = fw.filter.iter().map(|p| p.name()).collect();
    assert_eq!(
        filters[..4],
        [
            "NodeUnschedulable",
            "NodeName",
            "TaintToleration",
            "NodeAffinity"
        ]
    );
    assert_eq!(fw.queue_sort.as_ref().unwrap().name(), "PrioritySort");
    assert_eq!(fw.bind[0].name(), "DefaultBinder");
}

#[test]
fn unknown_field_names_field_and_file() {
    let err = parse("apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\nprofiles:\n- schedulerName: a\n  plugin: {}\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("sched.yaml") && err.contains("plugin"),
        "{err}"
    );
    let err = parse(
        "apiVersion: kubescheduler.config.k8s.io/v1beta3\nkind: KubeSchedulerConfiguration\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("v1beta3") && err.contains("sched.yaml"),
        "{err}"
    );
}

#[test]
fn profiles_enable_disable_weights_and_args() {
    let cfg = parse(
        r#"apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
profiles:
- schedulerName: default-scheduler
- schedulerName: packer
  percentageOfNodesToScore: 100
  plugins:
    score:
      disabled: [{name: ImageLocality}, {name: NodeResourcesBalancedAllocation}]
      enabled: [{name: NodeResourcesFit, weight: 5}]
  pluginConfig:
  - name: NodeResourcesFit
    args:
      scoringStrategy:
        type: MostAllocated
"#,
    )
    .unwrap();
    let profiles = cfg.effective_profiles();
    assert_eq!(profiles.len(), 2);
    let fw = build_framework(&profiles[1], &PluginContext::default()).unwrap();
    let weights: Vec<(&str, i64)> = fw
        .score
        .iter()
        .map(|w| (w.plugin.name(), w.weight))
        .collect();
    assert!(weights.contains(&("NodeResourcesFit", 5)));
    assert!(!weights.iter().any(|(n, _)| *n == "ImageLocality"));
    assert_eq!(fw.percentage_of_nodes_to_score, Some(100));
}

#[test]
fn bad_plugin_args_and_names_are_errors() {
    let mut p = Profile {
        scheduler_name: "x".into(),
        ..Default::default()
    };
    p.plugin_config.push(types::PluginConfig {
        name: "NodeResourcesFit".into(),
        args: Some(serde_json::json!({"scoringStrategy": {"typo": 1}})),
    });
    let err = build_framework(&p, &PluginContext::default())
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("scoringStrategy") && err.contains("typo"),
        "{err}"
    );
    let mut p = Profile {
        scheduler_name: "x".into(),
        ..Default::default()
    };
    p.plugins = Some(types::Plugins {
        filter: types::PluginSet {
            enabled: vec![types::PluginRef {
                name: "Bogus".into(),
                weight: None,
            }],
            disabled: vec![],
        },
        ..Default::default()
    });
    assert!(build_framework(&p, &PluginContext::default())
        .err()
        .unwrap()
        .to_string()
        .contains("Bogus"));
}
