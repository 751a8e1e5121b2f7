//! PodTopologySpread: keep matching pods spread across topology domains within maxSkew
//! (DoNotSchedule filters, ScheduleAnyway scores), with the cluster's default constraints
//! when the pod has none.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::TopologySpreadConstraint;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

use super::node_affinity::pod_matches_node;
use crate::framework::*;
use crate::snapshot::{NodeInfo, PodInfo, Snapshot};
use api_helpers::labels::matches;
use api_helpers::taints::first_untolerated;

/// Registry name.
pub const NAME: &str = "PodTopologySpread";
/// Skew exceeded.
pub const ERR_CONSTRAINTS: &str = "node(s) didn't match pod topology spread constraints";
/// The node lacks a topology key.
pub const ERR_MISSING_LABEL: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";
const HOSTNAME: &str = "kubernetes.io/hostname";

/// PodTopologySpreadArgs.
#[derive(Debug, Clone, serde::Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PodTopologySpreadArgs {
    /// Constraints for pods without their own (only with defaultingType List).
    #[serde(default)]
    pub default_constraints: Vec<TopologySpreadConstraint>,
    /// System (default) or List.
    #[serde(default = "system")]
    pub defaulting_type: String,
}

fn system() -> String {
    "System".into()
}

impl Default for PodTopologySpreadArgs {
    fn default() -> Self {
        PodTopologySpreadArgs {
            default_constraints: vec![],
            defaulting_type: system(),
        }
    }
}

/// Upstream's system default constraints: hostname maxSkew 3, zone maxSkew 5, ScheduleAnyway.
pub fn system_default_constraints() -> Vec<TopologySpreadConstraint> {
    [(HOSTNAME, 3), ("topology.kubernetes.io/zone", 5)]
        .into_iter()
        .map(|(k, s)| TopologySpreadConstraint {
            topology_key: k.into(),
            max_skew: s,
            when_unsatisfiable: "ScheduleAnyway".into(),
            ..Default::default()
        })
        .collect()
}

/// The PodTopologySpread plugin (PreFilter, Filter, PreScore, Score; default weight 2).
#[derive(Debug)]
pub struct PodTopologySpread {
    defaults: Vec<TopologySpreadConstraint>,
}

impl Default for PodTopologySpread {
    fn default() -> Self {
        Self::new(PodTopologySpreadArgs::default()).expect("defaults are valid")
    }
}

impl PodTopologySpread {
    /// Builds the plugin; List defaulting requires constraints without selectors.
    pub fn new(args: PodTopologySpreadArgs) -> anyhow::Result<Self> {
        let defaults = match args.defaulting_type.as_str() {
            "System" => {
                anyhow::ensure!(args.default_constraints.is_empty(), "defaultConstraints: Invalid value: when .defaultingType is \"System\"");
                system_default_constraints()
            }
            "List" => {
                for (i, c) in args.default_constraints.iter().enumerate() {
                    anyhow::ensure!(c.label_selector.is_none(), "defaultConstraints[{i}].labelSelector: Forbidden: constraint must not define a selector, as they deduced for each pod");
                }
                args.default_constraints
            }
            other => anyhow::bail!("defaultingType: Unsupported value: {other:?}: supported values: \"System\", \"List\""),
        };
        Ok(PodTopologySpread { defaults })
    }
}

/// A constraint resolved for one pod.
#[derive(Debug, Clone)]
struct Constraint {
    max_skew: i64,
    key: String,
    min_domains: i64,
    selector: LabelSelector,
    honor_affinity: bool,
    honor_taints: bool,
}

/// The selector ANDing all Services and controllers that select the pod.
fn default_selector(pod: &PodInfo, snap: &Snapshot) -> LabelSelector {
    let mut ml: BTreeMap<String, String> = BTreeMap::new();
    let mut exprs: Vec<LabelSelectorRequirement> = Vec::new();
    for (ns, sel) in &snap.workloads.services {
        if ns == &pod.namespace
            && !sel.is_empty()
            && sel.iter().all(|(k, v)| pod.labels.get(k) == Some(v))
        {
            ml.extend(sel.clone());
        }
    }
    for (ns, sel) in &snap.workloads.controllers {
        let nonempty = sel.match_labels.as_ref().is_some_and(|m| !m.is_empty())
            || sel
                .match_expressions
                .as_ref()
                .is_some_and(|e| !e.is_empty());
        if ns == &pod.namespace && nonempty && matches(sel, Some(&pod.labels)) {
            ml.extend(sel.match_labels.clone().unwrap_or_default());
            exprs.extend(sel.match_expressions.clone().unwrap_or_default());
        }
    }
    LabelSelector {
        match_labels: (!ml.is_empty()).then_some(ml),
        match_expressions: (!exprs.is_empty()).then_some(exprs),
    }
}

