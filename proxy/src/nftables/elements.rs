//! What the kernel holds in one of our sets or verdict maps, so a sync only emits the
//! element additions, replacements and deletions that differ (upstream's
//! `nftElementStorage`). The store is updated speculatively while a transaction is built
//! and discarded (`reset`) when the transaction fails, which forces a full resync.

use super::tx::Transaction;
use std::collections::{BTreeMap, BTreeSet};

/// Elements of one set (`value == None`) or map, keyed by the nft key text.
#[derive(Debug, Clone)]
pub struct ElementStore {
    kind: &'static str,
    name: &'static str,
    elements: BTreeMap<String, Option<String>>,
    leftover: BTreeSet<String>,
    touched: Vec<String>,
}

impl ElementStore {
    /// A store for the set or map `name` (`kind` is `set` or `map`).
    pub fn new(kind: &'static str, name: &'static str) -> Self {
        ElementStore {
            kind,
            name,
            elements: BTreeMap::new(),
            leftover: BTreeSet::new(),
            touched: Vec::new(),
        }
    }

    /// The container's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Forgets everything and emits a flush (for a full sync).
    pub fn flush(&mut self, tx: &mut Transaction) {
        tx.flush_container(self.kind, self.name);
        self.elements.clear();
        self.leftover.clear();
    }

    /// Starts a sync: every known element is a leftover until ensured again.
    pub fn begin(&mut self) {
        self.leftover = self.elements.keys().cloned().collect();
    }

    /// Ensures `key` (→ `value`) is present, emitting only what changes.
    pub fn ensure(
        &mut self,
        tx: &mut Transaction,
        key: String,
        value: Option<String>,
        comment: Option<&str>,
    ) {
        self.leftover.remove(&key);
        self.touched.push(key.clone());
        match self.elements.get(&key) {
            Some(v) if *v == value => {}
            Some(_) => {
                tx.delete_element(self.name, &key);
                tx.add_element(self.name, &key, value.as_deref(), comment);
                self.elements.insert(key, value);
            }
            None => {
                tx.add_element(self.name, &key, value.as_deref(), comment);
                self.elements.insert(key, value);
            }
        }
    }

    /// Ends a sync: deletes elements nobody ensured.
    pub fn finish(&mut self, tx: &mut Transaction) {
        for key in std::mem::take(&mut self.leftover) {
            tx.delete_element(self.name, &key);
            self.elements.remove(&key);
        }
    }

    /// The keys ensured since the last call (to learn which elements a service owns).
    pub fn take_touched(&mut self) -> Vec<String> {
        std::mem::take(&mut self.touched)
    }

    /// Deletes `key` if present (an element a changed service no longer has).
    pub fn remove(&mut self, tx: &mut Transaction, key: &str) {
        if self.elements.remove(key).is_some() {
            tx.delete_element(self.name, key);
        }
        self.leftover.remove(key);
    }

    /// Number of elements believed present.
    pub fn len(&self) -> usize {
        self.elements.len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.elements.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::IpFamily;

    #[test]
    fn emits_only_differences() {
        let mut s = ElementStore::new("map", "service-ips");
        let mut tx = Transaction::new(IpFamily::V4);
        s.begin();
        s.ensure(
            &mut tx,
            "1.1.1.1 . tcp . 80".into(),
            Some("goto a".into()),
            None,
        );
        s.ensure(
            &mut tx,
            "1.1.1.2 . tcp . 80".into(),
            Some("goto b".into()),
            None,
        );
        s.finish(&mut tx);
        assert_eq!(tx.len(), 2);
        let mut tx = Transaction::new(IpFamily::V4);
        s.begin();
        s.ensure(
            &mut tx,
            "1.1.1.1 . tcp . 80".into(),
            Some("goto a".into()),
            None,
        );
        s.ensure(
            &mut tx,
            "1.1.1.2 . tcp . 80".into(),
            Some("goto c".into()),
            None,
        );
        s.finish(&mut tx);
        assert_eq!(
            tx.text(),
            "delete element ip kube-proxy service-ips { 1.1.1.2 . tcp . 80 }\n\
             add element ip kube-proxy service-ips { 1.1.1.2 . tcp . 80 : goto c }\n"
        );
        let mut tx = Transaction::new(IpFamily::V4);
        s.begin();
        s.finish(&mut tx);
        assert_eq!(tx.len(), 2);
        assert!(s.is_empty());
    }
}
