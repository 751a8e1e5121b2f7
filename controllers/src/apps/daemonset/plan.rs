//! One DaemonSet sync's decisions over observed nodes and pods: upstream's `manage`
//! (`podsShouldBeOnNode` for every node) and `rollingUpdate` (maxUnavailable, or maxSurge),
//! without the API calls.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;

use super::eligibility::oldest_first;
use crate::apps::history::POD_REVISION_LABEL;
use crate::machinery::pods;

/// Label with the deprecated template generation (`pod-template-generation`).
pub const TEMPLATE_GENERATION_LABEL: &str = "pod-template-generation";

/// What the plan knows about one node.
#[derive(Debug, Clone)]
pub struct NodeFacts {
    /// Node name.
    pub name: String,
    /// A daemon pod should run there.
    pub should_run: bool,
    /// A daemon pod already there may stay.
    pub should_continue: bool,
}

/// What the plan knows about the DaemonSet.
#[derive(Debug, Clone)]
pub struct DsView {
    /// The current revision's hash.
    pub hash: String,
    /// `deprecated.daemonset.template.generation`, if annotated.
    pub template_generation: Option<i64>,
    /// `spec.minReadySeconds`.
    pub min_ready_seconds: i32,
    /// `RollingUpdate` with a non-zero maxSurge.
    pub allows_surge: bool,
}

/// Pods by the node they are on or pinned to.
pub type ByNode<'a> = BTreeMap<String, Vec<&'a Pod>>;

/// Creations and deletions.
#[derive(Debug, Default, PartialEq)]
pub struct Changes<'a> {
    /// Nodes that get a new daemon pod.
    pub create_on: Vec<String>,
    /// Pods to delete.
    pub delete: Vec<&'a Pod>,
    /// Failed pods to delete, each subject to per-node backoff: `(node, pod)`.
    pub failed: Vec<(String, &'a Pod)>,
}

impl DsView {
    /// Whether `pod` runs the current template (upstream's `IsPodUpdated`).
    pub fn is_updated(&self, pod: &Pod) -> bool {
        let labels = pod.metadata.labels.as_ref();
        let label = |k: &str| labels.and_then(|l| l.get(k)).map(String::as_str);
        let hash_ok =
            !self.hash.is_empty() && label(POD_REVISION_LABEL) == Some(self.hash.as_str());
        let gen_ok = self
            .template_generation
            .is_some_and(|g| label(TEMPLATE_GENERATION_LABEL) == Some(g.to_string().as_str()));
        hash_ok || gen_ok
    }
}

/// Upstream's `manage`: per node, create a missing pod, delete extra, failed, succeeded and
/// misplaced ones; and delete unbound pods pinned to nodes that no longer exist.
pub fn manage<'a>(
    nodes: &[NodeFacts],
    by_node: &ByNode<'a>,
    view: &DsView,
    now: Timestamp,
) -> Changes<'a> {
    let mut out = Changes::default();
    for node in nodes {
        let on_node = by_node.get(&node.name);
        if node.should_run && on_node.is_none() {
            out.create_on.push(node.name.clone());
            continue;
        }
        let Some(on_node) = on_node else { continue };
        if !node.should_continue {
            out.delete.extend(
                on_node
                    .iter()
                    .filter(|p| p.metadata.deletion_timestamp.is_none()),
            );
            continue;
        }
        let mut running: Vec<&Pod> = Vec::new();
        for p in on_node
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
        {
            match pods::phase(p) {
                "Failed" => out.failed.push((node.name.clone(), p)),
                "Succeeded" => out.delete.push(p),
                _ => running.push(p),
            }
        }
        running.sort_by(|a, b| oldest_first(a, b));
        if !view.allows_surge {
            out.delete.extend(running.iter().skip(1));
            continue;
        }
        if running.is_empty() {
            if node.should_run {
                out.create_on.push(node.name.clone());
            }
            continue;
        }
        // Surge: keep the oldest updated and the oldest old pod; the old one goes once the
        // new one is available (or the old one is not ready).
        let (mut oldest_new, mut oldest_old) = (None, None);
        for p in running {
            let slot = if view.is_updated(p) {
                &mut oldest_new
            } else {
                &mut oldest_old
            };
            if slot.is_none() {
                *slot = Some(p);
            } else {
                out.delete.push(p);
            }
        }
        if let (Some(new), Some(old)) = (oldest_new, oldest_old) {
            if !pods::is_ready(old) || pods::is_available(new, view.min_ready_seconds, now) {
                out.delete.push(old);
            }
        }
    }
    let known: std::collections::HashSet<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    for (node, list) in by_node {
        if known.contains(node.as_str()) {
            continue;
        }
        out.delete.extend(list.iter().filter(|p| {
            p.spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .is_none_or(str::is_empty)
        }));
    }
    out
}

