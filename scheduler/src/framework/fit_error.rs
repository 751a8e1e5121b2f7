//! Why a pod fits nowhere, and the FailedScheduling message upstream prints for it.

use std::collections::{BTreeMap, HashSet};

use super::status::Status;

/// The outcome of a failed scheduling cycle, as upstream's framework.Diagnosis.
#[derive(Debug, Clone, Default)]
pub struct Diagnosis {
    /// Filter status of each node that was evaluated and rejected: (node name, status).
    pub node_statuses: Vec<(String, Status)>,
    /// Status of every node not listed in `node_statuses`.
    pub absent_status: Option<Status>,
    /// Message of a PreFilter rejection (then node statuses are not listed).
    pub pre_filter_msg: String,
    /// Message of the PostFilter (preemption) attempt.
    pub post_filter_msg: String,
    /// Plugins that rejected the pod.
    pub unschedulable_plugins: HashSet<&'static str>,
}

/// A pod fits no node.
#[derive(Debug, Clone)]
pub struct FitError {
    /// Number of nodes in the snapshot.
    pub num_all_nodes: usize,
    /// Why.
    pub diagnosis: Diagnosis,
}

impl FitError {
    /// Upstream's message: `0/N nodes are available: <prefilter>. <sorted histogram>. <postfilter>`.
    pub fn message(&self) -> String {
        let d = &self.diagnosis;
        let mut msg = format!("0/{} nodes are available:", self.num_all_nodes);
        if !d.pre_filter_msg.is_empty() {
            msg.push_str(&format!(" {}.", d.pre_filter_msg));
        } else {
            let hist = reason_histogram(
                self.num_all_nodes,
                &d.node_statuses,
                d.absent_status.as_ref(),
            );
            if !hist.is_empty() {
                msg.push_str(&format!(" {}.", hist.join(", ")));
            }
        }
        if !d.post_filter_msg.is_empty() {
            msg.push_str(&format!(" {}", d.post_filter_msg));
        }
        msg
    }
}

/// `"<count> <reason>"` for each distinct reason, sorted as strings (as upstream does).
pub fn reason_histogram(
    num_all_nodes: usize,
    statuses: &[(String, Status)],
    absent: Option<&Status>,
) -> Vec<String> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, s) in statuses {
        for r in &s.reasons {
            *counts.entry(r.as_str()).or_default() += 1;
        }
    }
    if statuses.len() < num_all_nodes {
        for r in absent.map(|s| s.reasons.as_slice()).unwrap_or(&[]) {
            *counts.entry(r.as_str()).or_default() += num_all_nodes - statuses.len();
        }
    }
    let mut out: Vec<String> = counts.iter().map(|(r, c)| format!("{c} {r}")).collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::super::status::Code;
    use super::*;

    #[test]
    fn message_matches_upstream_form() {
        let taint = "node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }";
        let mut statuses = vec![];
        for n in ["a", "b"] {
            statuses.push((
                n.to_string(),
                Status::new(Code::Unschedulable, "Insufficient cpu"),
            ));
        }
        for n in ["c", "d", "e"] {
            statuses.push((
                n.to_string(),
                Status::new(Code::UnschedulableAndUnresolvable, taint),
            ));
        }
        let e = FitError {
            num_all_nodes: 5,
            diagnosis: Diagnosis {
                node_statuses: statuses,
                post_filter_msg:
                    "preemption: 0/5 nodes are available: 5 Preemption is not helpful for scheduling."
                        .into(),
                ..Default::default()
            },
        };
        assert_eq!(
            e.message(),
            "0/5 nodes are available: 2 Insufficient cpu, 3 node(s) had untolerated taint \
             {node-role.kubernetes.io/control-plane: }. preemption: 0/5 nodes are available: \
             5 Preemption is not helpful for scheduling."
        );
    }

    #[test]
    fn absent_nodes_counted_and_prefilter_wins() {
        let absent = Status::new(
            Code::UnschedulableAndUnresolvable,
            "Preemption is not helpful for scheduling",
        );
        let e = FitError {
            num_all_nodes: 3,
            diagnosis: Diagnosis {
                absent_status: Some(absent),
                ..Default::default()
            },
        };
        assert_eq!(
            e.message(),
            "0/3 nodes are available: 3 Preemption is not helpful for scheduling."
        );
        let e = FitError {
            num_all_nodes: 3,
            diagnosis: Diagnosis {
                pre_filter_msg: "pod has unbound immediate PersistentVolumeClaims".into(),
                node_statuses: vec![("x".into(), Status::new(Code::Unschedulable, "ignored"))],
                ..Default::default()
            },
        };
        assert_eq!(
            e.message(),
            "0/3 nodes are available: pod has unbound immediate PersistentVolumeClaims."
        );
    }
}
