//! Which nodes a DaemonSet's pod belongs on (upstream's `NodeShouldRunDaemonPod`): the pod's
//! `nodeName`, `nodeSelector` and required node affinity must match the node, and its
//! tolerations — the template's plus those every daemon pod gets — must tolerate the node's
//! NoSchedule/NoExecute taints. Also the per-node pod affinity the controller writes.

use std::cmp::Ordering;

use api_helpers::node_affinity::{pod_matches_node, OBJECT_NAME_FIELD};
use api_helpers::taints::has_untolerated;

use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    PodSpec, Toleration,
};

/// The tolerations every daemon pod gets (upstream's `AddOrUpdateDaemonPodTolerations`):
/// not-ready and unreachable NoExecute, disk/memory/pid pressure and unschedulable
/// NoSchedule, and network-unavailable NoSchedule with host networking.
pub fn add_daemon_tolerations(spec: &mut PodSpec) {
    let mut wanted = vec![
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/disk-pressure", "NoSchedule"),
        ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ("node.kubernetes.io/pid-pressure", "NoSchedule"),
        ("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if spec.host_network == Some(true) {
        wanted.push(("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    let list = spec.tolerations.get_or_insert_with(Vec::new);
    for (key, effect) in wanted {
        let t = Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: Some(effect.into()),
            value: None,
            toleration_seconds: None,
        };
        // Replace an identical toleration (e.g. one with tolerationSeconds), else append.
        let same = |o: &Toleration| {
            o.key == t.key
                && o.operator.as_deref().unwrap_or("Equal") == "Exists"
                && o.effect == t.effect
                && o.value.as_deref().unwrap_or("").is_empty()
        };
        match list.iter_mut().find(|o| same(o)) {
            Some(o) => *o = t,
            None => list.push(t),
        }
    }
}

/// Upstream's `NodeShouldRunDaemonPod` over the daemon pod spec (template spec with the
/// daemon tolerations added): `(should_run, should_continue_running)`. A node whose
/// untolerated taints are all NoSchedule keeps the pods it has.
pub fn should_run(spec: &PodSpec, node: &Node) -> (bool, bool) {
    let node_name = node.metadata.name.as_deref().unwrap_or("");
    if spec
        .node_name
        .as_deref()
        .is_some_and(|n| !n.is_empty() && n != node_name)
    {
        return (false, false);
    }
    if !pod_matches_node(spec, node) {
        return (false, false);
    }
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or(&[]);
    let tolerations = spec.tolerations.as_deref().unwrap_or(&[]);
    if has_untolerated(taints, tolerations, &["NoSchedule", "NoExecute"]) {
        return (false, !has_untolerated(taints, tolerations, &["NoExecute"]));
    }
    (true, true)
}

/// The pod's affinity with the required node terms replaced by `metadata.name In [node]`
/// (upstream's `ReplaceDaemonSetPodNodeNameNodeAffinity`); the scheduler then binds it there.
pub fn pin_to_node(affinity: Option<Affinity>, node: &str) -> Affinity {
    let selector = NodeSelector {
        node_selector_terms: vec![NodeSelectorTerm {
            match_expressions: None,
            match_fields: Some(vec![NodeSelectorRequirement {
                key: OBJECT_NAME_FIELD.into(),
                operator: "In".into(),
                values: Some(vec![node.into()]),
            }]),
        }],
    };
    let mut a = affinity.unwrap_or_default();
    let na = a.node_affinity.get_or_insert_with(NodeAffinity::default);
    na.required_during_scheduling_ignored_during_execution = Some(selector);
    a
}

/// The node a daemon pod is on or pinned to (upstream's `GetTargetNodeName`).
pub fn target_node(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(n) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        return Some(n.to_string());
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms.iter().find_map(|t| {
        t.match_fields.iter().flatten().find_map(|r| {
            let v = r.values.as_deref().unwrap_or(&[]);
            (r.key == OBJECT_NAME_FIELD && r.operator == "In" && v.len() == 1).then(|| v[0].clone())
        })
    })
}

/// Upstream's `podByCreationTimestampAndPhase`: bound pods first, then oldest, then by name.
pub fn oldest_first(a: &Pod, b: &Pod) -> Ordering {
    let bound = |p: &Pod| {
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_some_and(|n| !n.is_empty())
    };
    bound(b)
        .cmp(&bound(a))
        .then_with(|| {
            let t = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
            t(a).cmp(&t(b))
        })
        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn node(name: &str, labels: &[(&str, &str)], taints: &[(&str, &str)]) -> Node {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>()},
            "spec": {"taints": taints.iter().map(|(k, e)| serde_json::json!({"key": k, "effect": e})).collect::<Vec<_>>()}
        }))
        .unwrap()
    }

    fn spec(v: serde_json::Value) -> PodSpec {
        let mut s: PodSpec = serde_json::from_value(v).unwrap();
        add_daemon_tolerations(&mut s);
        s
    }

    #[test]
    fn automatic_tolerations() {
        let s = spec(serde_json::json!({"containers": [], "hostNetwork": true,
            "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}]}));
        let t = s.tolerations.unwrap();
        assert_eq!(t.len(), 7);
        assert!(t.iter().all(|t| t.toleration_seconds.is_none()));
        let s = spec(serde_json::json!({"containers": []}));
        assert_eq!(s.tolerations.unwrap().len(), 6);
    }

    #[test]
    fn taints_decide_run_and_continue() {
        let s = spec(serde_json::json!({"containers": []}));
        assert_eq!(should_run(&s, &node("a", &[], &[])), (true, true));
        assert_eq!(
            should_run(&s, &node("a", &[], &[("dedicated", "NoSchedule")])),
            (false, true)
        );
        assert_eq!(
            should_run(&s, &node("a", &[], &[("dedicated", "NoExecute")])),
            (false, false)
        );
        // Automatic tolerations: unschedulable and not-ready nodes still run daemons.
        assert_eq!(
            should_run(
                &s,
                &node(
                    "a",
                    &[],
                    &[
                        ("node.kubernetes.io/unschedulable", "NoSchedule"),
                        ("node.kubernetes.io/not-ready", "NoExecute")
                    ]
                )
            ),
            (true, true)
        );
        // PreferNoSchedule is ignored.
        assert_eq!(
            should_run(&s, &node("a", &[], &[("x", "PreferNoSchedule")])),
            (true, true)
        );
        let tolerant = spec(serde_json::json!({"containers": [],
            "tolerations": [{"key": "dedicated", "operator": "Exists"}]}));
        assert_eq!(
            should_run(&tolerant, &node("a", &[], &[("dedicated", "NoExecute")])),
            (true, true)
        );
    }

    #[test]
    fn selectors_and_affinity() {
        let s = spec(
            serde_json::json!({"containers": [], "nodeSelector": {"disk": "ssd"},
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]},
                {"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["8"]}]}
            ]}}}}),
        );
        assert!(should_run(&s, &node("n", &[("disk", "ssd"), ("zone", "a")], &[])).0);
        assert!(should_run(&s, &node("n", &[("disk", "ssd"), ("cores", "16")], &[])).0);
        assert!(!should_run(&s, &node("n", &[("disk", "ssd"), ("cores", "4")], &[])).0);
        assert!(!should_run(&s, &node("n", &[("zone", "a")], &[])).0);
        let pinned = PodSpec {
            node_name: Some("other".into()),
            ..s.clone()
        };
        assert_eq!(
            should_run(&pinned, &node("n", &[("disk", "ssd"), ("zone", "a")], &[])),
            (false, false)
        );
    }

    #[test]
    fn pinning_round_trips() {
        let a = pin_to_node(None, "node-1");
        let pod = Pod {
            spec: Some(PodSpec {
                affinity: Some(a.clone()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(target_node(&pod).as_deref(), Some("node-1"));
        let spec = PodSpec {
            affinity: Some(a),
            ..Default::default()
        };
        assert!(pod_matches_node(&spec, &node("node-1", &[], &[])));
        assert!(!pod_matches_node(&spec, &node("node-2", &[], &[])));
    }
}