/// An int-or-percent against `total`, percentages rounded up (upstream's
/// `GetScaledValueFromIntOrPercent(.., true)`).
pub fn scaled(v: Option<&IntOrString>, default: i32, total: i32) -> i32 {
    match v {
        None => default,
        Some(IntOrString::Int(i)) => *i,
        Some(IntOrString::String(s)) => {
            let pct: i64 = s.trim_end_matches('%').parse().unwrap_or(0);
            ((pct * i64::from(total) + 99) / 100) as i32
        }
    }
}

/// `(max_surge, max_unavailable, desired)` (upstream's `updatedDesiredNodeCounts`): with both
/// zero, one pod may be unavailable.
pub fn budgets(
    nodes: &[NodeFacts],
    max_surge: Option<&IntOrString>,
    max_unavailable: Option<&IntOrString>,
) -> (i32, i32, i32) {
    let desired = nodes.iter().filter(|n| n.should_run).count() as i32;
    let surge = scaled(max_surge, 0, desired);
    let mut unavailable = scaled(max_unavailable, 1, desired);
    if desired > 0 && surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    (surge, unavailable, desired)
}

/// `(new, old)` live pods on one node, or `None` if there are several of a kind (upstream's
/// `findUpdatedPodsOnNode`).
fn split<'a>(list: &[&'a Pod], view: &DsView) -> Option<(Option<&'a Pod>, Option<&'a Pod>)> {
    let (mut new, mut old) = (None, None);
    for p in list
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
    {
        let slot = if view.is_updated(p) {
            &mut new
        } else {
            &mut old
        };
        if slot.is_some() {
            return None;
        }
        *slot = Some(*p);
    }
    Some((new, old))
}

