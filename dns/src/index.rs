//! The in-memory answer index: records by lowercase owner name, each tagged with the
//! Service that contributed it, so one Service's change replaces just its own records.
//! Names that only have records below them (`default.svc.cluster.local`) exist as empty
//! non-terminals, which decides NODATA versus NXDOMAIN.

use crate::model::ServiceKey;
use crate::names;
use hickory_proto::rr::{Record, RecordType};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// The records at one name and how many names below it hold records.
#[derive(Debug, Default)]
pub struct Node {
    records: Vec<(Arc<ServiceKey>, Record)>,
    descendants: u32,
}

impl Node {
    /// The records of type `rtype` at this name.
    pub fn records_of(&self, rtype: RecordType) -> impl Iterator<Item = &Record> {
        self.records
            .iter()
            .map(|(_, r)| r)
            .filter(move |r| r.record_type() == rtype)
    }

    /// Whether the name holds records of its own (else it is an empty non-terminal).
    pub fn has_records(&self) -> bool {
        !self.records.is_empty()
    }
}

/// Owner name → records, maintained incrementally per Service.
#[derive(Debug, Default)]
pub struct Index {
    nodes: HashMap<Arc<str>, Node>,
    owned: HashMap<Arc<ServiceKey>, Vec<Arc<str>>>,
}

impl Index {
    /// The node at `key` (see [`names::key_of`]); `None` means the name does not exist.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.nodes.get(key)
    }

    /// How many names hold records.
    pub fn names_with_records(&self) -> usize {
        self.nodes.values().filter(|n| n.has_records()).count()
    }

    /// Replaces every record `owner` contributed with `records`.
    pub fn replace(&mut self, owner: &ServiceKey, records: Vec<Record>) {
        self.remove(owner);
        if records.is_empty() {
            return;
        }
        let owner = Arc::new(owner.clone());
        let mut keys: Vec<Arc<str>> = Vec::new();
        let mut seen = HashSet::new();
        for record in records {
            let key = names::key_of(&record.name);
            let key: Arc<str> = match self.nodes.get_key_value(key.as_str()) {
                Some((existing, _)) => existing.clone(),
                None => Arc::from(key),
            };
            let node = self.nodes.entry(key.clone()).or_default();
            let first = node.records.is_empty();
            node.records.push((owner.clone(), record));
            if first {
                self.adjust_ancestors(&key, 1);
            }
            if seen.insert(key.clone()) {
                keys.push(key);
            }
        }
        // Records are large (~270 bytes): keep each name's vector exactly sized.
        for key in &keys {
            if let Some(node) = self.nodes.get_mut(key) {
                node.records.shrink_to_fit();
            }
        }
        keys.shrink_to_fit();
        self.owned.insert(owner, keys);
    }

    /// Drops every record `owner` contributed.
    pub fn remove(&mut self, owner: &ServiceKey) {
        let Some(keys) = self.owned.remove(owner) else {
            return;
        };
        for key in keys {
            let Some(node) = self.nodes.get_mut(&*key) else {
                continue;
            };
            node.records.retain(|(o, _)| **o != *owner);
            if node.records.is_empty() {
                if node.descendants == 0 {
                    self.nodes.remove(&*key);
                }
                self.adjust_ancestors(&key, -1);
            }
        }
    }

    fn adjust_ancestors(&mut self, key: &str, delta: i32) {
        for ancestor in names::ancestors(key) {
            let node = match self.nodes.get_mut(ancestor) {
                Some(node) => node,
                None => self.nodes.entry(Arc::from(ancestor)).or_default(),
            };
            node.descendants = node.descendants.saturating_add_signed(delta);
            if node.descendants == 0 && node.records.is_empty() {
                self.nodes.remove(ancestor);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::address_record;

    fn a(name: &str, ip: &str) -> Record {
        address_record(names::fqdn(name).unwrap(), 30, ip.parse().unwrap())
    }

    #[test]
    fn replace_and_remove_keep_empty_non_terminals_exact() {
        let mut index = Index::default();
        let web = ServiceKey::new("default", "web");
        let db = ServiceKey::new("default", "db");
        index.replace(&web, vec![a("web.default.svc.cluster.local", "10.96.0.1")]);
        index.replace(&db, vec![a("db.default.svc.cluster.local", "10.96.0.2")]);
        assert!(index.get("default.svc.cluster.local").is_some());
        assert!(!index
            .get("default.svc.cluster.local")
            .unwrap()
            .has_records());
        let node = index.get("web.default.svc.cluster.local").unwrap();
        assert_eq!(node.records_of(RecordType::A).count(), 1);
        assert_eq!(node.records_of(RecordType::AAAA).count(), 0);

        index.replace(&web, vec![a("web.default.svc.cluster.local", "10.96.0.9")]);
        let ips: Vec<String> = index
            .get("web.default.svc.cluster.local")
            .unwrap()
            .records_of(RecordType::A)
            .map(|r| r.data.to_string())
            .collect();
        assert_eq!(ips, vec!["10.96.0.9"]);

        index.remove(&web);
        assert!(index.get("web.default.svc.cluster.local").is_none());
        assert!(index.get("default.svc.cluster.local").is_some());
        index.remove(&db);
        assert!(index.get("default.svc.cluster.local").is_none());
        assert!(index.get("cluster.local").is_none());
        assert_eq!(index.names_with_records(), 0);
    }

    #[test]
    fn shared_names_keep_other_owners_records() {
        let mut index = Index::default();
        let one = ServiceKey::new("a", "one");
        let two = ServiceKey::new("a", "two");
        // Two headless Services selecting the same pod share its PTR name.
        index.replace(&one, vec![a("x.example", "10.0.0.1")]);
        index.replace(&two, vec![a("x.example", "10.0.0.2")]);
        index.remove(&one);
        assert_eq!(
            index
                .get("x.example")
                .unwrap()
                .records_of(RecordType::A)
                .count(),
            1
        );
    }
}
