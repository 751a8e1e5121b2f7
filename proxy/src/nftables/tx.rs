//! One nftables transaction as `nft -f` text. Everything a sync changes goes into one
//! transaction, which the kernel applies atomically or not at all.

use super::names::TABLE;
use crate::model::IpFamily;
use std::collections::HashSet;
use std::fmt::Write;

/// The chain a command is about: `<verb> <what> <family> kube-proxy <chain> …`.
fn chain_of(line: &str) -> &str {
    line.split(' ').nth(4).unwrap_or_default()
}

/// A transaction for table `kube-proxy` of one family.
///
/// When a *sectioned* transaction ([`Transaction::sectioned`]) is appended to another,
/// its commands are reordered: chain declarations and flushes, and every rule of the
/// chains that hold an anonymous set (the per-service `numgen … vmap { … }`) and name
/// no named set, go first; everything else follows in its original order. The kernel
/// walks the whole pending transaction each time it binds an anonymous set, so binding
/// them while the transaction is still short cut a 10,000-Service full sync from 170 s
/// to 69 s here (kernel 6.18, nft 1.0.6). The meaning is unchanged: a chain keeps its
/// rules' order, chains are declared and flushed before any rule, and rules naming a set
/// (`@…`) stay behind its declaration.
#[derive(Debug, Clone)]
pub struct Transaction {
    family: &'static str,
    text: String,
    sectioned: bool,
    ops: usize,
}

impl Transaction {
    /// An empty transaction for `family`'s table.
    pub fn new(family: IpFamily) -> Self {
        Transaction {
            family: nft_family(family),
            text: String::new(),
            sectioned: false,
            ops: 0,
        }
    }

    /// An empty sectioned transaction (see [`Transaction`]); its text is only complete
    /// once appended to another.
    pub fn sectioned(family: IpFamily) -> Self {
        Transaction {
            sectioned: true,
            ..Transaction::new(family)
        }
    }

    /// A transaction of ready `nft -f` text (tests and tools).
    pub fn from_text(family: IpFamily, text: &str) -> Self {
        let mut tx = Transaction::new(family);
        tx.ops = text.lines().filter(|l| !l.is_empty()).count();
        tx.text = text.to_string();
        if !tx.text.is_empty() && !tx.text.ends_with('\n') {
            tx.text.push('\n');
        }
        tx
    }

    /// The IP family of the table.
    pub fn family(&self) -> IpFamily {
        if self.family == "ip6" {
            IpFamily::V6
        } else {
            IpFamily::V4
        }
    }

    /// Number of commands.
    pub fn len(&self) -> usize {
        self.ops
    }

    /// Whether there are no commands.
    pub fn is_empty(&self) -> bool {
        self.ops == 0
    }

    /// The `nft -f` text (of a sectioned transaction: without its front section).
    pub fn text(&self) -> &str {
        &self.text
    }

    fn line(&mut self, verb: &str, what: &str, rest: std::fmt::Arguments<'_>) {
        self.ops += 1;
        let _ = write!(self.text, "{verb} {what} {} {TABLE}", self.family);
        let _ = self.text.write_fmt(rest);
        self.text.push('\n');
    }

    /// Appends another transaction's commands (a sectioned one's reordered, see
    /// [`Transaction`]).
    pub fn append(&mut self, other: &Transaction) {
        self.ops += other.ops;
        if !other.sectioned {
            self.text.push_str(&other.text);
            return;
        }
        self.text.reserve(other.text.len());
        let mut anonymous: HashSet<&str> = HashSet::new();
        let mut pinned: HashSet<&str> = HashSet::new();
        for line in other.text.lines() {
            if let Some(rule) = line.strip_prefix("add rule ") {
                if rule.contains('@') {
                    pinned.insert(chain_of(line));
                } else if rule.contains('{') {
                    anonymous.insert(chain_of(line));
                }
            }
        }
        let front = |line: &str| {
            line.starts_with("add chain ")
                || line.starts_with("flush chain ")
                || (line.starts_with("add rule ") && {
                    let c = chain_of(line);
                    anonymous.contains(c) && !pinned.contains(c)
                })
        };
        for pass in [true, false] {
            for line in other.text.lines().filter(|l| front(l) == pass) {
                self.text.push_str(line);
                self.text.push('\n');
            }
        }
    }

    /// `add table` with upstream's comment.
    pub fn add_table(&mut self) {
        self.line(
            "add",
            "table",
            format_args!(" {{ comment \"rules for kube-proxy\" ; }}"),
        );
    }

    /// `delete table` (the table must exist).
    pub fn delete_table(&mut self) {
        self.line("delete", "table", format_args!(""));
    }

    /// `add chain` (a regular chain; existing ones are kept).
    pub fn add_chain(&mut self, chain: &str) {
        self.line("add", "chain", format_args!(" {chain}"));
    }

    /// `add chain` with a comment.
    pub fn add_chain_commented(&mut self, chain: &str, comment: &str) {
        self.line(
            "add",
            "chain",
            format_args!(" {chain} {{ comment \"{comment}\" ; }}"),
        );
    }

    /// `add chain` for a base chain hooked into netfilter.
    pub fn add_base_chain(&mut self, chain: &str, kind: &str, hook: &str, priority: i32) {
        self.line(
            "add",
            "chain",
            format_args!(" {chain} {{ type {kind} hook {hook} priority {priority} ; }}"),
        );
    }

    /// `flush chain`.
    pub fn flush_chain(&mut self, chain: &str) {
        self.line("flush", "chain", format_args!(" {chain}"));
    }