/// Upstream's `rollingUpdate`: replaces old pods within `max_unavailable` (delete first) or
/// `max_surge` (create first, delete the old pod once the new one is available).
pub fn rolling_update<'a>(
    nodes: &[NodeFacts],
    by_node: &ByNode<'a>,
    view: &DsView,
    (max_surge, max_unavailable, desired): (i32, i32, i32),
    now: Timestamp,
) -> Changes<'a> {
    let mut by_node = by_node.clone();
    let facts: BTreeMap<&str, &NodeFacts> = nodes.iter().map(|n| (n.name.as_str(), n)).collect();
    for n in nodes.iter().filter(|n| n.should_run) {
        by_node.entry(n.name.clone()).or_default();
    }
    let mrs = view.min_ready_seconds;
    let available = |p: &Pod| pods::is_available(p, mrs, now);
    let mut out = Changes::default();
    if max_surge == 0 {
        let mut unavailable = 0;
        let mut allowed: Vec<&Pod> = Vec::new();
        let mut candidates: Vec<&Pod> = Vec::new();
        for list in by_node.values() {
            let Some((new, old)) = split(list, view) else {
                unavailable += 1;
                continue;
            };
            match (new, old) {
                (None, None) | (Some(_), Some(_)) => unavailable += 1,
                (Some(new), None) => {
                    if !available(new) {
                        unavailable += 1;
                    }
                }
                (None, Some(old)) => {
                    if !available(old) {
                        allowed.push(old);
                        unavailable += 1;
                    } else if unavailable < max_unavailable {
                        candidates.push(old);
                    }
                }
            }
        }
        let room = (max_unavailable - unavailable).clamp(0, candidates.len() as i32) as usize;
        out.delete = allowed;
        out.delete.extend(candidates.into_iter().take(room));
        return out;
    }
    let (mut surge, mut num_available) = (0, 0);
    let mut allowed_new: Vec<String> = Vec::new();
    let mut candidate_new: Vec<String> = Vec::new();
    let mut should_not_run: Vec<&Pod> = Vec::new();
    for (node, list) in &by_node {
        let Some((new, old)) = split(list, view) else {
            surge += 1;
            continue;
        };
        if let Some(p) = old.or(new) {
            if available(p) {
                num_available += 1;
            }
        }
        let runs = facts.get(node.as_str()).is_some_and(|f| f.should_run);
        match (new, old) {
            (_, None) => {}
            (None, Some(old)) if !available(old) => {
                if runs {
                    allowed_new.push(node.clone());
                } else {
                    out.delete.push(old);
                }
            }
            (None, Some(old)) => {
                if !runs {
                    should_not_run.push(old);
                } else if surge < max_surge {
                    candidate_new.push(node.clone());
                }
            }
            (Some(new), Some(old)) => {
                if available(new) {
                    out.delete.push(old);
                } else {
                    surge += 1;
                }
            }
        }
    }
    let deletable = (num_available - desired).clamp(0, should_not_run.len() as i32) as usize;
    out.delete
        .extend(should_not_run.into_iter().take(deletable));
    let room = (max_surge - surge).clamp(0, candidate_new.len() as i32) as usize;
    out.create_on = allowed_new;
    out.create_on.extend(candidate_new.into_iter().take(room));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machinery::pods::testing::pod;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn now() -> Timestamp {
        Timestamp::from_second(100_000).unwrap()
    }

    fn dp(name: &str, phase: &str, ready: bool, hash: &str, created: i64) -> Pod {
        let mut p = pod(name, phase, ready.then_some(1_000));
        p.metadata.labels = Some([(POD_REVISION_LABEL.to_string(), hash.to_string())].into());
        p.metadata.creation_timestamp = Some(Time(Timestamp::from_second(created).unwrap()));
        p
    }

    fn node(name: &str, run: bool, cont: bool) -> NodeFacts {
        NodeFacts {
            name: name.into(),
            should_run: run,
            should_continue: cont,
        }
    }

    fn view(surge: bool) -> DsView {
        DsView {
            hash: "new".into(),
            template_generation: None,
            min_ready_seconds: 0,
            allows_surge: surge,
        }
    }

    fn names(v: &[&Pod]) -> Vec<String> {
        v.iter().map(|p| p.metadata.name.clone().unwrap()).collect()
    }

    #[test]
    fn manage_creates_deletes_and_reports_failed() {
        let a = dp("a", "Running", true, "new", 10);
        let b1 = dp("b1", "Running", true, "new", 10);
        let b2 = dp("b2", "Running", true, "new", 20);
        let c = dp("c", "Failed", false, "new", 10);
        let d = dp("d", "Running", true, "new", 10);
        let gone = dp("gone", "Pending", false, "new", 10);
        let by_node: ByNode = [
            ("n-a".to_string(), vec![&a]),
            ("n-b".to_string(), vec![&b2, &b1]),
            ("n-c".to_string(), vec![&c]),
            ("n-d".to_string(), vec![&d]),
            ("n-gone".to_string(), vec![&gone]),
        ]
        .into();
        let nodes = [
            node("n-a", true, true),
            node("n-b", true, true),
            node("n-c", true, true),
            node("n-d", false, false),
            node("n-e", true, true),
            node("n-f", false, true),
        ];
        let ch = manage(&nodes, &by_node, &view(false), now());
        assert_eq!(ch.create_on, ["n-e"]);
        assert_eq!(names(&ch.delete), ["b2", "d", "gone"]);
        assert_eq!(ch.failed.len(), 1);
        assert_eq!(ch.failed[0].0, "n-c");
    }

    #[test]
    fn surge_keeps_old_until_new_is_available() {
        let old = dp("old", "Running", true, "old", 10);
        let new = dp("new", "Running", false, "new", 20);
        let by_node: ByNode = [("n".to_string(), vec![&old, &new])].into();
        let nodes = [node("n", true, true)];
        assert!(manage(&nodes, &by_node, &view(true), now())
            .delete
            .is_empty());
        let new = dp("new", "Running", true, "new", 20);
        let by_node: ByNode = [("n".to_string(), vec![&old, &new])].into();
        assert_eq!(
            names(&manage(&nodes, &by_node, &view(true), now()).delete),
            ["old"]
        );
    }

    #[test]
    fn max_unavailable_bounds_deletions() {
        let pods: Vec<Pod> = (0..4)
            .map(|i| dp(&format!("p{i}"), "Running", true, "old", 10))
            .collect();
        let by_node: ByNode = pods
            .iter()
            .enumerate()
            .map(|(i, p)| (format!("n{i}"), vec![p]))
            .collect();
        let nodes: Vec<NodeFacts> = (0..4).map(|i| node(&format!("n{i}"), true, true)).collect();
        let b = budgets(&nodes, None, Some(&IntOrString::String("50%".into())));
        assert_eq!(b, (0, 2, 4));
        let ch = rolling_update(&nodes, &by_node, &view(false), b, now());
        assert_eq!(names(&ch.delete), ["p0", "p1"]);
        // One node already replaced but not yet available: only one more may go.
        let fresh = dp("p0new", "Running", false, "new", 30);
        let mut by_node = by_node.clone();
        by_node.insert("n0".into(), vec![&fresh]);
        let ch = rolling_update(&nodes, &by_node, &view(false), b, now());
        assert_eq!(names(&ch.delete), ["p1"]);
        // A node without its pod counts as unavailable.
        by_node.remove("n1");
        let ch = rolling_update(&nodes, &by_node, &view(false), b, now());
        assert!(ch.delete.is_empty());
    }

    #[test]
    fn max_surge_creates_first() {
        let pods: Vec<Pod> = (0..3)
            .map(|i| dp(&format!("p{i}"), "Running", true, "old", 10))
            .collect();
        let by_node: ByNode = pods
            .iter()
            .enumerate()
            .map(|(i, p)| (format!("n{i}"), vec![p]))
            .collect();
        let nodes: Vec<NodeFacts> = (0..3).map(|i| node(&format!("n{i}"), true, true)).collect();
        let b = budgets(
            &nodes,
            Some(&IntOrString::Int(1)),
            Some(&IntOrString::Int(0)),
        );
        assert_eq!(b, (1, 0, 3));
        let ch = rolling_update(&nodes, &by_node, &view(true), b, now());
        assert_eq!(ch.create_on, ["n0"]);
        assert!(ch.delete.is_empty());
        let n0 = dp("n0new", "Running", true, "new", 20);
        let mut by_node = by_node.clone();
        by_node.get_mut("n0").unwrap().push(&n0);
        let ch = rolling_update(&nodes, &by_node, &view(true), b, now());
        assert_eq!(names(&ch.delete), ["p0"]);
        assert_eq!(ch.create_on, ["n1"]);
    }

    #[test]
    fn updated_by_hash_or_generation() {
        let v = DsView {
            template_generation: Some(3),
            ..view(false)
        };
        let mut p = dp("p", "Running", true, "old", 1);
        assert!(!v.is_updated(&p));
        p.metadata
            .labels
            .as_mut()
            .unwrap()
            .insert(TEMPLATE_GENERATION_LABEL.into(), "3".into());
        assert!(v.is_updated(&p));
        assert_eq!(scaled(Some(&IntOrString::String("10%".into())), 0, 5), 1);
    }
}