impl PodTopologySpread {
    /// The pod's constraints with the given whenUnsatisfiable, or the defaults.
    fn constraints(&self, pod: &PodInfo, snap: &Snapshot, when: &str) -> Vec<Constraint> {
        let own = pod
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.topology_spread_constraints.as_deref())
            .unwrap_or(&[]);
        let (list, selector_override) = if !own.is_empty() {
            (own.to_vec(), None)
        } else if self.defaults.is_empty() {
            return vec![];
        } else {
            let sel = default_selector(pod, snap);
            if sel.match_labels.is_none() && sel.match_expressions.is_none() {
                return vec![];
            }
            (self.defaults.clone(), Some(sel))
        };
        list.into_iter()
            .filter(|c| c.when_unsatisfiable == when)
            .map(|c| {
                let mut selector = selector_override
                    .clone()
                    .or(c.label_selector.clone())
                    .unwrap_or_default();
                for k in c.match_label_keys.iter().flatten() {
                    if let Some(v) = pod.labels.get(k) {
                        selector
                            .match_expressions
                            .get_or_insert_with(Vec::new)
                            .push(LabelSelectorRequirement {
                                key: k.clone(),
                                operator: "In".into(),
                                values: Some(vec![v.clone()]),
                            });
                    }
                }
                Constraint {
                    max_skew: c.max_skew as i64,
                    key: c.topology_key,
                    min_domains: c.min_domains.unwrap_or(1) as i64,
                    selector,
                    honor_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
                    honor_taints: c.node_taints_policy.as_deref() == Some("Honor"),
                }
            })
            .collect()
    }
}

fn node_eligible(c: &Constraint, pod: &PodInfo, node: &NodeInfo) -> bool {
    if c.honor_affinity && !pod_matches_node(pod, node) {
        return false;
    }
    if c.honor_taints {
        let tols = pod
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.tolerations.as_deref())
            .unwrap_or(&[]);
        if first_untolerated(node.taints(), tols, |t| {
            t.effect == "NoSchedule" || t.effect == "NoExecute"
        })
        .is_some()
        {
            return false;
        }
    }
    true
}

fn count_matching(c: &Constraint, pod: &PodInfo, node: &NodeInfo) -> i64 {
    node.pods
        .iter()
        .filter(|p| {
            !p.terminating()
                && p.namespace == pod.namespace
                && matches(&c.selector, Some(&p.labels))
        })
        .count() as i64
}

/// Filter state: per constraint, matching pods per domain value.
#[derive(Debug, Clone)]
struct FilterState {
    constraints: Vec<Constraint>,
    counts: Vec<HashMap<String, i64>>,
}

impl FilterState {
    fn min_match(&self, i: usize) -> i64 {
        let counts = &self.counts[i];
        if (counts.len() as i64) < self.constraints[i].min_domains {
            return 0;
        }
        counts.values().copied().min().unwrap_or(0)
    }

    fn update(&mut self, pod: &PodInfo, other: &PodInfo, node: &NodeInfo, delta: i64) {
        if other.namespace != pod.namespace
            || !self
                .constraints
                .iter()
                .all(|c| node.labels().contains_key(&c.key))
        {
            return;
        }
        for (i, c) in self.constraints.iter().enumerate() {
            if node_eligible(c, pod, node) && matches(&c.selector, Some(&other.labels)) {
                let v = &node.labels()[&c.key];
                *self.counts[i].entry(v.clone()).or_default() += delta;
            }
        }
    }
}

impl Plugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        NAME
    }
    fn events(&self) -> Vec<ClusterEvent> {
        vec![
            ClusterEvent::new(EventResource::AssignedPod, Action::ALL),
            ClusterEvent::new(
                EventResource::Node,
                Action::ADD | Action::DELETE | Action::UPDATE_LABEL | Action::UPDATE_TAINT,
            ),
            ClusterEvent::new(EventResource::UnscheduledPod, Action::UPDATE),
        ]
    }
    extension_points!(PreFilter, Filter, PreScore, Score);
}

