//! InterPodAffinity: required pod affinity / anti-affinity (the pod's own terms and the
//! anti-affinity of pods already running) filter nodes; preferred terms score them.

use std::collections::HashMap;
use std::sync::Arc;

use crate::framework::*;
use crate::snapshot::{AffinityTerm, NodeInfo, PodInfo, Snapshot};

/// Registry name.
pub const NAME: &str = "InterPodAffinity";
/// Existing pods' anti-affinity forbids the node.
pub const ERR_EXISTING_ANTI: &str = "node(s) didn't satisfy existing pods anti-affinity rules";
/// The pod's affinity is not met.
pub const ERR_AFFINITY: &str = "node(s) didn't match pod affinity rules";
/// The pod's anti-affinity is violated.
pub const ERR_ANTI: &str = "node(s) didn't match pod anti-affinity rules";

/// InterPodAffinityArgs.
#[derive(Debug, Clone, serde::Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct InterPodAffinityArgs {
    /// Weight of existing pods' required affinity in scoring (default 1).
    #[serde(default = "one")]
    pub hard_pod_affinity_weight: i32,
    /// Ignore preferred terms of existing pods (default false).
    #[serde(default)]
    pub ignore_preferred_terms_of_existing_pods: bool,
}

fn one() -> i32 {
    1
}

impl Default for InterPodAffinityArgs {
    fn default() -> Self {
        InterPodAffinityArgs {
            hard_pod_affinity_weight: 1,
            ignore_preferred_terms_of_existing_pods: false,
        }
    }
}

/// The InterPodAffinity plugin (PreFilter, Filter, PreScore, Score; default weight 2).
#[derive(Debug, Default)]
pub struct InterPodAffinity {
    args: InterPodAffinityArgs,
}

impl InterPodAffinity {
    /// Builds the plugin.
    pub fn new(args: InterPodAffinityArgs) -> Self {
        InterPodAffinity { args }
    }
}

type Pair = (String, String);

/// Counts per topology pair, computed once per cycle.
#[derive(Debug, Clone, Default)]
struct FilterState {
    existing_anti: HashMap<Pair, i64>,
    affinity: HashMap<Pair, i64>,
    anti: HashMap<Pair, i64>,
}

fn node_value<'a>(node: &'a NodeInfo, key: &str) -> Option<&'a String> {
    node.labels().get(key)
}

/// Applies `other` (on `node`) to the counts with multiplier `m` (+1 add, -1 remove).
fn update(
    st: &mut FilterState,
    pod: &PodInfo,
    other: &PodInfo,
    node: &NodeInfo,
    snap_ns: Option<&api_helpers::labels::Labels>,
    pod_ns: Option<&api_helpers::labels::Labels>,
    m: i64,
) {
    for t in &other.required_anti_affinity {
        if t.matches(pod, pod_ns) {
            if let Some(v) = node_value(node, &t.topology_key) {
                *st.existing_anti
                    .entry((t.topology_key.clone(), v.clone()))
                    .or_default() += m;
            }
        }
    }
    if !pod.required_affinity.is_empty()
        && pod
            .required_affinity
            .iter()
            .all(|t| t.matches(other, snap_ns))
    {
        for t in &pod.required_affinity {
            if let Some(v) = node_value(node, &t.topology_key) {
                *st.affinity
                    .entry((t.topology_key.clone(), v.clone()))
                    .or_default() += m;
            }
        }
    }
    for t in &pod.required_anti_affinity {
        if t.matches(other, snap_ns) {
            if let Some(v) = node_value(node, &t.topology_key) {
                *st.anti
                    .entry((t.topology_key.clone(), v.clone()))
                    .or_default() += m;
            }
        }
    }
}

impl Plugin for InterPodAffinity {
    fn name(&self) -> &'static str {
        NAME
    }
    fn events(&self) -> Vec<ClusterEvent> {
        vec![
            ClusterEvent::new(EventResource::AssignedPod, Action::ALL),
            ClusterEvent::new(EventResource::Node, Action::ADD | Action::UPDATE_LABEL),
            ClusterEvent::new(EventResource::UnscheduledPod, Action::UPDATE),
        ]
    }
    extension_points!(PreFilter, Filter, PreScore, Score);
}