    /// `delete chain`.
    pub fn delete_chain(&mut self, chain: &str) {
        self.line("delete", "chain", format_args!(" {chain}"));
    }

    /// `add rule`, with an optional comment.
    pub fn add_rule(&mut self, chain: &str, rule: &str, comment: Option<&str>) {
        match comment {
            Some(c) => self.line(
                "add",
                "rule",
                format_args!(" {chain} {rule} comment \"{c}\""),
            ),
            None => self.line("add", "rule", format_args!(" {chain} {rule}")),
        }
    }

    /// `add set`/`add map` with its body (`type … ; comment … ;`).
    pub fn add_container(&mut self, kind: &str, name: &str, body: &str) {
        self.line("add", kind, format_args!(" {name} {{ {body} }}"));
    }

    /// `flush set`/`flush map`.
    pub fn flush_container(&mut self, kind: &str, name: &str) {
        self.line("flush", kind, format_args!(" {name}"));
    }

    /// `delete set`/`delete map`.
    pub fn delete_container(&mut self, kind: &str, name: &str) {
        self.line("delete", kind, format_args!(" {name}"));
    }

    /// `add element`: `key` (with `value` for maps), optional comment.
    pub fn add_element(
        &mut self,
        container: &str,
        key: &str,
        value: Option<&str>,
        comment: Option<&str>,
    ) {
        let comment = comment
            .map(|c| format!(" comment \"{c}\""))
            .unwrap_or_default();
        match value {
            Some(v) => self.line(
                "add",
                "element",
                format_args!(" {container} {{ {key}{comment} : {v} }}"),
            ),
            None => self.line(
                "add",
                "element",
                format_args!(" {container} {{ {key}{comment} }}"),
            ),
        }
    }

    /// `delete element`.
    pub fn delete_element(&mut self, container: &str, key: &str) {
        self.line(
            "delete",
            "element",
            format_args!(" {container} {{ {key} }}"),
        );
    }
}

/// nft's family keyword.
pub fn nft_family(family: IpFamily) -> &'static str {
    match family {
        IpFamily::V4 => "ip",
        IpFamily::V6 => "ip6",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_nft_syntax() {
        let mut tx = Transaction::new(IpFamily::V6);
        tx.add_table();
        tx.add_base_chain("nat-output", "nat", "output", -100);
        tx.add_rule(
            "services",
            "ip6 daddr . meta l4proto . th dport vmap @service-ips",
            None,
        );
        tx.add_element(
            "no-endpoint-services",
            "fd00::1 . tcp . 80",
            Some("goto reject-chain"),
            Some("ns/s:p"),
        );
        tx.delete_element("cluster-ips", "fd00::1");
        assert_eq!(tx.len(), 5);
        assert_eq!(
            tx.text(),
            "add table ip6 kube-proxy { comment \"rules for kube-proxy\" ; }\n\
             add chain ip6 kube-proxy nat-output { type nat hook output priority -100 ; }\n\
             add rule ip6 kube-proxy services ip6 daddr . meta l4proto . th dport vmap @service-ips\n\
             add element ip6 kube-proxy no-endpoint-services { fd00::1 . tcp . 80 comment \"ns/s:p\" : goto reject-chain }\n\
             delete element ip6 kube-proxy cluster-ips { fd00::1 }\n"
        );
    }

    #[test]
    fn sectioned_body_binds_anonymous_sets_early_keeping_each_chains_order() {
        let mut body = Transaction::sectioned(IpFamily::V4);
        body.add_chain("endpoint-a");
        body.add_chain("service-s");
        body.add_container("set", "affinity-x", "type ipv4_addr ;");
        body.add_element(
            "service-ips",
            "10.0.0.1 . tcp . 80",
            Some("goto service-s"),
            None,
        );
        body.add_rule(
            "service-s",
            "ip saddr != 10.0.0.0/8 jump mark-for-masquerade",
            None,
        );
        body.add_rule(
            "service-s",
            "numgen random mod 1 vmap { 0 : goto endpoint-a }",
            None,
        );
        body.add_rule("endpoint-a", "meta l4proto tcp dnat to 10.1.0.1:80", None);
        // A chain naming a set keeps all its rules behind the set's declaration.
        body.add_chain("service-t");
        body.add_rule("service-t", "ip saddr @affinity-x goto endpoint-a", None);
        body.add_rule(
            "service-t",
            "numgen random mod 1 vmap { 0 : goto endpoint-a }",
            None,
        );
        let mut tx = Transaction::new(IpFamily::V4);
        tx.delete_chain("endpoint-old");
        tx.append(&body);
        assert_eq!(tx.len(), 11);
        let lines: Vec<&str> = tx.text().lines().collect();
        assert_eq!(
            lines,
            [
                "delete chain ip kube-proxy endpoint-old",
                "add chain ip kube-proxy endpoint-a",
                "add chain ip kube-proxy service-s",
                "add rule ip kube-proxy service-s ip saddr != 10.0.0.0/8 jump mark-for-masquerade",
                "add rule ip kube-proxy service-s numgen random mod 1 vmap { 0 : goto endpoint-a }",
                "add chain ip kube-proxy service-t",
                "add set ip kube-proxy affinity-x { type ipv4_addr ; }",
                "add element ip kube-proxy service-ips { 10.0.0.1 . tcp . 80 : goto service-s }",
                "add rule ip kube-proxy endpoint-a meta l4proto tcp dnat to 10.1.0.1:80",
                "add rule ip kube-proxy service-t ip saddr @affinity-x goto endpoint-a",
                "add rule ip kube-proxy service-t numgen random mod 1 vmap { 0 : goto endpoint-a }",
            ]
        );
    }
}