impl PreFilterPlugin for PodTopologySpread {
    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        snap: &Snapshot,
    ) -> (Option<PreFilterResult>, Status) {
        let constraints = self.constraints(pod, snap, "DoNotSchedule");
        if constraints.is_empty() {
            return (None, Status::skip());
        }
        let mut counts = vec![HashMap::new(); constraints.len()];
        for node in &snap.nodes {
            let labels = node.labels();
            if !constraints.iter().all(|c| labels.contains_key(&c.key)) {
                continue;
            }
            for (i, c) in constraints.iter().enumerate() {
                if !node_eligible(c, pod, node) {
                    continue;
                }
                *counts[i].entry(labels[&c.key].clone()).or_default() +=
                    count_matching(c, pod, node);
            }
        }
        state.write(
            NAME,
            FilterState {
                constraints,
                counts,
            },
        );
        (None, Status::success())
    }

    fn add_pod(&self, state: &mut CycleState, pod: &PodInfo, other: &PodInfo, node: &NodeInfo) {
        if let Some(st) = state.read_mut::<FilterState>(NAME) {
            st.update(pod, other, node, 1);
        }
    }

    fn remove_pod(&self, state: &mut CycleState, pod: &PodInfo, other: &PodInfo, node: &NodeInfo) {
        if let Some(st) = state.read_mut::<FilterState>(NAME) {
            st.update(pod, other, node, -1);
        }
    }
}

impl FilterPlugin for PodTopologySpread {
    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let Some(st) = state.read::<FilterState>(NAME) else {
            return Status::error("PodTopologySpread: no PreFilter state");
        };
        for (i, c) in st.constraints.iter().enumerate() {
            let Some(value) = node.labels().get(&c.key) else {
                return Status::new(Code::UnschedulableAndUnresolvable, ERR_MISSING_LABEL);
            };
            let self_match = matches(&c.selector, Some(&pod.labels)) as i64;
            let matching = st.counts[i].get(value).copied().unwrap_or(0);
            if matching + self_match - st.min_match(i) > c.max_skew {
                return Status::new(Code::Unschedulable, ERR_CONSTRAINTS);
            }
        }
        Status::success()
    }
}

/// Score state: soft constraints, their counts and weights, and nodes to ignore.
#[derive(Debug, Clone)]
struct ScoreState {
    constraints: Vec<Constraint>,
    counts: Vec<HashMap<String, i64>>,
    weights: Vec<f64>,
    ignored: HashSet<String>,
}

impl PreScorePlugin for PodTopologySpread {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        nodes: &[Arc<NodeInfo>],
        snap: &Snapshot,
    ) -> Status {
        let constraints = self.constraints(pod, snap, "ScheduleAnyway");
        if constraints.is_empty() {
            return Status::skip();
        }
        let mut ignored = HashSet::new();
        let mut sizes = vec![HashSet::new(); constraints.len()];
        for n in nodes {
            if !constraints.iter().all(|c| n.labels().contains_key(&c.key)) {
                ignored.insert(n.name.clone());
                continue;
            }
            for (i, c) in constraints.iter().enumerate() {
                sizes[i].insert(n.labels()[&c.key].clone());
            }
        }
        let mut counts = vec![HashMap::new(); constraints.len()];
        for node in &snap.nodes {
            if !constraints
                .iter()
                .all(|c| node.labels().contains_key(&c.key))
            {
                continue;
            }
            for (i, c) in constraints.iter().enumerate() {
                if c.key == HOSTNAME || !node_eligible(c, pod, node) {
                    continue;
                }
                *counts[i].entry(node.labels()[&c.key].clone()).or_default() +=
                    count_matching(c, pod, node);
            }
        }
        let weights = constraints
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let size = if c.key == HOSTNAME {
                    nodes.len() - ignored.len()
                } else {
                    sizes[i].len()
                };
                ((size + 2) as f64).ln()
            })
            .collect();
        state.write(
            NAME,
            ScoreState {
                constraints,
                counts,
                weights,
                ignored,
            },
        );
        Status::success()
    }
}

impl ScorePlugin for PodTopologySpread {
    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> (i64, Status) {
        let Some(st) = state.read::<ScoreState>(NAME) else {
            return (0, Status::success());
        };
        if st.ignored.contains(&node.name) {
            return (0, Status::success());
        }
        let mut score = 0.0;
        for (i, c) in st.constraints.iter().enumerate() {
            let Some(v) = node.labels().get(&c.key) else {
                continue;
            };
            let cnt = if c.key == HOSTNAME {
                count_matching(c, pod, node)
            } else {
                st.counts[i].get(v).copied().unwrap_or(0)
            };
            score += cnt as f64 * st.weights[i] + (c.max_skew - 1) as f64;
        }
        (score.round() as i64, Status::success())
    }