impl PreFilterPlugin for InterPodAffinity {
    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        snap: &Snapshot,
    ) -> (Option<PreFilterResult>, Status) {
        let own = !pod.required_affinity.is_empty() || !pod.required_anti_affinity.is_empty();
        if !own && snap.with_required_anti_affinity.is_empty() {
            return (None, Status::skip());
        }
        let mut st = FilterState::default();
        let pod_ns = snap.ns_labels(&pod.namespace);
        // Existing pods' required anti-affinity.
        for &i in &snap.with_required_anti_affinity {
            let node = &snap.nodes[i];
            for other in &node.pods_with_required_anti_affinity {
                for t in &other.required_anti_affinity {
                    if t.matches(pod, pod_ns) {
                        if let Some(v) = node_value(node, &t.topology_key) {
                            *st.existing_anti
                                .entry((t.topology_key.clone(), v.clone()))
                                .or_default() += 1;
                        }
                    }
                }
            }
        }
        if own {
            for node in &snap.nodes {
                for other in &node.pods {
                    let ns = snap.ns_labels(&other.namespace);
                    update_own(&mut st, pod, other, node, ns);
                }
            }
        }
        state.write(NAME, st);
        (None, Status::success())
    }

    fn add_pod(&self, state: &mut CycleState, pod: &PodInfo, other: &PodInfo, node: &NodeInfo) {
        if let Some(st) = state.read_mut::<FilterState>(NAME) {
            update(st, pod, other, node, None, None, 1);
        }
    }

    fn remove_pod(&self, state: &mut CycleState, pod: &PodInfo, other: &PodInfo, node: &NodeInfo) {
        if let Some(st) = state.read_mut::<FilterState>(NAME) {
            update(st, pod, other, node, None, None, -1);
        }
    }
}

/// The pod's own required terms against one existing pod.
fn update_own(
    st: &mut FilterState,
    pod: &PodInfo,
    other: &PodInfo,
    node: &NodeInfo,
    other_ns: Option<&api_helpers::labels::Labels>,
) {
    if !pod.required_affinity.is_empty()
        && pod
            .required_affinity
            .iter()
            .all(|t| t.matches(other, other_ns))
    {
        for t in &pod.required_affinity {
            if let Some(v) = node_value(node, &t.topology_key) {
                *st.affinity
                    .entry((t.topology_key.clone(), v.clone()))
                    .or_default() += 1;
            }
        }
    }
    for t in &pod.required_anti_affinity {
        if t.matches(other, other_ns) {
            if let Some(v) = node_value(node, &t.topology_key) {
                *st.anti
                    .entry((t.topology_key.clone(), v.clone()))
                    .or_default() += 1;
            }
        }
    }
}

fn count(map: &HashMap<Pair, i64>, key: &str, node: &NodeInfo) -> Option<i64> {
    let v = node_value(node, key)?;
    Some(map.get(&(key.to_string(), v.clone())).copied().unwrap_or(0))
}

impl FilterPlugin for InterPodAffinity {
    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let Some(st) = state.read::<FilterState>(NAME) else {
            return Status::error("InterPodAffinity: no PreFilter state");
        };
        if !st.existing_anti.is_empty() {
            let violated = node.labels().iter().any(|(k, v)| {
                st.existing_anti
                    .get(&(k.clone(), v.clone()))
                    .is_some_and(|c| *c > 0)
            });
            if violated {
                return Status::new(Code::Unschedulable, ERR_EXISTING_ANTI);
            }
        }
        if !pod.required_affinity.is_empty() {
            let all_met = pod
                .required_affinity
                .iter()
                .all(|t| count(&st.affinity, &t.topology_key, node).is_some_and(|c| c > 0));
            if !all_met {
                // The first pod of a group may land anywhere that has the topology keys,
                // if it matches its own terms and no pod matches them yet.
                let no_matches = st.affinity.values().all(|c| *c <= 0);
                let has_keys = pod
                    .required_affinity
                    .iter()
                    .all(|t| node_value(node, &t.topology_key).is_some());
                let self_match = pod.required_affinity.iter().all(|t| t.matches(pod, None));
                if !(no_matches && has_keys && self_match) {
                    return Status::new(Code::UnschedulableAndUnresolvable, ERR_AFFINITY);
                }
            }
        }
        if pod
            .required_anti_affinity
            .iter()
            .any(|t| count(&st.anti, &t.topology_key, node).is_some_and(|c| c > 0))
        {
            return Status::new(Code::Unschedulable, ERR_ANTI);
        }
        Status::success()
    }
}

