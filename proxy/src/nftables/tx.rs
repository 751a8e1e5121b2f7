//! One nftables transaction as `nft -f` text. Everything a sync changes goes into one
//! transaction, which the kernel applies atomically or not at all.

use super::names::TABLE;
use crate::model::IpFamily;
use std::fmt::Write;

/// A transaction for table `kube-proxy` of one family.
#[derive(Debug, Clone)]
pub struct Transaction {
    family: &'static str,
    text: String,
    ops: usize,
}

impl Transaction {
    /// An empty transaction for `family`'s table.
    pub fn new(family: IpFamily) -> Self {
        Transaction {
            family: nft_family(family),
            text: String::new(),
            ops: 0,
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

    /// The `nft -f` text.
    pub fn text(&self) -> &str {
        &self.text
    }

    fn line(&mut self, verb: &str, what: &str, rest: std::fmt::Arguments<'_>) {
        self.ops += 1;
        let _ = write!(self.text, "{verb} {what} {} {TABLE}", self.family);
        let _ = self.text.write_fmt(rest);
        self.text.push('\n');
    }

    /// Appends another transaction's commands.
    pub fn append(&mut self, other: &Transaction) {
        self.text.push_str(&other.text);
        self.ops += other.ops;
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
}