    fn normalize(
        &self,
        state: &CycleState,
        _: &PodInfo,
        nodes: &[Arc<NodeInfo>],
        scores: &mut [i64],
    ) -> Status {
        let Some(st) = state.read::<ScoreState>(NAME) else {
            return Status::success();
        };
        let ignored = |i: usize| nodes.get(i).is_some_and(|n| st.ignored.contains(&n.name));
        let (mut min, mut max) = (i64::MAX, 0i64);
        for (i, s) in scores.iter().enumerate() {
            if !ignored(i) {
                min = min.min(*s);
                max = max.max(*s);
            }
        }
        for (i, s) in scores.iter_mut().enumerate() {
            *s = if ignored(i) {
                0
            } else if max == 0 {
                MAX_NODE_SCORE
            } else {
                MAX_NODE_SCORE * (max + min - *s) / max
            };
        }
        Status::success()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testutil::*;
    use serde_json::json;

    fn zn(name: &str, zone: &str, pods: &[Arc<PodInfo>]) -> NodeInfo {
        node_info(
            node(
                name,
                "4",
                "8Gi",
                json!({"zone": zone, "topology.kubernetes.io/zone": zone, HOSTNAME: name}),
            ),
            pods,
        )
    }

    fn web(n: &str) -> Arc<PodInfo> {
        pod_labeled(n, json!({"app": "web"}), json!({}))
    }

    fn spread_pod(when: &str, key: &str) -> Arc<PodInfo> {
        pod_labeled(
            "new",
            json!({"app": "web"}),
            json!({"topologySpreadConstraints": [
            {"maxSkew": 1, "topologyKey": key, "whenUnsatisfiable": when, "labelSelector": {"matchLabels": {"app": "web"}}}]}),
        )
    }

    #[test]
    fn do_not_schedule_respects_max_skew() {
        let snap = snapshot(vec![
            zn("a", "z1", &[web("1"), web("2")]),
            zn("b", "z2", &[web("3")]),
            node_info(node("c", "4", "8Gi", json!({})), &[]),
        ]);
        let p = spread_pod("DoNotSchedule", "zone");
        let pl = PodTopologySpread::default();
        let mut st = state();
        assert!(pl.pre_filter(&mut st, &p, &snap).1.is_success());
        let r: Vec<Status> = snap.nodes.iter().map(|n| pl.filter(&st, &p, n)).collect();
        assert_eq!(r[0].message(), ERR_CONSTRAINTS);
        assert!(r[1].is_success());
        assert_eq!(r[2].message(), ERR_MISSING_LABEL);
        assert_eq!(r[2].code, Code::UnschedulableAndUnresolvable);
    }

    #[test]
    fn schedule_anyway_prefers_emptier_domain() {
        let snap = snapshot(vec![
            zn("a", "z1", &[web("1"), web("2")]),
            zn("b", "z2", &[]),
        ]);
        let p = spread_pod("ScheduleAnyway", "zone");
        let pl = PodTopologySpread::default();
        let mut st = state();
        assert!(pl.pre_score(&mut st, &p, &snap.nodes, &snap).is_success());
        let mut s: Vec<i64> = snap.nodes.iter().map(|n| pl.score(&st, &p, n).0).collect();
        pl.normalize(&st, &p, &snap.nodes, &mut s);
        assert!(s[1] > s[0], "{s:?}");
        assert_eq!(s[1], 100);
    }

    #[test]
    fn system_defaults_need_a_workload_selector() {
        let mut snap = snapshot(vec![zn("a", "z1", &[web("1")]), zn("b", "z2", &[])]);
        let p = web("new");
        let pl = PodTopologySpread::default();
        assert_eq!(
            pl.pre_score(&mut state(), &p, &snap.nodes, &snap).code,
            Code::Skip
        );
        let mut sel = BTreeMap::new();
        sel.insert("app".to_string(), "web".to_string());
        snap.workloads = Arc::new(crate::snapshot::WorkloadView {
            services: vec![("default".into(), sel)],
            controllers: vec![],
            pdbs: vec![],
        });
        let mut st = state();
        assert!(pl.pre_score(&mut st, &p, &snap.nodes, &snap).is_success());
        let mut s: Vec<i64> = snap.nodes.iter().map(|n| pl.score(&st, &p, n).0).collect();
        pl.normalize(&st, &p, &snap.nodes, &mut s);
        assert!(s[1] > s[0], "{s:?}");
    }
}