/// Score per topology pair.
#[derive(Debug, Clone, Default)]
struct ScoreState(HashMap<Pair, i64>);

fn add_terms(
    scores: &mut HashMap<Pair, i64>,
    terms: &[AffinityTerm],
    target: &PodInfo,
    target_ns: Option<&api_helpers::labels::Labels>,
    node: &NodeInfo,
    sign: i64,
    weight_override: Option<i64>,
) {
    for t in terms {
        if t.matches(target, target_ns) {
            if let Some(v) = node_value(node, &t.topology_key) {
                let w = weight_override.unwrap_or(t.weight as i64);
                *scores
                    .entry((t.topology_key.clone(), v.clone()))
                    .or_default() += sign * w;
            }
        }
    }
}

impl PreScorePlugin for InterPodAffinity {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _: &[Arc<NodeInfo>],
        snap: &Snapshot,
    ) -> Status {
        let has_pref =
            !pod.preferred_affinity.is_empty() || !pod.preferred_anti_affinity.is_empty();
        if !has_pref && snap.with_affinity.is_empty() {
            return Status::skip();
        }
        let pod_ns = snap.ns_labels(&pod.namespace);
        let mut scores: HashMap<Pair, i64> = HashMap::new();
        let mut visit = |node: &NodeInfo, other: &PodInfo| {
            let other_ns = snap.ns_labels(&other.namespace);
            add_terms(
                &mut scores,
                &pod.preferred_affinity,
                other,
                other_ns,
                node,
                1,
                None,
            );
            add_terms(
                &mut scores,
                &pod.preferred_anti_affinity,
                other,
                other_ns,
                node,
                -1,
                None,
            );
            if self.args.hard_pod_affinity_weight > 0 {
                add_terms(
                    &mut scores,
                    &other.required_affinity,
                    pod,
                    pod_ns,
                    node,
                    1,
                    Some(self.args.hard_pod_affinity_weight as i64),
                );
            }
            if !self.args.ignore_preferred_terms_of_existing_pods {
                add_terms(
                    &mut scores,
                    &other.preferred_affinity,
                    pod,
                    pod_ns,
                    node,
                    1,
                    None,
                );
                add_terms(
                    &mut scores,
                    &other.preferred_anti_affinity,
                    pod,
                    pod_ns,
                    node,
                    -1,
                    None,
                );
            }
        };
        if has_pref {
            for node in &snap.nodes {
                for other in &node.pods {
                    visit(node, other);
                }
            }
        } else {
            for &i in &snap.with_affinity {
                let node = &snap.nodes[i];
                for other in &node.pods_with_affinity {
                    visit(node, other);
                }
            }
        }
        if scores.is_empty() {
            return Status::skip();
        }
        state.write(NAME, ScoreState(scores));
        Status::success()
    }
}

