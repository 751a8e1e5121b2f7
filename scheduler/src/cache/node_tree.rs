//! Node ordering across zones, as upstream's nodeTree: nodes are listed round-robin over
//! zones so that the first nodes a cycle evaluates are spread across zones.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::snapshot::NodeInfo;
use api_helpers::labels::Labels;

/// The zone key of a node: `region:\0:zone` from the topology labels.
pub fn zone_of(labels: &Labels) -> String {
    let region = labels
        .get("topology.kubernetes.io/region")
        .map(String::as_str)
        .unwrap_or("");
    let zone = labels
        .get("topology.kubernetes.io/zone")
        .map(String::as_str)
        .unwrap_or("");
    if region.is_empty() && zone.is_empty() {
        return String::new();
    }
    format!("{region}:\x00:{zone}")
}

/// Orders nodes by taking one node per zone in turn (zones and nodes sorted by name).
pub fn zone_interleaved(nodes: Vec<Arc<NodeInfo>>) -> Vec<Arc<NodeInfo>> {
    let mut zones: BTreeMap<String, Vec<Arc<NodeInfo>>> = BTreeMap::new();
    for n in nodes {
        zones.entry(zone_of(n.labels())).or_default().push(n);
    }
    let mut lists: Vec<std::vec::IntoIter<Arc<NodeInfo>>> = zones
        .into_values()
        .map(|mut v| {
            v.sort_by(|a, b| a.name.cmp(&b.name));
            v.into_iter()
        })
        .collect();
    let mut out = Vec::new();
    loop {
        let mut any = false;
        for l in lists.iter_mut() {
            if let Some(n) = l.next() {
                out.push(n);
                any = true;
            }
        }
        if !any {
            return out;
        }
    }
}