impl ScorePlugin for InterPodAffinity {
    fn score(&self, state: &CycleState, _: &PodInfo, node: &NodeInfo) -> (i64, Status) {
        let Some(ScoreState(scores)) = state.read::<ScoreState>(NAME) else {
            return (0, Status::success());
        };
        let s = scores
            .iter()
            .filter(|((k, v), _)| node.labels().get(k) == Some(v))
            .map(|(_, s)| *s)
            .sum();
        (s, Status::success())
    }
    fn normalize(
        &self,
        _: &CycleState,
        _: &PodInfo,
        _: &[Arc<NodeInfo>],
        scores: &mut [i64],
    ) -> Status {
        let (min, max) = (
            scores.iter().copied().min().unwrap_or(0),
            scores.iter().copied().max().unwrap_or(0),
        );
        let diff = max - min;
        for s in scores.iter_mut() {
            *s = if diff > 0 {
                (MAX_NODE_SCORE as f64 * ((*s - min) as f64 / diff as f64)) as i64
            } else {
                0
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

    fn zone_node(name: &str, zone: &str, pods: &[Arc<PodInfo>]) -> NodeInfo {
        node_info(
            node(
                name,
                "4",
                "8Gi",
                json!({"zone": zone, "kubernetes.io/hostname": name}),
            ),
            pods,
        )
    }

    fn run_filter(p: &PodInfo, snap: &Snapshot) -> Vec<Status> {
        let pl = InterPodAffinity::default();
        let mut st = state();
        let (_, s) = pl.pre_filter(&mut st, p, snap);
        if s.code == Code::Skip {
            return snap.nodes.iter().map(|_| Status::success()).collect();
        }
        snap.nodes.iter().map(|n| pl.filter(&st, p, n)).collect()
    }

    fn term(kind: &str, app: &str, key: &str) -> serde_json::Value {
        json!({"affinity": {kind: {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": key}]}}})
    }

    #[test]
    fn required_affinity_follows_the_zone() {
        let db = pod_labeled("db", json!({"app": "db"}), json!({}));
        let snap = snapshot(vec![
            zone_node("a", "z1", &[db]),
            zone_node("b", "z1", &[]),
            zone_node("c", "z2", &[]),
        ]);
        let p = pod("web", term("podAffinity", "db", "zone"));
        let r = run_filter(&p, &snap);
        assert!(r[0].is_success() && r[1].is_success());
        assert_eq!(r[2].message(), ERR_AFFINITY);
        assert_eq!(r[2].code, Code::UnschedulableAndUnresolvable);
    }

    #[test]
    fn first_pod_of_self_affine_group_may_go_anywhere() {
        let snap = snapshot(vec![zone_node("a", "z1", &[]), zone_node("b", "z2", &[])]);
        let p = pod_labeled(
            "web",
            json!({"app": "web"}),
            term("podAffinity", "web", "zone"),
        );
        assert!(run_filter(&p, &snap).iter().all(|s| s.is_success()));
    }

    #[test]
    fn anti_affinity_both_directions() {
        let web = pod_labeled(
            "w1",
            json!({"app": "web"}),
            term("podAntiAffinity", "web", "kubernetes.io/hostname"),
        );
        let snap = snapshot(vec![
            zone_node("a", "z1", &[web]),
            zone_node("b", "z1", &[]),
        ]);
        // Same app: the existing pod's anti-affinity (and its own) rejects node a.
        let p = pod_labeled("w2", json!({"app": "web"}), json!({}));
        let r = run_filter(&p, &snap);
        assert_eq!(r[0].message(), ERR_EXISTING_ANTI);
        assert!(r[1].is_success());
        let p = pod_labeled(
            "x",
            json!({"app": "x"}),
            term("podAntiAffinity", "web", "zone"),
        );
        let r = run_filter(&p, &snap);
        assert_eq!(r[0].message(), ERR_ANTI);
        assert_eq!(r[1].message(), ERR_ANTI);
    }

    #[test]
    fn preferred_affinity_scores_the_domain() {
        let db = pod_labeled("db", json!({"app": "db"}), json!({}));
        let snap = snapshot(vec![
            zone_node("a", "z1", &[db]),
            zone_node("b", "z1", &[]),
            zone_node("c", "z2", &[]),
        ]);
        let p = pod(
            "web",
            json!({"affinity": {"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 10, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "zone"}}]}}}),
        );
        let pl = InterPodAffinity::default();
        let mut st = state();
        assert!(pl.pre_score(&mut st, &p, &snap.nodes, &snap).is_success());
        let mut scores: Vec<i64> = snap.nodes.iter().map(|n| pl.score(&st, &p, n).0).collect();
        assert_eq!(scores, vec![10, 10, 0]);
        pl.normalize(&st, &p, &[], &mut scores);
        assert_eq!(scores, vec![100, 100, 0]);
    }
}
